//! End-to-end tests of the redirector: the real server on a loopback port, a real file in a
//! temporary directory and real edits to it.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use keyward::redirect::{
    RedirectorState, ReloadOutcome, ServeError, etag_for, serve, spawn_watcher,
};
use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use serde_json::Value;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Upper bound on waiting for the server to pick up an edit.
const DEADLINE: Duration = Duration::from_secs(5);

/// The redirector also rereads the file every 2 s. A reload seen before this much time has
/// passed since start must have come from a file system event.
const BEFORE_FIRST_POLL: Duration = Duration::from_millis(1900);

const FIRST: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<QlmRedirection>\n  \
                     <activeUrl>https://lic.example.com/</activeUrl>\n  \
                     <drUrl>https://dr.example.net/</drUrl>\n</QlmRedirection>\n";

const SECOND: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<QlmRedirection>\n  \
                      <activeUrl>https://dr.example.net/</activeUrl>\n  \
                      <drUrl>https://lic.example.com/</drUrl>\n</QlmRedirection>\n";

const THIRD: &str = "<QlmRedirection><activeUrl>https://third.example.org/</activeUrl>\
                     </QlmRedirection>";

const INVALID: &str = "<QlmRedirection><drUrl>https://dr.example.net/</drUrl></QlmRedirection>";

struct Server {
    base: String,
    client: reqwest::Client,
    path: PathBuf,
    started: Instant,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServeError>>,
    _dir: TempDir,
}

impl Server {
    async fn start(content: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qlmredirect.xml");
        fs::write(&path, content).unwrap();
        Server::start_at(dir, path).await
    }

    async fn start_at(dir: TempDir, path: PathBuf) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (shutdown, stop) = oneshot::channel::<()>();
        let started = Instant::now();
        let task = tokio::spawn(serve(listener, path.clone(), async {
            let _ = stop.await;
        }));

        let server = Server {
            base,
            client: client(),
            path,
            started,
            shutdown: Some(shutdown),
            task,
            _dir: dir,
        };
        server.wait_for_health().await;
        server
    }

    async fn get(&self, route: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{route}", self.base))
            .send()
            .await
            .unwrap()
    }

    async fn body(&self) -> String {
        self.get("/qlmredirect.xml").await.text().await.unwrap()
    }

    async fn status(&self) -> Value {
        self.get("/status").await.json().await.unwrap()
    }

    async fn wait_for_health(&self) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let url = format!("{}/healthz", self.base);
            if let Ok(response) = self.client.get(url).send().await
                && response.status() == StatusCode::OK
            {
                return;
            }
            assert!(Instant::now() < deadline, "server did not become healthy");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls until the served file equals `expected`, failing after [`DEADLINE`].
    async fn wait_for_body(&self, expected: &str) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let body = self.body().await;
            if body == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "still serving {body:?}, expected {expected:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls until `/status` reports a reload error (`true`) or none (`false`).
    async fn wait_for_error(&self, present: bool) -> Value {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let status = self.status().await;
            if status["last_error"].is_null() != present {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "last_error never became present={present}: {status}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(mut self) -> Result<(), ServeError> {
        self.shutdown.take().unwrap().send(()).unwrap();
        tokio::time::timeout(DEADLINE, &mut self.task)
            .await
            .expect("server did not stop after shutdown")
            .unwrap()
    }
}

fn client() -> reqwest::Client {
    // reqwest built with `rustls-no-provider` needs a process-wide provider even for plain
    // HTTP, because it sets up TLS when the client is built.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Ignore proxy variables from the environment so that requests stay on loopback.
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// Saves like most editors do: write a temporary file, then rename it over the original.
fn save_by_rename(path: &Path, content: &str) {
    let temp = path.with_file_name(".qlmredirect.xml.swp");
    fs::write(&temp, content).unwrap();
    fs::rename(&temp, path).unwrap();
}

/// Saves like editors that keep the inode: truncate the file, then write the new content.
fn save_in_place(path: &Path, content: &str) {
    let mut file = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .unwrap();
    file.write_all(content.as_bytes()).unwrap();
    file.sync_all().unwrap();
}

#[tokio::test]
async fn serves_file_with_cache_headers() {
    // The byte order mark shows that the exact bytes are served, not a re-serialization.
    let content = format!("\u{feff}{FIRST}");
    let server = Server::start(&content).await;

    let response = server.get("/qlmredirect.xml").await;

    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert_eq!(headers[CONTENT_TYPE], "application/xml");
    assert_eq!(headers[CACHE_CONTROL], "no-cache");
    let etag = headers[ETAG].to_str().unwrap().to_string();
    assert_eq!(etag, etag_for(content.as_bytes()));
    assert_eq!(etag.len(), 34, "{etag}");
    assert!(etag.starts_with('"'), "{etag}");
    assert!(etag.ends_with('"'), "{etag}");
    assert_eq!(response.bytes().await.unwrap(), content.as_bytes());

    server.stop().await.unwrap();
}

#[tokio::test]
async fn root_path_is_alias() {
    let server = Server::start(FIRST).await;

    let response = server.get("/").await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[CONTENT_TYPE], "application/xml");
    assert_eq!(
        response.headers()[ETAG],
        etag_for(FIRST.as_bytes()).as_str()
    );
    assert_eq!(response.text().await.unwrap(), FIRST);

    server.stop().await.unwrap();
}

#[tokio::test]
async fn healthz_returns_ok() {
    let server = Server::start(FIRST).await;

    let response = server.get("/healthz").await;

    assert_eq!(response.status(), StatusCode::OK);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn if_none_match_returns_304() {
    let server = Server::start(FIRST).await;
    let etag = etag_for(FIRST.as_bytes());
    let cases = [
        (etag.clone(), StatusCode::NOT_MODIFIED),
        (format!("W/{etag}"), StatusCode::NOT_MODIFIED),
        (format!("\"0000\", {etag}"), StatusCode::NOT_MODIFIED),
        ("*".to_string(), StatusCode::NOT_MODIFIED),
        ("\"0000\"".to_string(), StatusCode::OK),
        (etag.trim_matches('"').to_string(), StatusCode::OK),
    ];

    for (if_none_match, expected) in cases {
        let response = server
            .client
            .get(format!("{}/qlmredirect.xml", server.base))
            .header(IF_NONE_MATCH, &if_none_match)
            .send()
            .await
            .unwrap();

        assert_eq!(
            response.status(),
            expected,
            "If-None-Match: {if_none_match}"
        );
        assert_eq!(
            response.headers()[ETAG],
            etag.as_str(),
            "If-None-Match: {if_none_match}"
        );
        assert_eq!(response.headers()[CACHE_CONTROL], "no-cache");
        let body = response.bytes().await.unwrap();
        if expected == StatusCode::NOT_MODIFIED {
            assert!(body.is_empty(), "304 with a body for {if_none_match}");
        } else {
            assert_eq!(body, FIRST.as_bytes(), "If-None-Match: {if_none_match}");
        }
    }

    server.stop().await.unwrap();
}

#[tokio::test]
async fn status_reports_served_version() {
    let server = Server::start(FIRST).await;

    let status = server.status().await;

    assert_eq!(status["path"], server.path.display().to_string());
    assert_eq!(status["active_url"], "https://lic.example.com/");
    assert_eq!(status["dr_url"], "https://dr.example.net/");
    assert!(status["active_net_core_url"].is_null());
    assert_eq!(status["etag"], etag_for(FIRST.as_bytes()));
    let loaded_at = status["loaded_at"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(loaded_at).is_ok(),
        "{loaded_at}"
    );
    assert!(status["last_error"].is_null(), "{status}");

    server.stop().await.unwrap();
}

#[tokio::test]
async fn reloads_after_rename_save() {
    let server = Server::start(FIRST).await;
    assert_eq!(server.body().await, FIRST);

    save_by_rename(&server.path, SECOND);

    server.wait_for_body(SECOND).await;
    let elapsed = server.started.elapsed();
    assert!(
        elapsed < BEFORE_FIRST_POLL,
        "reload took {elapsed:?}, so no file event was seen"
    );
    let status = server.status().await;
    assert_eq!(status["active_url"], "https://dr.example.net/");
    assert_eq!(status["etag"], etag_for(SECOND.as_bytes()));

    save_by_rename(&server.path, THIRD);

    server.wait_for_body(THIRD).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn reloads_after_in_place_rewrite() {
    let server = Server::start(FIRST).await;
    assert_eq!(server.body().await, FIRST);

    save_in_place(&server.path, SECOND);

    server.wait_for_body(SECOND).await;
    let elapsed = server.started.elapsed();
    assert!(
        elapsed < BEFORE_FIRST_POLL,
        "reload took {elapsed:?}, so no file event was seen"
    );

    save_in_place(&server.path, THIRD);

    server.wait_for_body(THIRD).await;
    assert!(server.status().await["last_error"].is_null());
    server.stop().await.unwrap();
}

#[tokio::test]
async fn old_etag_gets_new_version() {
    let server = Server::start(FIRST).await;
    let old_etag = etag_for(FIRST.as_bytes());

    save_by_rename(&server.path, SECOND);
    server.wait_for_body(SECOND).await;

    let response = server
        .client
        .get(format!("{}/qlmredirect.xml", server.base))
        .header(IF_NONE_MATCH, &old_etag)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[ETAG],
        etag_for(SECOND.as_bytes()).as_str()
    );
    assert_eq!(response.text().await.unwrap(), SECOND);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn invalid_edit_keeps_last_good() {
    let server = Server::start(FIRST).await;

    save_in_place(&server.path, INVALID);

    let status = server.wait_for_error(true).await;
    let message = status["last_error"]["message"].as_str().unwrap();
    assert!(message.contains("<activeUrl> is missing"), "{message}");
    assert!(message.contains("qlmredirect.xml"), "{message}");
    let at = status["last_error"]["at"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(at).is_ok(), "{at}");
    assert_eq!(status["etag"], etag_for(FIRST.as_bytes()));
    assert_eq!(status["active_url"], "https://lic.example.com/");
    assert_eq!(server.body().await, FIRST);

    save_by_rename(&server.path, SECOND);

    server.wait_for_body(SECOND).await;
    let status = server.wait_for_error(false).await;
    assert_eq!(status["active_url"], "https://dr.example.net/");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn malformed_edit_shows_position() {
    let server = Server::start(FIRST).await;

    save_by_rename(
        &server.path,
        "<QlmRedirection>\n<activeUrl>https://x.example/</drUrl>",
    );

    let status = server.wait_for_error(true).await;
    let message = status["last_error"]["message"].as_str().unwrap();
    assert!(message.contains("malformed XML at line 2"), "{message}");
    assert_eq!(server.body().await, FIRST);

    save_in_place(&server.path, FIRST);

    server.wait_for_error(false).await;
    assert_eq!(server.body().await, FIRST);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn deleted_file_keeps_last_good() {
    let server = Server::start(FIRST).await;

    fs::remove_file(&server.path).unwrap();

    let status = server.wait_for_error(true).await;
    let message = status["last_error"]["message"].as_str().unwrap();
    assert!(message.contains("failed to read"), "{message}");
    assert_eq!(server.body().await, FIRST);

    fs::write(&server.path, SECOND).unwrap();

    server.wait_for_body(SECOND).await;
    server.wait_for_error(false).await;
    server.stop().await.unwrap();
}

#[cfg(unix)]
#[tokio::test]
async fn poll_catches_symlink_target_edit() {
    // Edits to the target of a symbolic link in another directory produce no event in the
    // watched directory, so only the slow poll can notice them.
    let dir = tempfile::tempdir().unwrap();
    let target_dir = tempfile::tempdir().unwrap();
    let target = target_dir.path().join("real.xml");
    let path = dir.path().join("qlmredirect.xml");
    fs::write(&target, FIRST).unwrap();
    std::os::unix::fs::symlink(&target, &path).unwrap();
    let server = Server::start_at(dir, path).await;

    save_in_place(&target, SECOND);

    server.wait_for_body(SECOND).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn invalid_file_at_start_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qlmredirect.xml");
    fs::write(&path, INVALID).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();

    let result = tokio::time::timeout(DEADLINE, serve(listener, path, std::future::pending()))
        .await
        .expect("serve did not return for an invalid file");

    let err = result.unwrap_err();
    assert!(matches!(err, ServeError::Load(_)), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("qlmredirect.xml"), "{message}");
    assert!(message.contains("<activeUrl> is missing"), "{message}");
}

#[tokio::test]
async fn missing_file_at_start_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.xml");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();

    let result = tokio::time::timeout(DEADLINE, serve(listener, path, std::future::pending()))
        .await
        .expect("serve did not return for a missing file");

    let message = result.unwrap_err().to_string();
    assert!(message.contains("absent.xml"), "{message}");
    assert!(message.contains("failed to read"), "{message}");
}

#[tokio::test]
async fn shutdown_stops_server() {
    let server = Server::start(FIRST).await;
    let base = server.base.clone();

    server.stop().await.unwrap();

    let result = client().get(format!("{base}/healthz")).send().await;
    assert!(
        result.is_err(),
        "server still answers after shutdown: {result:?}"
    );
}

#[test]
fn reload_outcomes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qlmredirect.xml");
    fs::write(&path, FIRST).unwrap();
    let state = RedirectorState::load(&path).unwrap();
    let first_etag = state.current().etag.clone();

    assert_eq!(state.reload(), ReloadOutcome::Unchanged);

    fs::write(&path, INVALID).unwrap();
    assert_eq!(state.reload(), ReloadOutcome::Rejected);
    let failure = state
        .last_error()
        .expect("rejected reload records an error");
    assert!(
        failure.message.contains("<activeUrl> is missing"),
        "{}",
        failure.message
    );
    assert_eq!(state.current().etag, first_etag);

    assert_eq!(state.reload(), ReloadOutcome::Rejected);
    let repeated = state.last_error().unwrap();
    assert_eq!(
        repeated.at, failure.at,
        "a repeated error keeps its first time"
    );

    fs::write(&path, SECOND).unwrap();
    assert_eq!(state.reload(), ReloadOutcome::Updated);
    assert!(state.last_error().is_none());
    let current = state.current();
    assert_eq!(current.etag, etag_for(SECOND.as_bytes()));
    assert_eq!(current.bytes, SECOND.as_bytes());
    assert_eq!(current.file.active_url.as_str(), "https://dr.example.net/");
}

#[test]
fn reverting_bad_edit_clears_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qlmredirect.xml");
    fs::write(&path, FIRST).unwrap();
    let state = RedirectorState::load(&path).unwrap();

    fs::write(&path, INVALID).unwrap();
    assert_eq!(state.reload(), ReloadOutcome::Rejected);
    fs::write(&path, FIRST).unwrap();

    assert_eq!(state.reload(), ReloadOutcome::Unchanged);
    assert!(state.last_error().is_none());
}

#[test]
fn is_active_site_compares_urls() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qlmredirect.xml");
    fs::write(&path, FIRST).unwrap();
    let state = RedirectorState::load(&path).unwrap();
    let snapshot = state.current();

    assert!(snapshot.is_active_site(&url::Url::parse("https://LIC.example.com:443").unwrap()));
    assert!(!snapshot.is_active_site(&url::Url::parse("https://dr.example.net/").unwrap()));
}

#[tokio::test]
async fn subscribers_see_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qlmredirect.xml");
    fs::write(&path, FIRST).unwrap();
    let state = RedirectorState::load(&path).unwrap();
    let mut updates = state.subscribe();
    let watcher = spawn_watcher(state.clone());

    save_by_rename(&path, SECOND);

    tokio::time::timeout(DEADLINE, updates.changed())
        .await
        .expect("no update after the edit")
        .unwrap();
    let snapshot = updates.borrow_and_update().clone();
    assert_eq!(snapshot.bytes, SECOND.as_bytes());
    watcher.abort();
}
