//! SIGKILL at each step of receiving and swapping a snapshot, and of taking one: after a
//! restart exactly the old or exactly the new database is live, intact, with no temp files.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{
    PEER_SECRET, Process, admin, integrity_ok, newest_snapshot, seed_license, upload_snapshot,
};
use reqwest::Method;
use serde_json::json;

struct Snapshot {
    bytes: Vec<u8>,
    manifest: Vec<u8>,
    write_seq: i64,
}

/// Builds two snapshots of one primary: `old` with license `first`, `new` with `second` too.
fn two_snapshots(dir: &Path) -> (Snapshot, Snapshot, String, String) {
    let primary = Process::serve(dir, &[]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let take = |key_holder: &mut String| {
        runtime.block_on(async {
            *key_holder = seed_license(&primary.url, 1).await;
            let (status, _) = admin(&primary.url, Method::POST, "/v1/admin/snapshots", None).await;
            assert_eq!(status, 201);
        });
        let (file, manifest) = newest_snapshot(dir);
        let value: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
        Snapshot {
            bytes: std::fs::read(file).unwrap(),
            manifest,
            write_seq: value["position"]["write_seq"].as_i64().unwrap(),
        }
    };
    let mut first = String::new();
    let mut second = String::new();
    let old = take(&mut first);
    let new = take(&mut second);
    (old, new, first, second)
}

fn dr_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("KEYWARD_INITIAL_ROLE", "standby"),
        ("KEYWARD_PEER_SECRET", PEER_SECRET),
    ]
}

fn dr_env_failing_at(failpoint: &'static str) -> Vec<(&'static str, &'static str)> {
    let mut env = dr_env();
    env.push(("KEYWARD_FAILPOINT", failpoint));
    env
}

/// Uploads `snapshot` to the site at `url` with the peer secret and returns status and body.
fn send_snapshot(url: &str, snapshot: &Snapshot) -> (u16, serde_json::Value) {
    upload_snapshot(
        url,
        Some(PEER_SECRET),
        snapshot.bytes.clone(),
        &snapshot.manifest,
        true,
    )
}

/// Starts a DR site in `dr_dir`, applies `snapshot` and stops the site cleanly.
fn apply_and_stop(dr_dir: &Path, snapshot: &Snapshot) {
    let mut dr = Process::serve(dr_dir, &dr_env());
    let (status, body) = send_snapshot(&dr.url, snapshot);
    assert_eq!(status, 200, "{}: {body}", dr_dir.display());
    dr.terminate();
}

fn validate_code(url: &str, key: &str) -> String {
    let response = reqwest::blocking::Client::new()
        .post(format!("{url}/v1/validate"))
        .json(&json!({"key": key, "computer_id": "probe"}))
        .send()
        .unwrap();
    let body: serde_json::Value = response.json().unwrap();
    body["code"].as_str().unwrap().to_string()
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

#[test]
fn crash_at_each_receive_and_swap_step() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new, first_key, second_key) = two_snapshots(&dir.path().join("primary"));
    let steps = [
        ("receive.mid_upload", false),
        ("receive.after_upload", false),
        ("receive.after_verify", false),
        ("swap.after_journal", false),
        ("swap.after_checkpoint", false),
        ("swap.after_move_old", true),
        ("swap.after_rename_new", true),
    ];
    for (step, expect_new) in steps {
        let dr_dir = dir.path().join(format!("dr-{step}"));
        apply_and_stop(&dr_dir, &old);

        let mut dr = Process::serve(&dr_dir, &dr_env_failing_at(step));
        let url = dr.url.clone();
        let (bytes, manifest) = (new.bytes.clone(), new.manifest.clone());
        let upload = std::thread::spawn(move || {
            let _ = std::panic::catch_unwind(|| {
                upload_snapshot(&url, Some(PEER_SECRET), bytes, &manifest, true)
            });
        });
        let marker = format!("failpoint reached: {step}");
        assert!(
            dr.wait_for_log(&marker, Duration::from_secs(20)),
            "{step} never reached: {}",
            dr.stderr()
        );
        dr.kill();
        upload.join().unwrap();

        let mut dr = Process::serve(&dr_dir, &dr_env());
        let second = validate_code(&dr.url, &second_key);
        let first = validate_code(&dr.url, &first_key);
        assert_eq!(
            first, "NOT_ACTIVATED",
            "{step}: the first license must survive"
        );
        let expected = if expect_new {
            "NOT_ACTIVATED"
        } else {
            "NOT_FOUND"
        };
        assert_eq!(
            second,
            expected,
            "{step}: expected the {} database",
            if expect_new { "new" } else { "old" }
        );

        let runtime = tokio::runtime::Runtime::new().unwrap();
        let (_, status) = runtime.block_on(admin(&dr.url, Method::GET, "/v1/admin/status", None));
        let expected_seq = if expect_new {
            new.write_seq
        } else {
            old.write_seq
        };
        assert_eq!(status["position"]["write_seq"], expected_seq, "{step}");
        assert_eq!(dr.terminate().code(), Some(0), "{step}");

        assert!(
            integrity_ok(&dr_dir.join("keyward.db")),
            "{step}: integrity check failed"
        );
        let leftovers = files_in(&dr_dir.join("incoming"));
        assert!(leftovers.is_empty(), "{step}: leftovers {leftovers:?}");

        // After recovery the DR still takes the new snapshot (or already has it).
        let dr = Process::serve(&dr_dir, &dr_env());
        let (status, body) = send_snapshot(&dr.url, &new);
        assert_eq!(status, 200, "{step}: {body}");
        assert_eq!(
            validate_code(&dr.url, &second_key),
            "NOT_ACTIVATED",
            "{step}"
        );
    }
}

#[test]
fn failed_swap_keeps_old_database_live() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new, first_key, second_key) = two_snapshots(&dir.path().join("primary"));
    let dr_dir = dir.path().join("dr");
    apply_and_stop(&dr_dir, &old);

    // The rename of the new file fails after the old one has moved away.
    let mut dr = Process::serve(&dr_dir, &dr_env_failing_at("swap.before_rename_new:error"));
    let (status, body) = send_snapshot(&dr.url, &new);
    assert_ne!(status, 200, "{body}");
    assert!(
        body.to_string()
            .contains("failpoint swap.before_rename_new"),
        "the error names the failed step: {body}"
    );

    // Without a restart, the same process serves the old database.
    assert_eq!(validate_code(&dr.url, &first_key), "NOT_ACTIVATED");
    assert_eq!(validate_code(&dr.url, &second_key), "NOT_FOUND");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (_, status) = runtime.block_on(admin(&dr.url, Method::GET, "/v1/admin/status", None));
    assert_eq!(status["position"]["write_seq"], old.write_seq);
    let leftovers = files_in(&dr_dir.join("incoming"));
    assert!(leftovers.is_empty(), "leftovers {leftovers:?}");
    assert_eq!(dr.terminate().code(), Some(0));
    assert!(integrity_ok(&dr_dir.join("keyward.db")));
}

#[test]
fn swap_done_despite_journal_error() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new, _first_key, second_key) = two_snapshots(&dir.path().join("primary"));
    let dr_dir = dir.path().join("dr");
    apply_and_stop(&dr_dir, &old);

    // The new file is already live when the step that removes the swap journal fails.
    let mut dr = Process::serve(&dr_dir, &dr_env_failing_at("swap.after_rename_new:error"));
    let (status, body) = send_snapshot(&dr.url, &new);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], "APPLIED");
    assert!(dr.wait_for_log("removing the swap journal failed", Duration::from_secs(5)));

    assert_eq!(validate_code(&dr.url, &second_key), "NOT_ACTIVATED");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (_, status) = runtime.block_on(admin(&dr.url, Method::GET, "/v1/admin/status", None));
    assert_eq!(status["position"]["write_seq"], new.write_seq);
    assert_eq!(
        status["replication"]["last_applied"]["write_seq"],
        new.write_seq
    );
    assert_eq!(dr.terminate().code(), Some(0));

    // The journal left behind names a finished swap, so start-up removes it and keeps the new data.
    assert!(dr_dir.join("incoming/swap.json").exists());
    let dr = Process::serve(&dr_dir, &dr_env());
    assert!(dr.wait_for_log(
        "a swap had finished before the crash",
        Duration::from_secs(5)
    ));
    assert!(!dr_dir.join("incoming/swap.json").exists());
    assert_eq!(validate_code(&dr.url, &second_key), "NOT_ACTIVATED");
}

#[test]
fn crash_while_taking_snapshot() {
    for step in ["snapshot.after_copy", "snapshot.before_manifest"] {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("primary");
        let mut primary = Process::serve(&data_dir, &[("KEYWARD_FAILPOINT", step)]);
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let key = runtime.block_on(seed_license(&primary.url, 1));
        let url = primary.url.clone();
        let taker = std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            let request = admin(&url, Method::POST, "/v1/admin/snapshots", None);
            let _ = runtime
                .block_on(async { tokio::time::timeout(Duration::from_secs(30), request).await });
        });
        assert!(primary.wait_for_log(
            &format!("failpoint reached: {step}"),
            Duration::from_secs(20)
        ));
        primary.kill();
        let _ = taker.join();

        let mut primary = Process::serve(&data_dir, &[]);
        let leftovers: Vec<PathBuf> = files_in(&data_dir.join("snapshots"))
            .into_iter()
            .filter(|path| {
                path.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("snap-")
                    || path.to_string_lossy().contains(".tmp-")
            })
            .collect();
        assert!(leftovers.is_empty(), "{step}: {leftovers:?}");
        let (status, manifest) = runtime.block_on(admin(
            &primary.url,
            Method::POST,
            "/v1/admin/snapshots",
            None,
        ));
        assert_eq!(status, 201, "{step}: {manifest}");
        assert_eq!(validate_code(&primary.url, &key), "NOT_ACTIVATED");
        assert_eq!(primary.terminate().code(), Some(0));
        assert!(integrity_ok(&data_dir.join("keyward.db")));
    }
}
