//! A snapshot taken while writers run is one consistent point in time.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{InProcess, admin, client, seed_license, test_config};
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn snapshot_under_concurrent_writes_is_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let key = Arc::new(seed_license(&server.url, 100_000).await);
    let stop = Arc::new(AtomicBool::new(false));

    let mut writers = Vec::new();
    for writer in 0..8 {
        let (url, key, stop) = (server.url.clone(), key.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut count = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let computer = format!("w{writer}-{count}");
                let (status, _) = client(
                    &url,
                    "/v1/activate",
                    json!({"key": *key, "computer_id": computer}),
                )
                .await;
                assert_eq!(status, 200);
                count += 1;
            }
            count
        }));
    }

    let mut manifests = Vec::new();
    for _ in 0..5 {
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        let (status, manifest) =
            admin(&server.url, Method::POST, "/v1/admin/snapshots", None).await;
        assert_eq!(status, 201, "{manifest}");
        manifests.push(manifest);
    }
    stop.store(true, Ordering::SeqCst);
    let mut total = 0;
    for writer in writers {
        total += writer.await.unwrap();
    }
    assert!(total > 0);

    let mut previous = 0;
    for manifest in manifests {
        let path = dir.path().join("snapshots").join(format!(
            "snap-{:010}.db",
            manifest["sequence"].as_u64().unwrap()
        ));
        let conn = rusqlite::Connection::open(&path).unwrap();
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        // Each activation commits together with its audit entry: a torn copy would differ.
        let activations: i64 = conn
            .query_row("SELECT count(*) FROM activations", [], |r| r.get(0))
            .unwrap();
        let audited: i64 = conn
            .query_row(
                "SELECT count(*) FROM audit_log WHERE action = 'activation.create'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(activations, audited);
        let seats_used: i64 = conn
            .query_row(
                "SELECT count(*) FROM activations WHERE released_at IS NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(seats_used, activations);
        let write_seq: i64 = conn
            .query_row("SELECT write_seq FROM database_state", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            write_seq,
            manifest["position"]["write_seq"].as_i64().unwrap()
        );
        assert!(activations >= previous, "snapshots move forward");
        previous = activations;
    }
    assert!(previous > 0, "writes landed in the snapshots");
    server.stop().await;
}
