//! Graceful shutdown of the built binary: SIGTERM exits with status 0, and every activation
//! acknowledged before the signal is still there after a restart.

mod common;

use std::collections::BTreeSet;

use common::{Process, admin, client, seed_license};
use reqwest::Method;
use serde_json::json;

/// Returns the computer ids with a live activation of `key`.
async fn live_computers(base: &str, key: &str) -> BTreeSet<String> {
    let path = format!("/v1/admin/licenses/{key}/activations");
    let (status, activations) = admin(base, Method::GET, &path, None).await;
    assert_eq!(status, 200, "{activations}");
    activations
        .as_array()
        .unwrap()
        .iter()
        .filter(|row| row["released_at"].is_null())
        .map(|row| row["computer_id"].as_str().unwrap().to_string())
        .collect()
}

fn assert_clean_exit(process: &mut Process) {
    let status = process.terminate();
    assert!(
        status.success(),
        "exit status {status:?} after SIGTERM: {}",
        process.stderr()
    );
}

#[tokio::test]
async fn sigterm_keeps_acknowledged_activation() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("site");
    let mut process = Process::serve(&data_dir, &[]);
    let key = seed_license(&process.url, 2).await;
    let request = json!({"key": key, "computer_id": "pc-1"});
    let (status, body) = client(&process.url, "/v1/activate", request.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_clean_exit(&mut process);
    drop(process);

    let mut restarted = Process::serve(&data_dir, &[]);
    let base = restarted.url.clone();
    let (status, body) = client(&base, "/v1/validate", request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["code"], "VALID", "after restart: {body}");
    assert_eq!(
        live_computers(&base, &key).await,
        BTreeSet::from(["pc-1".to_string()])
    );
    assert_clean_exit(&mut restarted);
}

/// SIGTERM is sent once five of forty parallel activations have finished, so others may still
/// be in flight. Those may fail, but each one that got a 200 must survive the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_during_activations_keeps_acknowledged() {
    const COMPUTERS: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("site");
    let mut process = Process::serve(&data_dir, &[]);
    let base = process.url.clone();
    let key = seed_license(&base, COMPUTERS as i64).await;

    let (done_sender, mut done_receiver) = tokio::sync::mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for index in 0..COMPUTERS {
        let (base, key, done) = (base.clone(), key.clone(), done_sender.clone());
        tasks.push(tokio::spawn(async move {
            let computer_id = format!("pc-{index}");
            let request = json!({"key": key, "computer_id": computer_id});
            let response = common::http()
                .post(format!("{base}/v1/activate"))
                .json(&request)
                .send()
                .await;
            let acknowledged = matches!(&response, Ok(response) if response.status() == 200);
            let _ = done.send(());
            acknowledged.then_some(computer_id)
        }));
    }
    for _ in 0..5 {
        done_receiver.recv().await.expect("an activation finishes");
    }
    let status = tokio::task::spawn_blocking(move || {
        let status = process.terminate();
        (status, process.stderr())
    })
    .await
    .unwrap();
    assert!(
        status.0.success(),
        "exit status {:?}: {}",
        status.0,
        status.1
    );

    let mut acknowledged = BTreeSet::new();
    for task in tasks {
        if let Some(computer_id) = task.await.unwrap() {
            acknowledged.insert(computer_id);
        }
    }
    assert!(
        acknowledged.len() >= 5,
        "at least the activations awaited before SIGTERM succeeded: {acknowledged:?}"
    );

    let mut restarted = Process::serve(&data_dir, &[]);
    let live = live_computers(&restarted.url, &key).await;
    let lost: Vec<&String> = acknowledged.difference(&live).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    assert_clean_exit(&mut restarted);
}
