//! A malformed license key gets the same response as a well-formed key that does not exist, so
//! no response tells the two apart.

mod common;
mod raw_http;

use common::{InProcess, seed_license, test_config};
use keyward::keys::LicenseKey;
use keyward::signing::SIGNATURE_HEADER;
use raw_http::{RawResponse, post_json};
use serde_json::json;

/// Returns keys that fail to parse, each for a different reason.
fn malformed_keys(real_key: &str) -> Vec<String> {
    let mut bad_check = real_key.to_string();
    let last = bad_check.pop().unwrap();
    bad_check.push(if last == '0' { '1' } else { '0' });
    vec![
        String::new(),
        "ABCD-EFGH".into(),
        bad_check,
        format!("U{}", &real_key[1..]),
        format!("{real_key}-ABCD"),
        "Z".repeat(10_000),
        "\0".repeat(28),
    ]
}

/// Returns the status, the header names and values other than the signature and date, and the
/// body with `server_time` blanked. The request id differs per request by design, so only its
/// presence is compared.
fn comparable(response: &RawResponse) -> (u16, Vec<(String, String)>, serde_json::Value) {
    let mut headers: Vec<(String, String)> = response
        .headers
        .iter()
        .filter(|(name, _)| *name != SIGNATURE_HEADER && *name != reqwest::header::DATE)
        .map(|(name, value)| {
            let value = if name == "x-request-id" {
                String::new()
            } else {
                value.to_str().unwrap_or_default().to_string()
            };
            (name.to_string(), value)
        })
        .collect();
    headers.sort();
    let mut body = response.json();
    assert!(
        body["server_time"].is_string(),
        "response has server_time: {body}"
    );
    body["server_time"] = json!("");
    (response.status, headers, body)
}

#[tokio::test]
async fn malformed_key_matches_unknown_key() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let base = server.url.as_str();
    let real_key = seed_license(base, 1).await;
    let unknown_key = LicenseKey::generate().grouped();
    let before = raw_http::admin_view(base, &[&real_key]).await;

    for path in ["/v1/activate", "/v1/validate", "/v1/release"] {
        let request = |key: &str| json!({"key": key, "computer_id": "pc-1", "nonce": "n-42"});
        let unknown = post_json(base, path, &request(&unknown_key)).await;
        let (status, headers, body) = comparable(&unknown);
        assert_eq!(body["code"], "NOT_FOUND", "{path} with an unknown key");

        for key in malformed_keys(&real_key) {
            let short: String = key.chars().take(40).collect();
            let context = format!("{path} with {short:?}");
            let malformed = post_json(base, path, &request(&key)).await;
            let (malformed_status, malformed_headers, malformed_body) = comparable(&malformed);
            assert_eq!(malformed_status, status, "{context}: status");
            assert_eq!(malformed_body["code"], body["code"], "{context}: code");
            assert_eq!(
                malformed_body["message"], body["message"],
                "{context}: message"
            );
            assert_eq!(malformed_body, body, "{context}: body");
            assert_eq!(malformed_headers, headers, "{context}: headers");
            assert_eq!(
                malformed.body.len(),
                unknown.body.len(),
                "{context}: body length"
            );
        }
    }
    assert_eq!(raw_http::admin_view(base, &[&real_key]).await, before);
    server.stop().await;
}

/// Lower case, spaces in place of dashes and look-alike letters name the same key, so they are
/// not malformed.
#[tokio::test]
async fn key_spellings_find_same_license() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let base = server.url.as_str();
    let key = seed_license(base, 1).await;
    let request = json!({"key": key, "computer_id": "pc-1"});
    assert_eq!(post_json(base, "/v1/activate", &request).await.status, 200);

    let spellings = [
        key.to_lowercase(),
        key.replace('-', " "),
        key.replace('-', ""),
        key.replace('1', "l").replace('0', "O"),
    ];
    for spelling in spellings {
        let request = json!({"key": spelling, "computer_id": "pc-1"});
        let body = post_json(base, "/v1/validate", &request).await.json();
        assert_eq!(body["code"], "VALID", "{spelling}");
        assert_eq!(body["license"]["key"], key.as_str(), "{spelling}");
    }
    server.stop().await;
}
