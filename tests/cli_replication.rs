//! The replication commands through the built binary: offline snapshot and restore, diff and
//! status with a snapshot-age threshold.

mod common;

use std::process::Command;

use common::{ADMIN_TOKEN, Process, admin, seed_license};
use reqwest::Method;

fn keyward(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(args)
        .output()
        .expect("run keyward")
}

#[test]
fn offline_restore_keeps_copy_and_diff_names_changes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("site");
    let mut server = Process::serve(&data, &[]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let first = runtime.block_on(seed_license(&server.url, 1));
    assert_eq!(server.terminate().code(), Some(0));

    // Snapshot the stopped data directory, then add a license after it.
    let output = keyward(&["snapshot", "--data-dir", data.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (snapshot, _) = common::newest_snapshot(&data);
    let mut server = Process::serve(&data, &[]);
    let second = runtime.block_on(seed_license(&server.url, 1));

    // A running server holds the data directory: an offline restore is refused.
    let output = keyward(&[
        "restore",
        snapshot.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("is running"));
    assert_eq!(server.terminate().code(), Some(0));

    // The site is active, so without --force the restore is refused.
    let output = keyward(&[
        "restore",
        snapshot.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("SITE_ACTIVE"), "{stderr}");

    let output = keyward(&[
        "restore",
        snapshot.to_str().unwrap(),
        "--force",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let outcome: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let pre_restore = outcome["pre_restore"].as_str().unwrap().to_string();
    assert!(std::path::Path::new(&pre_restore).exists());

    let output = keyward(&[
        "diff",
        &pre_restore,
        data.join("keyward.db").to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1), "differences exit 1");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains(&format!("only_in_a license {second}")),
        "{text}"
    );
    assert!(!text.contains(&first), "{text}");

    let output = keyward(&["diff", &pre_restore, &pre_restore]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "no differences"
    );

    let server = Process::serve(&data, &[]);
    let (_, found) = runtime.block_on(admin(
        &server.url,
        Method::GET,
        &format!("/v1/admin/licenses/{second}"),
        None,
    ));
    assert_eq!(
        found["code"], "NOT_FOUND",
        "the restore replaced the database"
    );
}

#[test]
fn status_fails_when_snapshot_too_old() {
    let dir = tempfile::tempdir().unwrap();
    let server = Process::serve(&dir.path().join("site"), &[]);
    let status_args = |age: &str| {
        Command::new(env!("CARGO_BIN_EXE_keyward"))
            .args(["status", "--url", &server.url, "--max-snapshot-age", age])
            .env("KEYWARD_ADMIN_TOKEN", ADMIN_TOKEN)
            .output()
            .unwrap()
    };
    assert_eq!(status_args("1h").status.code(), Some(2), "no snapshot yet");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (code, _) = runtime.block_on(admin(
        &server.url,
        Method::POST,
        "/v1/admin/snapshots",
        None,
    ));
    assert_eq!(code, 201);
    let output = status_args("1h");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(printed["role"]["role"], "active");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(status_args("1s").status.code(), Some(2));

    // A bad limit fails before any status is printed.
    let output = status_args("1x");
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("invalid --max-snapshot-age \"1x\""),
        "{stderr}"
    );
}

/// Writes a keyward database at schema version 1 with one trial license active on `pc-1`.
fn version_one_database(path: &std::path::Path, key: &str) {
    let now = keyward::time::format(chrono::Utc::now());
    let mut conn = rusqlite::Connection::open(path).unwrap();
    keyward::db::schema::migrate_to(&mut conn, 1).unwrap();
    conn.execute_batch(&format!(
        "INSERT INTO database_state VALUES (1, '00112233445566778899aabbccddeeff', 3, '{now}');
         INSERT INTO epochs VALUES (1, 'aabbccddeeff0011', 'site-0123456789ab', 1, '{now}');
         INSERT INTO products (id, code, name, version, features, created_at, updated_at)
         VALUES (1, 'app', 'App', '1', '[]', '{now}', '{now}');
         INSERT INTO licenses (id, license_key, product_id, model, seats, duration_days,
             first_activated_at, features, customer_name, customer_email, customer_company,
             order_ref, notes, status, created_at, updated_at)
         VALUES (1, '{key}', 1, 'trial', 1, 14, '{now}', '[]', '', '', '', '', '', 'active',
             '{now}', '{now}');
         INSERT INTO activations (license_id, computer_id, computer_name, client_addr,
             activated_at) VALUES (1, 'pc-1', 'PC', '127.0.0.1', '{now}');
         PRAGMA journal_mode = WAL;"
    ))
    .unwrap();
}

#[test]
fn older_schema_snapshot_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.db");
    let key = keyward::keys::LicenseKey::generate().as_str().to_string();
    version_one_database(&old, &key);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let restore = |url: &str| {
        runtime.block_on(async {
            let response = common::http()
                .post(format!("{url}/v1/admin/restore"))
                .bearer_auth(ADMIN_TOKEN)
                .body(std::fs::read(&old).unwrap())
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let outcome: serde_json::Value = response.json().await.unwrap();
            (status, outcome)
        })
    };

    // An active site rejects the snapshot before migrating it.
    let mut active = Process::serve(&dir.path().join("active"), &[]);
    let (status, outcome) = restore(&active.url);
    assert_eq!(status, 409, "{outcome}");
    assert_eq!(outcome["code"], "SITE_ACTIVE");
    assert_eq!(active.terminate().code(), Some(0));
    assert!(!active.stderr().contains("migrated a snapshot"));

    let data = dir.path().join("site");
    let mut server = Process::serve(&data, &[("KEYWARD_INITIAL_ROLE", "standby")]);
    let (status, outcome) = restore(&server.url);
    assert_eq!(status, 200, "{outcome}");
    assert!(server.wait_for_log("migrated a snapshot", std::time::Duration::from_secs(5)));
    assert_eq!(outcome["result"], "APPLIED");

    // Without a restart, the site serves the old data at this build's schema version.
    let (status, body) = runtime.block_on(common::client(
        &server.url,
        "/v1/validate",
        serde_json::json!({"key": key, "computer_id": "pc-1"}),
    ));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["code"], "VALID", "{body}");
    assert_eq!(server.terminate().code(), Some(0));

    let conn = rusqlite::Connection::open(data.join("keyward.db")).unwrap();
    let version: i32 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    assert_eq!(version, keyward::db::schema::SCHEMA_VERSION);
    // The newer schema records trial use per computer, filled in from the activation.
    let trial_uses: i64 = conn
        .query_row("SELECT count(*) FROM trial_uses", [], |row| row.get(0))
        .unwrap();
    assert_eq!(trial_uses, 1);
    let leftovers: Vec<_> = std::fs::read_dir(data.join("incoming"))
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn cli_error_names_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, "not a directory").unwrap();
    let data_dir = file.join("site");

    let output = keyward(&[
        "restore",
        file.to_str().unwrap(),
        "--data-dir",
        data_dir.to_str().unwrap(),
    ]);

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains(data_dir.to_str().unwrap()), "{stderr}");
    assert_eq!(stderr.matches("Not a directory").count(), 1, "{stderr}");
}
