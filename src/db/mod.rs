//! The embedded SQLite database: connection setup, a group-committing writer thread, a pool of
//! reader connections, and a gate that lets a snapshot swap close every connection.
//!
//! All writes go through one writer thread. It takes every job queued while the previous commit
//! was syncing, runs each in its own savepoint and commits them together, so several activations
//! share one fsync (group commit). Each commit that changed anything advances the database's write
//! sequence by one. Because one thread applies all writes in order, a seat count checked inside a
//! job cannot be raced by another activation.

pub mod cache;
pub mod schema;
mod writer;

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use tokio::sync::{RwLock, RwLockWriteGuard};

pub use writer::WriteOutcome;

/// Errors from the database layer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DbError {
    #[error("database error: {0}")]
    Sqlite(String),
    #[error("database is being replaced by a snapshot; retry shortly")]
    Busy,
    #[error("this site is standby and accepts no writes")]
    ReadOnly,
    #[error("database is closed")]
    Closed,
    #[error("{0}")]
    Schema(String),
    #[error("the disk of the data directory is full: {0}")]
    DiskFull(String),
}

impl From<rusqlite::Error> for DbError {
    fn from(err: rusqlite::Error) -> Self {
        if err.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
            return DbError::DiskFull(err.to_string());
        }
        DbError::Sqlite(err.to_string())
    }
}

impl From<schema::SchemaError> for DbError {
    fn from(err: schema::SchemaError) -> Self {
        DbError::Schema(err.to_string())
    }
}

/// Identity and write sequence of a database.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DatabaseState {
    pub database_id: String,
    pub write_seq: i64,
    pub created_at: String,
}

/// Open connections; replaced as a whole when a snapshot is swapped in.
struct Handles {
    writer: writer::WriterHandle,
    readers: Mutex<Vec<Connection>>,
}

/// Shared handle to the live database.
pub struct Db {
    path: PathBuf,
    gate: RwLock<()>,
    handles: Mutex<Option<Arc<Handles>>>,
    writable: Arc<AtomicBool>,
    version: Arc<AtomicU64>,
    gate_timeout: Duration,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Readers kept open between requests; more are opened on demand and closed after use.
const MAX_IDLE_READERS: usize = 8;

impl Db {
    /// Opens (creating if needed) the database at `path`, applies pending migrations and
    /// initialises the database state row, then runs `init` on the same connection before the
    /// writer thread starts. `init` writes do not advance the write sequence.
    pub fn open(
        path: &Path,
        init: impl FnOnce(&Connection) -> Result<(), DbError>,
    ) -> Result<Db, DbError> {
        prepare_file(path).map_err(|err| {
            DbError::Sqlite(format!(
                "cannot create database file {}: {err}",
                path.display()
            ))
        })?;
        {
            // Checked before `open_connection` switches the file to WAL mode, because that switch
            // persists in the file and would change a foreign database.
            let conn = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            schema::check_markers(&conn)?;
        }
        {
            let mut conn = open_connection(path)?;
            schema::migrate(&mut conn)?;
            ensure_state(&conn)?;
            init(&conn)?;
        }
        let db = Db {
            path: path.to_path_buf(),
            gate: RwLock::new(()),
            handles: Mutex::new(None),
            writable: Arc::new(AtomicBool::new(true)),
            version: Arc::new(AtomicU64::new(0)),
            gate_timeout: Duration::from_secs(30),
        };
        db.start_handles()?;
        Ok(db)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sets how long a request waits for a snapshot swap to finish before it fails as busy.
    pub fn set_gate_timeout(&mut self, timeout: Duration) {
        self.gate_timeout = timeout;
    }

    /// Allows or forbids client and admin writes; system writes (role changes) pass regardless.
    pub fn set_writable(&self, writable: bool) {
        self.writable.store(writable, Ordering::SeqCst);
    }

    pub fn is_writable(&self) -> bool {
        self.writable.load(Ordering::SeqCst)
    }

    /// Returns a number that changes after every commit of tracked changes and after every swap.
    /// Read it before reading the database: data read afterwards is at least as new as that
    /// number, so anything derived from it stays current while the number stays the same.
    pub fn data_version(&self) -> u64 {
        self.version.load(Ordering::SeqCst)
    }

    fn start_handles(&self) -> Result<(), DbError> {
        let conn = open_connection(&self.path)?;
        let writer =
            writer::WriterHandle::start(conn, self.writable.clone(), self.version.clone())?;
        let handles = Handles {
            writer,
            readers: Mutex::new(Vec::new()),
        };
        *self.handles.lock().expect("db handles lock poisoned") = Some(Arc::new(handles));
        // A swapped-in file contains other data.
        self.version.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn current_handles(&self) -> Result<Arc<Handles>, DbError> {
        self.handles
            .lock()
            .expect("db handles lock poisoned")
            .clone()
            .ok_or(DbError::Closed)
    }

    async fn enter(&self) -> Result<tokio::sync::RwLockReadGuard<'_, ()>, DbError> {
        // Fast path: no swap is waiting, so no timer is needed.
        if let Ok(guard) = self.gate.try_read() {
            return Ok(guard);
        }
        tokio::time::timeout(self.gate_timeout, self.gate.read())
            .await
            .map_err(|_| DbError::Busy)
    }

    /// Runs a read-only closure on a pooled reader connection.
    ///
    /// NOTE: the closure runs on the calling async worker thread. Reads here are indexed lookups
    /// of a few microseconds, cheaper than a hop to the blocking pool; long scans should use
    /// `read_blocking`.
    pub async fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let _entered = self.enter().await?;
        self.read_now(f)
    }

    /// Runs a read-only closure on a pooled reader connection inside the blocking pool.
    pub async fn read_blocking<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Connection) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        let _entered = self.enter().await?;
        let db = self.clone();
        tokio::task::spawn_blocking(move || db.read_now(f))
            .await
            .map_err(|err| DbError::Sqlite(format!("reader task failed: {err}")))?
    }

    fn read_now<T>(&self, f: impl FnOnce(&Connection) -> Result<T, DbError>) -> Result<T, DbError> {
        let handles = self.current_handles()?;
        let pooled = handles
            .readers
            .lock()
            .expect("reader pool lock poisoned")
            .pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => open_reader(&self.path)?,
        };
        let result = f(&conn);
        let mut pool = handles.readers.lock().expect("reader pool lock poisoned");
        if pool.len() < MAX_IDLE_READERS {
            pool.push(conn);
        }
        result
    }

    /// Queues a write job for the writer thread and waits until its transaction has committed
    /// durably. The job runs in a savepoint. If it returns an error, its changes are rolled back
    /// and the error is returned, and other jobs in the same batch are unaffected.
    pub async fn write<T, E>(
        &self,
        job: impl FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        self.submit(job, false, true).await
    }

    /// Like [`Db::write`], for changes that nothing derived from the database depends on (the
    /// last-contact times of activations): they do not move [`Db::data_version`] on, so cached
    /// validations stay. The write sequence still advances, so snapshots still ship them.
    pub async fn write_untracked<T, E>(
        &self,
        job: impl FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        self.submit(job, false, false).await
    }

    /// Like [`Db::write`], but passes on a standby site too. Used for role changes only.
    pub async fn write_system<T, E>(
        &self,
        job: impl FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        self.submit(job, true, true).await
    }

    /// Queues `job` for the writer thread once no swap has the gate closed. `system` lets it pass on
    /// a standby site, and `tracked` makes its commit move [`Db::data_version`] on.
    async fn submit<T, E>(
        &self,
        job: impl FnOnce(&Connection) -> Result<T, E> + Send + 'static,
        system: bool,
        tracked: bool,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        let _entered = self.enter().await.map_err(E::from)?;
        self.current_handles()
            .map_err(E::from)?
            .writer
            .submit(job, system, tracked)
            .await
    }

    /// Reads the database id and write sequence.
    pub async fn state(&self) -> Result<DatabaseState, DbError> {
        self.read(read_state).await
    }

    /// Waits for in-flight requests to finish, then closes every connection, so that the database
    /// file can be replaced. New requests wait at the gate until the returned guard is dropped or
    /// the gate timeout passes.
    pub async fn close_for_swap(&self) -> Result<SwapGuard<'_>, DbError> {
        let guard = self.gate.write().await;
        self.stop_handles().await?;
        Ok(SwapGuard {
            db: self,
            _guard: guard,
        })
    }

    /// Closes every connection at shutdown; later calls fail with [`DbError::Closed`].
    pub async fn close(&self) -> Result<(), DbError> {
        let _guard = self.gate.write().await;
        self.stop_handles().await
    }

    async fn stop_handles(&self) -> Result<(), DbError> {
        let Some(mut handles) = self
            .handles
            .lock()
            .expect("db handles lock poisoned")
            .take()
        else {
            return Ok(());
        };
        // A reader task whose request was cancelled can still hold the handles for a moment.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let handles = loop {
            match Arc::try_unwrap(handles) {
                Ok(handles) => break handles,
                Err(shared) if tokio::time::Instant::now() < deadline => {
                    handles = shared;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(shared) => {
                    *self.handles.lock().expect("db handles lock poisoned") = Some(shared);
                    return Err(DbError::Sqlite(
                        "database connections still in use after 10 s".into(),
                    ));
                }
            }
        };
        tokio::task::spawn_blocking(move || {
            handles.writer.stop();
            drop(handles.readers);
        })
        .await
        .map_err(|err| DbError::Sqlite(format!("closing connections failed: {err}")))
    }
}

/// Exclusive access to the closed database file; reopens connections when finished.
pub struct SwapGuard<'a> {
    db: &'a Db,
    _guard: RwLockWriteGuard<'a, ()>,
}

impl SwapGuard<'_> {
    pub fn path(&self) -> &Path {
        &self.db.path
    }

    /// Reopens the database and lets waiting requests through. Nothing is migrated: a swapped-in
    /// file was checked to be at this build's schema version.
    pub fn reopen(self) -> Result<(), DbError> {
        let conn = open_connection(&self.db.path)?;
        let (application_id, version) = schema::read_markers(&conn)?;
        if application_id != schema::APPLICATION_ID || version != schema::SCHEMA_VERSION {
            return Err(DbError::Schema(format!(
                "reopened database has application_id {application_id:#x} and schema version \
                 {version}"
            )));
        }
        drop(conn);
        self.db.start_handles()
    }
}

/// Creates the database file with mode 0600 if it does not exist. SQLite gives the `-wal` and
/// `-shm` files the same mode as the database file.
fn prepare_file(path: &Path) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    Ok(())
}

/// Opens a read-write connection with keyward's settings.
///
/// `synchronous=FULL` in WAL mode fsyncs the WAL at every commit, so an acknowledged write
/// survives a power cut; `NORMAL` would only guarantee consistency, not durability of the last
/// commits. Group commit in the writer thread recovers most of the throughput this costs.
pub fn open_connection(path: &Path) -> Result<Connection, DbError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(DbError::Sqlite(format!(
            "cannot switch {} to WAL mode",
            path.display()
        )));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    // Room for every statement of the hot paths, so none is compiled twice.
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

fn open_reader(path: &Path) -> Result<Connection, DbError> {
    let conn = open_connection(path)?;
    conn.pragma_update(None, "query_only", true)?;
    Ok(conn)
}

fn ensure_state(conn: &Connection) -> Result<(), DbError> {
    let exists: Option<i64> = conn
        .query_row("SELECT id FROM database_state", [], |row| row.get(0))
        .optional()?;
    if exists.is_none() {
        conn.execute(
            "INSERT INTO database_state (id, database_id, write_seq, created_at) VALUES (1, ?1, 0, ?2)",
            (crate::ids::random_hex(16), crate::time::format(chrono::Utc::now())),
        )?;
    }
    Ok(())
}

/// Reads the database id and write sequence from an open connection.
pub fn read_state(conn: &Connection) -> Result<DatabaseState, DbError> {
    let state = conn.query_row(
        "SELECT database_id, write_seq, created_at FROM database_state WHERE id = 1",
        [],
        |row| {
            Ok(DatabaseState {
                database_id: row.get(0)?,
                write_seq: row.get(1)?,
                created_at: row.get(2)?,
            })
        },
    )?;
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn data_version_tracks_commits_and_swaps() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("keyward.db"), |_| Ok(())).unwrap();
        let start = db.data_version();

        let failed: Result<(), DbError> = db
            .write(|conn| {
                conn.execute("UPDATE database_state SET created_at = 'x'", [])?;
                Err(DbError::Sqlite("rolled back".into()))
            })
            .await;
        assert!(failed.is_err());
        let read: i64 = db
            .read(|conn| {
                Ok(conn.query_row("SELECT write_seq FROM database_state", [], |r| r.get(0))?)
            })
            .await
            .unwrap();
        assert_eq!(read, 0);
        assert_eq!(db.data_version(), start, "nothing was committed");

        db.write(|conn| {
            conn.execute("UPDATE database_state SET created_at = 'y'", [])?;
            Ok::<_, DbError>(())
        })
        .await
        .unwrap();
        let committed = db.data_version();
        assert!(committed > start);

        db.write_untracked(|conn| {
            conn.execute("UPDATE database_state SET created_at = 'z'", [])?;
            Ok::<_, DbError>(())
        })
        .await
        .unwrap();
        assert_eq!(
            db.data_version(),
            committed,
            "an untracked write keeps the version"
        );
        assert_eq!(
            db.state().await.unwrap().write_seq,
            2,
            "but still advances the sequence"
        );

        db.close_for_swap().await.unwrap().reopen().unwrap();
        assert!(db.data_version() > committed);
    }
}
