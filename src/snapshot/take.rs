//! Taking a snapshot: one `sqlite3_backup_step(-1)` on a dedicated connection into a temp file,
//! then fsync, hash, rename and a manifest beside it.
//!
//! A single step copies the whole database inside one read transaction, so concurrent writers
//! never restart it (a backup in small steps restarts from page 1 whenever another connection
//! writes). In WAL mode writers keep committing while it runs.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use sha2::{Digest, Sha256};

use super::SnapshotError;
use super::header::DatabaseHeader;
use super::manifest::{MANIFEST_FORMAT, Manifest};

/// A snapshot on disk: the database file and its manifest.
#[derive(Debug, Clone)]
pub struct StoredSnapshot {
    pub path: PathBuf,
    pub manifest: Manifest,
}

/// Copies the live database at `db_path` into `dir` as snapshot number `sequence`.
pub fn take(
    db_path: &Path,
    dir: &Path,
    site_id: &str,
    sequence: u64,
) -> Result<StoredSnapshot, SnapshotError> {
    crate::fsutil::create_private_dir(dir).map_err(|err| SnapshotError::io("create", dir, err))?;
    let temp = dir.join(format!(".tmp-snap-{}.db", crate::ids::random_hex(6)));
    let result = take_into(db_path, &temp, dir, site_id, sequence);
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

fn take_into(
    db_path: &Path,
    temp: &Path,
    dir: &Path,
    site_id: &str,
    sequence: u64,
) -> Result<StoredSnapshot, SnapshotError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(temp)
        .map_err(|err| SnapshotError::io("create", temp, err))?;
    copy_with_backup(db_path, temp)?;
    crate::failpoint::hit("snapshot.after_copy");

    let position = {
        let conn = super::verify::open_immutable(temp)?;
        crate::role::read_position(&conn)?
    };
    // Hashing reads the file from the page cache while the fsync writes it to disk; neither
    // waits for the other.
    let (hashed, synced) = std::thread::scope(|scope| {
        let sync = scope.spawn(|| {
            File::open(temp)
                .and_then(|file| file.sync_all())
                .map_err(|err| SnapshotError::io("fsync", temp, err))
        });
        let hashed = hash_file(temp);
        (hashed, sync.join())
    });
    synced.expect("fsync thread panicked")?;
    let (size, sha256) = hashed?;
    let header = DatabaseHeader::read(temp)?;

    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        source_site_id: site_id.to_string(),
        sequence,
        created_at: crate::time::format(chrono::Utc::now()),
        size,
        page_size: header.page_size,
        page_count: header.page_count,
        sha256,
        schema_version: header.user_version,
        keyward_version: env!("CARGO_PKG_VERSION").to_string(),
        position,
    };
    let path = dir.join(file_name(sequence));
    std::fs::rename(temp, &path).map_err(|err| SnapshotError::io("rename", temp, err))?;
    crate::failpoint::hit("snapshot.before_manifest");
    // The manifest is written last: a snapshot without one is incomplete and removed at start.
    crate::fsutil::write_atomically(&manifest_path(&path), &manifest.to_json())
        .map_err(|err| SnapshotError::io("write", &manifest_path(&path), err))?;
    Ok(StoredSnapshot { path, manifest })
}

/// Name of snapshot number `sequence`.
pub fn file_name(sequence: u64) -> String {
    format!("snap-{sequence:010}.db")
}

/// Path of the manifest beside a snapshot file.
pub fn manifest_path(snapshot: &Path) -> PathBuf {
    snapshot.with_extension("json")
}

fn copy_with_backup(db_path: &Path, temp: &Path) -> Result<(), SnapshotError> {
    let source = crate::db::open_connection(db_path)?;
    let mut target = rusqlite::Connection::open(temp)?;
    // The copy is fsynced once when complete, and a temp file left by a crash is deleted at
    // start, so the copy needs neither SQLite's own syncs nor a journal.
    target.pragma_update(None, "synchronous", "OFF")?;
    target.pragma_update(None, "journal_mode", "OFF")?;
    {
        let backup = Backup::new(&source, &mut target)?;
        let mut busy_retries = 0;
        loop {
            match backup.step(-1)? {
                StepResult::Done => break,
                StepResult::More => continue,
                StepResult::Busy | StepResult::Locked => {
                    // Temporary: another connection holds a lock. Retry for up to 10 s.
                    busy_retries += 1;
                    if busy_retries > 1000 {
                        return Err(SnapshotError::Busy);
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                _ => return Err(SnapshotError::Busy),
            }
        }
    }
    // The copy keeps the source's WAL mode. Switching it to a rollback journal makes the
    // snapshot one self-contained file that opens without -wal and -shm companions.
    target.pragma_update(None, "journal_mode", "DELETE")?;
    target
        .close()
        .map_err(|(_, err)| SnapshotError::from(err))?;
    Ok(())
}

/// Returns the size and lowercase hex SHA-256 of a file, read in 1 MiB blocks.
pub fn hash_file(path: &Path) -> Result<(u64, String), SnapshotError> {
    let mut file = File::open(path).map_err(|err| SnapshotError::io("open", path, err))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let count = file
            .read(&mut buffer)
            .map_err(|err| SnapshotError::io("read", path, err))?;
        if count == 0 {
            break;
        }
        hasher.update(&buffer[..count]);
        size += count as u64;
    }
    Ok((size, hex::encode(hasher.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_is_one_self_contained_file_that_matches_its_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("keyward.db");
        let db = crate::db::Db::open(&live, |conn| {
            conn.execute_batch(
                "INSERT INTO audit_log (at, actor, action, object, detail) \
                 VALUES ('2026-12-04T00:00:00Z', 'test', 'filler', 'x', '\"y\"')",
            )?;
            Ok(())
        })
        .unwrap();
        let out = dir.path().join("snapshots");
        let snapshot = take(&live, &out, "site-a", 7).unwrap();
        drop(db);

        let bytes = std::fs::read(&snapshot.path).unwrap();
        // Bytes 18 and 19 of the header are 1 for a rollback journal, 2 for WAL.
        assert_eq!((bytes[18], bytes[19]), (1, 1));
        let mut names: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["snap-0000000007.db", "snap-0000000007.json"]);
        let (size, sha256) = hash_file(&snapshot.path).unwrap();
        assert_eq!(size, snapshot.manifest.size);
        assert_eq!(sha256, snapshot.manifest.sha256);
        assert_eq!(size, bytes.len() as u64);
        let conn = rusqlite::Connection::open(&snapshot.path).unwrap();
        let count: i64 = conn
            .query_row(
                "SELECT count(*) FROM audit_log WHERE action = 'filler'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(count, 1);
    }
}
