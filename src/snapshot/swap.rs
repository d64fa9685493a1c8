//! Swapping a verified snapshot in place of the live database, and recovery from a crash at
//! any step of it.
//!
//! The steps, with a journal (`incoming/swap.json`) written first:
//! 1. every connection is closed (by the caller) and the WAL is checkpointed into the database
//!    file with `wal_checkpoint(TRUNCATE)` by a fresh connection, which is then closed;
//! 2. the live file moves to `pre-restore/` (it is complete on its own after step 1);
//! 3. any `-wal` and `-shm` left at the live path are removed, so they can never be applied to
//!    the new file;
//! 4. the staged file, with the old file's owner and mode, is renamed onto the live path and
//!    the directory is fsynced;
//! 5. the journal is removed.
//!
//! In a running server, an error before the rename in step 4 leaves the old file live (moved back
//! if needed). An error after it leaves the new file live and the swap counts as done, unless
//! reopening the new file or its `quick_check` then fails, which the caller reports as an error.
//!
//! At start, [`recover`] reads a leftover journal: before step 2 it rolls back (the old file
//! stays live), after step 2 it rolls forward (the staged file becomes live). Either way one
//! whole database is live, never a mix.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::SnapshotError;

/// File name of the live database inside the data directory.
pub const LIVE_NAME: &str = "keyward.db";

#[derive(Debug, Serialize, Deserialize)]
struct Journal {
    staged: PathBuf,
    pre_restore: PathBuf,
    started_at: String,
}

fn journal_path(data_dir: &Path) -> PathBuf {
    data_dir.join("incoming").join("swap.json")
}

fn remove_journal(journal_file: &Path) -> Result<(), SnapshotError> {
    std::fs::remove_file(journal_file).map_err(|err| SnapshotError::io("remove", journal_file, err))
}

/// Renames the old database named in `journal` back onto the live path and syncs the directory.
fn move_old_back(data_dir: &Path, journal: &Journal, live: &Path) -> Result<(), SnapshotError> {
    std::fs::rename(&journal.pre_restore, live)
        .map_err(|err| SnapshotError::io("rename", &journal.pre_restore, err))?;
    sync(data_dir)
}

fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Replaces the live database with `staged` (a verified file inside `data_dir/incoming`). Every
/// connection to the live database must be closed. Returns the path of the pre-restore copy;
/// old copies are left for [`prune_pre_restore`].
pub fn swap_files(data_dir: &Path, staged: &Path) -> Result<PathBuf, SnapshotError> {
    let live = data_dir.join(LIVE_NAME);
    let pre_dir = data_dir.join("pre-restore");
    crate::fsutil::create_private_dir(&pre_dir)
        .map_err(|err| SnapshotError::io("create", &pre_dir, err))?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    let pre_restore = pre_dir.join(format!("keyward-{stamp}.db"));

    let journal = Journal {
        staged: staged.to_path_buf(),
        pre_restore: pre_restore.clone(),
        started_at: crate::time::format(chrono::Utc::now()),
    };
    let journal_file = journal_path(data_dir);
    crate::fsutil::write_atomically(
        &journal_file,
        &serde_json::to_vec(&journal).expect("journal json"),
    )
    .map_err(|err| SnapshotError::io("write", &journal_file, err))?;
    crate::failpoint::hit("swap.after_journal");

    if let Err(err) = checkpoint(&live) {
        let _ = std::fs::remove_file(&journal_file);
        return Err(err);
    }
    crate::failpoint::hit("swap.after_checkpoint");
    copy_ownership(&live, staged)?;

    std::fs::rename(&live, &pre_restore).map_err(|err| SnapshotError::io("rename", &live, err))?;
    sync(&pre_dir)?;
    crate::failpoint::hit("swap.after_move_old");
    move_new_in(data_dir, staged, &live)?;
    if let Err(err) = close_journal(data_dir) {
        // The new database is live, so the swap counts as done. If the rename did not reach the
        // disk, start-up recovery finds the staged file and finishes the swap, else it drops the journal.
        tracing::warn!(error = %err, journal = %journal_file.display(), "the snapshot is live, but syncing the directory or removing the swap journal failed. The next start-up finishes the swap");
    }
    Ok(pre_restore)
}

/// Steps 3 to 5: drop stale WAL files, rename the staged file in, remove the journal.
fn finish_forward(data_dir: &Path, staged: &Path, live: &Path) -> Result<(), SnapshotError> {
    move_new_in(data_dir, staged, live)?;
    close_journal(data_dir)
}

/// Removes stale WAL files, then renames the staged file over the live path (steps 3 and 4).
fn move_new_in(data_dir: &Path, staged: &Path, live: &Path) -> Result<(), SnapshotError> {
    for suffix in ["-wal", "-shm", "-journal"] {
        let path = sidecar(live, suffix);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(SnapshotError::io("remove", &path, err)),
        }
    }
    sync(data_dir)?;
    crate::failpoint::hit_or_fail("swap.before_rename_new")
        .and_then(|()| std::fs::rename(staged, live))
        .map_err(|err| SnapshotError::io("rename", staged, err))
}

/// Fsyncs the directory after the rename (end of step 4), then removes the journal (step 5).
fn close_journal(data_dir: &Path) -> Result<(), SnapshotError> {
    sync(data_dir)?;
    let journal_file = journal_path(data_dir);
    crate::failpoint::hit_or_fail("swap.after_rename_new")
        .and_then(|()| std::fs::remove_file(&journal_file))
        .map_err(|err| SnapshotError::io("remove", &journal_file, err))?;
    if let Some(dir) = journal_file.parent() {
        sync(dir)?;
    }
    Ok(())
}

/// Moves everything in the WAL into the database file, then closes, which removes the WAL.
fn checkpoint(live: &Path) -> Result<(), SnapshotError> {
    let conn = crate::db::open_connection(live)?;
    let (busy, _log, _checkpointed): (i64, i64, i64) =
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?;
    if busy != 0 {
        return Err(SnapshotError::Internal(
            "the WAL checkpoint before the swap was blocked by another connection".into(),
        ));
    }
    conn.close().map_err(|(_, err)| SnapshotError::from(err))?;
    Ok(())
}

/// Gives `staged` the owner, group and mode of the live file, so a restore run as root leaves a
/// database the service user can still write.
fn copy_ownership(live: &Path, staged: &Path) -> Result<(), SnapshotError> {
    let metadata = std::fs::metadata(live).map_err(|err| SnapshotError::io("stat", live, err))?;
    let staged_meta =
        std::fs::metadata(staged).map_err(|err| SnapshotError::io("stat", staged, err))?;
    if staged_meta.uid() != metadata.uid() || staged_meta.gid() != metadata.gid() {
        std::os::unix::fs::chown(staged, Some(metadata.uid()), Some(metadata.gid()))
            .map_err(|err| SnapshotError::io("chown", staged, err))?;
    }
    let mode = metadata.permissions().mode() & 0o777;
    std::fs::set_permissions(staged, std::fs::Permissions::from_mode(mode))
        .map_err(|err| SnapshotError::io("chmod", staged, err))?;
    Ok(())
}

fn sync(dir: &Path) -> Result<(), SnapshotError> {
    crate::fsutil::sync_dir(dir).map_err(|err| SnapshotError::io("fsync", dir, err))
}

/// Deletes the oldest pre-restore copies in `data_dir` beyond the newest `keep` (at least one).
/// Freeing a large file takes a while, so callers run this after the database has reopened.
pub fn prune_pre_restore(data_dir: &Path, keep: usize) {
    let dir = data_dir.join("pre-restore");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut copies: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "db"))
        .collect();
    copies.sort();
    let excess = copies.len().saturating_sub(keep.max(1));
    for path in copies.into_iter().take(excess) {
        if let Err(err) = std::fs::remove_file(&path) {
            tracing::warn!(error = %err, path = %path.display(), "removing an old pre-restore copy failed");
        }
    }
}

/// Reads the swap journal, or returns `None` when no swap is under way.
fn read_journal(journal_file: &Path) -> Result<Option<Journal>, SnapshotError> {
    let Ok(bytes) = std::fs::read(journal_file) else {
        return Ok(None);
    };
    let journal = serde_json::from_slice(&bytes).map_err(|err| {
        SnapshotError::Internal(format!(
            "swap journal {} is unreadable: {err}",
            journal_file.display()
        ))
    })?;
    Ok(Some(journal))
}

/// Puts the old database back after `swap_files` returned an error in a running server, so the
/// site goes on serving its old data without a restart. When a database is live (the error came
/// before the old file moved or after the new one was in), only the journal is removed. When
/// neither is there, the journal stays for start-up recovery and an error is returned.
pub fn roll_back(data_dir: &Path) -> Result<(), SnapshotError> {
    let journal_file = journal_path(data_dir);
    let Some(journal) = read_journal(&journal_file)? else {
        return Ok(());
    };
    let live = data_dir.join(LIVE_NAME);
    if !live.exists() {
        if !journal.pre_restore.exists() {
            return Err(SnapshotError::Internal(format!(
                "no database is live and the old copy {} named in the swap journal is missing",
                journal.pre_restore.display()
            )));
        }
        move_old_back(data_dir, &journal, &live)?;
        tracing::warn!(pre_restore = %journal.pre_restore.display(), "the swap failed after the old database moved; the old database is live again");
    }
    remove_journal(&journal_file)?;
    sync(data_dir)
}

/// Returns whether a swap journal exists: a swap is under way or waits for start-up recovery.
pub fn journal_exists(data_dir: &Path) -> bool {
    journal_path(data_dir).exists()
}

/// Finishes or rolls back a swap interrupted by a crash, and removes leftover temp files. Runs
/// before the database is opened.
pub fn recover(data_dir: &Path) -> Result<(), SnapshotError> {
    let journal_file = journal_path(data_dir);
    if let Some(journal) = read_journal(&journal_file)? {
        let live = data_dir.join(LIVE_NAME);
        let live_exists = live.exists();
        let staged_exists = journal.staged.exists();
        if live_exists && staged_exists {
            tracing::warn!(staged = %journal.staged.display(), "rolling back a swap interrupted before the old database moved; the old database stays live");
            std::fs::remove_file(&journal.staged)
                .map_err(|err| SnapshotError::io("remove", &journal.staged, err))?;
            remove_journal(&journal_file)?;
        } else if !live_exists && staged_exists {
            tracing::warn!(staged = %journal.staged.display(), "finishing a swap interrupted after the old database moved; the new database becomes live");
            finish_forward(data_dir, &journal.staged, &live)?;
        } else if !live_exists && journal.pre_restore.exists() {
            tracing::warn!(pre_restore = %journal.pre_restore.display(), "staged snapshot missing after an interrupted swap; putting the old database back");
            move_old_back(data_dir, &journal, &live)?;
            remove_journal(&journal_file)?;
        } else {
            tracing::info!("a swap had finished before the crash; removing its journal");
            remove_journal(&journal_file)?;
        }
    }
    remove_temp_files(&data_dir.join("incoming"), |name| {
        name.starts_with("upload-") || name.starts_with("staged-")
    });
    // Snapshot copies start with ".tmp-"; manifests and the sequence counter are written
    // through hidden temp names such as ".snap-0000000001.json.tmp-1a2b".
    remove_temp_files(&data_dir.join("snapshots"), |name| {
        name.starts_with(".tmp-") || (name.starts_with('.') && name.contains(".tmp-"))
    });
    super::store::remove_incomplete(&data_dir.join("snapshots"));
    Ok(())
}

fn remove_temp_files(dir: &Path, matches: impl Fn(&str) -> bool) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if matches(&name) {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::info!(path = %entry.path().display(), "removed a leftover temp file")
                }
                Err(err) => {
                    tracing::warn!(error = %err, path = %entry.path().display(), "removing a leftover temp file failed")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a swap journal into `data_dir` naming `staged` and `pre_restore`.
    fn write_journal(data_dir: &Path, staged: &Path, pre_restore: &Path) {
        std::fs::create_dir_all(data_dir.join("incoming")).unwrap();
        let journal = Journal {
            staged: staged.to_path_buf(),
            pre_restore: pre_restore.to_path_buf(),
            started_at: "2026-12-04T00:00:00Z".into(),
        };
        std::fs::write(
            journal_path(data_dir),
            serde_json::to_vec(&journal).unwrap(),
        )
        .unwrap();
    }

    #[test]
    fn roll_back_restores_moved_old_database() {
        let dir = tempfile::tempdir().unwrap();
        let staged = dir.path().join("incoming").join("staged-1.db");
        let pre_restore = dir.path().join("pre-restore").join("keyward-1.db");
        write_journal(dir.path(), &staged, &pre_restore);
        std::fs::write(&staged, b"new").unwrap();
        std::fs::create_dir_all(pre_restore.parent().unwrap()).unwrap();
        std::fs::write(&pre_restore, b"old").unwrap();

        roll_back(dir.path()).unwrap();
        assert_eq!(std::fs::read(dir.path().join(LIVE_NAME)).unwrap(), b"old");
        assert!(!pre_restore.exists());
        assert!(!journal_exists(dir.path()));
    }

    #[test]
    fn roll_back_without_old_copy_keeps_journal() {
        let dir = tempfile::tempdir().unwrap();
        let staged = dir.path().join("incoming").join("staged-1.db");
        let missing = dir.path().join("pre-restore").join("gone.db");
        write_journal(dir.path(), &staged, &missing);
        std::fs::write(&staged, b"new").unwrap();

        let err = roll_back(dir.path()).unwrap_err();
        assert!(err.to_string().contains("gone.db"), "{err}");
        assert!(journal_exists(dir.path()), "recovery needs the journal");
        // Start-up recovery then finishes the swap forward from the staged file.
        recover(dir.path()).unwrap();
        assert_eq!(std::fs::read(dir.path().join(LIVE_NAME)).unwrap(), b"new");
        assert!(!journal_exists(dir.path()));
    }

    #[test]
    fn recovery_removes_hidden_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let snapshots = dir.path().join("snapshots");
        std::fs::create_dir_all(&snapshots).unwrap();
        let leftovers = [
            ".tmp-snap-abc123.backup",
            ".tmp-snap-abc123.db",
            ".snap-0000000001.json.tmp-1a2b",
            ".sequence.tmp-3c4d",
        ];
        for name in leftovers {
            std::fs::write(snapshots.join(name), b"x").unwrap();
        }
        std::fs::write(snapshots.join("snap-0000000001.db"), b"db").unwrap();
        std::fs::write(snapshots.join("snap-0000000001.json"), b"{}").unwrap();
        std::fs::write(snapshots.join("sequence"), b"1").unwrap();

        recover(dir.path()).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(&snapshots)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["sequence", "snap-0000000001.db", "snap-0000000001.json"]
        );
    }

    #[test]
    fn pruning_keeps_the_newest_pre_restore_copies() {
        let dir = tempfile::tempdir().unwrap();
        let pre = dir.path().join("pre-restore");
        std::fs::create_dir(&pre).unwrap();
        for stamp in ["20261201", "20261203", "20261202", "20261204"] {
            std::fs::write(pre.join(format!("keyward-{stamp}T000000.000Z.db")), b"x").unwrap();
        }
        std::fs::write(pre.join("notes.txt"), b"kept").unwrap();

        prune_pre_restore(dir.path(), 2);
        let mut left: Vec<String> = std::fs::read_dir(&pre)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "keyward-20261203T000000.000Z.db",
                "keyward-20261204T000000.000Z.db",
                "notes.txt"
            ]
        );

        prune_pre_restore(dir.path(), 0);
        assert!(
            pre.join("keyward-20261204T000000.000Z.db").exists(),
            "one copy always stays"
        );
    }
}
