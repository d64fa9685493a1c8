//! Site roles (active or standby), epochs and the write position.
//!
//! Exactly one site should accept writes. The role is persisted in `role.json` in the data
//! directory (it belongs to the site, not to the database, which snapshots replace). Every
//! promotion starts a new epoch, recorded in the database's `epochs` table, so the epoch history
//! travels inside every snapshot. A site's position is its current epoch and write sequence.

pub mod follow;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use crate::db::{Db, DbError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Active,
    Standby,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Active => "active",
            Role::Standby => "standby",
        }
    }
}

/// The persisted role of this site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RoleRecord {
    pub role: Role,
    pub reason: String,
    pub changed_at: String,
    /// The active site's URL, when known (from the redirect file).
    pub active_url: Option<String>,
}

/// One epoch: a period in which one site accepted writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Epoch {
    pub epoch: i64,
    pub epoch_id: String,
    pub site_id: String,
    /// First write sequence of this epoch (the promotion's own commit).
    pub started_seq: i64,
    pub started_at: String,
}

/// Position of a database: its id, current epoch and write sequence, and its epoch history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Position {
    pub database_id: String,
    pub write_seq: i64,
    pub epochs: Vec<Epoch>,
}

impl Position {
    pub fn current_epoch(&self) -> Option<&Epoch> {
        self.epochs.last()
    }

    /// Returns true when every write of `other` (a database with the same id) is also in `self`:
    /// `other`'s latest epoch appears in this history and `other` did not write past the end of
    /// that epoch as this history records it.
    pub fn contains(&self, other: &Position) -> bool {
        if self.database_id != other.database_id {
            return false;
        }
        let Some(theirs) = other.current_epoch() else {
            // No epoch: only writes before this history's first epoch can be covered.
            let first_start = self
                .epochs
                .first()
                .map(|e| e.started_seq)
                .unwrap_or(i64::MAX);
            return other.write_seq < first_start && other.write_seq <= self.write_seq;
        };
        let Some(index) = self
            .epochs
            .iter()
            .position(|e| e.epoch_id == theirs.epoch_id)
        else {
            return false;
        };
        let end = match self.epochs.get(index + 1) {
            Some(next) => next.started_seq - 1,
            None => self.write_seq,
        };
        other.write_seq <= end
    }
}

/// Reads the position of a database from an open connection.
pub fn read_position(conn: &Connection) -> Result<Position, DbError> {
    let state = crate::db::read_state(conn)?;
    let mut stmt = conn.prepare(
        "SELECT epoch, epoch_id, site_id, started_seq, started_at FROM epochs ORDER BY epoch",
    )?;
    let epochs = stmt
        .query_map([], |row| {
            Ok(Epoch {
                epoch: row.get(0)?,
                epoch_id: row.get(1)?,
                site_id: row.get(2)?,
                started_seq: row.get(3)?,
                started_at: row.get(4)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Position {
        database_id: state.database_id,
        write_seq: state.write_seq,
        epochs,
    })
}

/// This site's role, persisted in the data directory.
#[derive(Debug)]
pub struct RoleState {
    path: PathBuf,
    site_id: String,
    record: Mutex<RoleRecord>,
}

/// Errors from changing the role.
#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    #[error("cannot persist the role to {path}: {source}")]
    Persist {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Db(#[from] DbError),
}

impl RoleState {
    /// Loads the persisted role, or starts with `initial` when none was saved.
    pub fn load(data_dir: &Path, site_id: &str, initial: Role) -> Result<RoleState, RoleError> {
        let path = data_dir.join("role.json");
        let record = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|err| RoleError::Persist {
                path: path.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, err),
            })?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => RoleRecord {
                role: initial,
                reason: "initial role from configuration".into(),
                changed_at: crate::time::format(chrono::Utc::now()),
                active_url: None,
            },
            Err(source) => return Err(RoleError::Persist { path, source }),
        };
        let state = RoleState {
            path,
            site_id: site_id.into(),
            record: Mutex::new(record),
        };
        state.persist(&state.current())?;
        Ok(state)
    }

    pub fn current(&self) -> RoleRecord {
        self.record.lock().expect("role lock poisoned").clone()
    }

    pub fn role(&self) -> Role {
        self.record.lock().expect("role lock poisoned").role
    }

    pub fn site_id(&self) -> &str {
        &self.site_id
    }

    fn persist(&self, record: &RoleRecord) -> Result<(), RoleError> {
        let bytes = serde_json::to_vec_pretty(record).expect("role record serializes");
        crate::fsutil::write_atomically(&self.path, &bytes).map_err(|source| RoleError::Persist {
            path: self.path.clone(),
            source,
        })
    }

    /// Records the active site's URL without changing the role.
    pub fn set_active_url(&self, active_url: Option<String>) {
        let mut record = self.record.lock().expect("role lock poisoned");
        if record.active_url != active_url {
            record.active_url = active_url;
            let snapshot = record.clone();
            drop(record);
            if let Err(err) = self.persist(&snapshot) {
                tracing::warn!(error = %err, "saving the active site's URL failed");
            }
        }
    }

    /// Makes this site active, starting a new epoch, unless it already is and the database
    /// already has an epoch. Returns the epoch in force.
    pub async fn promote(&self, db: &Arc<Db>, reason: &str) -> Result<Epoch, RoleError> {
        let current = self.current();
        let position = db.read(read_position).await?;
        if current.role == Role::Active
            && let Some(epoch) = position.current_epoch()
        {
            db.set_writable(true);
            return Ok(epoch.clone());
        }
        let site_id = self.site_id.clone();
        let epoch = db
            .write_system(move |conn| start_epoch(conn, &site_id))
            .await?;
        let record = RoleRecord {
            role: Role::Active,
            reason: reason.into(),
            changed_at: crate::time::format(chrono::Utc::now()),
            active_url: current.active_url,
        };
        self.persist(&record)?;
        *self.record.lock().expect("role lock poisoned") = record;
        db.set_writable(true);
        tracing::warn!(
            role = "active",
            epoch = epoch.epoch,
            epoch.id = %epoch.epoch_id,
            reason,
            "site promoted to active"
        );
        Ok(epoch)
    }

    /// Makes this site standby: writes stop before the new role is saved.
    pub fn demote(
        &self,
        db: &Db,
        reason: &str,
        active_url: Option<String>,
    ) -> Result<(), RoleError> {
        db.set_writable(false);
        let record = RoleRecord {
            role: Role::Standby,
            reason: reason.into(),
            changed_at: crate::time::format(chrono::Utc::now()),
            active_url,
        };
        let was = self.role();
        self.persist(&record)?;
        *self.record.lock().expect("role lock poisoned") = record;
        if was != Role::Standby {
            tracing::warn!(role = "standby", reason, "site demoted to standby");
        }
        Ok(())
    }
}

fn start_epoch(conn: &Connection, site_id: &str) -> Result<Epoch, DbError> {
    let state = crate::db::read_state(conn)?;
    let number: i64 = conn.query_row(
        "SELECT coalesce(max(epoch), 0) + 1 FROM epochs",
        [],
        |row| row.get(0),
    )?;
    let epoch = Epoch {
        epoch: number,
        epoch_id: crate::ids::random_hex(8),
        site_id: site_id.into(),
        // The commit that records this epoch advances the sequence to this value.
        started_seq: state.write_seq + 1,
        started_at: crate::time::format(chrono::Utc::now()),
    };
    conn.execute(
        "INSERT INTO epochs (epoch, epoch_id, site_id, started_seq, started_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        (epoch.epoch, &epoch.epoch_id, &epoch.site_id, epoch.started_seq, &epoch.started_at),
    )?;
    crate::license::audit::record(
        conn,
        &epoch.started_at,
        "system",
        "site.promote",
        site_id,
        serde_json::json!({"epoch": epoch.epoch, "epoch_id": epoch.epoch_id}),
    )
    .map_err(|err| DbError::Sqlite(err.to_string()))?;
    Ok(epoch)
}

/// Loads this site's id from `site_id` in the data directory, creating it on first start.
pub fn load_site_id(data_dir: &Path) -> std::io::Result<String> {
    let path = data_dir.join("site_id");
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text.trim().to_string()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let id = format!("site-{}", crate::ids::random_hex(6));
            crate::fsutil::write_atomically(&path, id.as_bytes())?;
            Ok(id)
        }
        Err(err) => Err(err),
    }
}
