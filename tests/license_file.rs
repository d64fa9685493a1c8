//! Signed license files: fetched for a live activation and verified offline with the published
//! keys; any change to the file breaks it.

mod common;
mod helpers;
mod raw_http;

use chrono::Duration;
use helpers::{activate, create_license, release, start_clocked};
use keyward::offline::{self, OfflineError};
use keyward::signing::{SignedDocument, VerifyError};
use keyward::time::Clock;
use raw_http::{RawResponse, post_json};
use serde_json::json;

async fn fetch(base: &str, key: &str, computer_id: &str) -> RawResponse {
    let request = json!({"key": key, "computer_id": computer_id, "nonce": "n-file"});
    post_json(base, "/v1/license-file", &request).await
}

#[tokio::test]
async fn license_file_verifies_offline() {
    let dir = tempfile::tempdir().unwrap();
    let (server, clock) = start_clocked(dir.path(), |_| {}).await;
    let base = server.url.as_str();
    let expires = keyward::time::format(clock.now() + Duration::days(30));
    let maintenance = keyward::time::format(clock.now() + Duration::days(10));
    let key = create_license(
        base,
        json!({
            "model": "subscription",
            "expires_at": expires,
            "maintenance_expires_at": maintenance,
            "features": ["pro"],
        }),
    )
    .await;
    let (status, body) = activate(base, &key, "pc-1").await;
    assert_eq!(status, 200, "{body}");
    let trusted = raw_http::trusted_keys(base).await;

    let response = fetch(base, &key, "pc-1").await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        response.headers["content-disposition"],
        "attachment; filename=\"license.json\""
    );
    assert_eq!(
        trusted.verify_header(response.signature(), &response.body),
        Ok(()),
        "the HTTP response is signed like every client response"
    );
    server.stop().await;

    let file = offline::verify_license_file(&response.body, &trusted, "pc-1")
        .expect("license file verifies");
    assert_eq!(file.kind, offline::LICENSE_FILE_TYPE);
    assert_eq!(file.key, key);
    assert_eq!(file.computer_id, "pc-1");
    assert_eq!(file.product, "app");
    assert_eq!(file.features, ["pro"]);
    assert_eq!(file.expires_at.as_deref(), Some(expires.as_str()));
    assert_eq!(
        file.maintenance_expires_at.as_deref(),
        Some(maintenance.as_str())
    );
    assert_eq!(file.nonce.as_deref(), Some("n-file"));
    let document: SignedDocument = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(file.kid, document.kid);
    let issued = keyward::time::parse(&file.issued_at).unwrap();
    assert!((clock.now() - issued).num_seconds().abs() <= 5);
    assert!(!file.is_expired(clock.now()));
    assert!(file.is_expired(clock.now() + Duration::days(31)));
}

#[tokio::test]
async fn tampered_license_file_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = start_clocked(dir.path(), |_| {}).await;
    let base = server.url.as_str();
    let key = create_license(base, json!({"model": "permanent", "features": ["pro"]})).await;
    let (status, body) = activate(base, &key, "pc-1").await;
    assert_eq!(status, 200, "{body}");
    let trusted = raw_http::trusted_keys(base).await;
    let response = fetch(base, &key, "pc-1").await;
    assert_eq!(response.status, 200, "{}", response.text());
    let original: SignedDocument = serde_json::from_slice(&response.body).unwrap();

    let mut more_features = original.clone();
    more_features.payload = original
        .payload
        .replace("[\"pro\"]", "[\"export\",\"pro\"]");
    assert_ne!(more_features.payload, original.payload, "the edit applies");
    let bytes = serde_json::to_vec(&more_features).unwrap();
    let result = offline::verify_license_file(&bytes, &trusted, "pc-1");
    assert!(
        matches!(
            result,
            Err(OfflineError::Signature(VerifyError::BadSignature))
        ),
        "added feature: {result:?}"
    );

    let mut later = original.clone();
    later.payload = original.payload.replace(
        "\"expires_at\":null",
        "\"expires_at\":\"2020-01-01T00:00:00Z\"",
    );
    assert_ne!(later.payload, original.payload, "the edit applies");
    let bytes = serde_json::to_vec(&later).unwrap();
    let result = offline::verify_license_file(&bytes, &trusted, "pc-1");
    assert!(
        matches!(
            result,
            Err(OfflineError::Signature(VerifyError::BadSignature))
        ),
        "changed expiry: {result:?}"
    );

    let mut reformatted: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    reformatted["kid"] = json!("kother");
    let bytes = serde_json::to_vec(&reformatted).unwrap();
    let result = offline::verify_license_file(&bytes, &trusted, "pc-1");
    assert!(
        matches!(
            result,
            Err(OfflineError::Signature(VerifyError::UnknownKey(_)))
        ),
        "envelope naming another key: {result:?}"
    );

    let pretty = serde_json::to_vec_pretty(&original).unwrap();
    assert!(
        offline::verify_license_file(&pretty, &trusted, "pc-1").is_ok(),
        "reformatting the outer JSON keeps the payload bytes"
    );

    let result = offline::verify_license_file(&response.body, &trusted, "pc-2");
    assert!(
        matches!(
            result,
            Err(OfflineError::Mismatch {
                field: "computer_id",
                ..
            })
        ),
        "file of another computer: {result:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn license_file_needs_live_activation() {
    let dir = tempfile::tempdir().unwrap();
    let (server, clock) = start_clocked(dir.path(), |_| {}).await;
    let base = server.url.as_str();
    let expires = keyward::time::format(clock.now() + Duration::days(5));
    let key = create_license(
        base,
        json!({"model": "subscription", "seats": 2, "expires_at": expires}),
    )
    .await;

    let response = fetch(base, &key, "pc-1").await;
    assert_eq!(response.status, 409, "never activated: {}", response.text());
    assert_eq!(response.json()["code"], "NOT_ACTIVATED");

    let (status, body) = activate(base, &key, "pc-1").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = release(base, &key, "pc-1").await;
    assert_eq!(status, 200, "{body}");
    let response = fetch(base, &key, "pc-1").await;
    assert_eq!(response.status, 409, "released: {}", response.text());
    assert_eq!(response.json()["code"], "NOT_ACTIVATED");

    let response = fetch(base, "0000-0000", "pc-1").await;
    assert_eq!(response.status, 404, "unknown key: {}", response.text());
    assert_eq!(response.json()["code"], "NOT_FOUND");

    let (status, body) = activate(base, &key, "pc-2").await;
    assert_eq!(status, 200, "{body}");
    clock.advance(6 * 24 * 60 * 60);
    let response = fetch(base, &key, "pc-2").await;
    assert_eq!(response.status, 403, "expired: {}", response.text());
    assert_eq!(response.json()["code"], "EXPIRED");
    server.stop().await;
}
