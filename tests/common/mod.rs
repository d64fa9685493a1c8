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

/// Returns a default config for a data directory, with snapshots disabled.
pub fn test_config(data_dir: &Path) -> Config {
    let mut config = Config::default();
    config.data_dir = data_dir.to_path_buf();
    config.listen = "127.0.0.1:0".into();
    config.bootstrap_admin_token = keyward::config::Secret(ADMIN_TOKEN.into());
    config.snapshot.every = String::new();
    config.validation.last_seen_flush = "100ms".into();
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
        std::fs::create_dir_all(data_dir).expect("create data dir");
        let stderr_log = data_dir.with_extension("stderr.log");
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stderr_log)
            .expect("open stderr log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_keyward"));
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
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
