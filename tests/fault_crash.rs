//! SIGKILL during a migration and during a CSV import: after a restart the database passes
//! `PRAGMA integrity_check`, starts cleanly and contains either all of a write job or none of it.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{ADMIN_TOKEN, Process, integrity_ok, seed_license, wait_until};
use keyward::keys::LicenseKey;
use serde_json::json;

/// Starts `keyward serve` with a failpoint and waits until the process reports reaching it.
/// The process may never listen, so this does not wait for the listening line.
fn spawn_at_failpoint(data_dir: &Path, failpoint: &str) -> (Child, std::path::PathBuf) {
    std::fs::create_dir_all(data_dir).unwrap();
    let log = data_dir.with_extension("failpoint.log");
    let stderr = std::fs::File::create(&log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("KEYWARD_BOOTSTRAP_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("KEYWARD_SNAPSHOT_EVERY", "")
        .env("KEYWARD_FAILPOINT", failpoint)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    (child, log)
}

fn log_contains(log: &Path, text: &str) -> bool {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .contains(text)
}

fn validate_code(url: &str, key: &str) -> String {
    let response = reqwest::blocking::Client::new()
        .post(format!("{url}/v1/validate"))
        .json(&json!({"key": key, "computer_id": "probe"}))
        .send()
        .unwrap();
    let body: serde_json::Value = response.json().unwrap();
    body["code"].as_str().unwrap_or_default().to_string()
}

fn license_count(path: &Path) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row("SELECT count(*) FROM licenses", [], |row| row.get(0))
        .unwrap()
}

#[test]
fn crash_before_first_migration_commits() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("site");
    let (mut child, log) = spawn_at_failpoint(&data_dir, "migrate.before_commit");
    let reached = wait_until(Duration::from_secs(20), || {
        log_contains(&log, "failpoint reached: migrate.before_commit")
    });
    assert!(
        reached,
        "failpoint never reached: {}",
        std::fs::read_to_string(&log).unwrap()
    );
    child.kill().unwrap();
    child.wait().unwrap();

    // The half-made data directory starts cleanly and is fully usable.
    let mut site = Process::serve(&data_dir, &[]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let key = runtime.block_on(seed_license(&site.url, 1));
    assert_eq!(validate_code(&site.url, &key), "NOT_ACTIVATED");
    assert_eq!(site.terminate().code(), Some(0));

    let db = data_dir.join("keyward.db");
    assert!(integrity_ok(&db), "integrity check failed");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let version: i32 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    assert_eq!(version, keyward::db::schema::SCHEMA_VERSION);
}

#[test]
fn crash_before_import_commits() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("site");

    // A first start creates the database and one license that must survive.
    let mut site = Process::serve(&data_dir, &[]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let kept = runtime.block_on(seed_license(&site.url, 1));
    assert_eq!(site.terminate().code(), Some(0));

    let mut site = Process::serve(&data_dir, &[("KEYWARD_FAILPOINT", "import.before_commit")]);
    let imported: Vec<String> = (0..50)
        .map(|_| LicenseKey::generate().as_str().to_string())
        .collect();
    let mut csv = keyward::license::csv_io::COLUMNS[..14].join(",");
    csv.push('\n');
    for key in &imported {
        csv.push_str(&format!("{key},app,permanent,2,,,,,Customer,,,,,false\n"));
    }
    let url = site.url.clone();
    let importer = std::thread::spawn(move || {
        // The request gets no response because the server is killed while it waits.
        let _ = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
            .post(format!("{url}/v1/admin/licenses/import"))
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", "text/csv")
            .body(csv)
            .send();
    });
    assert!(
        site.wait_for_log(
            "failpoint reached: import.before_commit",
            Duration::from_secs(20)
        ),
        "{}",
        site.stderr()
    );
    site.kill();
    importer.join().unwrap();

    let db = data_dir.join("keyward.db");
    let mut site = Process::serve(&data_dir, &[]);
    assert_eq!(validate_code(&site.url, &kept), "NOT_ACTIVATED");
    for key in imported.iter().take(3) {
        assert_eq!(
            validate_code(&site.url, key),
            "NOT_FOUND",
            "{key} was imported"
        );
    }
    assert_eq!(site.terminate().code(), Some(0));
    assert_eq!(license_count(&db), 1, "no imported row may exist");
    assert!(integrity_ok(&db), "integrity check failed");

    // The same import succeeds once the fault is gone.
    let site = Process::serve(&data_dir, &[]);
    let mut csv = keyward::license::csv_io::COLUMNS[..14].join(",");
    csv.push('\n');
    for key in &imported {
        csv.push_str(&format!("{key},app,permanent,2,,,,,Customer,,,,,false\n"));
    }
    let response = reqwest::blocking::Client::new()
        .post(format!("{}/v1/admin/licenses/import", site.url))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(validate_code(&site.url, &imported[0]), "NOT_ACTIVATED");
}
