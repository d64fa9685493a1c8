//! A standby site rejects every new write (leases, offline activation, key rotation and
//! retirement, blocking and unblocking) with `SITE_STANDBY`, changes nothing, and keeps serving
//! the reads: validation, license files and the key list.

mod common;
mod helpers;

use common::{admin, client};
use helpers::{activate, admin_post, checkout, create_license, floating_license, start_clocked};
use keyward::offline::OfflineRequest;
use reqwest::Method;
use serde_json::{Value, json};

/// Asserts a `503 SITE_STANDBY` response.
fn assert_standby(status: u16, body: &Value, context: &str) {
    assert_eq!(status, 503, "{context}: {body}");
    assert_eq!(body["code"], "SITE_STANDBY", "{context}");
}

#[tokio::test]
async fn standby_rejects_new_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = start_clocked(dir.path(), |_| {}).await;
    let base = server.url.as_str();
    let key = create_license(base, json!({"model": "permanent", "seats": 2})).await;
    let floating = floating_license(base, 2).await;
    let (status, body) = activate(base, &key, "pc-1").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = checkout(base, &floating, "pc-1").await;
    assert_eq!(status, 200, "{body}");
    let lease_id = body["lease_id"].as_str().unwrap().to_string();
    let (status, body) = admin_post(base, "/v1/admin/keys/rotate", None).await;
    assert_eq!(status, 201, "{body}");
    let old_kid = body[0]["kid"].as_str().unwrap().to_string();
    let block = json!({"computer_id": "pc-9"});
    let (status, body) = admin_post(base, "/v1/admin/blocked-computers", Some(block)).await;
    assert_eq!(status, 201, "{body}");

    let (status, body) = admin_post(base, "/v1/admin/demote", None).await;
    assert_eq!(status, 200, "demote: {body}");
    let before = server.state.db.state().await.unwrap().write_seq;

    let (status, body) = checkout(base, &floating, "pc-2").await;
    assert_standby(status, &body, "lease checkout");
    let heartbeat = json!({"key": floating, "lease_id": lease_id});
    let (status, body) = client(base, "/v1/leases/heartbeat", heartbeat.clone()).await;
    assert_standby(status, &body, "lease heartbeat");
    let (status, body) = client(base, "/v1/leases/checkin", heartbeat).await;
    assert_standby(status, &body, "lease checkin");

    let request = serde_json::to_value(OfflineRequest::new(&key, "pc-2", "")).unwrap();
    let (status, body) = admin_post(base, "/v1/admin/offline-activations", Some(request)).await;
    assert_standby(status, &body, "offline activation");
    let (status, body) = admin_post(base, "/v1/admin/keys/rotate", None).await;
    assert_standby(status, &body, "key rotation");
    let path = format!("/v1/admin/keys/{old_kid}/retire");
    let (status, body) = admin_post(base, &path, None).await;
    assert_standby(status, &body, "key retirement");
    let block = json!({"computer_id": "pc-8"});
    let (status, body) = admin_post(base, "/v1/admin/blocked-computers", Some(block)).await;
    assert_standby(status, &body, "block");
    let path = "/v1/admin/blocked-computers/pc-9";
    let (status, body) = admin(base, Method::DELETE, path, None).await;
    assert_standby(status, &body, "unblock");

    let after = server.state.db.state().await.unwrap().write_seq;
    assert_eq!(before, after, "the rejected requests wrote nothing");

    let validation = json!({"key": key, "computer_id": "pc-1"});
    let (status, body) = client(base, "/v1/validate", validation.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["code"], "VALID");
    let (status, body) = client(base, "/v1/license-file", validation).await;
    assert_eq!(status, 200, "license file on standby: {body}");
    let (status, body) = admin(base, Method::GET, "/v1/admin/keys", None).await;
    assert_eq!(status, 200, "key list on standby: {body}");
    server.stop().await;
}
