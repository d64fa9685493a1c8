//! Offline activation: the application writes a request file, the vendor runs
//! `keyward license offline-activate`, and the application installs the signed response with
//! only the published keys it already holds, after the server is gone.

mod common;
mod helpers;
mod raw_http;

use std::path::Path;

use common::{ADMIN_TOKEN, admin};
use helpers::{activate, admin_post, create_license, start_clocked};
use keyward::offline::{self, OfflineError, OfflineRequest};
use keyward::signing::{SignedDocument, VerifyError};
use reqwest::Method;
use serde_json::{Value, json};

/// Runs `keyward license offline-activate REQUEST --out RESPONSE` against `base`.
async fn run_offline_activate(base: &str, request: &Path, response: &Path) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["license", "offline-activate"])
        .arg(request)
        .arg("--out")
        .arg(response)
        .args(["--url", base, "--token", ADMIN_TOKEN])
        .output()
        .await
        .expect("run keyward")
}

/// Sends a request file's content to the admin endpoint and returns status and body text.
async fn post_request(base: &str, request: &OfflineRequest) -> (u16, String) {
    let response = common::http()
        .post(format!("{base}/v1/admin/offline-activations"))
        .bearer_auth(ADMIN_TOKEN)
        .json(request)
        .send()
        .await
        .expect("offline activation request");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

fn code_of(body: &str) -> Value {
    let value: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    value["code"].clone()
}

/// Returns the response with its payload text changed by `edit`, keeping the signature.
fn edit_payload(response: &[u8], edit: impl FnOnce(String) -> String) -> Vec<u8> {
    let mut document: SignedDocument = serde_json::from_slice(response).unwrap();
    document.payload = edit(document.payload);
    serde_json::to_vec(&document).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_round_trip_without_network() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = start_clocked(&dir.path().join("site"), |_| {}).await;
    let base = server.url.clone();
    let key = create_license(&base, json!({"model": "permanent", "seats": 1})).await;
    let trusted = raw_http::trusted_keys(&base).await;

    let request_path = dir.path().join("request.json");
    let response_path = dir.path().join("response.json");
    let request = OfflineRequest::new(&key, "pc-1", "Lab PC");
    offline::write_request(&request_path, &request).unwrap();
    assert_eq!(offline::read_request(&request_path).unwrap(), request);

    let output = run_offline_activate(&base, &request_path, &response_path).await;
    assert!(
        output.status.success(),
        "offline-activate failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let activations =
        raw_http::admin_get(&base, &format!("/v1/admin/licenses/{key}/activations")).await;
    assert_eq!(activations[0]["computer_id"], "pc-1");
    assert_eq!(activations[0]["client_addr"], "offline");
    server.stop().await;

    // From here on no server runs: the client has only its files and the keys it trusts.
    let installed_path = dir.path().join("installed.json");
    let activation =
        offline::install_response(&request_path, &response_path, &installed_path, &trusted)
            .expect("response installs");
    assert_eq!(activation.result, "ACTIVATED");
    assert_eq!(activation.key, key);
    assert_eq!(activation.computer_id, "pc-1");
    assert_eq!(activation.computer_name, "Lab PC");
    assert_eq!(activation.nonce, request.nonce);
    assert_eq!(activation.license.seats_used, 1);
    assert_eq!(
        std::fs::read(&installed_path).unwrap(),
        std::fs::read(&response_path).unwrap(),
        "the installed file holds the response's exact bytes"
    );
    let claims = trusted
        .verify_computer_key(&activation.computer_key)
        .expect("computer key verifies");
    assert_eq!(claims.computer_id, "pc-1");
    assert_eq!(claims.license_key, key);
}

#[tokio::test]
async fn tampered_response_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = start_clocked(&dir.path().join("site"), |_| {}).await;
    let base = server.url.as_str();
    let key = create_license(base, json!({"model": "permanent", "seats": 1})).await;
    let trusted = raw_http::trusted_keys(base).await;
    let request = OfflineRequest::new(&key, "pc-1", "");
    let (status, response) = post_request(base, &request).await;
    assert_eq!(status, 200, "{response}");
    let response = response.into_bytes();
    assert!(offline::verify_response(&request, &response, &trusted).is_ok());

    let more_seats = edit_payload(&response, |payload| {
        payload.replace("\"seats\":1", "\"seats\":100")
    });
    let result = offline::verify_response(&request, &more_seats, &trusted);
    assert!(
        matches!(
            result,
            Err(OfflineError::Signature(VerifyError::BadSignature))
        ),
        "payload with more seats: {result:?}"
    );

    let mut document: SignedDocument = serde_json::from_slice(&response).unwrap();
    let first = if document.signature.starts_with('A') {
        "B"
    } else {
        "A"
    };
    document.signature.replace_range(0..1, first);
    let bad_signature = serde_json::to_vec(&document).unwrap();
    let result = offline::verify_response(&request, &bad_signature, &trusted);
    assert!(
        matches!(
            result,
            Err(OfflineError::Signature(VerifyError::BadSignature))
        ),
        "changed signature: {result:?}"
    );

    let mut document: SignedDocument = serde_json::from_slice(&response).unwrap();
    document.kid = "kunknown".into();
    let unknown_kid = serde_json::to_vec(&document).unwrap();
    let result = offline::verify_response(&request, &unknown_kid, &trusted);
    assert!(
        matches!(
            result,
            Err(OfflineError::Signature(VerifyError::UnknownKey(_)))
        ),
        "unknown key id: {result:?}"
    );

    let request_path = dir.path().join("request.json");
    let response_path = dir.path().join("response.json");
    let installed_path = dir.path().join("installed.json");
    offline::write_request(&request_path, &request).unwrap();
    std::fs::write(&response_path, &more_seats).unwrap();
    let result =
        offline::install_response(&request_path, &response_path, &installed_path, &trusted);
    assert!(result.is_err(), "tampered response installs: {result:?}");
    assert!(
        !installed_path.exists(),
        "nothing is installed from a rejected response"
    );
    server.stop().await;
}

#[tokio::test]
async fn response_for_other_computer_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = start_clocked(dir.path(), |_| {}).await;
    let base = server.url.as_str();
    let key = create_license(base, json!({"model": "permanent", "seats": 2})).await;
    let trusted = raw_http::trusted_keys(base).await;

    let mine = OfflineRequest::new(&key, "pc-1", "");
    let theirs = OfflineRequest::new(&key, "pc-2", "");
    let (status, their_response) = post_request(base, &theirs).await;
    assert_eq!(status, 200, "{their_response}");

    let result = offline::verify_response(&mine, their_response.as_bytes(), &trusted);
    assert!(
        matches!(result, Err(OfflineError::NonceMismatch)),
        "another request's response: {result:?}"
    );

    // Even with the other request's nonce copied, the computer id must match.
    let copied_nonce = OfflineRequest {
        nonce: theirs.nonce.clone(),
        ..mine.clone()
    };
    let result = offline::verify_response(&copied_nonce, their_response.as_bytes(), &trusted);
    assert!(
        matches!(
            result,
            Err(OfflineError::Mismatch {
                field: "computer_id",
                ..
            })
        ),
        "another computer's response: {result:?}"
    );

    // A payload edited to name this computer no longer verifies.
    let moved = edit_payload(their_response.as_bytes(), |payload| {
        payload.replace("pc-2", "pc-1")
    });
    let result = offline::verify_response(&copied_nonce, &moved, &trusted);
    assert!(
        matches!(
            result,
            Err(OfflineError::Signature(VerifyError::BadSignature))
        ),
        "payload moved to this computer: {result:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn response_is_not_a_license_file() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = start_clocked(dir.path(), |_| {}).await;
    let base = server.url.as_str();
    let key = create_license(base, json!({"model": "permanent"})).await;
    let trusted = raw_http::trusted_keys(base).await;
    let request = OfflineRequest::new(&key, "pc-1", "");
    let (status, response) = post_request(base, &request).await;
    assert_eq!(status, 200, "{response}");

    let result = offline::verify_license_file(response.as_bytes(), &trusted, "pc-1");
    assert!(
        matches!(result, Err(OfflineError::WrongType { .. })),
        "an offline activation read as a license file: {result:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn offline_activation_follows_online_rules() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = start_clocked(dir.path(), |_| {}).await;
    let base = server.url.as_str();
    let key = create_license(base, json!({"model": "permanent", "seats": 1})).await;
    let (status, body) = activate(base, &key, "pc-1").await;
    assert_eq!(status, 200, "{body}");

    let (status, body) = post_request(base, &OfflineRequest::new(&key, "pc-2", "")).await;
    assert_eq!(status, 409, "seats: {body}");
    assert_eq!(code_of(&body), "SEATS_EXHAUSTED");

    let (status, body) = post_request(base, &OfflineRequest::new(&key, "pc-1", "")).await;
    assert_eq!(status, 200, "the computer that holds the seat: {body}");
    let document: SignedDocument = serde_json::from_str(&body).unwrap();
    let payload: Value = serde_json::from_str(&document.payload).unwrap();
    assert_eq!(payload["result"], "ALREADY_ACTIVATED");

    let (status, body) = admin_post(base, &format!("/v1/admin/licenses/{key}/suspend"), None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post_request(base, &OfflineRequest::new(&key, "pc-1", "")).await;
    assert_eq!(status, 403, "suspended: {body}");
    assert_eq!(code_of(&body), "SUSPENDED");

    let (status, body) = post_request(base, &OfflineRequest::new("0000-0000", "pc-1", "")).await;
    assert_eq!(status, 404, "unknown key: {body}");
    assert_eq!(code_of(&body), "NOT_FOUND");

    let no_nonce = OfflineRequest {
        nonce: String::new(),
        ..OfflineRequest::new(&key, "pc-1", "")
    };
    let (status, body) = post_request(base, &no_nonce).await;
    assert_eq!(status, 400, "empty nonce: {body}");
    assert_eq!(code_of(&body), "INVALID_INPUT");

    let bad_time = OfflineRequest {
        created_at: "yesterday".into(),
        ..OfflineRequest::new(&key, "pc-1", "")
    };
    let (status, body) = post_request(base, &bad_time).await;
    assert_eq!(status, 400, "created_at: {body}");
    assert_eq!(code_of(&body), "INVALID_INPUT");
    server.stop().await;
}

#[tokio::test]
async fn offline_activation_needs_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = start_clocked(dir.path(), |_| {}).await;
    let base = server.url.as_str();
    let key = create_license(base, json!({"model": "permanent"})).await;
    let request = serde_json::to_value(OfflineRequest::new(&key, "pc-1", "")).unwrap();

    let response = common::http()
        .post(format!("{base}/v1/admin/offline-activations"))
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let (_, activations) = admin(
        base,
        Method::GET,
        &format!("/v1/admin/licenses/{key}/activations"),
        None,
    )
    .await;
    assert_eq!(activations, json!([]), "nothing was activated");
    server.stop().await;
}
