//! Files that hold a copy of the database are readable by their owner only: snapshots and their
//! manifests, pre-restore copies and incoming uploads (mode 0600, in directories of mode 0700).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{PEER_SECRET, Process, admin, newest_snapshot, seed_license, upload_snapshot};
use reqwest::Method;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|entry| entry.path()).collect())
        .unwrap_or_default()
}

fn dr_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("KEYWARD_INITIAL_ROLE", "standby"),
        ("KEYWARD_PEER_SECRET", PEER_SECRET),
    ]
}

#[test]
fn copies_of_database_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let primary_dir = dir.path().join("primary");
    let primary = Process::serve(&primary_dir, &[]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut snapshots = Vec::new();
    for _ in 0..2 {
        runtime.block_on(async {
            seed_license(&primary.url, 1).await;
            let (status, _) = admin(&primary.url, Method::POST, "/v1/admin/snapshots", None).await;
            assert_eq!(status, 201);
        });
        let (file, manifest) = newest_snapshot(&primary_dir);
        assert_eq!(mode(&file), 0o600, "{}", file.display());
        assert_eq!(
            mode(&file.with_extension("json")),
            0o600,
            "manifest of {}",
            file.display()
        );
        snapshots.push((std::fs::read(&file).unwrap(), manifest));
    }
    assert_eq!(
        mode(&primary_dir.join("snapshots")),
        0o700,
        "snapshots directory"
    );

    // Two uploads: the second replaces a database, which moves to pre-restore/.
    let dr_dir = dir.path().join("dr");
    let mut dr = Process::serve(&dr_dir, &dr_env());
    for (bytes, manifest) in &snapshots {
        let (status, body) =
            upload_snapshot(&dr.url, Some(PEER_SECRET), bytes.clone(), manifest, true);
        assert_eq!(status, 200, "{body}");
    }
    let copies = files_in(&dr_dir.join("pre-restore"));
    assert!(!copies.is_empty(), "no pre-restore copy was kept");
    for copy in &copies {
        assert_eq!(mode(copy), 0o600, "{}", copy.display());
    }
    assert_eq!(
        mode(&dr_dir.join("pre-restore")),
        0o700,
        "pre-restore directory"
    );
    dr.kill();

    // An upload paused halfway shows the temp file as it sits in incoming/.
    let mut dr = Process::serve(
        &dr_dir,
        &[dr_env(), vec![("KEYWARD_FAILPOINT", "receive.mid_upload")]].concat(),
    );
    let url = dr.url.clone();
    let (bytes, manifest) = snapshots[1].clone();
    let mut manifest_value: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    manifest_value["sequence"] = (manifest_value["sequence"].as_u64().unwrap() + 10).into();
    let manifest = serde_json::to_vec(&manifest_value).unwrap();
    let upload = std::thread::spawn(move || {
        let _ = std::panic::catch_unwind(|| {
            upload_snapshot(&url, Some(PEER_SECRET), bytes, &manifest, true)
        });
    });
    assert!(
        dr.wait_for_log(
            "failpoint reached: receive.mid_upload",
            Duration::from_secs(20)
        ),
        "{}",
        dr.stderr()
    );
    let incoming = files_in(&dr_dir.join("incoming"));
    assert_eq!(incoming.len(), 1, "{incoming:?}");
    assert_eq!(mode(&incoming[0]), 0o600, "{}", incoming[0].display());
    assert_eq!(mode(&dr_dir.join("incoming")), 0o700, "incoming directory");
    dr.kill();
    upload.join().unwrap();
}

#[test]
fn data_directory_files_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("site");
    let mut site = Process::serve(&data_dir, &[]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(seed_license(&site.url, 1));

    // While it runs, the database, its WAL files, the lock and the state files are all there.
    let files: Vec<PathBuf> = files_in(&data_dir)
        .into_iter()
        .filter(|path| path.is_file())
        .collect();
    let names: Vec<_> = files.iter().map(|path| path.file_name().unwrap()).collect();
    assert!(names.contains(&"keyward.lock".as_ref()), "{names:?}");
    assert!(names.contains(&"keyward.db-wal".as_ref()), "{names:?}");
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    assert_eq!(site.terminate().code(), Some(0));
}
