//! The database on disk: file modes, the markers that identify a keyward database, rejection of
//! foreign SQLite files, and the audit log.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use common::{ADMIN_TOKEN, InProcess, admin, client, seed_license, test_config};
use keyward::db::schema::{APPLICATION_ID, SCHEMA_VERSION};
use keyward::server::Server;
use reqwest::Method;
use rusqlite::Connection;
use serde_json::json;

fn mode(path: &Path) -> u32 {
    let metadata = std::fs::metadata(path)
        .unwrap_or_else(|err| panic!("cannot stat {}: {err}", path.display()));
    metadata.permissions().mode() & 0o777
}

/// Opens the data directory with `Server::open` and returns the error text, panicking if the
/// server opens.
async fn open_error(data_dir: &Path) -> String {
    let clock = Arc::new(keyward::time::SystemClock);
    match Server::open(test_config(data_dir), clock).await {
        Ok(_) => panic!("Server::open accepted {}", data_dir.display()),
        Err(err) => format!("{err:#}"),
    }
}

#[tokio::test]
async fn database_files_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let server = InProcess::start(test_config(&data_dir)).await;
    let key = seed_license(&server.url, 1).await;
    let request = json!({"key": key, "computer_id": "pc-1"});
    assert_eq!(client(&server.url, "/v1/activate", request).await.0, 200);

    let database = data_dir.join("keyward.db");
    let wal = data_dir.join("keyward.db-wal");
    assert!(wal.exists(), "a running server keeps a write-ahead log");
    assert_eq!(mode(&database), 0o600, "keyward.db");
    assert_eq!(mode(&wal), 0o600, "keyward.db-wal");
    assert_eq!(
        mode(&data_dir.join("keyward.db-shm")),
        0o600,
        "keyward.db-shm"
    );
    assert_eq!(mode(&data_dir), 0o700, "data directory");
    server.stop().await;
}

#[tokio::test]
async fn database_has_keyward_markers() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    seed_license(&server.url, 1).await;
    server.stop().await;

    let conn = Connection::open(dir.path().join("keyward.db")).unwrap();
    let application_id: i32 = conn
        .pragma_query_value(None, "application_id", |row| row.get(0))
        .unwrap();
    let user_version: i32 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    assert_eq!(application_id, 0x4b57_5244, "application_id is ASCII KWRD");
    assert_eq!(application_id, APPLICATION_ID);
    assert_eq!(user_version, SCHEMA_VERSION);
    let licenses: i64 = conn
        .query_row("SELECT count(*) FROM licenses", [], |row| row.get(0))
        .unwrap();
    assert_eq!(licenses, 1, "the license written over HTTP is in the file");
}

#[tokio::test]
async fn foreign_database_is_rejected_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("keyward.db");
    {
        let conn = Connection::open(&database).unwrap();
        conn.execute_batch(
            "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT);
             INSERT INTO customers (name) VALUES ('Ada');",
        )
        .unwrap();
    }
    let original = std::fs::read(&database).unwrap();

    let message = open_error(dir.path()).await;
    assert!(
        message.contains("not a keyward database"),
        "error names the cause: {message}"
    );
    assert_eq!(
        std::fs::read(&database).unwrap(),
        original,
        "the foreign file is left byte for byte as it was"
    );
    assert!(
        !dir.path().join("keyward.db-wal").exists(),
        "no write-ahead log was created next to the foreign file"
    );
    let conn = Connection::open(&database).unwrap();
    let journal_mode: String = conn
        .pragma_query_value(None, "journal_mode", |row| row.get(0))
        .unwrap();
    assert_eq!(journal_mode, "delete", "journal mode is unchanged");
}

/// An empty SQLite file with a `user_version` but no keyward `application_id` comes from another
/// program, even though it has no tables yet.
#[tokio::test]
async fn foreign_empty_database_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("keyward.db");
    {
        let conn = Connection::open(&database).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
            .unwrap();
    }

    let message = open_error(dir.path()).await;
    assert!(
        message.contains("not a keyward database"),
        "error names the cause: {message}"
    );
}

#[tokio::test]
async fn empty_file_becomes_keyward_database() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("keyward.db"), b"").unwrap();

    let server = InProcess::start(test_config(dir.path())).await;
    let key = seed_license(&server.url, 1).await;
    assert_eq!(key.len(), 34, "{key}");
    server.stop().await;
}

#[tokio::test]
async fn audit_log_records_changes() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let base = server.url.as_str();
    let key = seed_license(base, 1).await;
    let request = json!({"key": key, "computer_id": "pc-1"});
    assert_eq!(client(base, "/v1/activate", request.clone()).await.0, 200);
    assert_eq!(client(base, "/v1/release", request).await.0, 200);
    let path = format!("/v1/admin/licenses/{key}/suspend");
    assert_eq!(admin(base, Method::POST, &path, None).await.0, 200);

    let (status, audit) = admin(base, Method::GET, "/v1/admin/audit", None).await;
    assert_eq!(status, 200, "{audit}");
    let entries = audit.as_array().unwrap();
    let admin_actor = format!("admin:{}", &ADMIN_TOKEN[4..12]);
    let expected = [
        ("license.suspend", admin_actor.as_str(), key.as_str()),
        ("activation.release", "client:127.0.0.1", key.as_str()),
        ("activation.create", "client:127.0.0.1", key.as_str()),
        ("license.create", admin_actor.as_str(), key.as_str()),
        ("product.create", admin_actor.as_str(), "app"),
    ];
    assert!(entries.len() >= expected.len(), "{audit}");
    for (entry, (action, actor, object)) in entries.iter().zip(expected) {
        assert_eq!(entry["action"], action, "{entry}");
        assert_eq!(entry["actor"], actor, "actor of {action}");
        assert_eq!(entry["object"], object, "object of {action}");
        assert!(
            entry["at"]
                .as_str()
                .is_some_and(|at| keyward::time::parse(at).is_ok()),
            "time of {action}: {entry}"
        );
    }
    assert_eq!(entries[1]["detail"]["computer_id"], "pc-1");
    assert_eq!(entries[2]["detail"]["computer_id"], "pc-1");
    let ids: Vec<i64> = entries
        .iter()
        .map(|entry| entry["id"].as_i64().unwrap())
        .collect();
    assert!(
        ids.windows(2).all(|pair| pair[0] > pair[1]),
        "newest first: {ids:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn audit_log_is_append_only() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    seed_license(&server.url, 1).await;
    server.stop().await;

    let conn = Connection::open(dir.path().join("keyward.db")).unwrap();
    let count = |conn: &Connection| -> i64 {
        conn.query_row("SELECT count(*) FROM audit_log", [], |row| row.get(0))
            .unwrap()
    };
    let before = count(&conn);
    let update = conn.execute("UPDATE audit_log SET actor = 'someone else'", []);
    assert!(update.is_err(), "UPDATE of audit_log succeeded");
    let delete = conn.execute("DELETE FROM audit_log", []);
    assert!(delete.is_err(), "DELETE from audit_log succeeded");
    assert_eq!(count(&conn), before);
}

#[tokio::test]
async fn renew_is_audited_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let base = server.url.as_str();
    let key = seed_license(base, 1).await;
    let (_, before) = admin(base, Method::GET, "/v1/admin/audit", None).await;

    let path = format!("/v1/admin/licenses/{key}/renew");
    let renewal = json!({"expires_at": "2099-01-31"});
    let (status, body) = admin(base, Method::POST, &path, Some(renewal)).await;
    assert_eq!(status, 200, "{body}");

    let (_, after) = admin(base, Method::GET, "/v1/admin/audit", None).await;
    let added = after.as_array().unwrap().len() - before.as_array().unwrap().len();
    assert_eq!(added, 1, "one renewal, one entry: {after}");
    assert_eq!(after[0]["action"], "license.renew");
    assert_eq!(after[0]["object"], key.as_str());
    assert_eq!(after[0]["detail"]["expires_at"], "2099-01-31");
    server.stop().await;
}
