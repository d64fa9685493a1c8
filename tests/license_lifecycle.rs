//! The life of a license key over HTTP: activation, validation, release, seat limits, status
//! changes, expiry and renewal, against a real server on a loopback port.

mod common;

use std::sync::Arc;

use chrono::{Duration, Utc};
use common::{InProcess, admin, client, seed_license, test_config};
use keyward::time::{Clock, OffsetClock};
use reqwest::Method;
use serde_json::{Value, json};

const DAY_SECONDS: i64 = 24 * 60 * 60;

async fn activate(base: &str, key: &str, computer_id: &str) -> (u16, Value) {
    client(
        base,
        "/v1/activate",
        json!({"key": key, "computer_id": computer_id}),
    )
    .await
}

async fn release(base: &str, key: &str, computer_id: &str) -> (u16, Value) {
    client(
        base,
        "/v1/release",
        json!({"key": key, "computer_id": computer_id}),
    )
    .await
}

/// Validates and returns the body, asserting the 200 status that every validation gets.
async fn validate(base: &str, request: Value) -> Value {
    let (status, body) = client(base, "/v1/validate", request).await;
    assert_eq!(status, 200, "validate: {body}");
    body
}

async fn validate_code(base: &str, key: &str, computer_id: &str) -> String {
    let body = validate(base, json!({"key": key, "computer_id": computer_id})).await;
    body["code"].as_str().expect("code is a string").to_string()
}

async fn show_license(base: &str, key: &str) -> Value {
    let (status, body) = admin(
        base,
        Method::GET,
        &format!("/v1/admin/licenses/{key}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "show license: {body}");
    body
}

async fn post_admin(base: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    admin(base, Method::POST, path, body).await
}

async fn patch_license(base: &str, key: &str, patch: Value) -> Value {
    let path = format!("/v1/admin/licenses/{key}");
    let (status, body) = admin(base, Method::PATCH, &path, Some(patch)).await;
    assert_eq!(status, 200, "PATCH {path}: {body}");
    body
}

/// Creates a license for product `app` (made by `seed_license`) from the given fields.
async fn create_license(base: &str, fields: Value) -> String {
    let (status, body) = post_admin(base, "/v1/admin/licenses", Some(fields)).await;
    assert_eq!(status, 201, "create license: {body}");
    body["key"].as_str().expect("key").to_string()
}

#[tokio::test]
async fn key_moves_between_computers() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let base = server.url.as_str();
    let key = seed_license(base, 1).await;

    let (status, body) = activate(base, &key, "pc-1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], "ACTIVATED");
    assert_eq!(body["license"]["seats_used"], 1);
    assert_eq!(body["license"]["key"], key.as_str());
    assert_eq!(validate_code(base, &key, "pc-1").await, "VALID");

    let (status, body) = release(base, &key, "pc-1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], "RELEASED");
    assert_eq!(body["license"]["seats_used"], 0);
    assert_eq!(validate_code(base, &key, "pc-1").await, "NOT_ACTIVATED");

    let (status, body) = activate(base, &key, "pc-2").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], "ACTIVATED");
    assert_eq!(body["license"]["seats_used"], 1);
    assert_eq!(validate_code(base, &key, "pc-2").await, "VALID");
    assert_eq!(validate_code(base, &key, "pc-1").await, "NOT_ACTIVATED");
    server.stop().await;
}

#[tokio::test]
async fn reactivation_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let base = server.url.as_str();
    let key = seed_license(base, 3).await;

    let (status, first) = activate(base, &key, "pc-1").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["result"], "ACTIVATED");
    let (status, second) = activate(base, &key, "pc-1").await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["result"], "ALREADY_ACTIVATED");
    assert_eq!(second["license"]["seats_used"], 1);
    assert!(
        second["computer_key"]
            .as_str()
            .is_some_and(|token| !token.is_empty()),
        "a repeated activation still returns a computer key: {second}"
    );

    assert_eq!(show_license(base, &key).await["seats_used"], 1);
    let activations = admin(
        base,
        Method::GET,
        &format!("/v1/admin/licenses/{key}/activations"),
        None,
    )
    .await
    .1;
    assert_eq!(
        activations.as_array().map(Vec::len),
        Some(1),
        "{activations}"
    );
    server.stop().await;
}

#[tokio::test]
async fn exhausted_seats_return_409() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let base = server.url.as_str();
    let key = seed_license(base, 2).await;
    assert_eq!(activate(base, &key, "pc-1").await.0, 200);
    assert_eq!(activate(base, &key, "pc-2").await.0, 200);

    let (status, body) = activate(base, &key, "pc-3").await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "SEATS_EXHAUSTED");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(show_license(base, &key).await["seats_used"], 2);
    assert_eq!(validate_code(base, &key, "pc-3").await, "NOT_ACTIVATED");

    let (status, body) = release(base, &key, "pc-1").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = activate(base, &key, "pc-3").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], "ACTIVATED");
    assert_eq!(body["license"]["seats_used"], 2);
    assert_eq!(validate_code(base, &key, "pc-3").await, "VALID");
    assert_eq!(validate_code(base, &key, "pc-1").await, "NOT_ACTIVATED");
    server.stop().await;
}

#[tokio::test]
async fn release_of_inactive_computer_fails() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let base = server.url.as_str();
    let key = seed_license(base, 1).await;
    assert_eq!(activate(base, &key, "pc-1").await.0, 200);

    let (status, body) = release(base, &key, "pc-2").await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "NOT_ACTIVATED");
    assert_eq!(show_license(base, &key).await["seats_used"], 1);

    assert_eq!(release(base, &key, "pc-1").await.0, 200);
    let (status, body) = release(base, &key, "pc-1").await;
    assert_eq!(status, 409, "a second release of the same computer: {body}");
    assert_eq!(body["code"], "NOT_ACTIVATED");
    server.stop().await;
}

#[tokio::test]
async fn suspend_and_reinstate() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let base = server.url.as_str();
    let key = seed_license(base, 2).await;
    assert_eq!(activate(base, &key, "pc-1").await.0, 200);
    assert_eq!(validate_code(base, &key, "pc-1").await, "VALID");

    let (status, body) = post_admin(base, &format!("/v1/admin/licenses/{key}/suspend"), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "suspended");
    let validation = validate(base, json!({"key": key, "computer_id": "pc-1"})).await;
    assert_eq!(validation["code"], "SUSPENDED");
    assert_eq!(validation["valid"], false);
    let (status, body) = activate(base, &key, "pc-2").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "SUSPENDED");

    let path = format!("/v1/admin/licenses/{key}/reinstate");
    let (status, body) = post_admin(base, &path, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "active");
    assert_eq!(validate_code(base, &key, "pc-1").await, "VALID");
    assert_eq!(activate(base, &key, "pc-2").await.0, 200);
    server.stop().await;
}

#[tokio::test]
async fn revoked_license_stays_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let base = server.url.as_str();
    let key = seed_license(base, 2).await;
    assert_eq!(activate(base, &key, "pc-1").await.0, 200);

    let (status, body) = post_admin(base, &format!("/v1/admin/licenses/{key}/revoke"), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "revoked");
    assert_eq!(validate_code(base, &key, "pc-1").await, "REVOKED");
    let (status, body) = activate(base, &key, "pc-2").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "REVOKED");

    for action in ["reinstate", "suspend"] {
        let path = format!("/v1/admin/licenses/{key}/{action}");
        let (status, body) = post_admin(base, &path, None).await;
        assert_eq!(status, 403, "{action} after revoke: {body}");
        assert_eq!(body["code"], "REVOKED", "{action} after revoke");
    }
    assert_eq!(show_license(base, &key).await["status"], "revoked");
    assert_eq!(validate_code(base, &key, "pc-1").await, "REVOKED");
    server.stop().await;
}

#[tokio::test]
async fn past_expiry_expires_license() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let base = server.url.as_str();
    let key = seed_license(base, 2).await;
    assert_eq!(activate(base, &key, "pc-1").await.0, 200);

    let patched = patch_license(base, &key, json!({"expires_at": "2020-01-31"})).await;
    assert_eq!(patched["expires_at"], "2020-01-31T23:59:59Z");
    assert_eq!(patched["effective_expires_at"], "2020-01-31T23:59:59Z");

    let validation = validate(base, json!({"key": key, "computer_id": "pc-1"})).await;
    assert_eq!(validation["code"], "EXPIRED");
    assert_eq!(validation["valid"], false);
    assert_eq!(validation["license"]["expires_at"], "2020-01-31T23:59:59Z");
    let (status, body) = activate(base, &key, "pc-2").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "EXPIRED");
    let (status, body) = activate(base, &key, "pc-1").await;
    assert_eq!(status, 403, "re-activating an expired license: {body}");
    assert_eq!(body["code"], "EXPIRED");
    server.stop().await;
}

#[tokio::test]
async fn renew_makes_license_valid_again() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let base = server.url.as_str();
    let key = seed_license(base, 1).await;
    assert_eq!(activate(base, &key, "pc-1").await.0, 200);
    patch_license(base, &key, json!({"expires_at": "2020-01-31T00:00:00Z"})).await;
    assert_eq!(validate_code(base, &key, "pc-1").await, "EXPIRED");

    let renewed_until = keyward::time::format(Utc::now() + Duration::days(365));
    let path = format!("/v1/admin/licenses/{key}/renew");
    let (status, body) = post_admin(base, &path, Some(json!({"expires_at": renewed_until}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expires_at"], renewed_until.as_str());
    assert_eq!(body["effective_expires_at"], renewed_until.as_str());

    let validation = validate(base, json!({"key": key, "computer_id": "pc-1"})).await;
    assert_eq!(validation["code"], "VALID");
    assert_eq!(validation["license"]["expires_at"], renewed_until.as_str());
    server.stop().await;
}

#[tokio::test]
async fn renew_without_dates_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let base = server.url.as_str();
    let key = seed_license(base, 1).await;

    let path = format!("/v1/admin/licenses/{key}/renew");
    let (status, body) = post_admin(base, &path, Some(json!({}))).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["code"], "INVALID_INPUT");
    assert_eq!(show_license(base, &key).await["expires_at"], Value::Null);
    server.stop().await;
}

#[tokio::test]
async fn fixed_date_before_duration_wins() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(OffsetClock::default());
    let server = InProcess::start_with_clock(test_config(dir.path()), clock.clone()).await;
    let base = server.url.as_str();
    seed_license(base, 1).await;
    let fixed = keyward::time::format(Utc::now() + Duration::days(10));
    let key = create_license(
        base,
        json!({"product": "app", "model": "subscription", "duration_days": 30, "expires_at": fixed}),
    )
    .await;

    let (status, body) = activate(base, &key, "pc-1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["license"]["expires_at"], fixed.as_str());
    assert_eq!(
        show_license(base, &key).await["effective_expires_at"],
        fixed.as_str()
    );
    assert_eq!(validate_code(base, &key, "pc-1").await, "VALID");

    clock.advance(11 * DAY_SECONDS);
    assert_eq!(validate_code(base, &key, "pc-1").await, "EXPIRED");
    server.stop().await;
}

#[tokio::test]
async fn duration_before_fixed_date_wins() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(OffsetClock::default());
    let server = InProcess::start_with_clock(test_config(dir.path()), clock.clone()).await;
    let base = server.url.as_str();
    seed_license(base, 1).await;
    let fixed = keyward::time::format(Utc::now() + Duration::days(30));
    let key = create_license(
        base,
        json!({"product": "app", "model": "trial", "duration_days": 10, "expires_at": fixed}),
    )
    .await;
    let before = show_license(base, &key).await;
    assert_eq!(
        before["effective_expires_at"],
        fixed.as_str(),
        "before the first activation only the fixed date applies"
    );

    let (status, body) = activate(base, &key, "pc-1").await;
    assert_eq!(status, 200, "{body}");
    let license = show_license(base, &key).await;
    let first = license["first_activated_at"]
        .as_str()
        .expect("first activation time");
    let counted = keyward::time::parse(first).unwrap() + Duration::days(10);
    assert_eq!(
        license["effective_expires_at"],
        keyward::time::format(counted).as_str()
    );
    assert_eq!(
        body["license"]["expires_at"],
        license["effective_expires_at"]
    );
    assert_eq!(validate_code(base, &key, "pc-1").await, "VALID");

    clock.advance(11 * DAY_SECONDS);
    assert_eq!(validate_code(base, &key, "pc-1").await, "EXPIRED");
    let (status, body) = release(base, &key, "pc-1").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = activate(base, &key, "pc-2").await;
    assert_eq!(
        status, 403,
        "a new computer after the counted expiry: {body}"
    );
    assert_eq!(body["code"], "EXPIRED");
    server.stop().await;
}

#[tokio::test]
async fn maintenance_expiry_does_not_invalidate() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let base = server.url.as_str();
    seed_license(base, 1).await;
    let key = create_license(
        base,
        json!({"product": "app", "model": "permanent", "maintenance_expires_at": "2020-06-30"}),
    )
    .await;

    let (status, body) = activate(base, &key, "pc-1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["license"]["maintenance_expires_at"],
        "2020-06-30T23:59:59Z"
    );
    let validation = validate(base, json!({"key": key, "computer_id": "pc-1"})).await;
    assert_eq!(validation["code"], "VALID");
    assert_eq!(validation["valid"], true);
    assert_eq!(
        validation["license"]["maintenance_expires_at"],
        "2020-06-30T23:59:59Z"
    );
    assert_eq!(validation["license"]["expires_at"], Value::Null);
    server.stop().await;
}

#[tokio::test]
async fn validate_for_other_product_mismatches() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let base = server.url.as_str();
    let key = seed_license(base, 1).await;
    let other = json!({"code": "other", "name": "Other"});
    assert_eq!(
        post_admin(base, "/v1/admin/products", Some(other)).await.0,
        201
    );
    assert_eq!(activate(base, &key, "pc-1").await.0, 200);

    let request = json!({"key": key, "computer_id": "pc-1", "product": "other"});
    let validation = validate(base, request).await;
    assert_eq!(validation["code"], "PRODUCT_MISMATCH");
    assert_eq!(validation["valid"], false);
    let request = json!({"key": key, "computer_id": "pc-1", "product": "app"});
    assert_eq!(validate(base, request).await["code"], "VALID");
    server.stop().await;
}

#[tokio::test]
async fn computer_key_of_other_computer_mismatches() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let base = server.url.as_str();
    let key = seed_license(base, 2).await;
    let (_, first) = activate(base, &key, "pc-1").await;
    let (_, second) = activate(base, &key, "pc-2").await;
    let own_key = first["computer_key"].as_str().expect("computer key");
    let other_key = second["computer_key"].as_str().expect("computer key");

    let request = json!({"key": key, "computer_id": "pc-1", "computer_key": other_key});
    let validation = validate(base, request).await;
    assert_eq!(validation["code"], "COMPUTER_MISMATCH");
    assert_eq!(validation["valid"], false);

    let request = json!({"key": key, "computer_id": "pc-1", "computer_key": own_key});
    assert_eq!(validate(base, request).await["code"], "VALID");

    let request = json!({"key": key, "computer_id": "pc-1", "computer_key": "kw1.forged.token"});
    let validation = validate(base, request).await;
    assert_eq!(
        validation["code"], "COMPUTER_MISMATCH",
        "forged computer key"
    );
    server.stop().await;
}

#[tokio::test]
async fn computer_key_of_other_license_mismatches() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let base = server.url.as_str();
    let key = seed_license(base, 1).await;
    let other_key = seed_license(base, 1).await;
    assert_eq!(activate(base, &key, "pc-1").await.0, 200);
    let (_, other) = activate(base, &other_key, "pc-1").await;
    let foreign_token = other["computer_key"].as_str().expect("computer key");

    let request = json!({"key": key, "computer_id": "pc-1", "computer_key": foreign_token});
    assert_eq!(validate(base, request).await["code"], "COMPUTER_MISMATCH");
    server.stop().await;
}

/// Each case fails several checks at once, and the response names only the first in the order
/// that validation checks them: REVOKED, SUSPENDED, EXPIRED, PRODUCT_MISMATCH, NOT_ACTIVATED,
/// COMPUTER_MISMATCH.
#[tokio::test]
async fn validation_returns_one_code() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let base = server.url.as_str();
    let other = json!({"code": "other", "name": "Other"});
    seed_license(base, 1).await;
    assert_eq!(
        post_admin(base, "/v1/admin/products", Some(other)).await.0,
        201
    );
    let past = json!({"product": "app", "model": "subscription", "expires_at": "2020-01-01"});

    let revoked = create_license(base, past.clone()).await;
    post_admin(base, &format!("/v1/admin/licenses/{revoked}/revoke"), None).await;
    let suspended = create_license(base, past.clone()).await;
    post_admin(
        base,
        &format!("/v1/admin/licenses/{suspended}/suspend"),
        None,
    )
    .await;
    let expired = create_license(base, past).await;
    let current = seed_license(base, 1).await;
    let (_, activation) = activate(base, &current, "pc-1").await;
    let token = activation["computer_key"].as_str().unwrap().to_string();

    let cases = [
        (&revoked, "pc-9", Some("other"), "REVOKED"),
        (&suspended, "pc-9", Some("other"), "SUSPENDED"),
        (&expired, "pc-9", Some("other"), "EXPIRED"),
        (&current, "pc-9", Some("other"), "PRODUCT_MISMATCH"),
        (&current, "pc-9", None, "NOT_ACTIVATED"),
        (&current, "pc-1", None, "VALID"),
    ];
    for (key, computer_id, product, expected) in cases {
        let request = json!({
            "key": key,
            "computer_id": computer_id,
            "product": product,
            "computer_key": token,
        });
        let body = validate(base, request).await;
        assert_eq!(body["code"], expected, "{body}");
        assert_eq!(
            body["valid"],
            expected == "VALID",
            "valid flag for {expected}"
        );
        let mut fields: Vec<&String> = body.as_object().unwrap().keys().collect();
        fields.sort();
        assert_eq!(
            fields,
            [
                "code",
                "computer_id",
                "license",
                "nonce",
                "server_time",
                "valid"
            ],
            "one code field and nothing else that could carry a second one"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn renew_revives_duration_limited_trial() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(OffsetClock::default());
    let server = InProcess::start_with_clock(test_config(dir.path()), clock.clone()).await;
    let base = server.url.as_str();
    seed_license(base, 1).await;
    let key = create_license(
        base,
        json!({"product": "app", "model": "trial", "duration_days": 14}),
    )
    .await;
    let (status, body) = activate(base, &key, "pc-1").await;
    assert_eq!(status, 200, "{body}");

    clock.advance(15 * DAY_SECONDS);
    assert_eq!(validate_code(base, &key, "pc-1").await, "EXPIRED");

    // The customer buys: renewing to a fixed date replaces the trial's 14-day limit.
    let until = keyward::time::format(clock.now() + Duration::days(365));
    let path = format!("/v1/admin/licenses/{key}/renew");
    let (status, body) = post_admin(base, &path, Some(json!({"expires_at": until}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["duration_days"], Value::Null);
    assert_eq!(body["effective_expires_at"], until.as_str());
    assert_eq!(validate_code(base, &key, "pc-1").await, "VALID");

    let (_, activations) = admin(
        base,
        Method::GET,
        &format!("/v1/admin/licenses/{key}/activations"),
        None,
    )
    .await;
    assert_eq!(
        activations[0]["client_addr"], "127.0.0.1",
        "the bare client address is stored"
    );
    server.stop().await;
}
