//! Helpers shared by the tests of leases, trials, offline files, key rotation and limits: a
//! server with an adjustable clock, license creation and the client calls.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use keyward::config::Config;
use keyward::time::OffsetClock;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{InProcess, admin, client, test_config};

/// Starts a server on `data_dir` whose clock the test moves with the returned handle. `adjust`
/// changes the test config before the start.
pub async fn start_clocked(
    data_dir: &Path,
    adjust: impl FnOnce(&mut Config),
) -> (InProcess, Arc<OffsetClock>) {
    let mut config = test_config(data_dir);
    adjust(&mut config);
    let clock = Arc::new(OffsetClock::default());
    let server = InProcess::start_with_clock(config, clock.clone()).await;
    (server, clock)
}

/// Creates product `code` with features `pro` and `export` unless it exists.
pub async fn ensure_product(base: &str, code: &str) {
    let product = json!({"code": code, "name": code, "features": ["pro", "export"]});
    let (status, body) = admin(base, Method::POST, "/v1/admin/products", Some(product)).await;
    assert!(
        status == 201 || status == 409,
        "creating product {code}: {status} {body}"
    );
}

/// Creates a license from `fields` (product `app` unless given) and returns its key.
pub async fn create_license(base: &str, mut fields: Value) -> String {
    if fields.get("product").is_none() {
        fields["product"] = json!("app");
    }
    let product = fields["product"].as_str().unwrap().to_string();
    ensure_product(base, &product).await;
    let (status, body) = admin(base, Method::POST, "/v1/admin/licenses", Some(fields)).await;
    assert_eq!(status, 201, "creating license: {body}");
    body["key"].as_str().expect("key").to_string()
}

/// Creates a floating license of product `app` with `seats` concurrent leases.
pub async fn floating_license(base: &str, seats: i64) -> String {
    create_license(
        base,
        json!({"model": "permanent", "seats": seats, "floating": true}),
    )
    .await
}

pub async fn activate(base: &str, key: &str, computer_id: &str) -> (u16, Value) {
    client(
        base,
        "/v1/activate",
        json!({"key": key, "computer_id": computer_id}),
    )
    .await
}

pub async fn release(base: &str, key: &str, computer_id: &str) -> (u16, Value) {
    client(
        base,
        "/v1/release",
        json!({"key": key, "computer_id": computer_id}),
    )
    .await
}

/// Validates and returns the body, asserting the 200 status that every validation gets.
pub async fn validate(base: &str, key: &str, computer_id: &str) -> Value {
    let request = json!({"key": key, "computer_id": computer_id});
    let (status, body) = client(base, "/v1/validate", request).await;
    assert_eq!(status, 200, "validate: {body}");
    body
}

pub async fn validate_code(base: &str, key: &str, computer_id: &str) -> String {
    let body = validate(base, key, computer_id).await;
    body["code"].as_str().expect("code is a string").to_string()
}

pub async fn checkout(base: &str, key: &str, computer_id: &str) -> (u16, Value) {
    client(
        base,
        "/v1/leases/checkout",
        json!({"key": key, "computer_id": computer_id}),
    )
    .await
}

pub async fn heartbeat(base: &str, key: &str, lease_id: &str) -> (u16, Value) {
    client(
        base,
        "/v1/leases/heartbeat",
        json!({"key": key, "lease_id": lease_id}),
    )
    .await
}

pub async fn checkin(base: &str, key: &str, lease_id: &str) -> (u16, Value) {
    client(
        base,
        "/v1/leases/checkin",
        json!({"key": key, "lease_id": lease_id}),
    )
    .await
}

/// Shows a license through the admin API, asserting 200.
pub async fn show_license(base: &str, key: &str) -> Value {
    let path = format!("/v1/admin/licenses/{key}");
    let (status, body) = admin(base, Method::GET, &path, None).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// Sends an admin POST and returns status and body.
pub async fn admin_post(base: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    admin(base, Method::POST, path, body).await
}

/// Parses an RFC 3339 time from a JSON value, panicking with the value otherwise.
pub fn time_of(value: &Value) -> chrono::DateTime<chrono::Utc> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{value} is not a string"));
    keyward::time::parse(text).unwrap_or_else(|err| panic!("{text:?} is not RFC 3339: {err}"))
}
