//! Test harness: keyward servers in process (bound to port 0) and as separate processes of the
//! built binary, each with its own temp data directory.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyward::config::Config;
use keyward::server::Server;

/// A fixed admin token for tests, stored on first start.
pub const ADMIN_TOKEN: &str =
    "kwa_0badcafe_00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// A peer secret for tests.
pub const PEER_SECRET: &str = "test-peer-secret-0123456789";

/// Returns a default config for a data directory, with snapshots and the rate limit disabled.
pub fn test_config(data_dir: &Path) -> Config {
    let mut config = Config::default();
    config.data_dir = data_dir.to_path_buf();
    config.listen = "127.0.0.1:0".into();
    config.bootstrap_admin_token = keyward::config::Secret(ADMIN_TOKEN.into());
    config.snapshot.every = String::new();
    config.validation.last_seen_flush = "100ms".into();
    // Every test client connects from 127.0.0.1, so the per-address rate limit stays off unless
    // a test turns it on.
    config.limits.requests_per_minute = 0;
    config
}

/// A server running inside the test process.
pub struct InProcess {
    pub url: String,
    pub state: Arc<keyward::api::AppState>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl InProcess {
    pub async fn start(config: Config) -> InProcess {
        Self::start_with_clock(config, Arc::new(keyward::time::SystemClock)).await
    }

    pub async fn start_with_clock(config: Config, clock: keyward::time::SharedClock) -> InProcess {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let server = Server::open(config, clock).await.expect("server opens");
        let state = server.state.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let (sender, receiver) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(listener, async {
            let _ = receiver.await;
        }));
        InProcess {
            url,
            state,
            shutdown: Some(sender),
            task: Some(task),
        }
    }

    /// Stops the server and waits until the database is closed.
    pub async fn stop(mut self) {
        if let Some(sender) = self.shutdown.take() {
            let _ = sender.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("server task")
                .expect("server stops cleanly");
        }
    }
}

/// A keyward binary running as a child process.
pub struct Process {
    pub child: Child,
    pub url: String,
    pub data_dir: PathBuf,
    pub stderr_log: PathBuf,
}

impl Process {
    /// Starts `keyward serve` on 127.0.0.1:0 with `env` and waits until it listens.
    pub fn serve(data_dir: &Path, env: &[(&str, &str)]) -> Process {
        Self::serve_on(data_dir, "127.0.0.1:0", env)
    }

    /// Starts `keyward serve` on `listen` with `env` and waits until it listens.
    pub fn serve_on(data_dir: &Path, listen: &str, env: &[(&str, &str)]) -> Process {
        std::fs::create_dir_all(data_dir).expect("create data dir");
        let stderr_log = data_dir.with_extension("stderr.log");
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stderr_log)
            .expect("open stderr log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_keyward"));
        command
            .args(["serve", "--listen", listen, "--data-dir"])
            .arg(data_dir)
            .env("KEYWARD_BOOTSTRAP_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("KEYWARD_SNAPSHOT_EVERY", "")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(stderr);
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("spawn keyward");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = loop {
            assert!(
                Instant::now() < deadline,
                "keyward did not start; see {}",
                stderr_log.display()
            );
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(url) = line.strip_prefix("keyward listening on ") {
                        break url.trim().to_string();
                    }
                }
                _ => panic!(
                    "keyward exited before listening: {}",
                    std::fs::read_to_string(&stderr_log).unwrap_or_default()
                ),
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Process {
            child,
            url,
            data_dir: data_dir.to_path_buf(),
            stderr_log,
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().expect("wait for keyward")
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// Waits until stderr contains `text`.
    pub fn wait_for_log(&self, text: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.stderr().contains(text))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP client for tests with the admin token preset in helpers.
pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// Sends an admin request with the test token and returns status and JSON body.
pub async fn admin(
    base: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut request = http()
        .request(method, format!("{base}{path}"))
        .bearer_auth(ADMIN_TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("admin request");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let value = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, value)
}

/// Sends a client request (activate, validate, release) and returns status and JSON body.
pub async fn client(base: &str, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let response = http()
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    let value = response.json().await.expect("json body");
    (status, value)
}

/// Creates product `app` with features `pro` and `export`, and one license; returns its key.
pub async fn seed_license(base: &str, seats: i64) -> String {
    let product = serde_json::json!({"code": "app", "name": "App", "features": ["pro", "export"]});
    let (status, _) = admin(
        base,
        reqwest::Method::POST,
        "/v1/admin/products",
        Some(product),
    )
    .await;
    assert!(status == 201 || status == 409, "creating product: {status}");
    let license = serde_json::json!({"product": "app", "model": "permanent", "seats": seats});
    let (status, body) = admin(
        base,
        reqwest::Method::POST,
        "/v1/admin/licenses",
        Some(license),
    )
    .await;
    assert_eq!(status, 201, "creating license: {body}");
    body["key"].as_str().expect("key").to_string()
}

/// Polls `check` every 20 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    check()
}

/// Returns a loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Uploads a snapshot file to a peer endpoint, as the shipper would, and returns status and
/// JSON body. `secret` None sends no Authorization header.
pub fn upload_snapshot(
    base: &str,
    secret: Option<&str>,
    body: Vec<u8>,
    manifest: &[u8],
    zstd: bool,
) -> (u16, serde_json::Value) {
    use base64::Engine;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(manifest);
    let mut request = client
        .post(format!("{base}/v1/peer/snapshots"))
        .header("keyward-manifest", encoded);
    if let Some(secret) = secret {
        request = request.bearer_auth(secret);
    }
    let body = if zstd {
        request = request.header("content-encoding", "zstd");
        zstd::encode_all(&body[..], 1).unwrap()
    } else {
        body
    };
    let response = request.body(body).send().expect("upload");
    let status = response.status().as_u16();
    let text = response.text().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

/// Returns the newest snapshot file in a data directory and its manifest bytes.
pub fn newest_snapshot(data_dir: &Path) -> (PathBuf, Vec<u8>) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data_dir.join("snapshots"))
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "db"))
        .collect();
    files.sort();
    let file = files.pop().expect("a snapshot exists");
    let manifest = std::fs::read(file.with_extension("json")).unwrap();
    (file, manifest)
}

/// SHA-256 of a file, as hex.
pub fn file_sha256(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

/// Runs `PRAGMA integrity_check` on a database file whose server is stopped.
pub fn integrity_ok(path: &Path) -> bool {
    let conn = rusqlite::Connection::open(path).unwrap();
    let result: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    result == "ok"
}
