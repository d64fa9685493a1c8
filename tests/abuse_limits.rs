//! Abuse limits: activations per computer and day, releases per license, the per-address rate
//! limit on client endpoints, and blocked computers.

mod common;
mod helpers;
mod raw_http;

use common::{admin, client};
use helpers::{
    activate, admin_post, checkout, create_license, floating_license, release, start_clocked,
    validate, validate_code,
};
use reqwest::Method;
use serde_json::json;

const DAY_SECONDS: i64 = 24 * 60 * 60;

fn retry_after_seconds(response: &raw_http::RawResponse) -> u64 {
    let header = response
        .headers
        .get("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After header: {}", response.text()));
    header
        .to_str()
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| panic!("Retry-After {header:?} is not whole seconds"))
}

#[tokio::test]
async fn activation_limit_per_computer() {
    let dir = tempfile::tempdir().unwrap();
    let (server, clock) = start_clocked(dir.path(), |config| {
        config.limits.activations_per_computer_per_day = 3;
    })
    .await;
    let base = server.url.as_str();
    let mut keys = Vec::new();
    for _ in 0..4 {
        keys.push(create_license(base, json!({"model": "permanent"})).await);
    }

    for (index, key) in keys[..3].iter().enumerate() {
        let (status, body) = activate(base, key, "pc-1").await;
        assert_eq!(status, 200, "activation {index}: {body}");
    }
    let (status, body) = activate(base, &keys[3], "pc-1").await;
    assert_eq!(status, 429, "fourth activation in a day: {body}");
    assert_eq!(body["code"], "ACTIVATION_LIMIT");

    let (status, body) = activate(base, &keys[0], "pc-1").await;
    assert_eq!(status, 200, "re-activation uses no activation: {body}");
    assert_eq!(body["result"], "ALREADY_ACTIVATED");
    let (status, body) = activate(base, &keys[3], "pc-2").await;
    assert_eq!(status, 200, "another computer: {body}");

    clock.advance(DAY_SECONDS + 1);
    let (status, body) = release(base, &keys[3], "pc-2").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = activate(base, &keys[3], "pc-1").await;
    assert_eq!(status, 200, "a day later: {body}");
    server.stop().await;
}

#[tokio::test]
async fn released_activations_still_count() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = start_clocked(dir.path(), |config| {
        config.limits.activations_per_computer_per_day = 2;
    })
    .await;
    let base = server.url.as_str();
    let key = create_license(base, json!({"model": "permanent", "seats": 1})).await;

    for round in 0..2 {
        let (status, body) = activate(base, &key, "pc-1").await;
        assert_eq!(status, 200, "activation {round}: {body}");
        let (status, body) = release(base, &key, "pc-1").await;
        assert_eq!(status, 200, "release {round}: {body}");
    }
    let (status, body) = activate(base, &key, "pc-1").await;
    assert_eq!(status, 429, "activate-release loop: {body}");
    assert_eq!(body["code"], "ACTIVATION_LIMIT");
    server.stop().await;
}

#[tokio::test]
async fn release_limit_per_license() {
    let dir = tempfile::tempdir().unwrap();
    let (server, clock) = start_clocked(dir.path(), |config| {
        config.limits.releases_per_seat = 2;
        config.limits.release_period = "30d".into();
    })
    .await;
    let base = server.url.as_str();
    let key = create_license(base, json!({"model": "permanent", "seats": 1})).await;

    for round in 0..2 {
        let computer = format!("pc-{round}");
        let (status, body) = activate(base, &key, &computer).await;
        assert_eq!(status, 200, "activation {round}: {body}");
        let (status, body) = release(base, &key, &computer).await;
        assert_eq!(status, 200, "release {round}: {body}");
    }
    let (status, body) = activate(base, &key, "pc-2").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = release(base, &key, "pc-2").await;
    assert_eq!(status, 429, "third release in the period: {body}");
    assert_eq!(body["code"], "RELEASE_LIMIT");
    assert_eq!(
        validate_code(base, &key, "pc-2").await,
        "VALID",
        "the rejected release left the activation"
    );

    let path = format!("/v1/admin/licenses/{key}/activations/pc-2/release");
    let (status, body) = admin_post(base, &path, None).await;
    assert_eq!(status, 200, "an admin release is not limited: {body}");

    let (status, body) = activate(base, &key, "pc-3").await;
    assert_eq!(status, 200, "{body}");
    clock.advance(30 * DAY_SECONDS + 1);
    let (status, body) = release(base, &key, "pc-3").await;
    assert_eq!(status, 200, "after the period: {body}");
    server.stop().await;
}

#[tokio::test]
async fn release_limit_scales_with_seats() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = start_clocked(dir.path(), |config| {
        config.limits.releases_per_seat = 1;
    })
    .await;
    let base = server.url.as_str();
    let key = create_license(base, json!({"model": "permanent", "seats": 3})).await;

    for round in 0..3 {
        let computer = format!("pc-{round}");
        let (status, body) = activate(base, &key, &computer).await;
        assert_eq!(status, 200, "activation {round}: {body}");
        let (status, body) = release(base, &key, &computer).await;
        assert_eq!(status, 200, "release {round}: {body}");
    }
    let (status, body) = activate(base, &key, "pc-3").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = release(base, &key, "pc-3").await;
    assert_eq!(status, 429, "fourth release on three seats: {body}");
    assert_eq!(body["code"], "RELEASE_LIMIT");
    server.stop().await;
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let (server, clock) = start_clocked(dir.path(), |config| {
        // One token a minute, so that no token refills while the test runs.
        config.limits.requests_per_minute = 1;
        config.limits.request_burst = 3;
    })
    .await;
    let base = server.url.as_str();
    let key = create_license(base, json!({"model": "permanent"})).await;
    let trusted = raw_http::trusted_keys(base).await;
    let request = json!({"key": key, "computer_id": "pc-1", "nonce": "n"});

    // The key fetch above took the first token of the burst.
    for attempt in 0..2 {
        let response = raw_http::post_json(base, "/v1/validate", &request).await;
        assert_eq!(
            response.status,
            200,
            "attempt {attempt}: {}",
            response.text()
        );
    }
    let response = raw_http::post_json(base, "/v1/validate", &request).await;
    assert_eq!(response.status, 429, "{}", response.text());
    assert_eq!(response.json()["code"], "RATE_LIMITED");
    let retry_after = retry_after_seconds(&response);
    assert!(
        (55..=60).contains(&retry_after),
        "Retry-After {retry_after} s, expected about 60 s at one token a minute"
    );
    assert_eq!(
        trusted.verify_header(response.signature(), &response.body),
        Ok(()),
        "the 429 is signed"
    );
    let (status, body) = client(base, "/v1/activate", request.clone()).await;
    assert_eq!(
        status, 429,
        "every client endpoint shares the bucket: {body}"
    );

    let (status, body) = admin(base, Method::GET, "/v1/admin/licenses", None).await;
    assert_eq!(status, 200, "admin endpoints are not limited: {body}");

    clock.advance(retry_after as i64);
    let response = raw_http::post_json(base, "/v1/validate", &request).await;
    assert_eq!(
        response.status,
        200,
        "a token refilled: {}",
        response.text()
    );
    server.stop().await;
}

#[tokio::test]
async fn retry_after_follows_rate() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = start_clocked(dir.path(), |config| {
        config.limits.requests_per_minute = 2;
        config.limits.request_burst = 1;
    })
    .await;
    let base = server.url.as_str();
    let request = json!({"key": "0000", "computer_id": "pc-1"});

    let response = raw_http::post_json(base, "/v1/validate", &request).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let response = raw_http::post_json(base, "/v1/validate", &request).await;
    assert_eq!(response.status, 429, "{}", response.text());
    let retry_after = retry_after_seconds(&response);
    assert!(
        (25..=30).contains(&retry_after),
        "Retry-After {retry_after} s, expected about 30 s at two tokens a minute"
    );
    server.stop().await;
}

/// Posts `body` to a client endpoint with an `X-Forwarded-For` header and returns the status.
async fn post_forwarded(
    base: &str,
    path: &str,
    forwarded_for: &str,
    body: &serde_json::Value,
) -> u16 {
    common::http()
        .post(format!("{base}{path}"))
        .header("x-forwarded-for", forwarded_for)
        .json(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn trusted_proxy_names_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = start_clocked(dir.path(), |config| {
        config.limits.requests_per_minute = 1;
        config.limits.request_burst = 1;
        config.limits.trusted_proxies = vec!["127.0.0.0/8".into()];
    })
    .await;
    let base = server.url.as_str();
    let key = create_license(base, json!({"model": "permanent"})).await;
    let request = json!({"key": key, "computer_id": "pc-1"});

    // Each forwarded client has its own bucket of one request.
    assert_eq!(
        post_forwarded(base, "/v1/validate", "203.0.113.1", &request).await,
        200
    );
    assert_eq!(
        post_forwarded(base, "/v1/validate", "203.0.113.1", &request).await,
        429
    );
    assert_eq!(
        post_forwarded(base, "/v1/validate", "203.0.113.2", &request).await,
        200
    );
    // An address that the client wrote left of the proxy's entry does not pick the bucket.
    let spoofed = "198.51.100.1, 203.0.113.2";
    assert_eq!(
        post_forwarded(base, "/v1/validate", spoofed, &request).await,
        429
    );

    // The activation record stores the forwarded address.
    assert_eq!(
        post_forwarded(base, "/v1/activate", "203.0.113.3", &request).await,
        200
    );
    let path = format!("/v1/admin/licenses/{key}/activations");
    let (_, activations) = admin(base, Method::GET, &path, None).await;
    assert_eq!(activations[0]["client_addr"], "203.0.113.3");
    server.stop().await;
}

#[tokio::test]
async fn forwarded_header_ignored_without_trust() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = start_clocked(dir.path(), |config| {
        config.limits.requests_per_minute = 1;
        config.limits.request_burst = 1;
    })
    .await;
    let base = server.url.as_str();
    let request = json!({"key": "0000", "computer_id": "pc-1"});

    assert_eq!(
        post_forwarded(base, "/v1/validate", "203.0.113.1", &request).await,
        200
    );
    // The header is not read, so both requests come from 127.0.0.1 and share one bucket.
    assert_eq!(
        post_forwarded(base, "/v1/validate", "203.0.113.2", &request).await,
        429
    );
    server.stop().await;
}

#[test]
fn trusted_proxies_checked_at_load() {
    let show = |value: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_keyward"))
            .args(["config", "show"])
            .env("KEYWARD_LIMITS_TRUSTED_PROXIES", value)
            .output()
            .unwrap()
    };

    // The environment gives the list separated by commas.
    let output = show("127.0.0.1, 10.0.0.0/8");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(stdout.contains("\"127.0.0.1\""), "{stdout}");
    assert!(stdout.contains("\"10.0.0.0/8\""), "{stdout}");

    let output = show("127.0.0.1, proxy.local");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("\"proxy.local\""), "{stderr}");
    assert!(stderr.contains("limits.trusted_proxies"), "{stderr}");
    assert!(stderr.contains("CIDR block"), "{stderr}");
}

#[tokio::test]
async fn blocked_computer_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = start_clocked(dir.path(), |_| {}).await;
    let base = server.url.as_str();
    let key = create_license(base, json!({"model": "permanent", "seats": 3})).await;
    let floating = floating_license(base, 1).await;
    let (status, body) = activate(base, &key, "pc-1").await;
    assert_eq!(status, 200, "{body}");

    let block = json!({"computer_id": "pc-1", "reason": "chargeback"});
    let (status, body) = admin_post(base, "/v1/admin/blocked-computers", Some(block)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["computer_id"], "pc-1");
    assert_eq!(body["reason"], "chargeback");

    let (status, body) = activate(base, &key, "pc-1").await;
    assert_eq!(status, 403, "activate: {body}");
    assert_eq!(body["code"], "COMPUTER_BLOCKED");
    let validation = validate(base, &key, "pc-1").await;
    assert_eq!(validation["code"], "COMPUTER_BLOCKED");
    assert_eq!(validation["valid"], false);
    let (status, body) = checkout(base, &floating, "pc-1").await;
    assert_eq!(status, 403, "checkout: {body}");
    assert_eq!(body["code"], "COMPUTER_BLOCKED");
    let request = json!({"key": key, "computer_id": "pc-1"});
    let (status, body) = client(base, "/v1/license-file", request).await;
    assert_eq!(status, 403, "license file: {body}");
    assert_eq!(body["code"], "COMPUTER_BLOCKED");
    assert_eq!(
        validate_code(base, &key, "pc-2").await,
        "NOT_ACTIVATED",
        "other computers are unaffected"
    );

    let (status, list) = admin(base, Method::GET, "/v1/admin/blocked-computers", None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["computer_id"], "pc-1");

    let path = "/v1/admin/blocked-computers/pc-1";
    let (status, body) = admin(base, Method::DELETE, path, None).await;
    assert_eq!(status, 204, "unblock: {body}");
    assert_eq!(
        validate_code(base, &key, "pc-1").await,
        "VALID",
        "unblocking restores the activation"
    );
    let (status, body) = admin(base, Method::DELETE, path, None).await;
    assert_eq!(status, 404, "unblock again: {body}");
    assert_eq!(body["code"], "COMPUTER_NOT_BLOCKED");
    server.stop().await;
}
