//! Role changes while requests are in flight: every activation either commits and is
//! acknowledged, or is rejected with SITE_STANDBY; none is acknowledged and then lost.

mod common;

use std::sync::Arc;

use common::{InProcess, admin, client, seed_license, test_config};
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn demotion_during_activations_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let key = Arc::new(seed_license(&server.url, 1000).await);
    let url = Arc::new(server.url.clone());

    // A few activations finish before the concurrent burst, so some writes precede the demotion.
    for n in 0..5 {
        let computer = format!("early-{n}");
        let (status, body) = client(
            &url,
            "/v1/activate",
            json!({"key": *key, "computer_id": computer}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let mut acknowledged: Vec<String> = (0..5).map(|n| format!("early-{n}")).collect();

    let mut tasks = Vec::new();
    for n in 0..300 {
        let (task_url, key) = (url.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let computer = format!("pc-{n}");
            let (status, body) = client(
                &task_url,
                "/v1/activate",
                json!({"key": *key, "computer_id": computer}),
            )
            .await;
            (computer, status, body["code"].as_str().map(str::to_string))
        }));
        if n == 150 {
            let (status, body) = admin(&url, Method::POST, "/v1/admin/demote", None).await;
            assert_eq!(status, 200, "{body}");
        }
    }
    let mut rejected = 0;
    for task in tasks {
        let (computer, status, code) = task.await.unwrap();
        match status {
            200 => acknowledged.push(computer),
            503 => {
                assert_eq!(code.as_deref(), Some("SITE_STANDBY"));
                rejected += 1;
            }
            other => panic!("unexpected status {other} for {computer}"),
        }
    }
    assert!(rejected > 0, "the demotion took effect");
    assert!(
        !acknowledged.is_empty(),
        "writes before the demotion succeeded"
    );

    // Standby rejects admin changes too, and validation still works.
    let (status, body) = admin(
        &url,
        Method::POST,
        "/v1/admin/products",
        Some(json!({"code": "x", "name": "X"})),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "SITE_STANDBY");

    let (status, _) = admin(&url, Method::POST, "/v1/admin/promote", None).await;
    assert_eq!(status, 200);
    let (_, activations) = admin(
        &url,
        Method::GET,
        &format!("/v1/admin/licenses/{key}/activations"),
        None,
    )
    .await;
    let stored: Vec<&str> = activations
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["computer_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        stored.len(),
        acknowledged.len(),
        "stored activations equal acknowledged ones"
    );
    for computer in &acknowledged {
        assert!(
            stored.contains(&computer.as_str()),
            "{computer} was acknowledged but is missing"
        );
    }

    // The promotion started a new epoch.
    let (_, status) = admin(&url, Method::GET, "/v1/admin/status", None).await;
    let epochs = status["position"]["epochs"].as_array().unwrap();
    assert_eq!(epochs.len(), 2, "{status}");
    server.stop().await;
}
