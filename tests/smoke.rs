mod common;

use common::{InProcess, client, seed_license, test_config};

#[tokio::test]
async fn activate_then_validate_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let key = seed_license(&server.url, 1).await;
    let (status, body) = client(
        &server.url,
        "/v1/activate",
        serde_json::json!({"key": key, "computer_id": "pc-1"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = client(
        &server.url,
        "/v1/validate",
        serde_json::json!({"key": key, "computer_id": "pc-1"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["code"], "VALID");
    server.stop().await;
}

#[test]
fn binary_serves_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut process = common::Process::serve(&dir.path().join("site"), &[]);
    let health = reqwest::blocking::get(format!("{}/healthz", process.url));
    assert!(health.is_ok());
    let status = process.terminate();
    assert!(
        status.success(),
        "exit status {status:?}: {}",
        process.stderr()
    );
}
