//! Restoring a snapshot into a data directory whose server is stopped.

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::manifest::Manifest;
use super::{ApplyOutcome, SnapshotError, admission, swap, verify};
use crate::config::Config;
use crate::role::{Role, RoleState};

/// Name of the lock file a running server holds in its data directory.
pub const LOCK_NAME: &str = "keyward.lock";

/// Takes the data directory's lock, which a running server holds for its whole life.
pub fn lock_data_dir(data_dir: &Path) -> Result<File, SnapshotError> {
    crate::fsutil::create_private_dir(data_dir)
        .map_err(|err| SnapshotError::io("create", data_dir, err))?;
    let path = data_dir.join(LOCK_NAME);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|err| SnapshotError::io("open", &path, err))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(SnapshotError::Internal(format!(
            "a keyward server is running on {}; stop it, or restore through it with --url",
            data_dir.display()
        ))),
        Err(std::fs::TryLockError::Error(err)) => Err(SnapshotError::io("lock", &path, err)),
    }
}

/// Verifies `file` and swaps it in as the live database of the stopped site in `config`.
pub async fn restore(
    config: &Config,
    file: &Path,
    manifest: Option<Manifest>,
    force: bool,
) -> Result<ApplyOutcome, SnapshotError> {
    let data_dir = config.data_dir.clone();
    let file = file.to_path_buf();
    let keep = config.receive.keep_pre_restore;
    let initial = if config.initial_role == "standby" || !config.redirect.url.is_empty() {
        Role::Standby
    } else {
        Role::Active
    };
    tokio::task::spawn_blocking(move || {
        restore_blocking(&data_dir, &file, manifest, force, keep, initial)
    })
    .await
    .map_err(|err| SnapshotError::Internal(format!("restore task failed: {err}")))?
}

fn restore_blocking(
    data_dir: &Path,
    file: &Path,
    manifest: Option<Manifest>,
    force: bool,
    keep: usize,
    initial: Role,
) -> Result<ApplyOutcome, SnapshotError> {
    let _lock = lock_data_dir(data_dir)?;
    swap::recover(data_dir)?;
    let incoming = data_dir.join("incoming");
    crate::fsutil::create_private_dir(&incoming)
        .map_err(|err| SnapshotError::io("create", &incoming, err))?;
    let staged = incoming.join(format!("staged-{}.db", crate::ids::random_hex(4)));
    let result = restore_staged(data_dir, file, &staged, manifest, force, keep, initial);
    if staged.exists() {
        let _ = std::fs::remove_file(&staged);
    }
    result
}

fn restore_staged(
    data_dir: &Path,
    file: &Path,
    staged: &PathBuf,
    manifest: Option<Manifest>,
    force: bool,
    keep: usize,
    initial: Role,
) -> Result<ApplyOutcome, SnapshotError> {
    copy_private(file, staged)?;
    let incoming_position = verify::verify_file(staged, manifest.as_ref(), None)?;

    let live = data_dir.join(swap::LIVE_NAME);
    let status = super::status::StatusBoard::load(data_dir);
    if live.exists() {
        let local = {
            let conn = crate::db::open_connection(&live)?;
            crate::role::read_position(&conn)?
        };
        let site_id = crate::role::load_site_id(data_dir)
            .map_err(|err| SnapshotError::io("read", data_dir, err))?;
        let role = RoleState::load(data_dir, &site_id, initial)
            .map_err(|err| SnapshotError::Internal(err.to_string()))?;
        let decision = admission::decide(&admission::Request {
            role: role.role(),
            local: &local,
            incoming: &incoming_position,
            manifest: manifest.as_ref(),
            last_applied: status.last_applied().as_ref(),
            force,
        });
        match decision {
            admission::Decision::Accept => {}
            admission::Decision::AlreadyCurrent => {
                return Ok(ApplyOutcome {
                    result: "ALREADY_CURRENT",
                    pre_restore: None,
                    position: local,
                });
            }
            admission::Decision::Reject(rejection) => {
                return Err(SnapshotError::Rejected(rejection));
            }
        }
        verify::migrate_if_older(staged)?;
        let pre_restore = swap::swap_files(data_dir, staged)?;
        swap::prune_pre_restore(data_dir, keep);
        status.applied(manifest.as_ref(), &incoming_position);
        return Ok(ApplyOutcome {
            result: "APPLIED",
            pre_restore: Some(pre_restore),
            position: incoming_position,
        });
    }
    verify::migrate_if_older(staged)?;
    std::fs::rename(staged, &live).map_err(|err| SnapshotError::io("rename", staged, err))?;
    crate::fsutil::sync_dir(data_dir).map_err(|err| SnapshotError::io("fsync", data_dir, err))?;
    status.applied(manifest.as_ref(), &incoming_position);
    Ok(ApplyOutcome {
        result: "APPLIED",
        pre_restore: None,
        position: incoming_position,
    })
}

fn copy_private(from: &Path, to: &Path) -> Result<(), SnapshotError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut source = File::open(from).map_err(|err| SnapshotError::io("open", from, err))?;
    let mut target = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .map_err(|err| SnapshotError::io("create", to, err))?;
    std::io::copy(&mut source, &mut target).map_err(|err| SnapshotError::io("copy", to, err))?;
    target
        .flush()
        .and_then(|()| target.sync_all())
        .map_err(|err| SnapshotError::io("fsync", to, err))?;
    Ok(())
}
