//! Response verification: a server with another signing key, and a loopback proxy that alters
//! the body, drops the signature, swaps the nonce or replays an earlier response.

mod client_support;
mod common;

use std::sync::Arc;

use client_support::{Proxy, Tamper, builder_for, revoke, seed_license_with_key};
use common::{InProcess, seed_license, test_config};
use keyward::client::{ClientError, UntrustedReason, ValidationCode};
use keyward::keys::LicenseKey;
use keyward::signing::VerifyError;
use keyward::time::OffsetClock;

/// Returns the reason of an untrusted-response error, failing the test for any other result.
fn untrusted_reason<T: std::fmt::Debug>(result: &Result<T, ClientError>) -> UntrustedReason {
    match result {
        Err(ClientError::UntrustedResponse { reason, .. }) => reason.clone(),
        other => panic!("expected an untrusted response, got {other:?}"),
    }
}

#[tokio::test]
async fn other_signing_key_is_untrusted() {
    let trusted_dir = tempfile::tempdir().unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let trusted = InProcess::start(test_config(trusted_dir.path())).await;
    let other = InProcess::start(test_config(other_dir.path())).await;
    let key = LicenseKey::generate().to_string();
    seed_license_with_key(&other.url, &key, 1).await;
    // The client trusts only the first server's key but talks to the second server, which
    // holds a valid license for this key.
    let client = builder_for(&trusted)
        .server_url(&other.url)
        .build()
        .unwrap();

    let activate = client.activate(&key, "pc-1", "").await;
    let validate = client.validate(&key, "pc-1", None).await;
    let unknown = client
        .validate(LicenseKey::generate().as_str(), "pc-1", None)
        .await;
    let release = client.release(&key, "pc-1").await;

    for (name, reason) in [
        ("activate", untrusted_reason(&activate)),
        ("validate", untrusted_reason(&validate)),
        ("unknown key", untrusted_reason(&unknown)),
        ("release", untrusted_reason(&release)),
    ] {
        assert!(
            matches!(
                reason,
                UntrustedReason::Signature(VerifyError::UnknownKey(_))
            ),
            "{name}: {reason:?}"
        );
    }
    let err = validate.unwrap_err();
    assert_eq!(err.code(), "UNTRUSTED_RESPONSE");
    assert!(!err.is_unreachable());
    trusted.stop().await;
    other.stop().await;
}

#[tokio::test]
async fn rewritten_body_is_untrusted() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let key = seed_license(&server.url, 1).await;
    let direct = builder_for(&server).build().unwrap();
    direct.activate(&key, "pc-1", "").await.unwrap();
    revoke(&server.url, &key).await;
    let proxy = Proxy::start(&server.url, Tamper::RewriteBody).await;
    let client = builder_for(&server).server_url(&proxy.url).build().unwrap();

    let honest = direct.validate(&key, "pc-1", None).await.unwrap();
    let tampered = client.validate(&key, "pc-1", None).await;

    assert_eq!(honest.code, ValidationCode::Revoked);
    assert_eq!(
        untrusted_reason(&tampered),
        UntrustedReason::Signature(VerifyError::BadSignature)
    );
    assert_eq!(proxy.requests(), 1);
    server.stop().await;
}

#[tokio::test]
async fn missing_signature_is_untrusted() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let key = seed_license(&server.url, 1).await;
    let proxy = Proxy::start(&server.url, Tamper::StripSignature).await;
    let client = builder_for(&server).server_url(&proxy.url).build().unwrap();

    let validate = client.validate(&key, "pc-1", None).await;
    let activate = client.activate(&key, "pc-1", "").await;

    assert_eq!(
        untrusted_reason(&validate),
        UntrustedReason::Signature(VerifyError::MissingSignature)
    );
    assert_eq!(
        untrusted_reason(&activate),
        UntrustedReason::Signature(VerifyError::MissingSignature)
    );
    server.stop().await;
}

#[tokio::test]
async fn wrong_nonce_is_untrusted() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let key = seed_license(&server.url, 1).await;
    let proxy = Proxy::start(&server.url, Tamper::SwapNonce).await;
    let client = builder_for(&server).server_url(&proxy.url).build().unwrap();

    let result = client.validate(&key, "pc-1", None).await;

    let UntrustedReason::NonceMismatch { expected, received } = untrusted_reason(&result) else {
        panic!("expected a nonce mismatch, got {result:?}");
    };
    assert_eq!(received.as_deref(), Some("a-nonce-the-client-never-sent"));
    assert_ne!(expected, "a-nonce-the-client-never-sent");
    server.stop().await;
}

#[tokio::test]
async fn replayed_response_is_untrusted() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let key = seed_license(&server.url, 1).await;
    let direct = builder_for(&server).build().unwrap();
    direct.activate(&key, "pc-1", "").await.unwrap();
    let proxy = Proxy::start(&server.url, Tamper::Replay).await;
    let client = builder_for(&server).server_url(&proxy.url).build().unwrap();

    // The first VALID response passes through and is recorded. After the license is
    // revoked, the proxy replays it.
    let recorded = client.validate(&key, "pc-1", None).await.unwrap();
    revoke(&server.url, &key).await;
    let replayed = client.validate(&key, "pc-1", None).await;

    assert_eq!(recorded.code, ValidationCode::Valid);
    assert!(
        matches!(
            untrusted_reason(&replayed),
            UntrustedReason::NonceMismatch { .. }
        ),
        "{replayed:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn skewed_server_time_is_untrusted() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(OffsetClock::default());
    clock.advance(3600);
    let server = InProcess::start_with_clock(test_config(dir.path()), clock).await;
    let key = seed_license(&server.url, 1).await;
    let client = builder_for(&server).build().unwrap();

    let result = client.validate(&key, "pc-1", None).await;

    let UntrustedReason::ClockSkew { skew_seconds, .. } = untrusted_reason(&result) else {
        panic!("expected a clock skew, got {result:?}");
    };
    assert!((3590..=3610).contains(&skew_seconds), "{skew_seconds}");
    server.stop().await;
}

#[tokio::test]
async fn untrusted_response_skips_offline_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let key = seed_license(&server.url, 1).await;
    let direct = builder_for(&server).build().unwrap();
    let activation = direct.activate(&key, "pc-1", "").await.unwrap();
    let proxy = Proxy::start(&server.url, Tamper::StripSignature).await;
    let client = builder_for(&server).server_url(&proxy.url).build().unwrap();

    let result = client
        .validate_or_offline(&key, "pc-1", &activation.computer_key)
        .await;

    assert!(
        matches!(result, Err(ClientError::UntrustedResponse { .. })),
        "{result:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn untampered_proxy_is_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let key = seed_license(&server.url, 1).await;
    let proxy = Proxy::start(&server.url, Tamper::Nothing).await;
    let client = builder_for(&server).server_url(&proxy.url).build().unwrap();

    let activation = client.activate(&key, "pc-1", "").await.unwrap();
    let validation = client.validate(&key, "pc-1", None).await.unwrap();

    assert!(!activation.already_active);
    assert_eq!(validation.code, ValidationCode::Valid);
    assert_eq!(proxy.requests(), 2);
    server.stop().await;
}
