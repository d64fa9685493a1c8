//! Snapshots: taking them with the online backup API, shipping them to the DR peer, and
//! receiving, verifying and swapping them in on the peer.
//!
//! Data directory layout used here:
//! - `snapshots/snap-NNNNNNNNNN.db` with a `.json` manifest beside each, and `sequence`;
//! - `incoming/` for uploads in progress, the staged file and the swap journal;
//! - `pre-restore/` for copies of the database from before each swap;
//! - `replication.json` for the last applied snapshot.

pub mod admission;
mod background;
pub mod header;
pub mod manifest;
pub mod offline;
pub mod peer_health;
pub mod receive;
pub mod schedule;
pub mod ship;
pub mod status;
pub mod store;
pub mod swap;
pub mod take;
pub mod verify;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::api::AppState;
use crate::config::Config;
use crate::db::{Db, DbError};
use crate::role::RoleState;
use crate::time::SharedClock;

pub use take::StoredSnapshot;
pub use verify::Rejection;

/// Errors from taking, shipping, verifying or applying snapshots.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot rejected: {0}")]
    Rejected(Rejection),
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("SQLite error: {0}")]
    Sqlite(String),
    #[error("no space left on the disk: {0}")]
    DiskFull(String),
    #[error("the database stayed locked; the snapshot was not taken")]
    Busy,
    #[error("another snapshot is being received or applied; retry later")]
    InProgress,
    #[error("{0}")]
    Internal(String),
}

impl SnapshotError {
    pub fn io(action: &'static str, path: &Path, source: std::io::Error) -> SnapshotError {
        SnapshotError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn rejected(code: &'static str, message: impl Into<String>) -> SnapshotError {
        SnapshotError::Rejected(Rejection::new(code, message))
    }

    /// Stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            SnapshotError::Rejected(rejection) => rejection.code,
            SnapshotError::Io { source, .. } if source.raw_os_error() == Some(28) => {
                "INSUFFICIENT_STORAGE"
            }
            SnapshotError::DiskFull(_) => "INSUFFICIENT_STORAGE",
            SnapshotError::Io { .. } => "IO_ERROR",
            SnapshotError::Sqlite(_) => "SQLITE_ERROR",
            SnapshotError::Busy => "BUSY",
            SnapshotError::InProgress => "RECEIVE_IN_PROGRESS",
            SnapshotError::Internal(_) => "INTERNAL",
        }
    }
}

impl From<rusqlite::Error> for SnapshotError {
    fn from(err: rusqlite::Error) -> Self {
        if err.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
            return SnapshotError::DiskFull(err.to_string());
        }
        SnapshotError::Sqlite(err.to_string())
    }
}

impl From<DbError> for SnapshotError {
    fn from(err: DbError) -> Self {
        match err {
            DbError::DiskFull(detail) => SnapshotError::DiskFull(detail),
            other => SnapshotError::Sqlite(other.to_string()),
        }
    }
}

/// Takes, stores, ships and applies snapshots for one site.
pub struct SnapshotService {
    pub config: Arc<Config>,
    pub db: Arc<Db>,
    pub role: Arc<RoleState>,
    pub clock: SharedClock,
    pub status: status::StatusBoard,
    take_lock: tokio::sync::Mutex<()>,
    receive_lock: tokio::sync::Mutex<()>,
    /// Serializes shipments from the background shipper and `keyward ship`.
    ship_lock: tokio::sync::Mutex<()>,
    /// Sequence of the snapshot being shipped, which retention must keep.
    shipping: std::sync::Mutex<Option<u64>>,
    /// Wakes the shipper when a new snapshot exists.
    pub ship_wakeup: tokio::sync::Notify,
    pub shipper: ship::Shipper,
}

impl SnapshotService {
    pub fn new(
        config: Arc<Config>,
        db: Arc<Db>,
        role: Arc<RoleState>,
        clock: SharedClock,
    ) -> anyhow::Result<SnapshotService> {
        let shipper = ship::Shipper::new(&config)?;
        let status = status::StatusBoard::load(&config.data_dir);
        Ok(SnapshotService {
            config,
            db,
            role,
            clock,
            status,
            take_lock: tokio::sync::Mutex::new(()),
            receive_lock: tokio::sync::Mutex::new(()),
            ship_lock: tokio::sync::Mutex::new(()),
            shipping: std::sync::Mutex::new(None),
            ship_wakeup: tokio::sync::Notify::new(),
            shipper,
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    pub fn snapshots_dir(&self) -> PathBuf {
        self.config.data_dir.join("snapshots")
    }

    pub fn incoming_dir(&self) -> PathBuf {
        self.config.data_dir.join("incoming")
    }

    /// Takes a snapshot now, applies retention and wakes the shipper.
    pub async fn take_now(&self) -> Result<StoredSnapshot, SnapshotError> {
        let _one_at_a_time = self.take_lock.lock().await;
        let dir = self.snapshots_dir();
        let db_path = self.db.path().to_path_buf();
        let site_id = self.role.site_id().to_string();
        let started = std::time::Instant::now();
        let snapshot = background::run("keyward-snapshot", move || {
            crate::fsutil::create_private_dir(&dir)
                .map_err(|err| SnapshotError::io("create", &dir, err))?;
            let sequence =
                store::next_sequence(&dir).map_err(|err| SnapshotError::io("write", &dir, err))?;
            take::take(&db_path, &dir, &site_id, sequence)
        })
        .await?;
        tracing::info!(
            snapshot.seq = snapshot.manifest.sequence,
            snapshot.bytes = snapshot.manifest.size,
            snapshot.write_seq = snapshot.manifest.position.write_seq,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "snapshot taken"
        );
        self.status.snapshot_taken(&snapshot.manifest);
        self.apply_retention().await;
        self.ship_wakeup.notify_one();
        Ok(snapshot)
    }

    /// Deletes old snapshots per `[snapshot]` keep_last and max_age.
    pub async fn apply_retention(&self) {
        let protected = *self.shipping.lock().expect("shipping lock poisoned");
        let max_age = self.config.snapshot_max_age().ok().flatten();
        let dir = self.snapshots_dir();
        let keep_last = self.config.snapshot.keep_last;
        let now = self.clock.now();
        // On a thread of its own: freeing a large file takes long enough to hold up the
        // requests of an async worker.
        let deleted = background::run("keyward-retention", move || {
            Ok(store::apply_retention(
                &dir, keep_last, max_age, protected, now,
            ))
        })
        .await
        .unwrap_or_else(|err| {
            tracing::warn!(error = %err, "deleting old snapshots failed");
            Vec::new()
        });
        if !deleted.is_empty() {
            tracing::info!(count = deleted.len(), "deleted old snapshots");
        }
    }

    /// Returns the newest complete snapshot.
    pub fn newest(&self) -> Option<StoredSnapshot> {
        store::list(&self.snapshots_dir()).pop()
    }

    fn set_shipping(&self, sequence: Option<u64>) {
        *self.shipping.lock().expect("shipping lock poisoned") = sequence;
    }

    /// Verifies a received or restored file in `incoming/` and, if this site may take it, swaps
    /// it in. The live database is untouched unless every check passes.
    pub async fn apply_file(
        &self,
        file: PathBuf,
        manifest: Option<manifest::Manifest>,
        sha256: Option<String>,
        force: bool,
    ) -> Result<ApplyOutcome, SnapshotError> {
        let _one_at_a_time = self
            .receive_lock
            .try_lock()
            .map_err(|_| SnapshotError::InProgress)?;
        let result = self.apply_locked(&file, manifest, sha256, force).await;
        if file.exists() {
            let _ = std::fs::remove_file(&file);
        }
        if let Err(err) = &result {
            self.status.rejected(err);
        }
        result
    }

    async fn apply_locked(
        &self,
        file: &Path,
        manifest: Option<manifest::Manifest>,
        sha256: Option<String>,
        force: bool,
    ) -> Result<ApplyOutcome, SnapshotError> {
        let verify_path = file.to_path_buf();
        let verify_manifest = manifest.clone();
        let incoming = background::run("keyward-verify", move || {
            verify::verify_file(&verify_path, verify_manifest.as_ref(), sha256.as_deref())
        })
        .await?;
        crate::failpoint::hit("receive.after_verify");

        let local = self.db.read(crate::role::read_position).await?;
        let decision = admission::decide(&admission::Request {
            role: self.role.role(),
            local: &local,
            incoming: &incoming,
            manifest: manifest.as_ref(),
            last_applied: self.status.last_applied().as_ref(),
            force,
        });
        match decision {
            admission::Decision::AlreadyCurrent => {
                return Ok(ApplyOutcome {
                    result: "ALREADY_CURRENT",
                    pre_restore: None,
                    position: local,
                });
            }
            admission::Decision::Reject(rejection) => {
                if rejection.code == "DIVERGED" {
                    tracing::error!(
                        local.database_id = %local.database_id,
                        local.write_seq = local.write_seq,
                        incoming.write_seq = incoming.write_seq,
                        reason = %rejection.message,
                        "DIVERGENCE: rejected a snapshot that would overwrite writes this site never shipped; \
                         compare with `keyward diff`, then `keyward restore --force` to accept it"
                    );
                    self.status.diverged(&rejection.message);
                }
                return Err(SnapshotError::Rejected(rejection));
            }
            admission::Decision::Accept => {}
        }

        let migrate_path = file.to_path_buf();
        background::run("keyward-migrate", move || {
            verify::migrate_if_older(&migrate_path)
        })
        .await?;
        let staged = self
            .incoming_dir()
            .join(format!("staged-{}.db", crate::ids::random_hex(4)));
        std::fs::rename(file, &staged).map_err(|err| SnapshotError::io("rename", file, err))?;
        let pre_restore = self.swap_online(&staged).await;
        // A journal left behind means start-up recovery may still need the staged file.
        if staged.exists() && !swap::journal_exists(self.data_dir()) {
            let _ = std::fs::remove_file(&staged);
        }
        let pre_restore = pre_restore?;
        self.status.applied(manifest.as_ref(), &incoming);
        tracing::info!(
            database.id = %incoming.database_id,
            write_seq = incoming.write_seq,
            snapshot.seq = manifest.as_ref().map(|m| m.sequence),
            pre_restore = %pre_restore.display(),
            forced = force,
            "snapshot swapped in"
        );
        Ok(ApplyOutcome {
            result: "APPLIED",
            pre_restore: Some(pre_restore),
            position: incoming,
        })
    }

    async fn swap_online(&self, staged: &Path) -> Result<PathBuf, SnapshotError> {
        let guard = self.db.close_for_swap().await?;
        let data_dir = self.data_dir().to_path_buf();
        let staged = staged.to_path_buf();
        let swapped = tokio::task::spawn_blocking(move || swap::swap_files(&data_dir, &staged))
            .await
            .map_err(|err| SnapshotError::Internal(format!("swap task failed: {err}")));
        if !matches!(swapped, Ok(Ok(_))) {
            let data_dir = self.data_dir().to_path_buf();
            let rolled_back = tokio::task::spawn_blocking(move || swap::roll_back(&data_dir))
                .await
                .unwrap_or_else(|err| Err(SnapshotError::Internal(err.to_string())));
            if let Err(err) = rolled_back {
                // NOTE: with no database live, requests fail until a restart, whose recovery
                // finishes the swap from the journal or puts the old database back.
                tracing::error!(error = %err, "putting the old database back after a failed swap failed; restart keyward to recover");
            }
        }
        // Reopen whatever is live now: the new file after a swap, the old one after a failure.
        let reopened = guard.reopen();
        let pre_restore = swapped??;
        reopened?;
        // Outside the gate: deleting a large old copy would hold up waiting requests.
        let data_dir = self.data_dir().to_path_buf();
        let keep = self.config.receive.keep_pre_restore;
        let _ = tokio::task::spawn_blocking(move || swap::prune_pre_restore(&data_dir, keep)).await;
        let conn_check = self.db.read(|conn| {
            let result: String = conn.query_row("PRAGMA quick_check", [], |row| row.get(0))?;
            Ok(result)
        });
        let check = conn_check.await?;
        if check != "ok" {
            return Err(SnapshotError::Internal(format!(
                "quick_check after the swap returned {check}"
            )));
        }
        Ok(pre_restore)
    }
}

/// Outcome of applying a snapshot.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ApplyOutcome {
    /// `APPLIED`, or `ALREADY_CURRENT` when the receiver already has exactly this position.
    pub result: &'static str,
    /// Path of the kept copy of the replaced database.
    #[schema(value_type = Option<String>)]
    pub pre_restore: Option<PathBuf>,
    pub position: crate::role::Position,
}

/// Starts the snapshot scheduler and the shipper.
pub fn spawn_tasks(state: Arc<AppState>) -> Vec<JoinHandle<()>> {
    vec![
        tokio::spawn(schedule::run(state.snapshots.clone())),
        tokio::spawn(ship::run(state.snapshots.clone())),
    ]
}
