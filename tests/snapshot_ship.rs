//! Primary and DR as separate processes: snapshots shipped over HTTP, verified and swapped in.

mod common;

use std::time::Duration;

use common::{PEER_SECRET, Process, admin, client, seed_license};
use reqwest::Method;
use serde_json::json;

fn dr_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("KEYWARD_INITIAL_ROLE", "standby"),
        ("KEYWARD_PEER_SECRET", PEER_SECRET),
    ]
}

/// Starts a standby DR and a primary that ships to it.
pub fn start_pair(dir: &std::path::Path) -> (Process, Process) {
    let dr = Process::serve(&dir.join("dr"), &dr_env());
    let primary = Process::serve(
        &dir.join("primary"),
        &[
            ("KEYWARD_PEER_URL", dr.url.as_str()),
            ("KEYWARD_PEER_SECRET", PEER_SECRET),
        ],
    );
    (primary, dr)
}

#[tokio::test]
async fn shipped_snapshot_validates_on_dr() {
    let dir = tempfile::tempdir().unwrap();
    let (primary, dr) = start_pair(dir.path());
    let key = seed_license(&primary.url, 3).await;
    let (status, body) = client(
        &primary.url,
        "/v1/activate",
        json!({"key": key, "computer_id": "pc-1"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let (status, manifest) = admin(&primary.url, Method::POST, "/v1/admin/snapshots", None).await;
    assert_eq!(status, 201, "{manifest}");
    let (status, shipped) = admin(&primary.url, Method::POST, "/v1/admin/ship", None).await;
    assert_eq!(status, 200, "{shipped}");
    // The background shipper may have delivered it first; then the peer is already current.
    let result = shipped["result"].as_str().unwrap();
    assert!(
        result == "APPLIED" || result == "ALREADY_CURRENT",
        "{shipped}"
    );

    let (status, body) = client(
        &dr.url,
        "/v1/validate",
        json!({"key": key, "computer_id": "pc-1"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["code"], "VALID", "{body}");

    // The DR signs with the primary's key, restored from the snapshot.
    let (_, primary_keys) = admin(&primary.url, Method::GET, "/v1/keys", None).await;
    let (_, dr_keys) = admin(&dr.url, Method::GET, "/v1/keys", None).await;
    assert_eq!(primary_keys["keys"], dr_keys["keys"]);

    // The standby rejects writes with a distinct code.
    let (status, body) = client(
        &dr.url,
        "/v1/activate",
        json!({"key": key, "computer_id": "pc-2"}),
    )
    .await;
    assert_eq!(status, 503);
    assert_eq!(body["code"], "SITE_STANDBY");

    let (status, dr_status) = admin(&dr.url, Method::GET, "/v1/admin/status", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        dr_status["replication"]["last_applied"]["write_seq"],
        manifest["position"]["write_seq"]
    );
    assert_eq!(
        dr_status["position"]["write_seq"],
        manifest["position"]["write_seq"]
    );

    // Shipping the same snapshot again changes nothing.
    let (status, again) = admin(&primary.url, Method::POST, "/v1/admin/ship", None).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["result"], "ALREADY_CURRENT");
}

#[tokio::test]
async fn active_site_rejects_incoming_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let other_active = Process::serve(
        &dir.path().join("other"),
        &[("KEYWARD_PEER_SECRET", PEER_SECRET)],
    );
    let primary = Process::serve(
        &dir.path().join("primary"),
        &[
            ("KEYWARD_PEER_URL", other_active.url.as_str()),
            ("KEYWARD_PEER_SECRET", PEER_SECRET),
        ],
    );
    seed_license(&primary.url, 1).await;
    let (status, _) = admin(&primary.url, Method::POST, "/v1/admin/snapshots", None).await;
    assert_eq!(status, 201);
    let (status, body) = admin(&primary.url, Method::POST, "/v1/admin/ship", None).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("SITE_ACTIVE"),
        "{body}"
    );
}

#[tokio::test]
async fn peer_url_pointing_at_itself_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let own_url = format!("http://127.0.0.1:{port}");
    let primary = Process::serve_on(
        &dir.path().join("primary"),
        &format!("127.0.0.1:{port}"),
        &[
            ("KEYWARD_PEER_URL", own_url.as_str()),
            ("KEYWARD_PEER_SECRET", PEER_SECRET),
        ],
    );
    seed_license(&primary.url, 1).await;
    let (status, _) = admin(&primary.url, Method::POST, "/v1/admin/snapshots", None).await;
    assert_eq!(status, 201);
    let (status, body) = admin(&primary.url, Method::POST, "/v1/admin/ship", None).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("SAME_SITE"),
        "{body}"
    );
    // The shipper gave up on that snapshot instead of retrying it forever.
    assert!(
        primary.wait_for_log("not retrying it", Duration::from_secs(10)),
        "{}",
        primary.stderr()
    );
}

#[tokio::test]
async fn shipping_resumes_when_peer_comes_up() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let dr_url = format!("http://127.0.0.1:{port}");
    let primary = Process::serve(
        &dir.path().join("primary"),
        &[
            ("KEYWARD_PEER_URL", dr_url.as_str()),
            ("KEYWARD_PEER_SECRET", PEER_SECRET),
            ("KEYWARD_PEER_MAX_BACKOFF", "500ms"),
        ],
    );
    let key = seed_license(&primary.url, 1).await;
    let (status, _) = admin(&primary.url, Method::POST, "/v1/admin/snapshots", None).await;
    assert_eq!(status, 201);
    assert!(primary.wait_for_log("shipping failed; will retry", Duration::from_secs(10)));

    let dr = Process::serve_on(
        &dir.path().join("dr"),
        &format!("127.0.0.1:{port}"),
        &dr_env(),
    );
    assert!(
        primary.wait_for_log("shipping recovered", Duration::from_secs(20)),
        "{}",
        primary.stderr()
    );
    let (_, body) = client(
        &dr.url,
        "/v1/validate",
        json!({"key": key, "computer_id": "x"}),
    )
    .await;
    assert_eq!(body["code"], "NOT_ACTIVATED", "the license arrived: {body}");
}

#[test]
fn scheduled_snapshot_ships_without_commands() {
    let dir = tempfile::tempdir().unwrap();
    let dr = Process::serve(&dir.path().join("dr"), &dr_env());
    let primary = Process::serve(
        &dir.path().join("primary"),
        &[
            ("KEYWARD_PEER_URL", dr.url.as_str()),
            ("KEYWARD_PEER_SECRET", PEER_SECRET),
            ("KEYWARD_SNAPSHOT_EVERY", "1s"),
        ],
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let key = runtime.block_on(seed_license(&primary.url, 1));
    let arrived = common::wait_until(Duration::from_secs(20), || {
        let response = reqwest::blocking::Client::new()
            .post(format!("{}/v1/validate", dr.url))
            .json(&json!({"key": key, "computer_id": "x"}))
            .send()
            .unwrap();
        let body: serde_json::Value = response.json().unwrap();
        body["code"] == "NOT_ACTIVATED"
    });
    assert!(arrived, "primary log: {}", primary.stderr());
}
