//! Signed client responses and computer keys, checked the way a client checks them: with the
//! keys published at `GET /v1/keys` and `keyward::signing::TrustedKeys`.

mod common;
mod raw_http;

use chrono::Utc;
use common::{InProcess, seed_license, test_config};
use keyward::signing::{TrustedKeys, VerifyError};
use raw_http::{RawResponse, post_json, send_bytes, trusted_keys};
use reqwest::Method;
use serde_json::json;

/// Asserts that the response carries a signature that verifies over its exact body, and that
/// changing one byte at the start, middle or end of the body breaks it.
fn assert_signed(response: &RawResponse, trusted: &TrustedKeys, context: &str) {
    let header = response.signature();
    assert!(header.is_some(), "{context}: no keyward-signature header");
    assert_eq!(
        trusted.verify_header(header, &response.body),
        Ok(()),
        "{context}: signature does not verify"
    );

    for position in [0, response.body.len() / 2, response.body.len() - 1] {
        let mut tampered = response.body.clone();
        tampered[position] ^= 0x01;
        assert_eq!(
            trusted.verify_header(header, &tampered),
            Err(VerifyError::BadSignature),
            "{context}: body with byte {position} changed still verifies"
        );
    }
}

/// Asserts that `server_time` is an RFC 3339 time within five seconds of this machine's clock.
fn assert_server_time_current(body: &serde_json::Value, context: &str) {
    let text = body["server_time"].as_str();
    assert!(text.is_some(), "{context}: no server_time in {body}");
    let server_time = keyward::time::parse(text.unwrap())
        .unwrap_or_else(|err| panic!("{context}: server_time {text:?} is not RFC 3339: {err}"));
    let skew = (Utc::now() - server_time).num_seconds().abs();
    assert!(skew <= 5, "{context}: server_time is {skew} s from now");
}

/// Client requests whose responses must all be signed: successes, domain errors and rejected
/// bodies on each endpoint. The license `key` must have one seat and no activation before the
/// first request.
fn client_requests(key: &str) -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let json = |value: serde_json::Value| serde_json::to_vec(&value).unwrap();
    vec![
        (
            "activate",
            "/v1/activate",
            json(json!({"key": key, "computer_id": "pc-1", "nonce": "n-activate"})),
        ),
        (
            "activate again",
            "/v1/activate",
            json(json!({"key": key, "computer_id": "pc-1", "nonce": "n-again"})),
        ),
        (
            "activate with no seat left",
            "/v1/activate",
            json(json!({"key": key, "computer_id": "pc-2", "nonce": "n-full"})),
        ),
        (
            "validate",
            "/v1/validate",
            json(json!({"key": key, "computer_id": "pc-1", "nonce": "n-validate"})),
        ),
        (
            "validate on another computer",
            "/v1/validate",
            json(json!({"key": key, "computer_id": "pc-2", "nonce": "n-other"})),
        ),
        (
            "release",
            "/v1/release",
            json(json!({"key": key, "computer_id": "pc-1", "nonce": "n-release"})),
        ),
        (
            "release of an inactive computer",
            "/v1/release",
            json(json!({"key": key, "computer_id": "pc-1", "nonce": "n-inactive"})),
        ),
        (
            "activate a malformed key",
            "/v1/activate",
            json(json!({"key": "0000-0000", "computer_id": "pc-1", "nonce": "n-malformed"})),
        ),
        (
            "validate an unknown key",
            "/v1/validate",
            json(json!({
                "key": keyward::keys::LicenseKey::generate().grouped(),
                "computer_id": "pc-1",
                "nonce": "n-unknown",
            })),
        ),
        (
            "activate with a bad nonce",
            "/v1/activate",
            json(json!({"key": key, "computer_id": "pc-1", "nonce": "x".repeat(500)})),
        ),
        (
            "activate malformed JSON",
            "/v1/activate",
            b"{\"key\":".to_vec(),
        ),
        ("validate malformed JSON", "/v1/validate", b"[1, 2".to_vec()),
        (
            "release malformed JSON",
            "/v1/release",
            b"not json".to_vec(),
        ),
        (
            "validate unknown field",
            "/v1/validate",
            json(json!({"key": key, "computer_id": "pc-1", "extra": true})),
        ),
        (
            "release oversized body",
            "/v1/release",
            json(json!({"key": key, "computer_id": "x".repeat(70 * 1024)})),
        ),
    ]
}

#[tokio::test]
async fn every_client_response_is_signed() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let base = server.url.as_str();
    let key = seed_license(base, 1).await;
    let trusted = trusted_keys(base).await;

    let mut statuses = Vec::new();
    for (name, path, body) in client_requests(&key) {
        let response = send_bytes(base, Method::POST, path, "application/json", body, None).await;
        assert_signed(&response, &trusted, name);
        assert_server_time_current(&response.json(), name);
        statuses.push(response.status);
    }
    assert_eq!(
        statuses,
        [
            200, 200, 409, 200, 200, 200, 409, 404, 200, 400, 400, 422, 400, 422, 413
        ],
        "the cases cover successes and each kind of client error"
    );
    server.stop().await;
}

#[tokio::test]
async fn signature_fails_with_other_server_keys() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(&dir.path().join("one"))).await;
    let other = InProcess::start(test_config(&dir.path().join("two"))).await;
    let key = seed_license(&server.url, 1).await;
    let foreign_keys = trusted_keys(&other.url).await;

    let request = json!({"key": key, "computer_id": "pc-1"});
    let response = post_json(&server.url, "/v1/activate", &request).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let result = foreign_keys.verify_header(response.signature(), &response.body);
    assert!(
        matches!(result, Err(VerifyError::UnknownKey(_))),
        "another server's keys: {result:?}"
    );
    let token = response.json()["computer_key"]
        .as_str()
        .unwrap()
        .to_string();
    let result = foreign_keys.verify_computer_key(&token);
    assert!(
        matches!(result, Err(VerifyError::UnknownKey(_))),
        "computer key with another server's keys: {result:?}"
    );
    server.stop().await;
    other.stop().await;
}

#[tokio::test]
async fn nonce_is_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let base = server.url.as_str();
    let key = seed_license(base, 1).await;

    let requests = [
        ("/v1/activate", json!({"key": key, "computer_id": "pc-1"})),
        ("/v1/validate", json!({"key": key, "computer_id": "pc-1"})),
        ("/v1/release", json!({"key": key, "computer_id": "pc-1"})),
        ("/v1/release", json!({"key": key, "computer_id": "pc-1"})),
        (
            "/v1/activate",
            json!({"key": "0000", "computer_id": "pc-1"}),
        ),
        (
            "/v1/validate",
            json!({"key": "0000", "computer_id": "pc-1"}),
        ),
    ];
    for (index, (path, mut request)) in requests.into_iter().enumerate() {
        let nonce = format!("nonce-{index}-{}", keyward::ids::random_hex(8));
        request["nonce"] = json!(nonce);
        let response = post_json(base, path, &request).await;
        let body = response.json();
        assert_eq!(body["nonce"], nonce.as_str(), "{path} ({index}): {body}");
    }

    let request = json!({"key": key, "computer_id": "pc-1"});
    let body = post_json(base, "/v1/validate", &request).await.json();
    assert_eq!(body["nonce"], serde_json::Value::Null, "no nonce sent");
    server.stop().await;
}

#[tokio::test]
async fn computer_key_carries_claims() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let base = server.url.as_str();
    let key = seed_license(base, 1).await;
    let trusted = trusted_keys(base).await;

    let request = json!({"key": key, "computer_id": "pc-1", "computer_name": "Desk"});
    let response = post_json(base, "/v1/activate", &request).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let token = response.json()["computer_key"]
        .as_str()
        .expect("computer key")
        .to_string();

    let claims = trusted
        .verify_computer_key(&token)
        .expect("computer key verifies");
    assert_eq!(claims.license_key, key);
    assert_eq!(claims.computer_id, "pc-1");
    assert_eq!(claims.product, "app");
    assert_eq!(claims.features, ["export", "pro"]);
    assert_eq!(claims.expires_at, None);
    let issued = keyward::time::parse(&claims.issued_at).expect("issued_at is RFC 3339");
    assert!((Utc::now() - issued).num_seconds().abs() <= 5);
    let signing_kid = response.signature().unwrap().split(';').next().unwrap();
    assert_eq!(signing_kid, format!("kid={}", claims.kid));
    server.stop().await;
}

#[tokio::test]
async fn tampered_computer_key_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let base = server.url.as_str();
    let key = seed_license(base, 1).await;
    let trusted = trusted_keys(base).await;
    let request = json!({"key": key, "computer_id": "pc-1"});
    let body = post_json(base, "/v1/activate", &request).await.json();
    let token = body["computer_key"].as_str().unwrap().to_string();

    let (signed, signature) = token.rsplit_once('.').unwrap();
    let mut signature_bytes = signature.as_bytes().to_vec();
    signature_bytes[3] = if signature_bytes[3] == b'A' {
        b'B'
    } else {
        b'A'
    };
    let bad_signature = format!("{signed}.{}", String::from_utf8(signature_bytes).unwrap());
    assert_eq!(
        trusted.verify_computer_key(&bad_signature),
        Err(VerifyError::BadSignature)
    );

    let payload = signed.strip_prefix("kw1.").unwrap();
    let claims = base64_decode(payload).replace("pc-1", "pc-2");
    let forged = format!("kw1.{}.{signature}", base64_encode(&claims));
    assert_eq!(
        trusted.verify_computer_key(&forged),
        Err(VerifyError::BadSignature),
        "claims moved to another computer under the old signature"
    );
    server.stop().await;
}

fn base64_decode(text: &str) -> String {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .expect("base64url payload");
    String::from_utf8(bytes).expect("UTF-8 payload")
}

fn base64_encode(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}
