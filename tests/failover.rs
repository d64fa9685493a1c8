//! Failover and failback with three real parts: a primary and a DR as separate processes,
//! and a redirector serving qlmredirect.xml, which decides which site is active.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{PEER_SECRET, Process, admin, client, seed_license};
use reqwest::Method;
use serde_json::{Value, json};

struct Redirector {
    url: String,
    file: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Redirector {
    async fn start(dir: &Path, active: &str, dr: &str) -> Redirector {
        let file = dir.join("qlmredirect.xml");
        let xml = format!(
            "<?xml version=\"1.0\"?>\n<QlmRedirection><activeUrl>{active}</activeUrl><drUrl>{dr}</drUrl></QlmRedirection>\n"
        );
        std::fs::write(&file, xml).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/qlmredirect.xml", listener.local_addr().unwrap());
        let served = file.clone();
        let task = tokio::spawn(async move {
            let _ = keyward::redirect::serve(listener, served, std::future::pending()).await;
        });
        Redirector { url, file, task }
    }

    fn set_active(&self, url: &str) {
        keyward::redirect::set_active(&self.file, &url.parse().unwrap()).unwrap();
    }

    /// Stops serving at once: the listener is closed when this returns, so a site that
    /// connects afterwards cannot read the file.
    async fn stop(&mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

struct Site {
    dir: PathBuf,
    listen: String,
    url: String,
}

impl Site {
    fn new(root: &Path, name: &str) -> Site {
        let port = common::free_port();
        Site {
            dir: root.join(name),
            listen: format!("127.0.0.1:{port}"),
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    fn start(&self, peer: &Site, redirect_url: &str) -> Process {
        Process::serve_on(
            &self.dir,
            &self.listen,
            &[
                ("KEYWARD_SITE_URL", self.url.as_str()),
                ("KEYWARD_REDIRECT_URL", redirect_url),
                ("KEYWARD_REDIRECT_POLL", "100ms"),
                ("KEYWARD_PEER_URL", peer.url.as_str()),
                ("KEYWARD_PEER_SECRET", PEER_SECRET),
                ("KEYWARD_PEER_MAX_BACKOFF", "500ms"),
            ],
        )
    }
}

async fn role_of(url: &str) -> String {
    let (_, status) = admin(url, Method::GET, "/v1/admin/status", None).await;
    status["role"]["role"].as_str().unwrap_or("").to_string()
}

async fn wait_role(url: &str, role: &str) {
    for _ in 0..200 {
        if role_of(url).await == role {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} never became {role}");
}

async fn activate(url: &str, key: &str, computer: &str) -> (u16, Value) {
    client(
        url,
        "/v1/activate",
        json!({"key": key, "computer_id": computer}),
    )
    .await
}

async fn validate(url: &str, key: &str, computer: &str) -> String {
    let (_, body) = client(
        url,
        "/v1/validate",
        json!({"key": key, "computer_id": computer}),
    )
    .await;
    body["code"].as_str().unwrap().to_string()
}

async fn snapshot_and_ship(url: &str) -> (u16, Value) {
    let (status, body) = admin(url, Method::POST, "/v1/admin/snapshots", None).await;
    assert_eq!(status, 201, "{body}");
    admin(url, Method::POST, "/v1/admin/ship", None).await
}

/// A background application validating one activation through the client library.
struct Traffic {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<(usize, usize, usize)>,
}

impl Traffic {
    async fn start(server: &str, redirect_url: &str, key: &str) -> Traffic {
        let (_, published) = admin(server, Method::GET, "/v1/keys", None).await;
        let published: Vec<keyward::signing::PublicKeyInfo> =
            serde_json::from_value(published["keys"].clone()).unwrap();
        let client = keyward::client::Client::builder()
            .server_url(format!("{server}/"))
            .enable_dr_site(true)
            .redirector_url(redirect_url)
            .trusted_keys(keyward::signing::TrustedKeys::from_published(&published).unwrap())
            .redirect_ttl(Duration::from_millis(100))
            .timeout(Duration::from_secs(5))
            .no_proxy()
            .build()
            .unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (flag, key) = (stop.clone(), key.to_string());
        let task = tokio::spawn(async move {
            let (mut valid, mut wrong, mut failed) = (0, 0, 0);
            while !flag.load(std::sync::atomic::Ordering::SeqCst) {
                match client.validate(&key, "before-0", None).await {
                    Ok(validation) if validation.is_valid() => valid += 1,
                    Ok(_) => wrong += 1,
                    Err(_) => failed += 1,
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (valid, wrong, failed)
        });
        Traffic { stop, task }
    }

    async fn stop(self) -> (usize, usize, usize) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.task.await.unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failover_and_failback_lose_no_acknowledged_write() {
    let root = tempfile::tempdir().unwrap();
    let primary = Site::new(root.path(), "primary");
    let dr = Site::new(root.path(), "dr");
    let redirector = Redirector::start(root.path(), &primary.url, &dr.url).await;

    let mut primary_process = primary.start(&dr, &redirector.url);
    let dr_process = dr.start(&primary, &redirector.url);
    wait_role(&primary.url, "active").await;
    wait_role(&dr.url, "standby").await;

    // Writes on the primary, shipped to the DR.
    let key = seed_license(&primary.url, 100).await;
    for n in 0..5 {
        let (status, body) = activate(&primary.url, &key, &format!("before-{n}")).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, shipped) = snapshot_and_ship(&primary.url).await;
    assert_eq!(status, 200, "{shipped}");

    // Client traffic runs through the whole sequence: an application validating through the
    // redirect file. Transport errors are expected while a site is down; a wrong answer is not.
    let traffic = Traffic::start(&primary.url, &redirector.url, &key).await;

    // One more write the DR never receives, then the primary dies.
    let (status, _) = activate(&primary.url, &key, "unshipped").await;
    assert_eq!(status, 200);
    primary_process.kill();

    // The operator fails over by editing the redirect file.
    redirector.set_active(&dr.url);
    wait_role(&dr.url, "active").await;
    for n in 0..5 {
        assert_eq!(
            validate(&dr.url, &key, &format!("before-{n}")).await,
            "VALID"
        );
    }
    let (status, body) = activate(&dr.url, &key, "during-failover").await;
    assert_eq!(status, 200, "{body}");

    // The old primary comes back, reads the redirect file and becomes standby.
    let primary_process = primary.start(&dr, &redirector.url);
    wait_role(&primary.url, "standby").await;
    let (status, body) = activate(&primary.url, &key, "stale-write").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "SITE_STANDBY");
    assert_eq!(
        body["active_url"].as_str().map(|u| u.trim_end_matches('/')),
        Some(dr.url.as_str())
    );

    // It holds a write the DR never saw, so the DR's snapshot is rejected as diverged.
    let (status, body) = snapshot_and_ship(&dr.url).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("DIVERGED"),
        "{body}"
    );
    let (_, old_primary_status) = admin(&primary.url, Method::GET, "/v1/admin/status", None).await;
    assert!(
        old_primary_status["replication"]["divergence"].is_object(),
        "{old_primary_status}"
    );
    assert_eq!(
        validate(&primary.url, &key, "unshipped").await,
        "VALID",
        "kept its own data"
    );

    // The operator forces the DR's data onto the old primary; the pre-restore copy keeps the
    // unshipped write, and diff names it.
    let dr_snapshot = common::newest_snapshot(&dr.dir).0;
    let bytes = std::fs::read(&dr_snapshot).unwrap();
    let response = common::http()
        .post(format!("{}/v1/admin/restore?force=true", primary.url))
        .bearer_auth(common::ADMIN_TOKEN)
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let outcome: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{outcome}");
    let pre_restore = PathBuf::from(outcome["pre_restore"].as_str().unwrap());
    let differences = keyward::diff::diff_files(&pre_restore, &dr_snapshot).unwrap();
    let unshipped = differences
        .iter()
        .any(|d| d.kind == "activation" && d.change == "only_in_a" && d.id.contains("unshipped"));
    assert!(
        unshipped,
        "diff must list the unshipped activation: {differences:?}"
    );
    assert_eq!(
        validate(&primary.url, &key, "during-failover").await,
        "VALID"
    );

    // Failback: point the redirect file at the primary again.
    redirector.set_active(&primary.url);
    wait_role(&primary.url, "active").await;
    wait_role(&dr.url, "standby").await;
    let (status, body) = activate(&primary.url, &key, "after-failback").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = snapshot_and_ship(&primary.url).await;
    assert_eq!(
        status, 200,
        "the DR takes the failed-back primary's snapshot: {body}"
    );
    for computer in ["before-0", "before-4", "during-failover", "after-failback"] {
        assert_eq!(
            validate(&primary.url, &key, computer).await,
            "VALID",
            "{computer} on primary"
        );
        assert_eq!(
            validate(&dr.url, &key, computer).await,
            "VALID",
            "{computer} on DR"
        );
    }
    let (valid, wrong, failed) = traffic.stop().await;
    assert!(
        valid >= 20,
        "{valid} valid answers, {failed} transport errors"
    );
    assert_eq!(
        wrong, 0,
        "a client got a wrong answer during failover or failback"
    );
    drop(primary_process);
    drop(dr_process);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clean_failover_needs_no_force() {
    let root = tempfile::tempdir().unwrap();
    let primary = Site::new(root.path(), "primary");
    let dr = Site::new(root.path(), "dr");
    let redirector = Redirector::start(root.path(), &primary.url, &dr.url).await;
    let mut primary_process = primary.start(&dr, &redirector.url);
    let _dr_process = dr.start(&primary, &redirector.url);
    wait_role(&primary.url, "active").await;

    let key = seed_license(&primary.url, 10).await;
    activate(&primary.url, &key, "a").await;
    let (status, body) = snapshot_and_ship(&primary.url).await;
    assert_eq!(status, 200, "{body}");
    primary_process.kill();

    redirector.set_active(&dr.url);
    wait_role(&dr.url, "active").await;
    activate(&dr.url, &key, "b").await;
    // The old primary reads the redirect file before it serves, so its first request already
    // finds it standby.
    let mut primary_process = primary.start(&dr, &redirector.url);
    let (status, body) = activate(&primary.url, &key, "c").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "SITE_STANDBY", "{body}");
    let serving = primary_process
        .stderr()
        .lines()
        .rev()
        .find(|line| line.contains("keyward serving"))
        .map(str::to_string)
        .unwrap_or_default();
    assert!(serving.contains("standby"), "{serving}");
    let (status, body) = snapshot_and_ship(&dr.url).await;
    assert_eq!(status, 200, "{body}");
    // The background shipper may have delivered it first.
    let result = body["result"].as_str().unwrap();
    assert!(result == "APPLIED" || result == "ALREADY_CURRENT", "{body}");
    assert_eq!(validate(&primary.url, &key, "b").await, "VALID");
    let (_, status) = admin(&primary.url, Method::GET, "/v1/admin/status", None).await;
    assert!(status["replication"]["divergence"].is_null(), "{status}");

    // Restarting a standby site leaves the record of its last role change as it was.
    let role_file = primary.dir.join("role.json");
    let before = std::fs::read_to_string(&role_file).unwrap();
    assert_eq!(primary_process.terminate().code(), Some(0));
    // Role changes are stamped to the second, so a new record would differ.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let _primary_process = primary.start(&dr, &redirector.url);
    assert_eq!(role_of(&primary.url).await, "standby");
    assert_eq!(std::fs::read_to_string(&role_file).unwrap(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn both_active_while_redirector_down_overwrite_nothing() {
    let root = tempfile::tempdir().unwrap();
    let primary = Site::new(root.path(), "primary");
    let dr = Site::new(root.path(), "dr");
    let mut redirector = Redirector::start(root.path(), &primary.url, &dr.url).await;
    let mut primary_process = primary.start(&dr, &redirector.url);
    let _dr_process = dr.start(&primary, &redirector.url);
    wait_role(&primary.url, "active").await;
    let key = seed_license(&primary.url, 10).await;
    let (status, _) = snapshot_and_ship(&primary.url).await;
    assert_eq!(status, 200);

    // The primary is cut off, the DR is promoted, then the redirector goes down.
    primary_process.kill();
    redirector.set_active(&dr.url);
    wait_role(&dr.url, "active").await;
    redirector.stop().await;

    // The primary restarts without reaching the redirect file: it keeps its last known role.
    let _primary_process = primary.start(&dr, &redirector.url);
    assert_eq!(role_of(&primary.url).await, "active");
    let (status, _) = activate(&primary.url, &key, "p-side").await;
    assert_eq!(status, 200);
    let (status, _) = activate(&dr.url, &key, "d-side").await;
    assert_eq!(status, 200);

    // Neither snapshot can overwrite the other site.
    let (status, body) = snapshot_and_ship(&primary.url).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("SITE_ACTIVE"),
        "{body}"
    );
    let (status, body) = snapshot_and_ship(&dr.url).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("SITE_ACTIVE"),
        "{body}"
    );
    assert_eq!(validate(&primary.url, &key, "p-side").await, "VALID");
    assert_eq!(validate(&dr.url, &key, "d-side").await, "VALID");
}
