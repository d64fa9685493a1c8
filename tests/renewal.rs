//! Renewals reach the next validation: an expired subscription becomes valid again, and a
//! renewed maintenance plan shows its new date, in validations and in license files.

mod common;
mod helpers;
mod raw_http;

use chrono::Duration;
use helpers::{activate, admin_post, create_license, start_clocked, validate};
use keyward::offline;
use keyward::time::Clock;
use serde_json::json;

#[tokio::test]
async fn subscription_renewal_reaches_validation() {
    let dir = tempfile::tempdir().unwrap();
    let (server, clock) = start_clocked(dir.path(), |_| {}).await;
    let base = server.url.as_str();
    let first_term = keyward::time::format(clock.now() + Duration::days(30));
    let key = create_license(
        base,
        json!({"model": "subscription", "expires_at": first_term}),
    )
    .await;
    let (status, body) = activate(base, &key, "pc-1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(validate(base, &key, "pc-1").await["code"], "VALID");

    clock.advance(31 * 24 * 60 * 60);
    let lapsed = validate(base, &key, "pc-1").await;
    assert_eq!(lapsed["code"], "EXPIRED");
    assert_eq!(lapsed["license"]["expires_at"], first_term.as_str());

    let second_term = keyward::time::format(clock.now() + Duration::days(365));
    let path = format!("/v1/admin/licenses/{key}/renew");
    let (status, body) = admin_post(base, &path, Some(json!({"expires_at": second_term}))).await;
    assert_eq!(status, 200, "{body}");

    let renewed = validate(base, &key, "pc-1").await;
    assert_eq!(renewed["code"], "VALID");
    assert_eq!(renewed["valid"], true);
    assert_eq!(renewed["license"]["expires_at"], second_term.as_str());
    server.stop().await;
}

#[tokio::test]
async fn subscription_renewed_before_lapse_continues() {
    let dir = tempfile::tempdir().unwrap();
    let (server, clock) = start_clocked(dir.path(), |_| {}).await;
    let base = server.url.as_str();
    let first_term = keyward::time::format(clock.now() + Duration::days(30));
    let key = create_license(
        base,
        json!({"model": "subscription", "expires_at": first_term}),
    )
    .await;
    let (status, body) = activate(base, &key, "pc-1").await;
    assert_eq!(status, 200, "{body}");

    let second_term = keyward::time::format(clock.now() + Duration::days(60));
    let path = format!("/v1/admin/licenses/{key}/renew");
    let (status, body) = admin_post(base, &path, Some(json!({"expires_at": second_term}))).await;
    assert_eq!(status, 200, "{body}");

    clock.advance(45 * 24 * 60 * 60);
    let validation = validate(base, &key, "pc-1").await;
    assert_eq!(validation["code"], "VALID", "past the first term");
    assert_eq!(validation["license"]["expires_at"], second_term.as_str());
    server.stop().await;
}

#[tokio::test]
async fn maintenance_renewal_reaches_validation() {
    let dir = tempfile::tempdir().unwrap();
    let (server, clock) = start_clocked(dir.path(), |_| {}).await;
    let base = server.url.as_str();
    let first_plan = keyward::time::format(clock.now() + Duration::days(10));
    let key = create_license(
        base,
        json!({"model": "permanent", "maintenance_expires_at": first_plan}),
    )
    .await;
    let (status, body) = activate(base, &key, "pc-1").await;
    assert_eq!(status, 200, "{body}");
    let before = validate(base, &key, "pc-1").await;
    assert_eq!(
        before["license"]["maintenance_expires_at"],
        first_plan.as_str()
    );

    let second_plan = keyward::time::format(clock.now() + Duration::days(375));
    let path = format!("/v1/admin/licenses/{key}/renew");
    let request = json!({"maintenance_expires_at": second_plan});
    let (status, body) = admin_post(base, &path, Some(request)).await;
    assert_eq!(status, 200, "{body}");

    let after = validate(base, &key, "pc-1").await;
    assert_eq!(after["code"], "VALID");
    assert_eq!(
        after["license"]["maintenance_expires_at"],
        second_plan.as_str()
    );
    assert_eq!(
        after["license"]["expires_at"],
        serde_json::Value::Null,
        "a maintenance renewal leaves the permanent license without expiry"
    );

    let trusted = raw_http::trusted_keys(base).await;
    let request = json!({"key": key, "computer_id": "pc-1"});
    let response = raw_http::post_json(base, "/v1/license-file", &request).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let file = offline::verify_license_file(&response.body, &trusted, "pc-1").unwrap();
    assert_eq!(
        file.maintenance_expires_at.as_deref(),
        Some(second_plan.as_str()),
        "a license file fetched after the renewal"
    );
    server.stop().await;
}

#[tokio::test]
async fn renewal_needs_future_date() {
    let dir = tempfile::tempdir().unwrap();
    let (server, clock) = start_clocked(dir.path(), |_| {}).await;
    let base = server.url.as_str();
    let term = keyward::time::format(clock.now() + Duration::days(30));
    let key = create_license(base, json!({"model": "subscription", "expires_at": term})).await;
    let path = format!("/v1/admin/licenses/{key}/renew");

    let past = keyward::time::format(clock.now() - Duration::days(1));
    for (value, expected) in [
        ("", "not a renewal date"),
        (past.as_str(), "not in the future"),
    ] {
        let (status, body) = admin_post(base, &path, Some(json!({"expires_at": value}))).await;
        assert_eq!(status, 422, "{value:?}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(expected), "{value:?}: {message}");
    }
    let license = helpers::show_license(base, &key).await;
    assert_eq!(license["expires_at"], term.as_str(), "the license changed");
    server.stop().await;
}

#[tokio::test]
async fn trial_keeps_an_end() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = start_clocked(dir.path(), |_| {}).await;
    let base = server.url.as_str();
    let key = create_license(base, json!({"model": "trial", "duration_days": 14})).await;

    let (status, body) = common::admin(
        base,
        reqwest::Method::PATCH,
        &format!("/v1/admin/licenses/{key}"),
        Some(json!({"duration_days": 0})),
    )
    .await;

    assert_eq!(status, 422, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("trial license needs"),
        "{body}"
    );
    assert_eq!(helpers::show_license(base, &key).await["duration_days"], 14);
    server.stop().await;
}
