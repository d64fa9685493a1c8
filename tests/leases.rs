//! Floating licenses over HTTP: lease checkout, heartbeat, checkin and expiry against a real
//! server, with time moved by an injected clock instead of sleeping.

mod common;
mod helpers;
mod raw_http;

use std::sync::Arc;

use common::{admin, client};
use helpers::{
    activate, checkin, checkout, create_license, floating_license, heartbeat, show_license,
    start_clocked, time_of, validate_code,
};
use keyward::time::Clock;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::Barrier;

const TTL_SECONDS: i64 = 15 * 60;

async fn list_leases(base: &str, key: &str) -> Vec<Value> {
    let path = format!("/v1/admin/licenses/{key}/leases");
    let (status, body) = admin(base, Method::GET, &path, None).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    body.as_array().expect("lease list").clone()
}

fn lease_id(body: &Value) -> String {
    body["lease_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no lease_id in {body}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_checkouts_respect_seats() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = start_clocked(dir.path(), |_| {}).await;
    let base = server.url.clone();
    let key = floating_license(&base, 5).await;

    let barrier = Arc::new(Barrier::new(40));
    let mut tasks = Vec::new();
    for index in 0..40 {
        let (base, key, barrier) = (base.clone(), key.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            checkout(&base, &key, &format!("pc-{index}")).await
        }));
    }
    let mut granted = Vec::new();
    let mut exhausted = 0;
    for task in tasks {
        let (status, body) = task.await.expect("checkout task");
        match status {
            200 => granted.push(lease_id(&body)),
            409 => {
                assert_eq!(body["code"], "SEATS_EXHAUSTED", "{body}");
                exhausted += 1;
            }
            other => panic!("unexpected status {other}: {body}"),
        }
    }

    assert_eq!(granted.len(), 5, "leases granted");
    assert_eq!(exhausted, 35, "checkouts rejected");
    granted.sort();
    granted.dedup();
    assert_eq!(granted.len(), 5, "every lease id is distinct");
    assert_eq!(list_leases(&base, &key).await.len(), 5, "stored leases");
    assert_eq!(show_license(&base, &key).await["seats_used"], 5);
    server.stop().await;
}

#[tokio::test]
async fn checkout_returns_signed_lease() {
    let dir = tempfile::tempdir().unwrap();
    let (server, clock) = start_clocked(dir.path(), |_| {}).await;
    let base = server.url.as_str();
    let key = floating_license(base, 2).await;
    let trusted = raw_http::trusted_keys(base).await;

    let request = json!({"key": key, "computer_id": "pc-1", "nonce": "n-1"});
    let response = raw_http::post_json(base, "/v1/leases/checkout", &request).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        trusted.verify_header(response.signature(), &response.body),
        Ok(())
    );
    let body = response.json();
    assert_eq!(body["result"], "CHECKED_OUT");
    assert_eq!(body["nonce"], "n-1");
    assert_eq!(body["license"]["floating"], true);
    assert_eq!(body["license"]["seats_used"], 1);
    let expires = time_of(&body["expires_at"]);
    let expected = clock.now() + chrono::Duration::seconds(TTL_SECONDS);
    assert!(
        (expires - expected).num_seconds().abs() <= 2,
        "lease expires {expires}, expected about {expected}"
    );
    assert_eq!(validate_code(base, &key, "pc-1").await, "VALID");
    assert_eq!(validate_code(base, &key, "pc-2").await, "NOT_ACTIVATED");
    server.stop().await;
}

#[tokio::test]
async fn repeated_checkout_keeps_lease() {
    let dir = tempfile::tempdir().unwrap();
    let (server, clock) = start_clocked(dir.path(), |_| {}).await;
    let base = server.url.as_str();
    let key = floating_license(base, 2).await;

    let (status, first) = checkout(base, &key, "pc-1").await;
    assert_eq!(status, 200, "{first}");
    clock.advance(60);
    let (status, second) = checkout(base, &key, "pc-1").await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["result"], "ALREADY_CHECKED_OUT");
    assert_eq!(second["lease_id"], first["lease_id"]);
    assert_eq!(second["license"]["seats_used"], 1);
    assert!(
        time_of(&second["expires_at"]) > time_of(&first["expires_at"]),
        "the repeated checkout extends the lease"
    );
    server.stop().await;
}

#[tokio::test]
async fn expired_lease_frees_seat() {
    let dir = tempfile::tempdir().unwrap();
    let (server, clock) = start_clocked(dir.path(), |_| {}).await;
    let base = server.url.as_str();
    let key = floating_license(base, 1).await;

    let (status, body) = checkout(base, &key, "pc-1").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = checkout(base, &key, "pc-2").await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "SEATS_EXHAUSTED");

    clock.advance(TTL_SECONDS - 60);
    assert_eq!(
        validate_code(base, &key, "pc-1").await,
        "VALID",
        "a minute before expiry"
    );

    clock.advance(61);
    assert_eq!(
        validate_code(base, &key, "pc-1").await,
        "NOT_ACTIVATED",
        "a second after expiry"
    );
    assert!(
        list_leases(base, &key).await.is_empty(),
        "the admin list shows live leases only"
    );
    let (status, body) = checkout(base, &key, "pc-2").await;
    assert_eq!(status, 200, "the expired seat is reclaimed: {body}");
    assert_eq!(body["result"], "CHECKED_OUT");
    assert_eq!(body["license"]["seats_used"], 1);
    let leases = list_leases(base, &key).await;
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0]["computer_id"], "pc-2");
    server.stop().await;
}

#[tokio::test]
async fn heartbeat_extends_lease() {
    let dir = tempfile::tempdir().unwrap();
    let (server, clock) = start_clocked(dir.path(), |_| {}).await;
    let base = server.url.as_str();
    let key = floating_license(base, 1).await;

    let (status, body) = checkout(base, &key, "pc-1").await;
    assert_eq!(status, 200, "{body}");
    let lease = lease_id(&body);
    let first_expiry = time_of(&body["expires_at"]);

    clock.advance(10 * 60);
    let (status, body) = heartbeat(base, &key, &lease).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], "EXTENDED");
    assert_eq!(body["lease_id"], lease.as_str());
    let moved = (time_of(&body["expires_at"]) - first_expiry).num_seconds();
    assert!(
        (moved - 10 * 60).abs() <= 1,
        "the heartbeat moved the expiry by {moved} s, expected the 600 s that passed"
    );

    clock.advance(10 * 60);
    assert_eq!(
        validate_code(base, &key, "pc-1").await,
        "VALID",
        "past the first expiry, within the extended one"
    );
    let (status, body) = checkout(base, &key, "pc-2").await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "SEATS_EXHAUSTED");
    server.stop().await;
}

#[tokio::test]
async fn checkin_frees_seat() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = start_clocked(dir.path(), |_| {}).await;
    let base = server.url.as_str();
    let key = floating_license(base, 1).await;

    let (status, body) = checkout(base, &key, "pc-1").await;
    assert_eq!(status, 200, "{body}");
    let lease = lease_id(&body);

    let (status, body) = checkin(base, &key, &lease).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], "CHECKED_IN");
    assert_eq!(body["license"]["seats_used"], 0);
    assert_eq!(validate_code(base, &key, "pc-1").await, "NOT_ACTIVATED");

    let (status, body) = checkout(base, &key, "pc-2").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = checkin(base, &key, &lease).await;
    assert_eq!(status, 404, "second checkin: {body}");
    assert_eq!(body["code"], "LEASE_NOT_FOUND");
    server.stop().await;
}

#[tokio::test]
async fn admin_release_ends_lease() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = start_clocked(dir.path(), |_| {}).await;
    let base = server.url.as_str();
    let key = floating_license(base, 1).await;
    let (status, body) = checkout(base, &key, "hog").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = checkout(base, &key, "pc-2").await;
    assert_eq!(status, 409, "{body}");

    let path = format!("/v1/admin/licenses/{key}/activations/hog/release");
    let (status, body) = admin(base, Method::POST, &path, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["seats_used"], 0, "{body}");
    let (status, body) = checkout(base, &key, "pc-2").await;
    assert_eq!(status, 200, "the seat is free again: {body}");

    let (status, body) = admin(base, Method::POST, &path, None).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["code"], "LEASE_NOT_FOUND");
    server.stop().await;
}

#[tokio::test]
async fn lease_of_other_license_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = start_clocked(dir.path(), |_| {}).await;
    let base = server.url.as_str();
    let first = floating_license(base, 1).await;
    let second = floating_license(base, 1).await;

    let (status, body) = checkout(base, &first, "pc-1").await;
    assert_eq!(status, 200, "{body}");
    let lease = lease_id(&body);

    let (status, body) = heartbeat(base, &second, &lease).await;
    assert_eq!(status, 404, "heartbeat: {body}");
    assert_eq!(body["code"], "LEASE_NOT_FOUND");
    let (status, body) = checkin(base, &second, &lease).await;
    assert_eq!(status, 404, "checkin: {body}");
    assert_eq!(body["code"], "LEASE_NOT_FOUND");
    assert_eq!(show_license(base, &first).await["seats_used"], 1);
    server.stop().await;
}

#[tokio::test]
async fn heartbeat_restores_unknown_lease() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = start_clocked(dir.path(), |_| {}).await;
    let base = server.url.as_str();
    let key = floating_license(base, 1).await;
    // A lease this server never issued, as after a failover to a site whose snapshot predates it.
    let lost = "0123456789abcdef0123456789abcdef";

    let (status, body) = heartbeat(base, &key, lost).await;
    assert_eq!(status, 404, "without a computer id: {body}");
    assert_eq!(body["code"], "LEASE_NOT_FOUND");

    let request = json!({"key": key, "lease_id": lost, "computer_id": "pc-1"});
    let (status, body) = client(base, "/v1/leases/heartbeat", request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], "RESTORED");
    assert_eq!(body["lease_id"], lost, "the lease keeps its id");
    assert_eq!(validate_code(base, &key, "pc-1").await, "VALID");

    let other = "fedcba9876543210fedcba9876543210";
    let request = json!({"key": key, "lease_id": other, "computer_id": "pc-2"});
    let (status, body) = client(base, "/v1/leases/heartbeat", request).await;
    assert_eq!(status, 409, "no seat is free: {body}");
    assert_eq!(body["code"], "SEATS_EXHAUSTED");
    server.stop().await;
}

#[tokio::test]
async fn heartbeat_after_expiry_restores_when_free() {
    let dir = tempfile::tempdir().unwrap();
    let (server, clock) = start_clocked(dir.path(), |_| {}).await;
    let base = server.url.as_str();
    let key = floating_license(base, 1).await;

    let (status, body) = checkout(base, &key, "pc-1").await;
    assert_eq!(status, 200, "{body}");
    let lease = lease_id(&body);
    clock.advance(TTL_SECONDS + 1);

    let (status, body) = heartbeat(base, &key, &lease).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], "RESTORED");
    assert_eq!(body["lease_id"], lease.as_str());
    assert_eq!(validate_code(base, &key, "pc-1").await, "VALID");

    clock.advance(TTL_SECONDS + 1);
    let (status, body) = checkout(base, &key, "pc-2").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = heartbeat(base, &key, &lease).await;
    assert_eq!(status, 404, "pc-2's checkout reclaimed the lease: {body}");
    assert_eq!(body["code"], "LEASE_NOT_FOUND");
    let request = json!({"key": key, "lease_id": lease, "computer_id": "pc-1"});
    let (status, body) = client(base, "/v1/leases/heartbeat", request).await;
    assert_eq!(status, 409, "the seat went to pc-2: {body}");
    assert_eq!(body["code"], "SEATS_EXHAUSTED");
    server.stop().await;
}

#[tokio::test]
async fn background_reclaim_deletes_expired() {
    let dir = tempfile::tempdir().unwrap();
    let (server, clock) = start_clocked(dir.path(), |_| {}).await;
    let base = server.url.as_str();
    let key = floating_license(base, 2).await;
    for computer in ["pc-1", "pc-2"] {
        let (status, body) = checkout(base, &key, computer).await;
        assert_eq!(status, 200, "{body}");
    }
    let state = server.state.clone();

    keyward::server::reclaim_expired_leases(&state).await;
    assert_eq!(
        show_license(base, &key).await["seats_used"],
        2,
        "live leases stay"
    );

    clock.advance(TTL_SECONDS + 1);
    keyward::server::reclaim_expired_leases(&state).await;
    assert_eq!(show_license(base, &key).await["seats_used"], 0);

    let before = state.db.state().await.unwrap().write_seq;
    keyward::server::reclaim_expired_leases(&state).await;
    let after = state.db.state().await.unwrap().write_seq;
    assert_eq!(
        before, after,
        "a reclaim with nothing to delete writes nothing"
    );
    server.stop().await;
}

#[tokio::test]
async fn floating_and_node_locked_stay_apart() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = start_clocked(dir.path(), |_| {}).await;
    let base = server.url.as_str();
    let floating = floating_license(base, 2).await;
    let node_locked = create_license(base, json!({"model": "permanent", "seats": 2})).await;

    let (status, body) = activate(base, &floating, "pc-1").await;
    assert_eq!(status, 409, "activating a floating license: {body}");
    assert_eq!(body["code"], "FLOATING_LICENSE");
    let (status, body) = checkout(base, &node_locked, "pc-1").await;
    assert_eq!(status, 409, "leasing a node-locked license: {body}");
    assert_eq!(body["code"], "NOT_FLOATING");
    let (status, body) = activate(base, &node_locked, "pc-1").await;
    assert_eq!(status, 200, "node-locked activation is unchanged: {body}");
    assert_eq!(body["license"]["floating"], false);

    let trial = json!({"product": "app", "model": "trial", "duration_days": 14, "floating": true});
    let (status, body) = admin(base, Method::POST, "/v1/admin/licenses", Some(trial)).await;
    assert_eq!(status, 422, "a floating trial: {body}");
    assert_eq!(body["code"], "INVALID_INPUT");
    server.stop().await;
}

#[tokio::test]
async fn lease_ttl_comes_from_config() {
    let dir = tempfile::tempdir().unwrap();
    let (server, clock) = start_clocked(dir.path(), |config| {
        config.leases.ttl = "2m".into();
    })
    .await;
    let base = server.url.as_str();
    let key = floating_license(base, 1).await;

    let (status, body) = checkout(base, &key, "pc-1").await;
    assert_eq!(status, 200, "{body}");
    let lifetime = time_of(&body["expires_at"]) - time_of(&body["server_time"]);
    assert!(
        (lifetime.num_seconds() - 120).abs() <= 1,
        "lease lasts {lifetime}"
    );
    clock.advance(121);
    assert_eq!(validate_code(base, &key, "pc-1").await, "NOT_ACTIVATED");
    server.stop().await;
}
