//! The client library against real in-process servers: activate, validate and release,
//! local key checks, server rejections and the builder's checks.

mod client_support;
mod common;

use client_support::{
    DEADLINE, Proxy, Redirector, Tamper, builder_for, closed_port_url, revoke, sample_public_key,
    seed_license_with_key,
};
use common::{InProcess, seed_license, test_config};
use keyward::client::{Client, ClientError, ValidationCode, ValidationSource};
use keyward::keys::LicenseKey;

#[tokio::test]
async fn activate_validate_release_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let key = seed_license(&server.url, 1).await;
    let client = builder_for(&server).build().unwrap();

    let activation = client.activate(&key, "pc-1", "Office PC").await.unwrap();
    assert!(!activation.already_active);
    assert!(activation.computer_key.starts_with("kw1."));
    assert_eq!(activation.license.product, "app");
    assert_eq!(activation.license.seats_used, 1);
    assert!(client.last_server_contact().is_some());

    let again = client.activate(&key, "pc-1", "Office PC").await.unwrap();
    assert!(again.already_active);

    let validation = client
        .validate(&key, "pc-1", Some(&activation.computer_key))
        .await
        .unwrap();
    assert_eq!(validation.code, ValidationCode::Valid);
    assert!(validation.is_valid());
    assert_eq!(validation.license.as_ref().unwrap().key, key);
    let ValidationSource::Server { url, .. } = &validation.source else {
        panic!("expected a server result, got {:?}", validation.source);
    };
    assert_eq!(url.as_str().trim_end_matches('/'), server.url);

    let released = client.release(&key, "pc-1").await.unwrap();
    assert_eq!(released.seats_used, 0);

    let after_release = client.validate(&key, "pc-1", None).await.unwrap();
    assert_eq!(after_release.code, ValidationCode::NotActivated);
    server.stop().await;
}

#[tokio::test]
async fn grouped_lowercase_key_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let key = seed_license(&server.url, 1).await;
    let client = builder_for(&server).build().unwrap();
    let typed = LicenseKey::parse(&key).unwrap().grouped().to_lowercase();

    let activation = client.activate(&typed, "pc-1", "").await.unwrap();

    assert_eq!(activation.license.seats_used, 1);
    server.stop().await;
}

#[tokio::test]
async fn mistyped_key_sends_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let key = seed_license(&server.url, 1).await;
    let proxy = Proxy::start(&server.url, Tamper::Nothing).await;
    let client = builder_for(&server).server_url(&proxy.url).build().unwrap();
    // Changing one character makes the check character disagree.
    let mut typo: Vec<char> = key.chars().collect();
    typo[0] = if typo[0] == 'A' { 'B' } else { 'A' };
    let typo: String = typo.into_iter().collect();

    let activate = client.activate(&typo, "pc-1", "").await;
    let validate = client.validate(&typo, "pc-1", None).await;
    let release = client.release(&typo, "pc-1").await;

    assert!(
        matches!(activate, Err(ClientError::InvalidKey(_))),
        "{activate:?}"
    );
    assert!(
        matches!(validate, Err(ClientError::InvalidKey(_))),
        "{validate:?}"
    );
    assert!(
        matches!(release, Err(ClientError::InvalidKey(_))),
        "{release:?}"
    );
    assert_eq!(proxy.requests(), 0);
    server.stop().await;
}

#[tokio::test]
async fn mistyped_key_fails_without_server() {
    let client = Client::builder()
        .server_url(closed_port_url().await)
        .trusted_key("k1", &sample_public_key())
        .no_proxy()
        .build()
        .unwrap();

    let result = client.validate("7K3M-QW2D-H8XP", "pc-1", None).await;

    assert!(
        matches!(result, Err(ClientError::InvalidKey(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn revoked_license_is_a_validation_result() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let key = seed_license(&server.url, 1).await;
    let client = builder_for(&server).build().unwrap();
    client.activate(&key, "pc-1", "").await.unwrap();
    revoke(&server.url, &key).await;

    let validation = client.validate(&key, "pc-1", None).await.unwrap();

    assert_eq!(validation.code, ValidationCode::Revoked);
    assert!(!validation.is_valid());
    server.stop().await;
}

#[tokio::test]
async fn unknown_key_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let client = builder_for(&server).build().unwrap();
    let unknown = LicenseKey::generate();

    let validation = client
        .validate(unknown.as_str(), "pc-1", None)
        .await
        .unwrap();

    assert_eq!(validation.code, ValidationCode::NotFound);
    assert!(validation.license.is_none());
    server.stop().await;
}

#[tokio::test]
async fn exhausted_seats_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let key = seed_license(&server.url, 1).await;
    let client = builder_for(&server).build().unwrap();
    client.activate(&key, "pc-1", "").await.unwrap();

    let second = client.activate(&key, "pc-2", "").await;

    let Err(ClientError::Rejected { code, message, .. }) = &second else {
        panic!("expected a rejection, got {second:?}");
    };
    assert_eq!(code, "SEATS_EXHAUSTED");
    assert!(!message.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn release_of_inactive_computer_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let key = seed_license(&server.url, 1).await;
    let client = builder_for(&server).build().unwrap();

    let result = client.release(&key, "pc-never-activated").await;

    let Err(ClientError::Rejected { code, .. }) = &result else {
        panic!("expected a rejection, got {result:?}");
    };
    assert_eq!(code, "NOT_ACTIVATED");
    server.stop().await;
}

#[tokio::test]
async fn product_mismatch_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let key = seed_license(&server.url, 1).await;
    let client = builder_for(&server).product("other-app").build().unwrap();
    client.activate(&key, "pc-1", "").await.unwrap();

    let validation = client.validate(&key, "pc-1", None).await.unwrap();

    assert_eq!(validation.code, ValidationCode::ProductMismatch);
    server.stop().await;
}

#[tokio::test]
async fn unreachable_server_is_a_transport_error() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let key = seed_license(&server.url, 1).await;
    let client = builder_for(&server)
        .server_url(closed_port_url().await)
        .build()
        .unwrap();

    let result = client.validate(&key, "pc-1", None).await;

    let Err(err) = &result else {
        panic!("expected an error, got {result:?}");
    };
    assert!(matches!(err, ClientError::Unreachable { .. }), "{err:?}");
    assert!(err.is_unreachable());
    assert_eq!(err.code(), "UNREACHABLE");
    server.stop().await;
}

#[tokio::test]
async fn standby_rejection_moves_to_active_site() {
    let active_dir = tempfile::tempdir().unwrap();
    let standby_dir = tempfile::tempdir().unwrap();
    let active = InProcess::start(test_config(active_dir.path())).await;
    let mut standby_config = test_config(standby_dir.path());
    standby_config.initial_role = "standby".into();
    let standby = InProcess::start(standby_config).await;
    let key = LicenseKey::generate().to_string();
    seed_license_with_key(&active.url, &key, 1).await;

    // The client reads the redirect file while it still names the standby site, then the
    // operator switches it. The TTL is long, so only the standby rejection makes the client
    // read the file again.
    let redirector = Redirector::start(&standby.url).await;
    let mut trusted = client_support::trusted_keys(&active);
    for key in standby.state.keyring().public_keys() {
        trusted.add(&key.kid, &key.public_key).unwrap();
    }
    let client = Client::builder()
        .enable_dr_site(true)
        .redirector_url(&redirector.url)
        .redirect_ttl(DEADLINE * 10)
        .trusted_keys(trusted)
        .no_proxy()
        .build()
        .unwrap();
    let before = client.active_url().await.unwrap();
    assert_eq!(before.as_str().trim_end_matches('/'), standby.url);
    redirector.switch_to(&active.url).await;

    let activation = client.activate(&key, "pc-1", "").await.unwrap();

    assert_eq!(activation.license.seats_used, 1);
    let after = client.active_url().await.unwrap();
    assert_eq!(after.as_str().trim_end_matches('/'), active.url);
    active.stop().await;
    standby.stop().await;
}

#[tokio::test]
async fn standby_rejection_without_redirect_is_returned() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.initial_role = "standby".into();
    let standby = InProcess::start(config).await;
    let client = builder_for(&standby).build().unwrap();
    let key = LicenseKey::generate().to_string();

    let result = client.activate(&key, "pc-1", "").await;

    let Err(ClientError::Rejected { code, .. }) = &result else {
        panic!("expected a rejection, got {result:?}");
    };
    assert_eq!(code, "SITE_STANDBY");
    standby.stop().await;
}

#[test]
fn builder_requires_trusted_key() {
    let result = Client::builder().server_url("http://127.0.0.1:1/").build();

    let Err(ClientError::Config(message)) = &result else {
        panic!("expected a configuration error, got {result:?}");
    };
    assert!(message.contains("trusted"), "{message}");
}

#[test]
fn builder_rejects_bad_settings() {
    let public_key = sample_public_key();
    let key = ("k1", public_key.as_str());
    let cases = [
        ("no server", Client::builder().trusted_key(key.0, key.1)),
        (
            "DR site without redirector",
            Client::builder()
                .trusted_key(key.0, key.1)
                .enable_dr_site(true),
        ),
        (
            "unsupported scheme",
            Client::builder()
                .trusted_key(key.0, key.1)
                .server_url("ftp://127.0.0.1/"),
        ),
        (
            "malformed public key",
            Client::builder()
                .server_url("http://127.0.0.1:1/")
                .trusted_key("k1", "not base64"),
        ),
        (
            "missing state directory",
            Client::builder()
                .server_url("http://127.0.0.1:1/")
                .trusted_key(key.0, key.1)
                .state_file("/nonexistent-keyward-dir/state.json"),
        ),
    ];

    for (name, builder) in cases {
        let result = builder.build();
        assert!(
            matches!(result, Err(ClientError::Config(_))),
            "{name}: {result:?}"
        );
    }
}

#[test]
fn short_public_key_names_its_size() {
    // Valid base64 of 16 bytes instead of 32.
    let result = Client::builder()
        .server_url("http://127.0.0.1:1/")
        .trusted_key("k1", "AAAAAAAAAAAAAAAAAAAAAA==")
        .build();

    let Err(ClientError::Config(message)) = &result else {
        panic!("expected a configuration error, got {result:?}");
    };
    assert!(message.contains("16 bytes, expected 32"), "{message}");
    assert!(message.contains("keyward keys"), "{message}");
    assert!(!message.contains("signature header"), "{message}");
}

#[tokio::test]
async fn busy_rejection_retried_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.receive.swap_wait = "100ms".into();
    let server = InProcess::start(config).await;
    let key = seed_license(&server.url, 2).await;
    let client = builder_for(&server).build().unwrap();
    let activate = |computer_id: &'static str| {
        let client = client.clone();
        let key = key.clone();
        tokio::spawn(async move { client.activate(&key, computer_id, "").await })
    };

    // The gate is held as during a swap. The first try gets BUSY after 100 ms, and the retry a
    // second later finds the swap over.
    let gate = server.state.db.close_for_swap().await.unwrap();
    let started = std::time::Instant::now();
    let short_swap = activate("pc-1");
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    gate.reopen().unwrap();
    let activation = short_swap.await.unwrap().unwrap();
    assert_eq!(activation.license.seats_used, 1);
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));

    // A swap that outlasts the retry leaves the caller with the BUSY rejection.
    let gate = server.state.db.close_for_swap().await.unwrap();
    let long_swap = activate("pc-2");
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    gate.reopen().unwrap();
    let result = long_swap.await.unwrap();
    let Err(ClientError::Rejected { code, .. }) = &result else {
        panic!("expected a BUSY rejection, got {result:?}");
    };
    assert_eq!(code, "BUSY");
    server.stop().await;
}
