//! Signing-key rotation and retirement: what was signed before a rotation keeps verifying with
//! the published keys, and stops verifying once its key is retired.

mod common;
mod helpers;
mod raw_http;

use common::{ADMIN_TOKEN, admin, client};
use helpers::{activate, admin_post, create_license, start_clocked};
use keyward::api::client::PublicKeysResponse;
use keyward::offline;
use keyward::signing::{TrustedKeys, VerifyError};
use raw_http::post_json;
use reqwest::Method;
use serde_json::{Value, json};

async fn published(base: &str) -> PublicKeysResponse {
    common::http()
        .get(format!("{base}/v1/keys"))
        .send()
        .await
        .expect("GET /v1/keys")
        .json()
        .await
        .expect("public keys parse")
}

fn published_kids(keys: &PublicKeysResponse) -> Vec<String> {
    keys.keys.iter().map(|key| key.kid.clone()).collect()
}

fn trusted_from(keys: &PublicKeysResponse) -> TrustedKeys {
    TrustedKeys::from_published(&keys.keys).expect("published keys are valid")
}

fn header_kid(response: &raw_http::RawResponse) -> String {
    let header = response.signature().expect("signature header");
    header
        .split(';')
        .find_map(|part| part.strip_prefix("kid="))
        .expect("kid in the signature header")
        .to_string()
}

async fn rotate(base: &str) -> Value {
    let (status, body) = admin_post(base, "/v1/admin/keys/rotate", None).await;
    assert_eq!(status, 201, "rotate: {body}");
    body
}

async fn retire(base: &str, kid: &str) -> (u16, Value) {
    admin_post(base, &format!("/v1/admin/keys/{kid}/retire"), None).await
}

#[tokio::test]
async fn old_signatures_verify_until_retired() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = start_clocked(dir.path(), |_| {}).await;
    let base = server.url.as_str();
    let key = create_license(base, json!({"model": "permanent"})).await;
    let (status, activated) = activate(base, &key, "pc-1").await;
    assert_eq!(status, 200, "{activated}");
    let computer_key = activated["computer_key"].as_str().unwrap().to_string();

    let before = published(base).await;
    let old_kid = before.signing_kid.clone();
    let request = json!({"key": key, "computer_id": "pc-1"});
    let old_response = post_json(base, "/v1/validate", &request).await;
    assert_eq!(header_kid(&old_response), old_kid);
    let old_file = post_json(base, "/v1/license-file", &request).await;
    assert_eq!(old_file.status, 200, "{}", old_file.text());

    rotate(base).await;
    let after_rotate = published(base).await;
    let new_kid = after_rotate.signing_kid.clone();
    assert_ne!(new_kid, old_kid, "the rotation made a new current key");
    assert_eq!(
        published_kids(&after_rotate),
        [old_kid.clone(), new_kid.clone()]
    );
    let trusted = trusted_from(&after_rotate);
    assert_eq!(
        trusted.verify_header(old_response.signature(), &old_response.body),
        Ok(()),
        "a response signed before the rotation"
    );
    assert!(
        offline::verify_license_file(&old_file.body, &trusted, "pc-1").is_ok(),
        "a license file signed before the rotation"
    );
    let new_response = post_json(base, "/v1/validate", &request).await;
    assert_eq!(
        header_kid(&new_response),
        new_kid,
        "new responses use the new key"
    );
    assert_eq!(
        trusted.verify_header(new_response.signature(), &new_response.body),
        Ok(())
    );
    let with_old_key = json!({"key": key, "computer_id": "pc-1", "computer_key": computer_key});
    let (_, body) = client(base, "/v1/validate", with_old_key.clone()).await;
    assert_eq!(
        body["code"], "VALID",
        "a computer key from before the rotation"
    );

    let (status, body) = retire(base, &old_kid).await;
    assert_eq!(status, 200, "retire: {body}");
    let after_retire = published(base).await;
    assert_eq!(published_kids(&after_retire), vec![new_kid.clone()]);
    let trusted = trusted_from(&after_retire);
    assert_eq!(
        trusted.verify_header(old_response.signature(), &old_response.body),
        Err(VerifyError::UnknownKey(old_kid.clone())),
        "a response signed with the retired key"
    );
    let result = offline::verify_license_file(&old_file.body, &trusted, "pc-1");
    assert!(
        matches!(
            result,
            Err(offline::OfflineError::Signature(VerifyError::UnknownKey(_)))
        ),
        "a license file signed with the retired key: {result:?}"
    );
    assert_eq!(
        trusted.verify_header(new_response.signature(), &new_response.body),
        Ok(()),
        "the current key still verifies"
    );
    let (_, body) = client(base, "/v1/validate", with_old_key).await;
    assert_eq!(
        body["code"], "COMPUTER_MISMATCH",
        "a computer key signed with the retired key"
    );
    server.stop().await;
}

#[tokio::test]
async fn current_key_cannot_be_retired() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = start_clocked(dir.path(), |_| {}).await;
    let base = server.url.as_str();
    let current = published(base).await.signing_kid;

    let (status, body) = retire(base, &current).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "KEY_IN_USE");
    assert_eq!(
        published_kids(&published(base).await),
        vec![current.clone()]
    );

    let (status, body) = retire(base, "knotakey").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["code"], "KEY_NOT_FOUND");

    let keys = rotate(base).await;
    let listed = keys.as_array().expect("key list");
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["kid"], current.as_str());
    assert_eq!(listed[0]["current"], false);
    assert_eq!(listed[1]["current"], true);
    let (status, body) = retire(base, &current).await;
    assert_eq!(status, 200, "once another key is current: {body}");
    let (status, list) = admin(base, Method::GET, "/v1/admin/keys", None).await;
    assert_eq!(status, 200, "{list}");
    assert!(
        list[0]["retired_at"].is_string(),
        "the admin list keeps retired keys: {list}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_commands_rotate_and_retire() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = start_clocked(dir.path(), |_| {}).await;
    let base = server.url.clone();
    let first = published(&base).await.signing_kid;
    let keyward = |args: &[&str]| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_keyward"));
        command.args(args);
        command
    };

    let output = keyward(&["keys", "rotate", "--url", &base, "--token", ADMIN_TOKEN])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "keys rotate: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let second = published(&base).await.signing_kid;
    assert_ne!(second, first);

    let output = keyward(&[
        "keys",
        "retire",
        &second,
        "--url",
        &base,
        "--token",
        ADMIN_TOKEN,
    ])
    .output()
    .await
    .unwrap();
    assert!(
        !output.status.success(),
        "retiring the current key succeeded"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("KEY_IN_USE"), "{stderr}");

    let output = keyward(&[
        "keys",
        "retire",
        &first,
        "--url",
        &base,
        "--token",
        ADMIN_TOKEN,
    ])
    .output()
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "keys retire: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    let output = keyward(&["keys", "--url", &base]).output().await.unwrap();
    assert!(output.status.success());
    let printed: PublicKeysResponse = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(published_kids(&printed), vec![second.clone()]);

    let output = keyward(&["keys", "list", "--url", &base, "--token", ADMIN_TOKEN])
        .output()
        .await
        .unwrap();
    assert!(output.status.success());
    let listed: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    server.stop().await;
}

#[tokio::test]
async fn scheduled_key_signs_from_its_time() {
    let dir = tempfile::tempdir().unwrap();
    let (server, clock) = start_clocked(dir.path(), |_| {}).await;
    let base = server.url.as_str();
    let key = create_license(base, json!({"model": "permanent"})).await;
    let request = json!({"key": key, "computer_id": "pc-1", "nonce": "n"});
    let old_kid = header_kid(&post_json(base, "/v1/validate", &request).await);

    // The new key is published at once but the old one keeps signing.
    let at = keyward::time::format(
        keyward::time::Clock::now(clock.as_ref()) + chrono::Duration::hours(1),
    );
    let path = format!("/v1/admin/keys/rotate?activate_at={at}");
    let (status, body) = admin_post(base, &path, None).await;
    assert_eq!(status, 201, "{body}");
    let keys = published(base).await;
    assert_eq!(keys.keys.len(), 2, "both keys are published");
    let new_kid = published_kids(&keys)
        .into_iter()
        .find(|kid| *kid != old_kid)
        .unwrap();
    assert_eq!(
        header_kid(&post_json(base, "/v1/validate", &request).await),
        old_kid
    );

    // A second scheduled key is refused while one waits.
    let (status, body) = admin_post(base, &path, None).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains(&new_kid),
        "{body}"
    );

    // Once the clock passes the time, the new key signs within a few seconds.
    clock.advance(2 * 60 * 60);
    let mut kid = String::new();
    for _ in 0..50 {
        kid = header_kid(&post_json(base, "/v1/validate", &request).await);
        if kid == new_kid {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(kid, new_kid);
    server.stop().await;
}
