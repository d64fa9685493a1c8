//! `keyward demo`: the whole disaster-recovery drill on loopback, with checks.
//!
//! It starts a primary and a DR site (child processes of this binary) and a redirector (in
//! this process) in a temp directory, imports the sample licenses, runs client traffic through
//! the client library, ships a snapshot, kills the primary, fails over by editing the redirect
//! file, keeps the clients working on the DR site, brings the primary back as standby and fails
//! back. Each step prints a line with counts; the exit status is 0 only if every check held.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::Value;

use crate::client::Client;

/// The sample licenses, embedded so the drill runs from any directory.
const SAMPLE_CSV: &[u8] = include_bytes!("../sample-data/licenses.csv");

/// How much traffic the drill sends.
#[derive(Debug, Clone, Copy)]
pub struct DemoSize {
    /// Sample rows imported (at most the sample's 10,000).
    pub licenses: usize,
    /// Activations before the failover, and again while the DR site is active.
    pub activations: usize,
}

impl DemoSize {
    pub fn full() -> DemoSize {
        DemoSize {
            licenses: 10_000,
            activations: 200,
        }
    }

    pub fn fast() -> DemoSize {
        DemoSize {
            licenses: 1_000,
            activations: 40,
        }
    }
}

/// A site of the drill: a child `keyward serve` process.
struct Site {
    name: &'static str,
    dir: PathBuf,
    listen: String,
    url: String,
    child: Option<Child>,
}

impl Site {
    fn new(root: &Path, name: &'static str) -> anyhow::Result<Site> {
        // NOTE: the port is free when chosen and could be taken before the site binds it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        Ok(Site {
            name,
            dir: root.join(name),
            listen: format!("127.0.0.1:{port}"),
            url: format!("http://127.0.0.1:{port}"),
            child: None,
        })
    }

    fn start(&mut self, env: &[(&str, String)]) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let log = std::fs::File::create(self.dir.with_extension("log"))?;
        let mut command = Command::new(std::env::current_exe()?);
        command
            .args(["serve", "--listen", &self.listen, "--data-dir"])
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for (name, value) in env {
            command.env(name, value);
        }
        self.child = Some(
            command
                .spawn()
                .with_context(|| format!("while starting the {} site", self.name))?,
        );
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        self.kill();
    }
}

struct Drill {
    http: reqwest::Client,
    token: String,
    failed: usize,
}

impl Drill {
    fn report(&mut self, ok: bool, step: &str, detail: String) {
        if !ok {
            self.failed += 1;
        }
        println!("[{}] {step}: {detail}", if ok { " ok " } else { "FAIL" });
    }

    async fn admin(
        &self,
        base: &str,
        method: reqwest::Method,
        path: &str,
    ) -> anyhow::Result<(u16, Value)> {
        let response = self
            .http
            .request(method, format!("{base}{path}"))
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("while calling {base}{path}"))?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or_default()))
    }

    async fn wait_ready(&self, site: &Site) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(response) = self.http.get(format!("{}/healthz", site.url)).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!(
            "the {} site did not start; see {}",
            site.name,
            site.dir.with_extension("log").display()
        )
    }

    async fn wait_role(&self, site: &Site, role: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok((200, status)) = self
                .admin(&site.url, reqwest::Method::GET, "/v1/admin/status")
                .await
                && status["role"]["role"] == role
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    async fn snapshot_and_ship(&self, site: &Site) -> anyhow::Result<String> {
        let (status, body) = self
            .admin(&site.url, reqwest::Method::POST, "/v1/admin/snapshots")
            .await?;
        ensure!(status == 201, "snapshot on {} failed: {body}", site.name);
        let (status, body) = self
            .admin(&site.url, reqwest::Method::POST, "/v1/admin/ship")
            .await?;
        ensure!(status == 200, "shipping from {} failed: {body}", site.name);
        Ok(body["result"].as_str().unwrap_or("").to_string())
    }
}

/// Validates every `(key, computer)` pair through the client; returns how many were VALID.
async fn count_valid(client: &Client, pairs: &[(String, String)]) -> usize {
    let mut valid = 0;
    for (key, computer) in pairs {
        if let Ok(validation) = client.validate(key, computer, None).await
            && validation.is_valid()
        {
            valid += 1;
        }
    }
    valid
}

/// Activates `count` licenses (one computer each) starting at `offset`; returns the pairs the
/// server acknowledged.
async fn activate_many(
    client: &Client,
    keys: &[String],
    offset: usize,
    count: usize,
    tag: &str,
) -> Vec<(String, String)> {
    let mut acknowledged = Vec::new();
    for (index, key) in keys.iter().skip(offset).take(count).enumerate() {
        let computer = format!("{tag}-{index:04}");
        if client
            .activate(key, &computer, "demo computer")
            .await
            .is_ok()
        {
            acknowledged.push((key.clone(), computer));
        }
    }
    acknowledged
}

/// Keys of the first `count` sample rows that can be activated (not trials, which may be
/// limited per computer, and not expired).
fn sample_keys(count: usize) -> (Vec<u8>, Vec<String>) {
    let text = String::from_utf8_lossy(SAMPLE_CSV);
    let rows: Vec<&str> = text.lines().take(count + 1).collect();
    let keys = rows
        .iter()
        .skip(1)
        .filter(|row| row.contains(",permanent,"))
        .filter_map(|row| row.split(',').next().map(str::to_string))
        .collect();
    (rows.join("\n").into_bytes(), keys)
}

/// Runs the drill and returns the number of failed checks.
pub async fn run(size: DemoSize) -> anyhow::Result<usize> {
    let root = tempfile::Builder::new().prefix("keyward-demo-").tempdir()?;
    println!("keyward demo in {}", root.path().display());
    let token = crate::license::tokens::generate_text();
    let secret = crate::ids::random_hex(16);
    let mut drill = Drill {
        http: reqwest::Client::builder().no_proxy().build()?,
        token,
        failed: 0,
    };

    // 1. Redirector, primary and DR.
    let redirect_file = root.path().join("qlmredirect.xml");
    let mut primary = Site::new(root.path(), "primary")?;
    let mut dr = Site::new(root.path(), "dr")?;
    let redirect = crate::redirect::parse(
        format!(
            "<QlmRedirection><activeUrl>{}/</activeUrl><drUrl>{}/</drUrl></QlmRedirection>",
            primary.url, dr.url
        )
        .as_bytes(),
    )?
    .0;
    crate::redirect::write_atomically(&redirect_file, &redirect)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let redirect_url = format!("http://{}/qlmredirect.xml", listener.local_addr()?);
    let (stop_redirector, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = redirect_file.clone();
    tokio::spawn(async move {
        let _ = crate::redirect::serve(listener, served, async {
            let _ = stopped.await;
        })
        .await;
    });

    let env_for = |site: &Site, peer: &Site| -> Vec<(&'static str, String)> {
        vec![
            ("KEYWARD_SITE_URL", format!("{}/", site.url)),
            ("KEYWARD_REDIRECT_URL", redirect_url.clone()),
            ("KEYWARD_REDIRECT_POLL", "200ms".into()),
            ("KEYWARD_PEER_URL", peer.url.clone()),
            ("KEYWARD_PEER_SECRET", secret.clone()),
            ("KEYWARD_PEER_MAX_BACKOFF", "1s".into()),
            ("KEYWARD_BOOTSTRAP_ADMIN_TOKEN", drill.token.clone()),
            ("KEYWARD_SNAPSHOT_EVERY", String::new()),
            // Every drill client shares 127.0.0.1, so the per-address limit would throttle them.
            ("KEYWARD_LIMITS_REQUESTS_PER_MINUTE", "0".into()),
        ]
    };
    let (primary_env, dr_env) = (env_for(&primary, &dr), env_for(&dr, &primary));
    dr.start(&dr_env)?;
    primary.start(&primary_env)?;
    drill.wait_ready(&dr).await?;
    drill.wait_ready(&primary).await?;
    let roles_ok =
        drill.wait_role(&primary, "active").await && drill.wait_role(&dr, "standby").await;
    drill.report(
        roles_ok,
        "start",
        format!(
            "primary {} active, DR {} standby, redirector {redirect_url}",
            primary.url, dr.url
        ),
    );

    // 2. Import.
    let (csv, keys) = sample_keys(size.licenses);
    let response = drill
        .http
        .post(format!(
            "{}/v1/admin/licenses/import?create_products=true",
            primary.url
        ))
        .bearer_auth(&drill.token)
        .body(csv)
        .send()
        .await?;
    let imported: Value = response.json().await?;
    let count = imported["imported"].as_u64().unwrap_or(0) as usize;
    drill.report(
        count == size.licenses,
        "import",
        format!("{count} licenses imported"),
    );

    // 3. Client traffic through the redirect file.
    let (_, published) = drill
        .admin(&primary.url, reqwest::Method::GET, "/v1/keys")
        .await?;
    let published: Vec<crate::signing::PublicKeyInfo> =
        serde_json::from_value(published["keys"].clone())?;
    let client = Client::builder()
        .server_url(format!("{}/", primary.url))
        .enable_dr_site(true)
        .redirector_url(redirect_url.clone())
        .trusted_keys(crate::signing::TrustedKeys::from_published(&published)?)
        .redirect_ttl(Duration::from_millis(200))
        .timeout(Duration::from_secs(10))
        .no_proxy()
        .build()?;
    let mut acknowledged = activate_many(&client, &keys, 0, size.activations, "before").await;
    let valid = count_valid(&client, &acknowledged).await;
    drill.report(
        acknowledged.len() == size.activations && valid == acknowledged.len(),
        "traffic",
        format!(
            "{} activations acknowledged, {valid} validate VALID",
            acknowledged.len()
        ),
    );

    // 4. Snapshot and ship.
    let shipped = drill.snapshot_and_ship(&primary).await;
    drill.report(
        shipped.is_ok(),
        "ship",
        format!(
            "primary to DR: {}",
            shipped.map_err(|e| e.to_string()).unwrap_or_else(|e| e)
        ),
    );

    // 5. The primary dies; the operator flips the redirect file.
    primary.kill();
    crate::redirect::set_active(&redirect_file, &format!("{}/", dr.url).parse()?)?;
    let dr_active = drill.wait_role(&dr, "active").await;
    drill.report(
        dr_active,
        "failover",
        "primary killed, activeUrl now names the DR site".into(),
    );

    // 6. Clients continue on the DR site.
    let valid = count_valid(&client, &acknowledged).await;
    let during = activate_many(&client, &keys, size.activations, size.activations, "during").await;
    drill.report(
        valid == acknowledged.len() && during.len() == size.activations,
        "clients on DR",
        format!(
            "{valid}/{} earlier activations VALID, {} new activations acknowledged",
            acknowledged.len(),
            during.len()
        ),
    );
    acknowledged.extend(during);

    // 7. The primary returns as standby, takes the DR's data, and the operator fails back.
    primary.start(&primary_env)?;
    drill.wait_ready(&primary).await?;
    let standby = drill.wait_role(&primary, "standby").await;
    let shipped = drill.snapshot_and_ship(&dr).await;
    drill.report(
        standby && shipped.is_ok(),
        "primary back",
        format!(
            "primary standby, DR to primary: {}",
            shipped.map_err(|e| e.to_string()).unwrap_or_else(|e| e)
        ),
    );
    crate::redirect::set_active(&redirect_file, &format!("{}/", primary.url).parse()?)?;
    let swapped =
        drill.wait_role(&primary, "active").await && drill.wait_role(&dr, "standby").await;
    let valid = count_valid(&client, &acknowledged).await;
    let lost = acknowledged.len() - valid;
    drill.report(
        swapped && lost == 0,
        "failback",
        format!(
            "primary active again; {valid}/{} acknowledged activations VALID; lost: {lost}",
            acknowledged.len()
        ),
    );

    let _ = stop_redirector.send(());
    primary.kill();
    dr.kill();
    Ok(drill.failed)
}
