//! Storage faults on a small tmpfs that each test mounts itself: a disk that fills up while a
//! snapshot is received, and a data directory that turns read-only. Mounting needs root (CI runs
//! as root); where the mount is refused, the test prints why and passes without checking.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{
    ADMIN_TOKEN, PEER_SECRET, Process, file_sha256, integrity_ok, newest_snapshot, seed_license,
    upload_snapshot,
};
use keyward::keys::LicenseKey;

/// A tmpfs mounted for one test and unmounted when dropped.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` reads it) at `path`, or returns why not.
    fn mount(path: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(path).unwrap();
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .map_err(|err| format!("cannot run mount: {err}"))?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).into_owned());
        }
        Ok(Tmpfs {
            path: path.to_path_buf(),
        })
    }

    /// Mounts as `mount` does, or prints why test `test` is skipped and returns `None`.
    fn mount_or_skip(path: &Path, size: &str, test: &str) -> Option<Tmpfs> {
        match Tmpfs::mount(path, size) {
            Ok(tmpfs) => Some(tmpfs),
            Err(reason) => {
                eprintln!("SKIPPED {test}: mounting a tmpfs failed: {reason}");
                None
            }
        }
    }

    /// Remounts with `options`, such as `ro` or `rw`.
    fn remount(&self, options: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.path)
            .status()
            .unwrap();
        assert!(status.success(), "remounting {options} failed");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Builds a blocking HTTP client after installing the rustls crypto provider it needs.
fn blocking_client() -> reqwest::blocking::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::new()
}

fn dr_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("KEYWARD_INITIAL_ROLE", "standby"),
        ("KEYWARD_PEER_SECRET", PEER_SECRET),
    ]
}

/// Imports `count` licenses with random notes, so the database grows by about 300 bytes each.
fn import_licenses(url: &str, count: usize) {
    let mut csv = keyward::license::csv_io::COLUMNS[..13].join(",");
    csv.push('\n');
    for index in 0..count {
        let key = LicenseKey::generate().as_str().to_string();
        let note = LicenseKey::generate().as_str().repeat(8);
        csv.push_str(&format!(
            "{key},app,permanent,1,,,,,Customer {index},,,,{note}\n"
        ));
    }
    let response = blocking_client()
        .post(format!(
            "{url}/v1/admin/licenses/import?create_products=true"
        ))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|entry| entry.path()).collect())
        .unwrap_or_default()
}

#[test]
fn disk_full_while_receiving() {
    let dir = tempfile::tempdir().unwrap();
    let mount_point = dir.path().join("small");
    let Some(tmpfs) = Tmpfs::mount_or_skip(&mount_point, "2m", "disk_full_while_receiving") else {
        return;
    };

    // A small snapshot fits on the DR; a later one of about 4 MB does not.
    let primary_dir = dir.path().join("primary");
    let primary = Process::serve(&primary_dir, &[]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let key = runtime.block_on(seed_license(&primary.url, 1));
    let (small, small_manifest) = snapshot_of(&primary, &primary_dir);
    import_licenses(&primary.url, 12_000);
    let (big, big_manifest) = snapshot_of(&primary, &primary_dir);
    assert!(
        big.len() > 3 * 1024 * 1024,
        "snapshot is only {} bytes",
        big.len()
    );

    let dr_dir = tmpfs.path.join("dr");
    let mut dr = Process::serve(&dr_dir, &dr_env());
    let (status, body) = upload_snapshot(&dr.url, Some(PEER_SECRET), small, &small_manifest, true);
    assert_eq!(status, 200, "{body}");
    assert_eq!(dr.terminate().code(), Some(0));
    let live = dr_dir.join("keyward.db");
    let before = file_sha256(&live);

    let mut dr = Process::serve(&dr_dir, &dr_env());
    let (status, body) = upload_snapshot(&dr.url, Some(PEER_SECRET), big, &big_manifest, true);
    assert_eq!(status, 507, "{body}");
    assert_eq!(body["code"], "INSUFFICIENT_STORAGE", "{body}");
    let leftovers = files_in(&dr_dir.join("incoming"));
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");

    // The DR still serves the old database, and it is byte for byte unchanged.
    let response = blocking_client()
        .post(format!("{}/v1/validate", dr.url))
        .json(&serde_json::json!({"key": key, "computer_id": "probe"}))
        .send()
        .unwrap();
    let validated: serde_json::Value = response.json().unwrap();
    assert_eq!(validated["code"], "NOT_ACTIVATED", "{validated}");
    assert_eq!(dr.terminate().code(), Some(0));
    assert_eq!(file_sha256(&live), before, "the DR database changed");
    assert!(integrity_ok(&live), "integrity check failed");
}

#[test]
fn disk_full_while_taking_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mount_point = dir.path().join("small");
    let Some(tmpfs) = Tmpfs::mount_or_skip(&mount_point, "32m", "disk_full_while_taking_snapshot")
    else {
        return;
    };
    let data_dir = tmpfs.path.join("primary");
    let primary = Process::serve(&data_dir, &[]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let key = runtime.block_on(seed_license(&primary.url, 1));
    import_licenses(&primary.url, 12_000);
    let database_size = std::fs::metadata(data_dir.join("keyward.db"))
        .unwrap()
        .len();
    assert!(
        database_size > 3 * 1024 * 1024,
        "database is only {database_size} bytes"
    );

    // Leave room for half the database: the backup step runs out of space.
    let free = rustix::fs::statvfs(&tmpfs.path).unwrap();
    let free_bytes = free.f_bavail * free.f_frsize;
    let filler = tmpfs.path.join("filler");
    std::fs::write(
        &filler,
        vec![1u8; (free_bytes - database_size / 2) as usize],
    )
    .unwrap();
    let response = blocking_client()
        .post(format!("{}/v1/admin/snapshots", primary.url))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .unwrap();
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().unwrap();
    assert_eq!(status, 507, "{body}");
    assert_eq!(body["code"], "INSUFFICIENT_STORAGE", "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("snapshot.keep_last"), "{message}");
    let leftovers = files_in(&data_dir.join("snapshots"));
    assert!(
        leftovers
            .iter()
            .all(|path| path.file_name().unwrap() == "sequence"),
        "files left: {leftovers:?}"
    );

    // The server keeps serving, and the next snapshot works once there is room.
    let response = blocking_client()
        .post(format!("{}/v1/validate", primary.url))
        .json(&serde_json::json!({"key": key, "computer_id": "probe"}))
        .send()
        .unwrap();
    let validated: serde_json::Value = response.json().unwrap();
    assert_eq!(validated["code"], "NOT_ACTIVATED", "{validated}");
    std::fs::remove_file(&filler).unwrap();
    let (snapshot, _) = snapshot_of(&primary, &data_dir);
    assert!(snapshot.len() as u64 >= database_size / 2);
}

fn snapshot_of(primary: &Process, data_dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let response = blocking_client()
        .post(format!("{}/v1/admin/snapshots", primary.url))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let (file, manifest) = newest_snapshot(data_dir);
    (std::fs::read(file).unwrap(), manifest)
}

#[test]
fn read_only_data_dir_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mount_point = dir.path().join("site");
    let Some(tmpfs) = Tmpfs::mount_or_skip(&mount_point, "8m", "read_only_data_dir_is_reported")
    else {
        return;
    };

    // A snapshot from elsewhere to restore, and a site with one license on the tmpfs.
    let other_dir = dir.path().join("other");
    let other = Process::serve(&other_dir, &[]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(seed_license(&other.url, 1));
    let _ = snapshot_of(&other, &other_dir);
    let (snapshot_file, _) = newest_snapshot(&other_dir);

    let data_dir = tmpfs.path.join("data");
    let mut site = Process::serve(&data_dir, &[]);
    let key = runtime.block_on(seed_license(&site.url, 1));
    assert!(!key.is_empty());
    assert_eq!(site.terminate().code(), Some(0));
    let live = data_dir.join("keyward.db");
    let before = file_sha256(&live);
    tmpfs.remount("ro");

    // Serving fails at once and names the directory.
    let output = Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data_dir)
        .env("KEYWARD_BOOTSTRAP_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("KEYWARD_SNAPSHOT_EVERY", "")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "serve started on a read-only directory"
    );
    assert!(
        stderr.contains(&data_dir.display().to_string()),
        "the error does not name the path: {stderr}"
    );

    // An offline restore fails too, and the old database stays as it was.
    let output = Command::new(env!("CARGO_BIN_EXE_keyward"))
        .arg("restore")
        .arg(&snapshot_file)
        .arg("--force")
        .arg("--data-dir")
        .arg(&data_dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "restore into a read-only directory succeeded"
    );
    assert!(
        stderr.contains(&data_dir.display().to_string()),
        "the error does not name the path: {stderr}"
    );
    assert!(stderr.to_lowercase().contains("read-only"), "{stderr}");
    assert_eq!(file_sha256(&live), before, "the database changed");
    tmpfs.remount("rw");
    assert!(integrity_ok(&live), "integrity check failed");
}

#[test]
fn disk_full_write_answers_507() {
    let dir = tempfile::tempdir().unwrap();
    let mount_point = dir.path().join("small");
    let Some(tmpfs) = Tmpfs::mount_or_skip(&mount_point, "16m", "disk_full_write_answers_507")
    else {
        return;
    };
    let data_dir = tmpfs.path.join("primary");
    let primary = Process::serve(&data_dir, &[]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let key = runtime.block_on(seed_license(&primary.url, 1));

    // Fill the disk, then create licenses until a write no longer fits.
    let free = rustix::fs::statvfs(&tmpfs.path).unwrap();
    let filler = tmpfs.path.join("filler");
    std::fs::write(&filler, vec![1u8; (free.f_bavail * free.f_frsize) as usize]).unwrap();
    let create = || {
        let license = serde_json::json!({
            "product": "app", "model": "permanent", "seats": 1, "notes": "n".repeat(1000)
        });
        let response = blocking_client()
            .post(format!("{}/v1/admin/licenses", primary.url))
            .bearer_auth(ADMIN_TOKEN)
            .json(&license)
            .send()
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json::<serde_json::Value>().unwrap())
    };
    let (status, body) = (0..5000)
        .map(|_| create())
        .find(|(status, _)| *status != 201)
        .expect("a write failed on the full disk");
    assert_eq!(status, 507, "{body}");
    assert_eq!(body["code"], "INSUFFICIENT_STORAGE", "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("frees space in the data directory"),
        "{message}"
    );

    // Reads go on, and writes work again once there is room.
    let response = blocking_client()
        .post(format!("{}/v1/validate", primary.url))
        .json(&serde_json::json!({"key": key, "computer_id": "probe"}))
        .send()
        .unwrap();
    let validated: serde_json::Value = response.json().unwrap();
    assert_eq!(validated["code"], "NOT_ACTIVATED", "{validated}");
    std::fs::remove_file(&filler).unwrap();
    let (status, body) = create();
    assert_eq!(status, 201, "{body}");
}
