//! Hostile CSV imports: NUL bytes, invalid UTF-8, huge numbers, oversized fields and odd
//! Unicode. Each bad file gets a 4xx and imports nothing; odd but valid text round-trips.

mod common;

use common::{ADMIN_TOKEN, InProcess, admin, test_config};
use reqwest::Method;

async fn import(base: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
    let response = common::http()
        .post(format!(
            "{base}/v1/admin/licenses/import?create_products=true"
        ))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "text/csv")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, value)
}

fn csv_with(row: &str) -> Vec<u8> {
    let mut csv = keyward::license::csv_io::COLUMNS[..13].join(",");
    csv.push('\n');
    csv.push_str(row);
    csv.push('\n');
    csv.into_bytes()
}

async fn license_count(base: &str) -> usize {
    let (status, listed) = admin(base, Method::GET, "/v1/admin/licenses", None).await;
    assert_eq!(status, 200, "{listed}");
    listed.as_array().unwrap().len()
}

#[tokio::test]
async fn hostile_csv_rows_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let long_name = "n".repeat(100_000);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("NUL in product", csv_with(",ap\0p,permanent,1,,,,,,,,,")),
        ("NUL in name", csv_with(",app,permanent,1,,,,,Bob\0,,,,")),
        (
            "escape in name",
            csv_with(",app,permanent,1,,,,,\u{1b}[2J,,,,"),
        ),
        ("invalid UTF-8", {
            let mut bytes = csv_with(",app,permanent,1,,,,,Name,,,,");
            let at = bytes.len() - 6;
            bytes[at] = 0xff;
            bytes
        }),
        (
            "seats above i64",
            csv_with(",app,permanent,99999999999999999999,,,,,,,,,"),
        ),
        (
            "seats at i64 max",
            csv_with(",app,permanent,9223372036854775807,,,,,,,,,"),
        ),
        ("negative seats", csv_with(",app,permanent,-1,,,,,,,,,")),
        (
            "huge duration",
            csv_with(",app,trial,1,,9223372036854775807,,,,,,,"),
        ),
        ("negative duration", csv_with(",app,trial,1,,-5,,,,,,,")),
        (
            "year 99999",
            csv_with(",app,permanent,1,99999-01-01,,,,,,,,"),
        ),
        (
            "oversized name",
            csv_with(&format!(",app,permanent,1,,,,,{long_name},,,,")),
        ),
        ("bad key", csv_with("NOT-A-KEY,app,permanent,1,,,,,,,,,")),
    ];
    for (name, body) in cases {
        let (status, response) = import(&server.url, body).await;
        assert!(
            (400..500).contains(&status),
            "{name}: status {status}: {response}"
        );
        assert!(response["code"].is_string(), "{name}: {response}");
        assert_eq!(license_count(&server.url).await, 0, "{name} imported a row");
    }
    server.stop().await;
}

#[tokio::test]
async fn odd_unicode_names_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let names = [
        "abc\u{202E}fdp.exe",
        "a\u{200D}b",
        "🔑👨\u{200D}👩\u{200D}👧",
        "e\u{301}\u{302}\u{303}",
        "\"quoted, with comma\"",
    ];
    let mut csv = keyward::license::csv_io::COLUMNS[..13].join(",");
    csv.push('\n');
    for name in names {
        let escaped = name.replace('"', "\"\"");
        csv.push_str(&format!(",app,permanent,1,,,,,\"{escaped}\",,,,\n"));
    }
    let (status, body) = import(&server.url, csv.into_bytes()).await;
    assert_eq!(status, 200, "{body}");

    let (_, listed) = admin(&server.url, Method::GET, "/v1/admin/licenses", None).await;
    let stored: Vec<String> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|license| {
            license["customer_name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    for name in names {
        assert!(
            stored.iter().any(|s| s == name),
            "{name:?} not stored exactly: {stored:?}"
        );
    }
    server.stop().await;
}
