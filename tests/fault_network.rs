//! Network faults between a primary and its DR, injected by a loopback proxy that this test
//! owns: a sender killed mid-stream, a connection cut mid-upload, a peer that returns 500 and a
//! slow link. The DR must never swap in a partial snapshot, must clean up its temp upload, and
//! shipping must recover once the fault is gone.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{
    ADMIN_TOKEN, PEER_SECRET, Process, file_sha256, integrity_ok, seed_license, wait_until,
};
use keyward::keys::LicenseKey;
use serde_json::json;

/// What the proxy does with bytes from the client (the shipping primary) to the upstream.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Forwards everything.
    Pass,
    /// Forwards `chunk` bytes, then waits `pause`, and so on.
    Slow { chunk: usize, pause: Duration },
    /// Forwards the first `limit` bytes, then closes both connections.
    CutAfter { limit: usize },
    /// Forwards the first `limit` bytes, then discards the rest until the client goes away.
    StallAfter { limit: usize },
}

struct ProxySettings {
    upstream: SocketAddr,
    fault: Fault,
    /// Client sides of open connections, closed on every change so that pooled connections
    /// cannot bypass the new setting.
    open: Vec<TcpStream>,
}

/// A TCP proxy on 127.0.0.1 whose fault and upstream can change between connections.
struct Proxy {
    url: String,
    settings: Arc<Mutex<ProxySettings>>,
}

impl Proxy {
    fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let settings = Arc::new(Mutex::new(ProxySettings {
            upstream,
            fault: Fault::Pass,
            open: Vec::new(),
        }));
        let shared = settings.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (upstream, fault) = {
                    let mut settings = shared.lock().unwrap();
                    if let Ok(clone) = client.try_clone() {
                        settings.open.push(clone);
                    }
                    (settings.upstream, settings.fault)
                };
                std::thread::spawn(move || relay(client, upstream, fault));
            }
        });
        Proxy { url, settings }
    }

    fn set_fault(&self, fault: Fault) {
        let mut settings = self.settings.lock().unwrap();
        settings.fault = fault;
        close_all(&mut settings.open);
    }

    fn set_upstream(&self, upstream: SocketAddr) {
        let mut settings = self.settings.lock().unwrap();
        settings.upstream = upstream;
        close_all(&mut settings.open);
    }
}

fn close_all(connections: &mut Vec<TcpStream>) {
    for connection in connections.drain(..) {
        let _ = connection.shutdown(Shutdown::Both);
    }
}

fn relay(client: TcpStream, upstream: SocketAddr, fault: Fault) {
    let Ok(server) = TcpStream::connect(upstream) else {
        return;
    };
    let (mut server_read, mut client_write) =
        (server.try_clone().unwrap(), client.try_clone().unwrap());
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut server_read, &mut client_write);
        let _ = client_write.shutdown(Shutdown::Write);
    });
    forward(client, server, fault);
}

/// Copies client bytes to the server, applying `fault`.
fn forward(mut client: TcpStream, mut server: TcpStream, fault: Fault) {
    let mut buffer = vec![0u8; 16 * 1024];
    let mut sent = 0usize;
    loop {
        let want = match fault {
            Fault::Slow { chunk, .. } => chunk.min(buffer.len()),
            _ => buffer.len(),
        };
        let count = match client.read(&mut buffer[..want]) {
            Ok(0) | Err(_) => break,
            Ok(count) => count,
        };
        let allowed = match fault {
            Fault::CutAfter { limit } | Fault::StallAfter { limit } => {
                count.min(limit.saturating_sub(sent))
            }
            _ => count,
        };
        if allowed > 0 && server.write_all(&buffer[..allowed]).is_err() {
            break;
        }
        sent += allowed;
        match fault {
            Fault::CutAfter { limit } if sent >= limit => {
                let _ = client.shutdown(Shutdown::Both);
                break;
            }
            Fault::Slow { pause, .. } => std::thread::sleep(pause),
            _ => {}
        }
    }
    let _ = server.shutdown(Shutdown::Both);
}

/// Starts a peer that returns HTTP 500 to every request.
fn start_failing_peer() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let app = axum::Router::new().fallback(|| async {
                (
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    axum::Json(json!({"code": "INTERNAL", "message": "injected failure"})),
                )
            });
            axum::serve(listener, app).await.unwrap();
        });
    });
    address
}

/// Builds a blocking HTTP client after installing the rustls crypto provider it needs.
fn blocking_client() -> reqwest::blocking::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::new()
}

fn dr_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("KEYWARD_INITIAL_ROLE", "standby"),
        ("KEYWARD_PEER_SECRET", PEER_SECRET),
    ]
}

fn primary_env(peer_url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("KEYWARD_PEER_URL", peer_url.to_string()),
        ("KEYWARD_PEER_SECRET", PEER_SECRET.to_string()),
        ("KEYWARD_PEER_MAX_BACKOFF", "300ms".to_string()),
    ]
}

fn serve_primary(dir: &Path, peer_url: &str) -> Process {
    let env = primary_env(peer_url);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Process::serve(dir, &env)
}

fn address_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://").parse().unwrap()
}

fn validate_code(url: &str, key: &str) -> String {
    let response = blocking_client()
        .post(format!("{url}/v1/validate"))
        .json(&json!({"key": key, "computer_id": "probe"}))
        .send()
        .unwrap();
    let body: serde_json::Value = response.json().unwrap();
    body["code"].as_str().unwrap_or_default().to_string()
}

/// Imports `count` licenses with random text, so the snapshot does not compress to nothing;
/// returns the first key.
fn import_licenses(url: &str, count: usize) -> String {
    let mut csv = keyward::license::csv_io::COLUMNS[..13].join(",");
    csv.push('\n');
    let mut first = String::new();
    for index in 0..count {
        let key = LicenseKey::generate().as_str().to_string();
        let note = LicenseKey::generate().as_str().repeat(4);
        csv.push_str(&format!(
            "{key},app,permanent,1,,,,,Customer {index},,,,{note}\n"
        ));
        if first.is_empty() {
            first = key;
        }
    }
    let response = blocking_client()
        .post(format!(
            "{url}/v1/admin/licenses/import?create_products=true"
        ))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200, "{:?}", response.text());
    first
}

fn take_snapshot(url: &str) {
    let response = blocking_client()
        .post(format!("{url}/v1/admin/snapshots"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
}

fn incoming_files(data_dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(data_dir.join("incoming"))
        .map(|entries| entries.flatten().map(|entry| entry.path()).collect())
        .unwrap_or_default()
}

fn count_in_log(process: &Process, text: &str) -> usize {
    process.stderr().matches(text).count()
}

#[test]
fn sender_killed_mid_ship() {
    let dir = tempfile::tempdir().unwrap();
    let dr_dir = dir.path().join("dr");
    let mut dr = Process::serve(&dr_dir, &dr_env());
    let proxy = Proxy::start(address_of(&dr.url));
    let primary_dir = dir.path().join("primary");
    let mut primary = serve_primary(&primary_dir, &proxy.url);

    // The first snapshot arrives whole.
    let first = import_licenses(&primary.url, 200);
    take_snapshot(&primary.url);
    assert!(
        primary.wait_for_log("snapshot shipped", Duration::from_secs(20)),
        "{}",
        primary.stderr()
    );
    assert_eq!(validate_code(&dr.url, &first), "NOT_ACTIVATED");
    assert_eq!(dr.terminate().code(), Some(0));
    let live = dr_dir.join("keyward.db");
    let before = file_sha256(&live);
    let dr = Process::serve(&dr_dir, &dr_env());
    proxy.set_upstream(address_of(&dr.url));

    // The second one stalls after a few KiB; the primary dies while it streams.
    let second = import_licenses(&primary.url, 2000);
    proxy.set_fault(Fault::StallAfter { limit: 8 * 1024 });
    take_snapshot(&primary.url);
    let uploading = wait_until(Duration::from_secs(20), || {
        !incoming_files(&dr_dir).is_empty()
    });
    assert!(uploading, "no upload file appeared: {}", dr.stderr());
    primary.kill();

    let cleaned = wait_until(Duration::from_secs(20), || {
        incoming_files(&dr_dir).is_empty()
    });
    assert!(
        cleaned,
        "temp upload left behind: {:?}",
        incoming_files(&dr_dir)
    );
    assert_eq!(validate_code(&dr.url, &first), "NOT_ACTIVATED");
    assert_eq!(validate_code(&dr.url, &second), "NOT_FOUND");
    let mut dr = dr;
    assert_eq!(dr.terminate().code(), Some(0));
    assert_eq!(file_sha256(&live), before, "the DR database changed");
    assert!(integrity_ok(&live), "integrity check failed");
}

#[test]
fn shipping_recovers_from_network_faults() {
    let dir = tempfile::tempdir().unwrap();
    let dr_dir = dir.path().join("dr");
    let dr = Process::serve(&dr_dir, &dr_env());
    let proxy = Proxy::start(address_of(&dr.url));
    let primary = serve_primary(&dir.path().join("primary"), &proxy.url);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    const RETRY: &str = "shipping failed; will retry";
    const RECOVERED: &str = "shipping recovered";

    // A connection cut mid-upload: retried, nothing swapped, no temp file kept.
    let cut_key = import_licenses(&primary.url, 1000);
    proxy.set_fault(Fault::CutAfter { limit: 8 * 1024 });
    take_snapshot(&primary.url);
    assert!(
        primary.wait_for_log(RETRY, Duration::from_secs(20)),
        "{}",
        primary.stderr()
    );
    assert_eq!(validate_code(&dr.url, &cut_key), "NOT_FOUND");
    let cleaned = wait_until(Duration::from_secs(10), || {
        incoming_files(&dr_dir).is_empty()
    });
    assert!(
        cleaned,
        "temp upload left behind: {:?}",
        incoming_files(&dr_dir)
    );
    proxy.set_fault(Fault::Pass);
    assert!(
        primary.wait_for_log(RECOVERED, Duration::from_secs(20)),
        "{}",
        primary.stderr()
    );
    assert_eq!(validate_code(&dr.url, &cut_key), "NOT_ACTIVATED");

    // A peer that returns 500: retried until the real DR is back behind the proxy.
    proxy.set_upstream(start_failing_peer());
    let failed_before = count_in_log(&primary, RETRY);
    let error_key = runtime.block_on(seed_license(&primary.url, 1));
    take_snapshot(&primary.url);
    let retried = wait_until(Duration::from_secs(20), || {
        count_in_log(&primary, RETRY) > failed_before
    });
    assert!(retried, "{}", primary.stderr());
    assert!(primary.stderr().contains("500"), "{}", primary.stderr());
    assert_eq!(validate_code(&dr.url, &error_key), "NOT_FOUND");
    proxy.set_upstream(address_of(&dr.url));
    let recovered = wait_until(Duration::from_secs(20), || {
        count_in_log(&primary, RECOVERED) >= 2
    });
    assert!(recovered, "{}", primary.stderr());
    assert_eq!(validate_code(&dr.url, &error_key), "NOT_ACTIVATED");

    // A slow link: the upload takes a while but arrives whole.
    proxy.set_fault(Fault::Slow {
        chunk: 4 * 1024,
        pause: Duration::from_millis(10),
    });
    // A pooled connection closed by the proxy may cost one retry, so either line counts.
    let delivered = |process: &Process| {
        count_in_log(process, "snapshot shipped") + count_in_log(process, RECOVERED)
    };
    let shipped_before = delivered(&primary);
    let slow_key = runtime.block_on(seed_license(&primary.url, 1));
    take_snapshot(&primary.url);
    let shipped = wait_until(Duration::from_secs(40), || {
        delivered(&primary) > shipped_before
    });
    assert!(shipped, "{}", primary.stderr());
    assert_eq!(validate_code(&dr.url, &slow_key), "NOT_ACTIVATED");

    let mut dr = dr;
    assert_eq!(dr.terminate().code(), Some(0));
    assert!(
        integrity_ok(&dr_dir.join("keyward.db")),
        "integrity check failed"
    );
    assert!(incoming_files(&dr_dir).is_empty());
}
