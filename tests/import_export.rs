//! CSV import (all or nothing, bad rows reported by line) and export in the same format.

mod common;

use std::path::PathBuf;

use common::{ADMIN_TOKEN, InProcess, Process, admin, test_config};
use reqwest::Method;

fn sample_csv() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("sample-data")
        .join("licenses.csv")
}

async fn import(base: &str, body: Vec<u8>, create_products: bool) -> (u16, serde_json::Value) {
    let response = common::http()
        .post(format!(
            "{base}/v1/admin/licenses/import?create_products={create_products}"
        ))
        .bearer_auth(ADMIN_TOKEN)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn export(base: &str) -> String {
    let response = common::http()
        .get(format!("{base}/v1/admin/licenses/export"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    response.text().await.unwrap()
}

#[test]
fn sample_keys_are_valid() {
    let text = std::fs::read_to_string(sample_csv()).unwrap();
    let mut rows = 0;
    for line in text.lines().skip(1) {
        let key = line.split(',').next().unwrap();
        assert!(keyward::keys::LicenseKey::parse(key).is_ok(), "{key}");
        assert!(line.contains("@example.test"), "{line}");
        rows += 1;
    }
    assert!(rows >= 10_000, "{rows}");
}

#[tokio::test]
async fn sample_import_then_export_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(&dir.path().join("a"))).await;
    let data = std::fs::read(sample_csv()).unwrap();
    let (status, body) = import(&server.url, data.clone(), true).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["imported"], 10_000);
    assert_eq!(body["products_created"].as_array().unwrap().len(), 5);

    // Keys from the file are kept.
    let first_key = String::from_utf8_lossy(&data)
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .to_string();
    let (status, license) = admin(
        &server.url,
        Method::GET,
        &format!("/v1/admin/licenses/{first_key}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{license}");
    assert_eq!(license["customer_email"], "customer00001@example.test");

    let exported = export(&server.url).await;
    assert_eq!(exported.lines().count(), 10_001);
    server.stop().await;

    // The export imports into a fresh server and exports back identically.
    let second = InProcess::start(test_config(&dir.path().join("b"))).await;
    let (status, body) = import(&second.url, exported.clone().into_bytes(), true).await;
    assert_eq!(status, 200, "{body}");
    let again = export(&second.url).await;
    assert_eq!(again, exported);
    second.stop().await;
}

#[tokio::test]
async fn bad_rows_reported_and_nothing_imported() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let good = std::fs::read_to_string(sample_csv()).unwrap();
    let mut lines: Vec<String> = good.lines().take(6).map(str::to_string).collect();
    let duplicate = lines[1].clone();
    lines[2] = lines[2]
        .replacen(",permanent,", ",lifetime,", 1)
        .replacen(",trial,", ",lifetime,", 1)
        .replacen(",subscription,", ",lifetime,", 1);
    lines[3] = lines[3].replacen(",1,", ",many,", 1);
    lines.push(duplicate);
    lines.push(",no-such-product,permanent,1,,,,,,,,,".to_string());
    let csv = lines.join("\n");

    let (status, body) = import(&server.url, csv.clone().into_bytes(), false).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["code"], "INVALID_ROWS");
    let errors = body["errors"].as_array().unwrap();
    let lines_reported: Vec<u64> = errors.iter().map(|e| e["line"].as_u64().unwrap()).collect();
    assert!(lines_reported.contains(&3), "bad model on line 3: {body}");
    assert!(
        lines_reported.contains(&8),
        "unknown product on line 8: {body}"
    );
    let model_error = errors.iter().find(|e| e["line"] == 3).unwrap();
    assert!(
        model_error["message"]
            .as_str()
            .unwrap()
            .contains("lifetime"),
        "{body}"
    );

    let (_, listed) = admin(&server.url, Method::GET, "/v1/admin/licenses", None).await;
    assert_eq!(listed.as_array().unwrap().len(), 0, "nothing was imported");
    let (_, products) = admin(&server.url, Method::GET, "/v1/admin/products", None).await;
    assert_eq!(products.as_array().unwrap().len(), 0);

    // A wrong header is rejected before any row.
    let (status, body) = import(&server.url, b"product,seats\napp,1\n".to_vec(), true).await;
    assert_eq!(status, 422);
    assert_eq!(body["code"], "INVALID_CSV");
    server.stop().await;
}

#[test]
fn cli_import_reports_line_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Process::serve(&dir.path().join("site"), &[]);
    let csv = dir.path().join("bad.csv");
    let header = keyward::license::csv_io::COLUMNS.join(",");
    std::fs::write(
        &csv,
        format!("{header}\n,app,permanent,zero,,,,,,,,,,false,\n"),
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args([
            "license",
            "import",
            "--create-products",
            "--url",
            &server.url,
        ])
        .arg(&csv)
        .env("KEYWARD_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("line 2"), "{stderr}");
    assert!(stderr.contains("zero"), "{stderr}");

    let out = dir.path().join("export.csv");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["license", "export", "--url", &server.url, "--out"])
        .arg(&out)
        .env("KEYWARD_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap().trim(), header);
}

#[tokio::test]
async fn status_and_empty_features_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(&dir.path().join("a"))).await;
    let product = serde_json::json!({"code": "app", "name": "App", "features": ["pro", "export"]});
    admin(
        &server.url,
        Method::POST,
        "/v1/admin/products",
        Some(product),
    )
    .await;
    let mut keys = Vec::new();
    for features in [serde_json::json!([]), serde_json::json!(["pro"])] {
        let license =
            serde_json::json!({"product": "app", "model": "permanent", "features": features});
        let (status, body) = admin(
            &server.url,
            Method::POST,
            "/v1/admin/licenses",
            Some(license),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        keys.push(body["key"].as_str().unwrap().to_string());
    }
    for (key, action) in keys.iter().zip(["revoke", "suspend"]) {
        let path = format!("/v1/admin/licenses/{key}/{action}");
        let (status, body) = admin(&server.url, Method::POST, &path, None).await;
        assert_eq!(status, 200, "{body}");
    }
    let exported = export(&server.url).await;
    server.stop().await;

    let second = InProcess::start(test_config(&dir.path().join("b"))).await;
    let (status, body) = import(&second.url, exported.clone().into_bytes(), true).await;
    assert_eq!(status, 200, "{body}");
    let show = |key: String| {
        let url = second.url.clone();
        async move {
            let path = format!("/v1/admin/licenses/{key}");
            admin(&url, Method::GET, &path, None).await.1
        }
    };
    let revoked = show(keys[0].clone()).await;
    assert_eq!(revoked["status"], "revoked");
    assert_eq!(revoked["features"], serde_json::json!([]));
    let suspended = show(keys[1].clone()).await;
    assert_eq!(suspended["status"], "suspended");
    assert_eq!(suspended["features"], serde_json::json!(["pro"]));
    assert_eq!(export(&second.url).await, exported);
    second.stop().await;
}

#[tokio::test]
async fn crlf_rows_reported_by_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let header = keyward::license::csv_io::COLUMNS.join(",");
    let rows = [
        ",app,permanent,1,,,,,,,,,,false,",
        ",app,lifetime,1,,,,,,,,,,false,",
        ",app,permanent,\"multi\nline\",,,,,,,,,,false,",
        ",app,permanent,1,,,,,,,,,,false,gone",
    ];
    let csv = format!("{header}\r\n{}\r\n", rows.join("\r\n"));

    let (status, body) = import(&server.url, csv.into_bytes(), true).await;

    assert_eq!(status, 422, "{body}");
    let lines: Vec<u64> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|error| error["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [3, 4, 6], "{body}");
    server.stop().await;
}
