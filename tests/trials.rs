//! Trial use per computer and product: a computer that activated one trial of a product cannot
//! start another, whatever it releases or deletes.

mod common;
mod helpers;

use common::admin;
use helpers::{activate, create_license, release, start_clocked};
use reqwest::Method;
use serde_json::json;

async fn trial_license(base: &str, product: &str) -> String {
    create_license(
        base,
        json!({"product": product, "model": "trial", "duration_days": 14}),
    )
    .await
}

#[tokio::test]
async fn second_trial_key_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = start_clocked(dir.path(), |_| {}).await;
    let base = server.url.as_str();
    let first = trial_license(base, "app").await;
    let second = trial_license(base, "app").await;

    let (status, body) = activate(base, &first, "pc-1").await;
    assert_eq!(status, 200, "first trial: {body}");
    let (status, body) = activate(base, &second, "pc-1").await;
    assert_eq!(status, 403, "second trial on the same computer: {body}");
    assert_eq!(body["code"], "TRIAL_USED");
    let (status, body) = activate(base, &second, "pc-2").await;
    assert_eq!(status, 200, "the second trial on another computer: {body}");
    server.stop().await;
}

#[tokio::test]
async fn trial_use_survives_release_and_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = start_clocked(dir.path(), |_| {}).await;
    let base = server.url.as_str();
    let first = trial_license(base, "app").await;
    let second = trial_license(base, "app").await;

    let (status, body) = activate(base, &first, "pc-1").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = release(base, &first, "pc-1").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = activate(base, &second, "pc-1").await;
    assert_eq!(status, 403, "after releasing the first trial: {body}");
    assert_eq!(body["code"], "TRIAL_USED");

    let (status, body) = activate(base, &first, "pc-1").await;
    assert_eq!(status, 200, "the same trial key again: {body}");
    assert_eq!(body["result"], "ACTIVATED");

    let path = format!("/v1/admin/licenses/{first}");
    let (status, body) = admin(base, Method::DELETE, &path, None).await;
    assert_eq!(status, 204, "deleting the first trial: {body}");
    let (status, body) = activate(base, &second, "pc-1").await;
    assert_eq!(status, 403, "after deleting the first trial: {body}");
    assert_eq!(body["code"], "TRIAL_USED");
    server.stop().await;
}

#[tokio::test]
async fn trial_limit_is_per_product() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = start_clocked(dir.path(), |_| {}).await;
    let base = server.url.as_str();
    let app_trial = trial_license(base, "app").await;
    let other_trial = trial_license(base, "other").await;
    let bought = create_license(base, json!({"model": "permanent"})).await;

    let (status, body) = activate(base, &app_trial, "pc-1").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = activate(base, &other_trial, "pc-1").await;
    assert_eq!(status, 200, "a trial of another product: {body}");
    let (status, body) = activate(base, &bought, "pc-1").await;
    assert_eq!(status, 200, "a bought license after the trial: {body}");
    server.stop().await;
}

#[tokio::test]
async fn trial_limit_follows_config() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = start_clocked(dir.path(), |config| {
        config.trials.max_per_computer = 2;
    })
    .await;
    let base = server.url.as_str();
    let mut keys = Vec::new();
    for _ in 0..3 {
        keys.push(trial_license(base, "app").await);
    }

    let (status, body) = activate(base, &keys[0], "pc-1").await;
    assert_eq!(status, 200, "first trial: {body}");
    let (status, body) = activate(base, &keys[1], "pc-1").await;
    assert_eq!(status, 200, "second trial: {body}");
    let (status, body) = activate(base, &keys[2], "pc-1").await;
    assert_eq!(status, 403, "third trial: {body}");
    assert_eq!(body["code"], "TRIAL_USED");
    server.stop().await;
}

#[tokio::test]
async fn unlimited_trials_when_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _clock) = start_clocked(dir.path(), |config| {
        config.trials.max_per_computer = 0;
    })
    .await;
    let base = server.url.as_str();
    for index in 0..3 {
        let key = trial_license(base, "app").await;
        let (status, body) = activate(base, &key, "pc-1").await;
        assert_eq!(status, 200, "trial {index}: {body}");
    }
    server.stop().await;
}
