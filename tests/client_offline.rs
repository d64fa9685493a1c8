//! Offline checks of stored computer keys, the maximum offline period with injected times, and
//! the fallback from the server to the offline check.

mod client_support;
mod common;

use std::sync::Arc;

use chrono::{Duration, Utc};
use client_support::{builder_for, create_license, revoke, trusted_keys};
use common::{InProcess, seed_license, test_config};
use keyward::client::{Client, ClientError, ClientState, ValidationCode, ValidationSource};
use keyward::keys::LicenseKey;
use keyward::time::OffsetClock;

const MAX_DAYS: u32 = 7;

/// A server with one activated license, and the computer key issued for `pc-1`.
struct Activated {
    server: InProcess,
    client: Client,
    key: String,
    computer_key: String,
    _dir: tempfile::TempDir,
}

async fn activated() -> Activated {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let key = seed_license(&server.url, 2).await;
    let client = builder_for(&server)
        .max_days_offline(MAX_DAYS)
        .build()
        .unwrap();
    let computer_key = client
        .activate(&key, "pc-1", "")
        .await
        .unwrap()
        .computer_key;
    Activated {
        server,
        client,
        key,
        computer_key,
        _dir: dir,
    }
}

/// Asserts that an offline check failed because no server contact is known.
fn assert_offline_without_contact(result: &Result<keyward::client::Validation, ClientError>) {
    assert!(
        matches!(
            result,
            Err(ClientError::OfflineTooLong {
                last_server_contact: None,
                ..
            })
        ),
        "{result:?}"
    );
}

/// Returns a client for `server` whose clock runs `days` ahead of the system clock.
fn client_days_ahead(server: &InProcess, days: i64) -> Client {
    let clock = Arc::new(OffsetClock::default());
    clock.advance(days * 86_400);
    builder_for(server)
        .max_days_offline(MAX_DAYS)
        .clock(clock)
        .build()
        .unwrap()
}

#[tokio::test]
async fn offline_within_limit_is_valid() {
    let site = activated().await;
    let contact = Utc::now() - Duration::days(3);

    let validation = site
        .client
        .validate_offline(&site.computer_key, &site.key, "pc-1", Some(contact))
        .unwrap();

    assert_eq!(validation.code, ValidationCode::Valid);
    let claims = validation.claims.as_ref().unwrap();
    assert_eq!(claims.computer_id, "pc-1");
    assert_eq!(claims.product, "app");
    assert_eq!(
        validation.source,
        ValidationSource::Offline {
            last_server_contact: Some(contact)
        }
    );
    site.server.stop().await;
}

#[tokio::test]
async fn offline_past_limit_fails() {
    let site = activated().await;
    let contact = Utc::now() - Duration::days(i64::from(MAX_DAYS) + 1);

    let result = site
        .client
        .validate_offline(&site.computer_key, &site.key, "pc-1", Some(contact));

    let Err(ClientError::OfflineTooLong {
        last_server_contact,
        max_days_offline,
    }) = &result
    else {
        panic!("expected OfflineTooLong, got {result:?}");
    };
    assert_eq!(*last_server_contact, Some(contact));
    assert_eq!(*max_days_offline, MAX_DAYS);
    site.server.stop().await;
}

#[tokio::test]
async fn offline_limit_follows_local_clock() {
    let site = activated().await;
    let contact = site.client.last_server_contact().expect("contact recorded");
    let six_days_later = client_days_ahead(&site.server, 6);
    let eight_days_later = client_days_ahead(&site.server, 8);

    let within =
        six_days_later.validate_offline(&site.computer_key, &site.key, "pc-1", Some(contact));
    let past =
        eight_days_later.validate_offline(&site.computer_key, &site.key, "pc-1", Some(contact));

    assert_eq!(within.unwrap().code, ValidationCode::Valid);
    assert!(
        matches!(past, Err(ClientError::OfflineTooLong { .. })),
        "{past:?}"
    );
    site.server.stop().await;
}

#[tokio::test]
async fn offline_without_contact_fails() {
    let site = activated().await;

    let result = site
        .client
        .validate_offline(&site.computer_key, &site.key, "pc-1", None);

    assert_offline_without_contact(&result);
    site.server.stop().await;
}

#[tokio::test]
async fn contact_after_local_clock_fails() {
    let site = activated().await;
    let future = Utc::now() + Duration::days(1);

    let result = site
        .client
        .validate_offline(&site.computer_key, &site.key, "pc-1", Some(future));

    assert!(
        matches!(result, Err(ClientError::ClockBehindLastContact { .. })),
        "{result:?}"
    );
    site.server.stop().await;
}

#[tokio::test]
async fn other_computer_fails_offline() {
    let site = activated().await;
    let contact = Some(Utc::now());

    let validation = site
        .client
        .validate_offline(&site.computer_key, &site.key, "pc-2", contact)
        .unwrap();

    assert_eq!(validation.code, ValidationCode::ComputerMismatch);
    assert!(!validation.is_valid());
    site.server.stop().await;
}

#[tokio::test]
async fn other_license_fails_offline() {
    let site = activated().await;
    let other_key = LicenseKey::generate().to_string();

    let validation = site
        .client
        .validate_offline(&site.computer_key, &other_key, "pc-1", Some(Utc::now()))
        .unwrap();

    assert_eq!(validation.code, ValidationCode::ComputerMismatch);
    site.server.stop().await;
}

#[tokio::test]
async fn altered_computer_key_fails_offline() {
    let site = activated().await;
    // Re-encode the payload with another computer id and keep the old signature.
    let (prefix_and_payload, signature) = site.computer_key.rsplit_once('.').unwrap();
    let payload = prefix_and_payload.strip_prefix("kw1.").unwrap();
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: serde_json::Value =
        serde_json::from_slice(&base64::Engine::decode(&engine, payload).unwrap()).unwrap();
    claims["computer_id"] = serde_json::json!("pc-2");
    let altered_payload = base64::Engine::encode(&engine, serde_json::to_vec(&claims).unwrap());
    let altered = format!("kw1.{altered_payload}.{signature}");

    let validation = site
        .client
        .validate_offline(&altered, &site.key, "pc-2", Some(Utc::now()))
        .unwrap();

    assert_eq!(validation.code, ValidationCode::ComputerMismatch);
    assert!(validation.claims.is_none());
    site.server.stop().await;
}

#[tokio::test]
async fn foreign_computer_key_fails_offline() {
    let site = activated().await;
    let other_dir = tempfile::tempdir().unwrap();
    let other = InProcess::start(test_config(other_dir.path())).await;
    let other_key = seed_license(&other.url, 1).await;
    let foreign = builder_for(&other)
        .build()
        .unwrap()
        .activate(&other_key, "pc-1", "")
        .await
        .unwrap()
        .computer_key;

    let validation = site
        .client
        .validate_offline(&foreign, &other_key, "pc-1", Some(Utc::now()))
        .unwrap();

    assert_eq!(validation.code, ValidationCode::ComputerMismatch);
    site.server.stop().await;
    other.stop().await;
}

#[tokio::test]
async fn expired_license_fails_offline() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    seed_license(&server.url, 1).await;
    let expires_at = keyward::time::format(Utc::now() + Duration::days(2));
    let key = create_license(
        &server.url,
        serde_json::json!({"product": "app", "model": "subscription", "expires_at": expires_at}),
    )
    .await;
    let client = builder_for(&server).build().unwrap();
    let computer_key = client
        .activate(&key, "pc-1", "")
        .await
        .unwrap()
        .computer_key;
    let contact = client.last_server_contact();

    let before_expiry = client_days_ahead(&server, 1)
        .validate_offline(&computer_key, &key, "pc-1", contact)
        .unwrap();
    let after_expiry = client_days_ahead(&server, 3)
        .validate_offline(&computer_key, &key, "pc-1", contact)
        .unwrap();

    assert_eq!(before_expiry.code, ValidationCode::Valid);
    assert_eq!(after_expiry.code, ValidationCode::Expired);
    server.stop().await;
}

#[tokio::test]
async fn mistyped_key_fails_offline() {
    let site = activated().await;

    let result =
        site.client
            .validate_offline(&site.computer_key, "7K3M-QW2D", "pc-1", Some(Utc::now()));

    assert!(
        matches!(result, Err(ClientError::InvalidKey(_))),
        "{result:?}"
    );
    site.server.stop().await;
}

#[tokio::test]
async fn unreachable_server_falls_back_offline() {
    let site = activated().await;
    let Activated {
        server,
        client,
        key,
        computer_key,
        _dir,
    } = site;
    server.stop().await;

    let validation = client
        .validate_or_offline(&key, "pc-1", &computer_key)
        .await
        .unwrap();

    assert_eq!(validation.code, ValidationCode::Valid);
    assert!(
        matches!(validation.source, ValidationSource::Offline { .. }),
        "{validation:?}"
    );
}

#[tokio::test]
async fn reachable_server_is_preferred() {
    let site = activated().await;
    revoke(&site.server.url, &site.key).await;

    let validation = site
        .client
        .validate_or_offline(&site.key, "pc-1", &site.computer_key)
        .await
        .unwrap();

    assert_eq!(validation.code, ValidationCode::Revoked);
    assert!(
        matches!(validation.source, ValidationSource::Server { .. }),
        "{validation:?}"
    );
    site.server.stop().await;
}

#[tokio::test]
async fn persisted_contact_allows_offline_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let key = seed_license(&server.url, 1).await;
    let state_dir = tempfile::tempdir().unwrap();
    let state_file = state_dir.path().join("client-state.json");
    let first = builder_for(&server)
        .state_file(&state_file)
        .build()
        .unwrap();
    let computer_key = first.activate(&key, "pc-1", "").await.unwrap().computer_key;
    let trusted = trusted_keys(&server);
    let server_url = server.url.clone();
    server.stop().await;

    let restarted = keyward::client::Client::builder()
        .server_url(&server_url)
        .trusted_keys(trusted)
        .state_file(&state_file)
        .no_proxy()
        .build()
        .unwrap();
    let validation = restarted
        .validate_or_offline(&key, "pc-1", &computer_key)
        .await
        .unwrap();

    assert_eq!(restarted.last_server_contact(), first.last_server_contact());
    assert!(restarted.last_server_contact().is_some());
    assert_eq!(validation.code, ValidationCode::Valid);
    assert!(matches!(
        validation.source,
        ValidationSource::Offline { .. }
    ));
}

#[tokio::test]
async fn edited_contact_time_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let key = seed_license(&server.url, 1).await;
    let state_dir = tempfile::tempdir().unwrap();
    let state_file = state_dir.path().join("client-state.json");
    let client = builder_for(&server)
        .state_file(&state_file)
        .build()
        .unwrap();
    client.activate(&key, "pc-1", "").await.unwrap();
    let recorded = client.last_server_contact().unwrap();

    // Moving the plain field has no effect, because the client reads the signed proof.
    let mut state = ClientState::read(&state_file).unwrap();
    state.last_server_contact = Some(recorded + Duration::days(365));
    std::fs::write(&state_file, serde_json::to_vec(&state).unwrap()).unwrap();
    let plain_edit = builder_for(&server)
        .state_file(&state_file)
        .build()
        .unwrap();

    // Changing the proof breaks its signature, so no contact is known at all.
    let canonical = format!("{} pc-1", LicenseKey::parse(&key).unwrap().as_str());
    let proof = state.contact_proofs.get_mut(&canonical).unwrap();
    let later = keyward::time::format(recorded + Duration::days(365));
    proof.body = proof.body.replace(&keyward::time::format(recorded), &later);
    std::fs::write(&state_file, serde_json::to_vec(&state).unwrap()).unwrap();
    let proof_edit = builder_for(&server)
        .state_file(&state_file)
        .build()
        .unwrap();

    assert_eq!(plain_edit.last_server_contact(), Some(recorded));
    assert!(state.contact_proofs[&canonical].body.contains(&later));
    assert_eq!(proof_edit.last_server_contact(), None);
    server.stop().await;
}

/// Sends a validation of `key` with reqwest and returns the response as a contact proof.
async fn signed_answer(url: &str, key: &str) -> keyward::client::SignedBody {
    let response = common::http()
        .post(format!("{url}/v1/validate"))
        .json(&serde_json::json!({"key": key, "computer_id": "pc-9"}))
        .send()
        .await
        .unwrap();
    let signature = response.headers()["keyward-signature"]
        .to_str()
        .unwrap()
        .to_string();
    keyward::client::SignedBody {
        body: response.text().await.unwrap(),
        signature,
    }
}

#[tokio::test]
async fn signed_refusal_is_no_contact() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let key = seed_license(&server.url, 1).await;
    let other = seed_license(&server.url, 1).await;
    let state_dir = tempfile::tempdir().unwrap();
    let state_file = state_dir.path().join("client-state.json");
    let canonical = format!("{} pc-9", LicenseKey::parse(&key).unwrap().as_str());

    // Signed answers anyone can fetch: NOT_FOUND for a made-up key, and a VALID-looking
    // activation of another license. Neither confirms `key`.
    let not_found = signed_answer(&server.url, "nonsense").await;
    let client = builder_for(&server).build().unwrap();
    client.activate(&other, "pc-9", "").await.unwrap();
    let other_state = client.state();
    let other_proof = other_state.contact_proofs.values().next().unwrap().clone();

    for (name, proof) in [("not found", not_found), ("other license", other_proof)] {
        let mut state = ClientState::default();
        state.contact_proofs.insert(canonical.clone(), proof);
        std::fs::write(&state_file, serde_json::to_vec(&state).unwrap()).unwrap();
        let forged = builder_for(&server)
            .state_file(&state_file)
            .build()
            .unwrap();
        assert_eq!(forged.last_server_contact_for(&key, "pc-9"), None, "{name}");
    }
    server.stop().await;
}

#[tokio::test]
async fn refusal_ends_offline_use() {
    let site = activated().await;
    assert!(
        site.client
            .last_server_contact_for(&site.key, "pc-1")
            .is_some()
    );

    revoke(&site.server.url, &site.key).await;
    let validation = site
        .client
        .validate(&site.key, "pc-1", Some(&site.computer_key))
        .await
        .unwrap();
    assert_eq!(validation.code, ValidationCode::Revoked);
    assert_eq!(site.client.last_server_contact_for(&site.key, "pc-1"), None);

    // With the server gone, the stored computer key no longer validates offline.
    site.server.stop().await;
    let result = site
        .client
        .validate_or_offline(&site.key, "pc-1", &site.computer_key)
        .await;
    assert_offline_without_contact(&result);
}

#[tokio::test]
async fn release_ends_offline_use() {
    let site = activated().await;

    site.client.release(&site.key, "pc-1").await.unwrap();

    assert_eq!(site.client.last_server_contact_for(&site.key, "pc-1"), None);
    site.server.stop().await;
}

#[tokio::test]
async fn proofs_are_per_computer() {
    let site = activated().await;
    let client = &site.client;
    client.activate(&site.key, "pc-2", "").await.unwrap();

    // The admin frees pc-1: its refusal drops pc-1's proof only.
    let path = format!("/v1/admin/licenses/{}/activations/pc-1/release", site.key);
    let (status, body) = common::admin(&site.server.url, reqwest::Method::POST, &path, None).await;
    assert_eq!(status, 200, "{body}");
    let validation = client.validate(&site.key, "pc-1", None).await.unwrap();
    assert_eq!(validation.code, ValidationCode::NotActivated);
    assert_eq!(client.last_server_contact_for(&site.key, "pc-1"), None);

    // A VALID response for pc-2 does not renew pc-1's offline use.
    let validation = client.validate(&site.key, "pc-2", None).await.unwrap();
    assert_eq!(validation.code, ValidationCode::Valid);
    assert!(client.last_server_contact_for(&site.key, "pc-2").is_some());
    assert_eq!(client.last_server_contact_for(&site.key, "pc-1"), None);
    site.server.stop().await;
    let result = client
        .validate_or_offline(&site.key, "pc-1", &site.computer_key)
        .await;
    assert_offline_without_contact(&result);
}

#[tokio::test]
async fn release_keeps_other_computers_proof() {
    let site = activated().await;
    site.client.activate(&site.key, "pc-2", "").await.unwrap();

    site.client.release(&site.key, "pc-2").await.unwrap();

    assert!(
        site.client
            .last_server_contact_for(&site.key, "pc-1")
            .is_some()
    );
    assert_eq!(site.client.last_server_contact_for(&site.key, "pc-2"), None);
    site.server.stop().await;
}
