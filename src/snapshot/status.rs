//! Replication status of this site: the last snapshot taken, shipped and applied, failures,
//! rejections and divergence. The last applied snapshot is persisted in `replication.json`, so
//! the stale-sequence check still works after a restart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::SnapshotError;
use super::manifest::Manifest;
use crate::role::Position;

/// The last snapshot this site applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AppliedSnapshot {
    pub at: String,
    pub database_id: String,
    pub write_seq: i64,
    pub source_site_id: Option<String>,
    pub sequence: Option<u64>,
}

/// A failure with its time.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Failure {
    pub at: String,
    pub code: String,
    pub message: String,
}

/// Everything the status endpoint and metrics report about replication.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReplicationStatus {
    pub last_snapshot: Option<SnapshotSummary>,
    pub last_shipped: Option<SnapshotSummary>,
    pub last_shipped_at: Option<String>,
    pub last_ship_failure: Option<Failure>,
    pub ship_failure_streak: u64,
    pub last_applied: Option<AppliedSnapshot>,
    pub last_rejection: Option<Failure>,
    pub rejections_by_code: BTreeMap<String, u64>,
    /// Set when an incoming snapshot was rejected as diverged; cleared by a later apply.
    pub divergence: Option<Failure>,
}

/// The identifying fields of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SnapshotSummary {
    pub sequence: u64,
    pub created_at: String,
    pub size: u64,
    pub write_seq: i64,
}

impl From<&Manifest> for SnapshotSummary {
    fn from(manifest: &Manifest) -> Self {
        SnapshotSummary {
            sequence: manifest.sequence,
            created_at: manifest.created_at.clone(),
            size: manifest.size,
            write_seq: manifest.position.write_seq,
        }
    }
}

/// Shared, mutable replication status.
#[derive(Debug)]
pub struct StatusBoard {
    path: PathBuf,
    status: Mutex<ReplicationStatus>,
}

fn now() -> String {
    crate::time::format(chrono::Utc::now())
}

impl StatusBoard {
    pub fn load(data_dir: &Path) -> StatusBoard {
        let path = data_dir.join("replication.json");
        let status = std::fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        let mut status: ReplicationStatus = status;
        let newest = super::store::list(&data_dir.join("snapshots")).pop();
        status.last_snapshot = newest.map(|snapshot| SnapshotSummary::from(&snapshot.manifest));
        StatusBoard {
            path,
            status: Mutex::new(status),
        }
    }

    pub fn get(&self) -> ReplicationStatus {
        self.status.lock().expect("status lock poisoned").clone()
    }

    fn update(&self, change: impl FnOnce(&mut ReplicationStatus)) {
        let mut status = self.status.lock().expect("status lock poisoned");
        change(&mut status);
        let bytes = serde_json::to_vec_pretty(&*status).expect("status serializes");
        drop(status);
        if let Err(err) = crate::fsutil::write_atomically(&self.path, &bytes) {
            tracing::warn!(error = %err, path = %self.path.display(), "saving replication status failed");
        }
    }

    pub fn last_applied(&self) -> Option<AppliedSnapshot> {
        self.status
            .lock()
            .expect("status lock poisoned")
            .last_applied
            .clone()
    }

    pub fn snapshot_taken(&self, manifest: &Manifest) {
        self.update(|status| status.last_snapshot = Some(manifest.into()));
    }

    pub fn shipped(&self, manifest: &Manifest) {
        self.update(|status| {
            status.last_shipped = Some(manifest.into());
            status.last_shipped_at = Some(now());
            status.ship_failure_streak = 0;
        });
    }

    pub fn ship_failed(&self, code: &str, message: &str) -> u64 {
        let mut streak = 0;
        self.update(|status| {
            status.ship_failure_streak += 1;
            streak = status.ship_failure_streak;
            status.last_ship_failure = Some(Failure {
                at: now(),
                code: code.into(),
                message: message.into(),
            });
        });
        streak
    }

    pub fn applied(&self, manifest: Option<&Manifest>, position: &Position) {
        self.update(|status| {
            status.last_applied = Some(AppliedSnapshot {
                at: now(),
                database_id: position.database_id.clone(),
                write_seq: position.write_seq,
                source_site_id: manifest.map(|m| m.source_site_id.clone()),
                sequence: manifest.map(|m| m.sequence),
            });
            status.divergence = None;
        });
    }

    pub fn rejected(&self, err: &SnapshotError) {
        self.update(|status| {
            count_rejection(status, err);
            status.last_rejection = Some(Failure {
                at: now(),
                code: err.code().to_string(),
                message: err.to_string(),
            });
        });
    }

    /// Counts a rejection of an unauthenticated request in memory only, so that a client without
    /// the secret cannot make the site rewrite its status file. The next saved change writes the
    /// count. `last_rejection` is left as it is, so such a client cannot hide the peer's last one.
    pub fn rejected_unsaved(&self, err: &SnapshotError) {
        let mut status = self.status.lock().expect("status lock poisoned");
        count_rejection(&mut status, err);
    }

    pub fn diverged(&self, message: &str) {
        self.update(|status| {
            status.divergence = Some(Failure {
                at: now(),
                code: "DIVERGED".into(),
                message: message.into(),
            });
        });
    }
}

fn count_rejection(status: &mut ReplicationStatus, err: &SnapshotError) {
    *status
        .rejections_by_code
        .entry(err.code().to_string())
        .or_default() += 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved_counts(data_dir: &Path) -> serde_json::Value {
        let bytes = std::fs::read(data_dir.join("replication.json")).unwrap_or_default();
        let status: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        status["rejections_by_code"].clone()
    }

    #[test]
    fn unauthenticated_rejection_not_saved() {
        let dir = tempfile::tempdir().unwrap();
        let board = StatusBoard::load(dir.path());
        let unauthorized = SnapshotError::rejected("UNAUTHORIZED", "missing or wrong peer secret");
        let stale = SnapshotError::rejected("STALE_SNAPSHOT", "older sequence");

        board.rejected(&stale);
        board.rejected_unsaved(&unauthorized);
        assert_eq!(
            saved_counts(dir.path())["UNAUTHORIZED"],
            serde_json::Value::Null
        );
        assert_eq!(board.get().rejections_by_code["UNAUTHORIZED"], 1);
        let last = board.get().last_rejection.unwrap();
        assert_eq!(
            last.code, "STALE_SNAPSHOT",
            "the peer's rejection stays the last one"
        );

        // The next saved change writes both counts.
        board.rejected(&stale);
        let saved = saved_counts(dir.path());
        assert_eq!(saved["UNAUTHORIZED"], 1);
        assert_eq!(saved["STALE_SNAPSHOT"], 2);
    }
}
