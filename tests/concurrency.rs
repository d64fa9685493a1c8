//! Parallel activations never hand out more seats than a license has.

mod common;

use std::sync::Arc;

use common::{InProcess, admin, client, seed_license, test_config};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::Barrier;

const COMPUTERS: usize = 50;
const SEATS: i64 = 5;

/// Sends one activation per computer id, all started together behind a barrier, and returns
/// the responses.
async fn activate_in_parallel(
    base: &str,
    key: &str,
    computer_ids: Vec<String>,
) -> Vec<(u16, Value)> {
    let barrier = Arc::new(Barrier::new(computer_ids.len()));
    let mut tasks = Vec::new();
    for computer_id in computer_ids {
        let (base, key, barrier) = (base.to_string(), key.to_string(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let request = json!({"key": key, "computer_id": computer_id});
            client(&base, "/v1/activate", request).await
        }));
    }
    let mut responses = Vec::new();
    for task in tasks {
        responses.push(task.await.expect("activation task"));
    }
    responses
}

async fn show_license(base: &str, key: &str) -> Value {
    let (status, body) = admin(
        base,
        Method::GET,
        &format!("/v1/admin/licenses/{key}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_activations_respect_seats() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let base = server.url.as_str();
    let key = seed_license(base, SEATS).await;

    let computer_ids = (0..COMPUTERS).map(|index| format!("pc-{index}")).collect();
    let responses = activate_in_parallel(base, &key, computer_ids).await;

    let activated = responses
        .iter()
        .filter(|(status, body)| *status == 200 && body["result"] == "ACTIVATED")
        .count();
    let exhausted = responses
        .iter()
        .filter(|(status, body)| *status == 409 && body["code"] == "SEATS_EXHAUSTED")
        .count();
    assert_eq!(activated, SEATS as usize, "{responses:?}");
    assert_eq!(exhausted, COMPUTERS - SEATS as usize, "{responses:?}");

    let license = show_license(base, &key).await;
    assert_eq!(license["seats_used"], SEATS);
    let path = format!("/v1/admin/licenses/{key}/activations");
    let (_, activations) = admin(base, Method::GET, &path, None).await;
    let live = activations
        .as_array()
        .unwrap()
        .iter()
        .filter(|row| row["released_at"].is_null())
        .count();
    assert_eq!(live, SEATS as usize, "{activations}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_same_computer_takes_one_seat() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let base = server.url.as_str();
    let key = seed_license(base, SEATS).await;

    let computer_ids = vec!["pc-same".to_string(); COMPUTERS];
    let responses = activate_in_parallel(base, &key, computer_ids).await;

    let results: Vec<&str> = responses
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 200, "{body}");
            body["result"].as_str().unwrap_or_default()
        })
        .collect();
    let first = results
        .iter()
        .filter(|result| **result == "ACTIVATED")
        .count();
    let repeated = results
        .iter()
        .filter(|result| **result == "ALREADY_ACTIVATED")
        .count();
    assert_eq!(first, 1, "{results:?}");
    assert_eq!(repeated, COMPUTERS - 1, "{results:?}");
    assert_eq!(show_license(base, &key).await["seats_used"], 1);
    server.stop().await;
}
