//! Logs of the built binary: JSON lines with the request id in the request span, the
//! `log_format` config key, and no secrets even at the most verbose level. Also `keyward status`
//! with the peer's reachability, since those tests already run a pair of sites.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{ADMIN_TOKEN, PEER_SECRET, Process, admin, seed_license};
use reqwest::Method;

fn json_lines(stderr: &str) -> Vec<serde_json::Value> {
    stderr
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON ({err}): {line}"))
        })
        .collect()
}

fn get_with_request_id(url: &str, request_id: &str) -> reqwest::blocking::Response {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::new()
        .get(url)
        .header("x-request-id", request_id)
        .send()
        .expect("request")
}

#[test]
fn json_logs_carry_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Process::serve(&dir.path().join("site"), &[("KEYWARD_LOG_FORMAT", "json")]);
    let response = get_with_request_id(&format!("{}/v1/keys", server.url), "log-check-1");
    assert_eq!(response.status(), 200);
    assert!(server.wait_for_log("log-check-1", Duration::from_secs(10)));
    assert_eq!(server.terminate().code(), Some(0));

    let lines = json_lines(&server.stderr());
    let serving = lines
        .iter()
        .find(|line| line["fields"]["message"] == "keyward serving");
    assert!(serving.is_some(), "no start line in {lines:?}");
    let finished = lines
        .iter()
        .find(|line| line["span"]["request_id"] == "log-check-1")
        .expect("a line in the request's span");
    assert_eq!(finished["fields"]["message"], "request finished");
    assert_eq!(finished["fields"]["status"], 200);
    assert_eq!(finished["span"]["route"], "/v1/keys");
    assert_eq!(finished["span"]["method"], "GET");
    assert_eq!(finished["level"], "INFO");
}

#[test]
fn config_file_sets_log_format() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("keyward.toml");
    std::fs::write(&config, "log_format = \"json\"\n").unwrap();
    let mut server = Process::serve(
        &dir.path().join("site"),
        &[("KEYWARD_CONFIG", config.to_str().unwrap())],
    );
    assert_eq!(server.terminate().code(), Some(0));

    let stderr = server.stderr();
    let lines = json_lines(&stderr);
    assert!(
        lines
            .iter()
            .any(|line| line["fields"]["message"] == "keyward stopped"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("unknown environment variable"),
        "KEYWARD_CONFIG is the --config flag's variable: {stderr}"
    );
}

fn keyward_status(url: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["status", "--url", url, "--max-snapshot-age", "1h"])
        .env("KEYWARD_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .expect("run keyward status")
}

#[test]
fn secrets_absent_from_trace_logs() {
    let dir = tempfile::tempdir().unwrap();
    let trace = ("RUST_LOG", "trace");
    let mut dr = Process::serve(
        &dir.path().join("dr"),
        &[
            trace,
            ("KEYWARD_INITIAL_ROLE", "standby"),
            ("KEYWARD_PEER_SECRET", PEER_SECRET),
        ],
    );
    let mut primary = Process::serve(
        &dir.path().join("primary"),
        &[
            trace,
            ("KEYWARD_PEER_URL", &dr.url),
            ("KEYWARD_PEER_SECRET", PEER_SECRET),
        ],
    );

    // Admin traffic with the token, a snapshot shipped with the peer secret, and an upload
    // with a wrong secret.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        seed_license(&primary.url, 1).await;
        let (status, body) = admin(&primary.url, Method::POST, "/v1/admin/snapshots", None).await;
        assert_eq!(status, 201, "{body}");
    });
    assert!(
        primary.wait_for_log("snapshot shipped", Duration::from_secs(30)),
        "{}",
        primary.stderr()
    );
    let (status, body) = common::upload_snapshot(
        &dr.url,
        Some("wrong-secret-0123456789"),
        vec![0; 4096],
        b"{}",
        false,
    );
    assert_eq!(status, 401, "{body}");

    // `keyward status` reports the peer as the server saw it.
    let output = keyward_status(&primary.url);
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(printed["peer"]["reachable"], true, "{printed}");
    assert_eq!(printed["peer"]["http_status"], 200);
    assert!(
        stderr.contains(&format!("peer {}: reachable", dr.url)),
        "{stderr}"
    );

    assert_eq!(dr.terminate().code(), Some(0));
    let output = keyward_status(&primary.url);
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert_eq!(
        output.status.code(),
        Some(0),
        "an unreachable peer alone does not fail status: {stderr}"
    );
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(printed["peer"]["reachable"], false, "{printed}");
    assert!(printed["peer"]["error"].is_string(), "{printed}");
    assert!(stderr.contains("unreachable"), "{stderr}");
    assert_eq!(primary.terminate().code(), Some(0));

    let token_secret = ADMIN_TOKEN.rsplit('_').next().unwrap();
    for (site, log) in [("primary", primary.stderr()), ("dr", dr.stderr())] {
        assert!(log.contains("TRACE"), "{site} logged at trace level");
        assert!(!log.contains(ADMIN_TOKEN), "{site} log has the admin token");
        assert!(
            !log.contains(token_secret),
            "{site} log has the admin token's secret"
        );
        assert!(!log.contains(PEER_SECRET), "{site} log has the peer secret");
        assert!(
            !log.contains("wrong-secret-0123456789"),
            "{site} log has a presented secret"
        );
    }
}
