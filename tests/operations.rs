//! Operations endpoints against real servers: readiness, metrics after real traffic, and
//! request ids.

mod common;

use std::time::Duration;

use common::{InProcess, PEER_SECRET, admin, client, http, seed_license, test_config};
use reqwest::Method;

/// Returns the value of the sample written exactly as `series` (name and labels), if present.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.parse().ok()
    })
}

async fn scrape(base: &str) -> String {
    let response = http()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    response.text().await.unwrap()
}

async fn readyz(base: &str) -> (u16, serde_json::Value) {
    let response = http().get(format!("{base}/readyz")).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_fails_while_database_closed() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;

    let (status, body) = readyz(&server.url).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ready"], true);
    assert_eq!(body["role"], "active");

    // A snapshot swap closes every connection; hold it closed as a swap would.
    let swap = server.state.db.close_for_swap().await.unwrap();
    let (status, body) = readyz(&server.url).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["ready"], false);
    let reason = body["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("timed out"), "{body}");

    let health = http()
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        health.status(),
        200,
        "liveness does not depend on the database"
    );

    swap.reopen().unwrap();
    let (status, body) = readyz(&server.url).await;
    assert_eq!(status, 200, "{body}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_traffic_and_snapshots() {
    let dir = tempfile::tempdir().unwrap();

    let mut dr_config = test_config(&dir.path().join("dr"));
    dr_config.initial_role = "standby".into();
    dr_config.peer.secret = keyward::config::Secret(PEER_SECRET.into());
    let dr = InProcess::start(dr_config).await;

    let primary_dir = dir.path().join("primary");
    let mut config = test_config(&primary_dir);
    config.peer.url = dr.url.clone();
    config.peer.secret = keyward::config::Secret(PEER_SECRET.into());
    let primary = InProcess::start(config).await;

    // Client and admin traffic.
    let key = seed_license(&primary.url, 2).await;
    for computer in ["pc-1", "pc-2", "pc-3"] {
        let (status, _) = client(
            &primary.url,
            "/v1/validate",
            serde_json::json!({"key": key, "computer_id": computer}),
        )
        .await;
        assert_eq!(status, 200);
    }
    let (status, _) = admin(
        &primary.url,
        Method::GET,
        &format!("/v1/admin/licenses/{key}"),
        None,
    )
    .await;
    assert_eq!(status, 200);

    let metrics = scrape(&primary.url).await;
    let validations =
        "keyward_http_requests_total{route=\"/v1/validate\",method=\"POST\",status=\"200\"}";
    assert_eq!(sample(&metrics, validations), Some(3.0), "{metrics}");
    let by_template = "keyward_http_requests_total{route=\"/v1/admin/licenses/{key}\",method=\"GET\",status=\"200\"}";
    assert_eq!(sample(&metrics, by_template), Some(1.0), "{metrics}");
    assert!(!metrics.contains(&key), "a license key leaked into a label");
    let histogram =
        "keyward_http_request_duration_seconds_count{route=\"/v1/validate\",method=\"POST\"}";
    assert_eq!(sample(&metrics, histogram), Some(3.0), "{metrics}");
    assert_eq!(sample(&metrics, "keyward_role{role=\"active\"}"), Some(1.0));
    assert_eq!(
        sample(&metrics, "keyward_role{role=\"standby\"}"),
        Some(0.0)
    );
    assert_eq!(sample(&metrics, "keyward_epoch"), Some(1.0), "{metrics}");
    assert_eq!(sample(&metrics, "keyward_last_snapshot_sequence"), None);
    assert_eq!(sample(&metrics, "keyward_divergence"), Some(0.0));
    let lag = sample(&metrics, "keyward_replication_lag_writes").unwrap();
    assert!(
        lag >= 2.0,
        "nothing shipped yet, so every write lags: {lag}"
    );

    // A snapshot sets the snapshot gauges, and the shipper delivers it to the DR.
    let (status, manifest) = admin(&primary.url, Method::POST, "/v1/admin/snapshots", None).await;
    assert_eq!(status, 201, "{manifest}");
    let metrics = scrape(&primary.url).await;
    assert_eq!(
        sample(&metrics, "keyward_last_snapshot_sequence"),
        manifest["sequence"].as_f64()
    );
    assert_eq!(
        sample(&metrics, "keyward_last_snapshot_size_bytes"),
        manifest["size"].as_f64()
    );
    let taken = sample(&metrics, "keyward_last_snapshot_timestamp_seconds").unwrap();
    let now = chrono::Utc::now().timestamp() as f64;
    assert!((now - taken).abs() < 60.0, "taken {taken}, now {now}");
    let age = sample(&metrics, "keyward_snapshot_age_seconds").unwrap();
    assert!((0.0..60.0).contains(&age), "{age}");

    let mut shipped = String::new();
    for _ in 0..100 {
        shipped = scrape(&primary.url).await;
        if sample(&shipped, "keyward_last_ship_success_timestamp_seconds").is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        sample(&shipped, "keyward_last_ship_success_timestamp_seconds").is_some(),
        "{shipped}"
    );
    assert_eq!(
        sample(&shipped, "keyward_replication_lag_writes"),
        Some(0.0)
    );
    assert_eq!(
        sample(&shipped, "keyward_replication_lag_seconds"),
        Some(0.0)
    );

    // A write after the shipment lags until the next one.
    seed_license(&primary.url, 1).await;
    let metrics = scrape(&primary.url).await;
    let lag = sample(&metrics, "keyward_replication_lag_writes").unwrap();
    assert!(lag >= 1.0, "{metrics}");
    let lag_seconds = sample(&metrics, "keyward_replication_lag_seconds").unwrap();
    assert!(lag_seconds >= 0.0, "{metrics}");

    // The DR counts a damaged upload by its rejection code.
    let dr_metrics = scrape(&dr.url).await;
    assert_eq!(
        sample(&dr_metrics, "keyward_role{role=\"standby\"}"),
        Some(1.0)
    );
    assert!(
        sample(&dr_metrics, "keyward_last_applied_timestamp_seconds").is_some(),
        "{dr_metrics}"
    );
    let (file, manifest_bytes) = common::newest_snapshot(&primary_dir);
    let mut damaged = std::fs::read(file).unwrap();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x40;
    let dr_url = dr.url.clone();
    let (status, body) = tokio::task::spawn_blocking(move || {
        common::upload_snapshot(&dr_url, Some(PEER_SECRET), damaged, &manifest_bytes, true)
    })
    .await
    .unwrap();
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["code"], "CHECKSUM_MISMATCH");
    let dr_metrics = scrape(&dr.url).await;
    let rejected = "keyward_snapshot_rejections_total{code=\"CHECKSUM_MISMATCH\"}";
    assert_eq!(sample(&dr_metrics, rejected), Some(1.0), "{dr_metrics}");

    primary.stop().await;
    dr.stop().await;
}

#[tokio::test]
async fn request_id_echoed_or_generated() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let url = format!("{}/healthz", server.url);

    let response = http()
        .get(&url)
        .header("x-request-id", "trace-42:a/b")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-42:a/b");

    let generated = |response: &reqwest::Response| {
        response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_string()
    };
    let first = generated(&http().get(&url).send().await.unwrap());
    let second = generated(&http().get(&url).send().await.unwrap());
    assert_eq!(first.len(), 32, "{first}");
    assert!(first.chars().all(|c| c.is_ascii_hexdigit()), "{first}");
    assert_ne!(first, second);

    // An id that is unsafe to log is replaced, not echoed.
    let response = http()
        .get(&url)
        .header("x-request-id", "two words")
        .send()
        .await
        .unwrap();
    let replaced = generated(&response);
    assert_eq!(replaced.len(), 32, "{replaced}");

    // Errors from unknown routes carry an id too.
    let response = http()
        .get(format!("{}/no/such/route", server.url))
        .header("x-request-id", "missing-route")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(response.headers()["x-request-id"], "missing-route");
    server.stop().await;
}
