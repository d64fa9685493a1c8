//! Bad snapshots are rejected with a specific code and leave the live database byte for byte
//! unchanged.

mod common;

use std::path::Path;

use common::{
    PEER_SECRET, Process, admin, file_sha256, newest_snapshot, seed_license, upload_snapshot,
};
use reqwest::Method;

fn dr_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("KEYWARD_INITIAL_ROLE", "standby"),
        ("KEYWARD_PEER_SECRET", PEER_SECRET),
        ("KEYWARD_RECEIVE_MAX_SNAPSHOT_BYTES", "4000000"),
    ]
}

/// Takes a snapshot on a primary in `dir` with `licenses` licenses; returns file and manifest.
fn primary_snapshot(dir: &Path, licenses: usize) -> (Vec<u8>, Vec<u8>) {
    let primary = Process::serve(dir, &[]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        for _ in 0..licenses {
            seed_license(&primary.url, 1).await;
        }
        let (status, _) = admin(&primary.url, Method::POST, "/v1/admin/snapshots", None).await;
        assert_eq!(status, 201);
    });
    let (file, manifest) = newest_snapshot(dir);
    (std::fs::read(file).unwrap(), manifest)
}

fn manifest_with(manifest: &[u8], change: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut value: serde_json::Value = serde_json::from_slice(manifest).unwrap();
    change(&mut value);
    serde_json::to_vec(&value).unwrap()
}

fn assert_rejected(result: (u16, serde_json::Value), status: u16, code: &str) {
    assert_eq!(result.0, status, "{}", result.1);
    assert_eq!(result.1["code"], code, "{}", result.1);
    // The message explains the code without repeating it.
    let message = result.1["message"].as_str().unwrap();
    assert!(!message.contains(code), "{}", result.1);
}

#[test]
fn bad_snapshots_leave_database_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let (good, good_manifest) = primary_snapshot(&dir.path().join("primary"), 2);
    let (other, other_manifest) = primary_snapshot(&dir.path().join("other"), 1);

    // The DR takes the first snapshot (fresh receivers accept any database).
    let dr_dir = dir.path().join("dr");
    let mut dr = Process::serve(&dr_dir, &dr_env());
    let applied = upload_snapshot(
        &dr.url,
        Some(PEER_SECRET),
        good.clone(),
        &good_manifest,
        true,
    );
    assert_eq!(applied.0, 200, "{}", applied.1);
    assert_eq!(dr.terminate().code(), Some(0));
    let live = dr_dir.join("keyward.db");
    let before = file_sha256(&live);
    let mut dr = Process::serve(&dr_dir, &dr_env());
    let url = dr.url.clone();

    // One flipped byte in the middle of the file: the hash no longer matches.
    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x40;
    assert_rejected(
        upload_snapshot(
            &url,
            Some(PEER_SECRET),
            flipped.clone(),
            &good_manifest,
            true,
        ),
        422,
        "CHECKSUM_MISMATCH",
    );

    // The same flipped byte with a manifest that matches the damaged file: integrity check.
    let (size, sha) = (
        flipped.len(),
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&flipped)),
    );
    let lying = manifest_with(&good_manifest, |m| {
        m["sha256"] = sha.clone().into();
        m["size"] = size.into();
    });
    let result = upload_snapshot(&url, Some(PEER_SECRET), flipped, &lying, false);
    assert_eq!(result.0, 422, "{}", result.1);
    let code = result.1["code"].as_str().unwrap();
    assert!(
        code == "CORRUPT" || code == "MANIFEST_MISMATCH" || code == "SCHEMA_MISMATCH",
        "{}",
        result.1
    );

    // A truncated file.
    let truncated = good[..good.len() - 4096].to_vec();
    assert_rejected(
        upload_snapshot(&url, Some(PEER_SECRET), truncated, &good_manifest, true),
        422,
        "SIZE_MISMATCH",
    );

    // A wrong SHA-256 in the manifest.
    let wrong_sha = manifest_with(&good_manifest, |m| m["sha256"] = "0".repeat(64).into());
    assert_rejected(
        upload_snapshot(&url, Some(PEER_SECRET), good.clone(), &wrong_sha, true),
        422,
        "CHECKSUM_MISMATCH",
    );

    // Not SQLite at all, with a manifest that matches its bytes.
    let text = vec![b'x'; 8192];
    let text_sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&text));
    let text_manifest = manifest_with(&good_manifest, |m| {
        m["sha256"] = text_sha.into();
        m["size"] = 8192.into();
        m["page_size"] = 4096.into();
        m["page_count"] = 2.into();
    });
    assert_rejected(
        upload_snapshot(&url, Some(PEER_SECRET), text, &text_manifest, true),
        422,
        "NOT_SQLITE",
    );

    // A SQLite database of another application.
    let foreign_path = dir.path().join("foreign.db");
    {
        let conn = rusqlite::Connection::open(&foreign_path).unwrap();
        conn.execute_batch("PRAGMA page_size=4096; CREATE TABLE t(x); INSERT INTO t VALUES (1);")
            .unwrap();
    }
    let foreign = std::fs::read(&foreign_path).unwrap();
    let foreign_manifest = manifest_with(&good_manifest, |m| {
        m["sha256"] = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&foreign)).into();
        m["size"] = foreign.len().into();
        m["page_size"] = 4096.into();
        m["page_count"] = (foreign.len() / 4096).into();
    });
    assert_rejected(
        upload_snapshot(&url, Some(PEER_SECRET), foreign, &foreign_manifest, true),
        422,
        "FOREIGN_DATABASE",
    );

    // A keyward database with another database id, now that the DR holds data.
    assert_rejected(
        upload_snapshot(&url, Some(PEER_SECRET), other, &other_manifest, true),
        409,
        "DIFFERENT_DATABASE",
    );

    // The same snapshot again is already current; an older sequence number is stale.
    let again = upload_snapshot(&url, Some(PEER_SECRET), good.clone(), &good_manifest, true);
    assert_eq!(again.0, 200, "{}", again.1);
    assert_eq!(again.1["result"], "ALREADY_CURRENT");

    // Wrong secret, no secret.
    assert_rejected(
        upload_snapshot(
            &url,
            Some("not-the-secret-at-all"),
            good.clone(),
            &good_manifest,
            true,
        ),
        401,
        "UNAUTHORIZED",
    );
    let no_secret = upload_snapshot(&url, None, good.clone(), &good_manifest, true);
    let message = no_secret.1["message"].as_str().unwrap().to_string();
    assert_rejected(no_secret, 401, "UNAUTHORIZED");
    assert!(message.contains("peer.secret"), "{message}");

    // An oversized body: announced, and sent beyond the announced size.
    let huge = manifest_with(&good_manifest, |m| {
        let page_size = m["page_size"].as_u64().unwrap();
        m["size"] = (page_size * 4000).into();
        m["page_count"] = 4000.into();
    });
    let result = upload_snapshot(&url, Some(PEER_SECRET), good.clone(), &huge, true);
    assert_eq!(result.0, 413, "{}", result.1);
    let mut padded = good.clone();
    padded.extend(vec![0u8; 1 << 20]);
    assert_rejected(
        upload_snapshot(&url, Some(PEER_SECRET), padded, &good_manifest, true),
        413,
        "TOO_LARGE",
    );

    // The DR reports the rejections, and no upload is left behind.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (_, status) = runtime.block_on(admin(&url, Method::GET, "/v1/admin/status", None));
    let counts = &status["replication"]["rejections_by_code"];
    assert!(
        counts["CHECKSUM_MISMATCH"].as_u64().unwrap() >= 2,
        "{status}"
    );
    // Refusals before the body is read count too.
    assert_eq!(counts["UNAUTHORIZED"], 2, "{status}");
    assert_eq!(counts["TOO_LARGE"], 2, "{status}");
    let leftovers: Vec<_> = std::fs::read_dir(dr_dir.join("incoming"))
        .unwrap()
        .flatten()
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    assert_eq!(dr.terminate().code(), Some(0));
    assert_eq!(file_sha256(&live), before, "the live database changed");
}

#[test]
fn older_sequence_is_stale() {
    let dir = tempfile::tempdir().unwrap();
    let primary_dir = dir.path().join("primary");
    let primary = Process::serve(&primary_dir, &[]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        seed_license(&primary.url, 1).await;
        admin(&primary.url, Method::POST, "/v1/admin/snapshots", None).await;
    });
    let (old_file, old_manifest) = newest_snapshot(&primary_dir);
    let old = std::fs::read(old_file).unwrap();
    runtime.block_on(async {
        seed_license(&primary.url, 1).await;
        admin(&primary.url, Method::POST, "/v1/admin/snapshots", None).await;
    });
    let (new_file, new_manifest) = newest_snapshot(&primary_dir);
    let new = std::fs::read(new_file).unwrap();

    let dr = Process::serve(&dir.path().join("dr"), &dr_env());
    let result = upload_snapshot(&dr.url, Some(PEER_SECRET), new, &new_manifest, true);
    assert_eq!(result.0, 200, "{}", result.1);
    assert_rejected(
        upload_snapshot(&dr.url, Some(PEER_SECRET), old, &old_manifest, true),
        409,
        "STALE_SNAPSHOT",
    );
}

#[test]
fn hostile_sqlite_uploads_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let (good, good_manifest) = primary_snapshot(&dir.path().join("primary"), 1);
    let dr = Process::serve(&dir.path().join("dr"), &dr_env());

    let cases: [(&str, &str); 3] = [
        (
            "trigger",
            "CREATE TRIGGER evil AFTER INSERT ON products BEGIN DELETE FROM licenses; END;",
        ),
        (
            "view",
            "DROP TABLE audit_log; CREATE VIEW audit_log AS SELECT 1 AS id;",
        ),
        ("table", "CREATE TABLE extra (x);"),
    ];
    for (name, sql) in cases {
        let path = dir.path().join(format!("{name}.db"));
        std::fs::write(&path, &good).unwrap();
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(sql).unwrap();
            conn.execute_batch("VACUUM").unwrap();
        }
        let bytes = std::fs::read(&path).unwrap();
        let manifest = manifest_with(&good_manifest, |m| {
            m["sha256"] = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)).into();
            m["size"] = bytes.len().into();
            m["page_count"] = (bytes.len() as u64 / m["page_size"].as_u64().unwrap()).into();
        });
        let result = upload_snapshot(&dr.url, Some(PEER_SECRET), bytes, &manifest, true);
        assert_rejected(result, 422, "SCHEMA_MISMATCH");
    }

    // A header claiming far more pages than the file has.
    let mut huge_count = good.clone();
    huge_count[28..32].copy_from_slice(&0x7fff_ffffu32.to_be_bytes());
    let manifest = manifest_with(&good_manifest, |m| {
        m["sha256"] = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&huge_count)).into();
    });
    assert_rejected(
        upload_snapshot(&dr.url, Some(PEER_SECRET), huge_count, &manifest, true),
        422,
        "HEADER_MISMATCH",
    );
}

/// Valid keyward databases with one hostile change each: an extra index, the
/// `database_state` row removed, and `user_version` lowered.
#[test]
fn altered_keyward_databases_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let (good, good_manifest) = primary_snapshot(&dir.path().join("primary"), 1);
    let dr_dir = dir.path().join("dr");
    let mut dr = Process::serve(&dr_dir, &dr_env());
    let applied = upload_snapshot(
        &dr.url,
        Some(PEER_SECRET),
        good.clone(),
        &good_manifest,
        true,
    );
    assert_eq!(applied.0, 200, "{}", applied.1);
    assert_eq!(dr.terminate().code(), Some(0));
    let live = dr_dir.join("keyward.db");
    let before = file_sha256(&live);
    let mut dr = Process::serve(&dr_dir, &dr_env());

    let cases: [(&str, &str, &str); 5] = [
        (
            "index",
            "CREATE INDEX extra_index ON licenses (notes);",
            "SCHEMA_MISMATCH",
        ),
        ("state", "DELETE FROM database_state;", "INVALID_STATE"),
        (
            "version",
            "PRAGMA user_version = 0;",
            "SCHEMA_VERSION_MISMATCH",
        ),
        (
            "newer",
            "PRAGMA user_version = 99;",
            "SCHEMA_VERSION_MISMATCH",
        ),
        // An older version number on today's tables does not match that version's schema.
        ("older", "PRAGMA user_version = 1;", "SCHEMA_MISMATCH"),
    ];
    for (name, sql, code) in cases {
        let path = dir.path().join(format!("{name}.db"));
        std::fs::write(&path, &good).unwrap();
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(sql).unwrap();
            conn.execute_batch("VACUUM").unwrap();
        }
        let bytes = std::fs::read(&path).unwrap();
        let manifest = manifest_with(&good_manifest, |m| {
            m["sha256"] = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)).into();
            m["size"] = bytes.len().into();
            m["page_count"] = (bytes.len() as u64 / m["page_size"].as_u64().unwrap()).into();
            m["sequence"] = (m["sequence"].as_u64().unwrap() + 1).into();
        });
        let result = upload_snapshot(&dr.url, Some(PEER_SECRET), bytes, &manifest, true);
        assert_eq!(result.0, 422, "{name}: {}", result.1);
        assert_eq!(result.1["code"], code, "{name}: {}", result.1);
    }

    assert_eq!(dr.terminate().code(), Some(0));
    assert_eq!(file_sha256(&live), before, "the DR database changed");
}
