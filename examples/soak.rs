//! Soak test: a primary and a DR from the release binary on loopback, continuous client traffic,
//! scheduled snapshots shipped to the DR, and the DR killed with SIGKILL and restarted at random.
//! At the end a final snapshot is shipped and every acknowledged activation must validate on the
//! DR. Run it through `scripts/soak.sh`, which builds the release binary first.
//!
//! Settings (environment variables):
//! - `SOAK_SECONDS`: how long traffic runs, in seconds (default 600).
//! - `SOAK_CLIENTS`: concurrent client tasks on the primary (default 4).
//! - `SOAK_SNAPSHOT_EVERY`: the primary's snapshot interval (default `3s`).
//! - `SOAK_RESTART_SECONDS`: mean seconds between DR restarts (default 20).
//!
//! Exits with status 1 when an acknowledged activation is missing on the DR or when any 5xx
//! other than BUSY (a request that waited longer than `receive.swap_wait` for a swap) was seen.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const ADMIN_TOKEN: &str =
    "kwa_0badcafe_00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const PEER_SECRET: &str = "soak-peer-secret-0123456789";
const LICENSES: usize = 20;

/// A keyward child process that printed the URL it listens on.
struct Site {
    child: Child,
    url: String,
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keyward_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("keyward");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --release --bins --examples` first",
        path.display()
    );
    path
}

/// Starts `keyward serve` on `listen` and waits until it prints its URL.
fn start_site(data_dir: &Path, listen: &str, env: &[(&str, &str)]) -> Option<Site> {
    std::fs::create_dir_all(data_dir).ok()?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data_dir.with_extension("log"))
        .ok()?;
    let mut command = Command::new(keyward_binary());
    command
        .args(["serve", "--listen", listen, "--data-dir"])
        .arg(data_dir)
        .env("KEYWARD_BOOTSTRAP_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("KEYWARD_PEER_SECRET", PEER_SECRET)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(log);
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().ok()?;
    let mut lines = BufReader::new(child.stdout.take()?).lines();
    let url = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(url) = line.strip_prefix("keyward listening on ") {
                    break url.trim().to_string();
                }
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Some(Site { child, url })
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(default)
}

/// Counts of responses, shared by all tasks.
#[derive(Default)]
struct Counters {
    validations: AtomicU64,
    dr_reads: AtomicU64,
    client_errors: AtomicU64,
    busy: AtomicU64,
    server_errors: AtomicU64,
    transport_errors: AtomicU64,
    dr_restarts: AtomicU64,
}

impl Counters {
    /// Counts one response by its status and error code.
    fn record(&self, status: u16, body: &Value) {
        match status {
            500..=599 if body["code"] == "BUSY" => self.busy.fetch_add(1, Ordering::Relaxed),
            500..=599 => {
                eprintln!("soak: unexpected {status}: {body}");
                self.server_errors.fetch_add(1, Ordering::Relaxed)
            }
            400..=499 => self.client_errors.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
    }
}

/// Sends a POST with an optional JSON body; returns None when no response arrived.
async fn post(
    client: &reqwest::Client,
    url: &str,
    body: Option<Value>,
    admin: bool,
) -> Option<(u16, Value)> {
    let mut request = client.post(url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    if admin {
        request = request.bearer_auth(ADMIN_TOKEN);
    }
    let response = request.send().await.ok()?;
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    Some((status, body))
}

async fn create_licenses(client: &reqwest::Client, primary: &str) -> Vec<String> {
    let product = json!({"code": "soak", "name": "Soak", "features": ["pro"]});
    post(
        client,
        &format!("{primary}/v1/admin/products"),
        Some(product),
        true,
    )
    .await
    .expect("create product");
    let mut keys = Vec::new();
    for _ in 0..LICENSES {
        let license = json!({"product": "soak", "model": "permanent", "seats": 100000});
        let (status, body) = post(
            client,
            &format!("{primary}/v1/admin/licenses"),
            Some(license),
            true,
        )
        .await
        .expect("create license");
        assert_eq!(status, 201, "creating a license: {body}");
        keys.push(body["key"].as_str().expect("key").to_string());
    }
    keys
}

/// Activates new computers and validates earlier ones on the primary until `deadline`.
async fn client_task(
    worker: usize,
    primary: String,
    keys: Arc<Vec<String>>,
    acknowledged: Arc<Mutex<Vec<(String, String)>>>,
    counters: Arc<Counters>,
    deadline: Instant,
) {
    let client = reqwest::Client::new();
    let mut sequence = 0usize;
    while Instant::now() < deadline {
        sequence += 1;
        let key = keys[(worker * 7 + sequence) % keys.len()].clone();
        let computer = format!("pc-{worker}-{sequence}");
        let body = json!({"key": key, "computer_id": computer});
        match post(
            &client,
            &format!("{primary}/v1/activate"),
            Some(body),
            false,
        )
        .await
        {
            Some((status, body)) => {
                counters.record(status, &body);
                if status == 200 {
                    acknowledged
                        .lock()
                        .unwrap()
                        .push((key.clone(), computer.clone()));
                }
            }
            None => {
                counters.transport_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        let body = json!({"key": key, "computer_id": computer});
        if let Some((status, body)) = post(
            &client,
            &format!("{primary}/v1/validate"),
            Some(body),
            false,
        )
        .await
        {
            counters.record(status, &body);
            counters.validations.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Reads from the DR while it is up, so that swaps run under load.
async fn dr_reader(dr: String, keys: Arc<Vec<String>>, counters: Arc<Counters>, deadline: Instant) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    let mut index = 0;
    while Instant::now() < deadline {
        index += 1;
        let body = json!({"key": keys[index % keys.len()], "computer_id": "dr-probe"});
        match post(&client, &format!("{dr}/v1/validate"), Some(body), false).await {
            Some((status, body)) => {
                counters.record(status, &body);
                counters.dr_reads.fetch_add(1, Ordering::Relaxed);
            }
            // The DR is down between a kill and its restart.
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Kills the DR with SIGKILL at random intervals and starts it again on the same address.
fn restarter(
    dr: Arc<Mutex<Option<Site>>>,
    dr_dir: PathBuf,
    listen: String,
    mean_seconds: u64,
    counters: Arc<Counters>,
    deadline: Instant,
) {
    loop {
        let random = u64::from(keyward::ids::random_bytes(1)[0]);
        let pause = Duration::from_millis(mean_seconds * 1000 * (64 + random) / 192);
        if Instant::now() + pause >= deadline {
            return;
        }
        std::thread::sleep(pause);
        dr.lock().unwrap().take();
        let started = (0..50).find_map(|_| {
            let site = start_site(&dr_dir, &listen, &[("KEYWARD_INITIAL_ROLE", "standby")]);
            if site.is_none() {
                std::thread::sleep(Duration::from_millis(100));
            }
            site
        });
        let site = started.expect("the DR restarts");
        *dr.lock().unwrap() = Some(site);
        counters.dr_restarts.fetch_add(1, Ordering::Relaxed);
    }
}

/// Takes a snapshot on the primary and ships it until the DR has it.
async fn final_ship(client: &reqwest::Client, primary: &str) -> String {
    let (status, body) = post(client, &format!("{primary}/v1/admin/snapshots"), None, true)
        .await
        .expect("final snapshot");
    assert_eq!(status, 201, "final snapshot: {body}");
    for _ in 0..60 {
        if let Some((200, body)) =
            post(client, &format!("{primary}/v1/admin/ship"), None, true).await
        {
            return body["result"].as_str().unwrap_or_default().to_string();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!("the final snapshot never shipped");
}

/// Validates every acknowledged activation on the DR, 16 at a time; returns how many fail.
async fn count_missing(
    client: &reqwest::Client,
    dr_url: &str,
    acknowledged: &[(String, String)],
) -> usize {
    use futures_util::StreamExt;

    let results: Vec<bool> = futures_util::stream::iter(acknowledged)
        .map(|(key, computer)| async move {
            let body = json!({"key": key, "computer_id": computer});
            let url = format!("{dr_url}/v1/validate");
            let (_, body) = post(client, &url, Some(body), false)
                .await
                .expect("validate on the DR");
            let present = body["code"] == "VALID";
            if !present {
                eprintln!("soak: {computer} on the DR: {body}");
            }
            present
        })
        .buffer_unordered(16)
        .collect()
        .await;
    results.iter().filter(|present| !**present).count()
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let seconds = env_number("SOAK_SECONDS", 600);
    let clients = env_number("SOAK_CLIENTS", 4) as usize;
    let restart_seconds = env_number("SOAK_RESTART_SECONDS", 20).max(1);
    let snapshot_every = std::env::var("SOAK_SNAPSHOT_EVERY").unwrap_or_else(|_| "3s".into());
    let dir = tempfile::tempdir().expect("temp dir");

    // The DR keeps its port across restarts, so the primary's peer.url stays valid.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port();
    let dr_listen = format!("127.0.0.1:{port}");
    let dr_dir = dir.path().join("dr");
    let dr_site =
        start_site(&dr_dir, &dr_listen, &[("KEYWARD_INITIAL_ROLE", "standby")]).expect("DR starts");
    let dr_url = dr_site.url.clone();
    let primary = start_site(
        &dir.path().join("primary"),
        "127.0.0.1:0",
        &[
            ("KEYWARD_PEER_URL", &dr_url),
            ("KEYWARD_SNAPSHOT_EVERY", &snapshot_every),
            ("KEYWARD_PEER_MAX_BACKOFF", "1s"),
        ],
    )
    .expect("primary starts");
    println!("soak: {seconds} s, {clients} clients, snapshots every {snapshot_every}");
    println!("soak: DR restarts about every {restart_seconds} s");
    println!("soak: logs in {}", dir.path().display());

    let client = reqwest::Client::new();
    let keys = Arc::new(create_licenses(&client, &primary.url).await);
    let counters = Arc::new(Counters::default());
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);

    let dr = Arc::new(Mutex::new(Some(dr_site)));
    let restarts = {
        let (dr, dr_dir, counters) = (dr.clone(), dr_dir.clone(), counters.clone());
        std::thread::spawn(move || {
            restarter(dr, dr_dir, dr_listen, restart_seconds, counters, deadline)
        })
    };
    let mut tasks = Vec::new();
    for worker in 0..clients {
        tasks.push(tokio::spawn(client_task(
            worker,
            primary.url.clone(),
            keys.clone(),
            acknowledged.clone(),
            counters.clone(),
            deadline,
        )));
    }
    tasks.push(tokio::spawn(dr_reader(
        dr_url.clone(),
        keys.clone(),
        counters.clone(),
        deadline,
    )));
    for task in tasks {
        task.await.expect("client task");
    }
    restarts.join().expect("restarter");

    let outcome = final_ship(&client, &primary.url).await;
    let acknowledged = acknowledged.lock().unwrap().clone();
    let missing = count_missing(&client, &dr_url, &acknowledged).await;

    let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    println!(
        "soak: ran {:.0} s; final ship {outcome}",
        started.elapsed().as_secs_f64()
    );
    println!("soak: activations acknowledged {}", acknowledged.len());
    println!(
        "soak: validations on the primary {}",
        get(&counters.validations)
    );
    println!("soak: validations on the DR {}", get(&counters.dr_reads));
    println!("soak: DR restarts (SIGKILL) {}", get(&counters.dr_restarts));
    println!("soak: 4xx {}", get(&counters.client_errors));
    println!(
        "soak: BUSY 503 (documented swap wait) {}",
        get(&counters.busy)
    );
    println!("soak: other 5xx {}", get(&counters.server_errors));
    println!(
        "soak: transport errors on the primary {}",
        get(&counters.transport_errors)
    );
    println!("soak: acknowledged activations missing on the DR {missing}");
    if missing > 0 || get(&counters.server_errors) > 0 {
        println!("soak: FAILED");
        std::process::exit(1);
    }
    println!("soak: passed");
}
