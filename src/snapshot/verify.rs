//! Verification of a snapshot file before anything irreversible happens.
//!
//! Only the temp file is opened, never the live database. SQLite opens it read-only and
//! immutable, so no `-wal` or `-shm` is created beside it and no hot journal is replayed. The
//! one exception is a file of an older schema version, opened read-write by
//! [`migrate_if_older`] once it passed every check and admission.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};
use serde::Serialize;

use super::SnapshotError;
use super::header::DatabaseHeader;
use super::manifest::Manifest;
use crate::db::schema;
use crate::role::Position;

/// Why a snapshot was rejected: a stable machine code and a message naming the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Rejection {
    pub code: &'static str,
    pub message: String,
}

impl Rejection {
    pub fn new(code: &'static str, message: impl Into<String>) -> Rejection {
        Rejection {
            code,
            message: message.into(),
        }
    }

    pub fn not_sqlite(detail: &str) -> Rejection {
        Rejection::new("NOT_SQLITE", format!("not a SQLite database: {detail}"))
    }
}

/// Opens a database file read-only and immutable, with untrusted schema objects disabled.
pub fn open_immutable(path: &Path) -> Result<Connection, SnapshotError> {
    let uri = format!("file:{}?immutable=1", uri_path(path));
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(uri, flags)?;
    conn.pragma_update(None, "trusted_schema", false)?;
    Ok(conn)
}

fn uri_path(path: &Path) -> String {
    let text = path.to_string_lossy();
    let mut escaped = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '%' => escaped.push_str("%25"),
            '?' => escaped.push_str("%3f"),
            '#' => escaped.push_str("%23"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// Checks a snapshot file on its own: header, size, page arithmetic, application id, schema
/// version and objects, and `PRAGMA integrity_check`. A file of an older schema version is
/// checked against that version's objects; [`migrate_if_older`] upgrades it once admitted.
/// Returns the position recorded inside.
///
/// `expected` (the manifest) is compared field by field when given; a manual restore of a bare
/// file has none.
pub fn verify_file(
    path: &Path,
    expected: Option<&Manifest>,
    sha256: Option<&str>,
) -> Result<Position, SnapshotError> {
    let size = std::fs::metadata(path)
        .map_err(|err| SnapshotError::io("stat", path, err))?
        .len();
    if let Some(manifest) = expected {
        if size != manifest.size {
            return Err(reject(
                "SIZE_MISMATCH",
                format!(
                    "file is {size} bytes, the manifest says {}; the transfer was cut short or padded",
                    manifest.size
                ),
            ));
        }
        let actual = match sha256 {
            Some(hash) => hash.to_string(),
            None => super::take::hash_file(path)?.1,
        };
        if actual != manifest.sha256 {
            return Err(reject(
                "CHECKSUM_MISMATCH",
                format!("SHA-256 is {actual}, the manifest says {}", manifest.sha256),
            ));
        }
    }

    let header = DatabaseHeader::read(path)?;
    check_header(&header, size, expected)?;

    let conn = open_immutable(path)?;
    check_integrity(&conn)?;
    check_schema(&conn, header.user_version)?;
    // The schema matched, so a failure here means the rows are missing or malformed, such as an
    // empty `database_state` table: that is a bad file, not a server error.
    let position = crate::role::read_position(&conn).map_err(|err| {
        reject(
            "INVALID_STATE",
            format!("the database_state or epochs rows cannot be read: {err}"),
        )
    })?;
    if let Some(manifest) = expected
        && position != manifest.position
    {
        return Err(reject(
            "MANIFEST_MISMATCH",
            format!(
                "the file holds database {} at write sequence {}, the manifest says {} at {}",
                position.database_id,
                position.write_seq,
                manifest.position.database_id,
                manifest.position.write_seq
            ),
        ));
    }
    Ok(position)
}

fn reject(code: &'static str, message: String) -> SnapshotError {
    SnapshotError::Rejected(Rejection::new(code, message))
}

fn check_header(
    header: &DatabaseHeader,
    size: u64,
    expected: Option<&Manifest>,
) -> Result<(), SnapshotError> {
    if header.application_id != schema::APPLICATION_ID {
        return Err(reject(
            "FOREIGN_DATABASE",
            format!(
                "application_id is {:#x}, not keyward's {:#x}; this SQLite file belongs to another application",
                header.application_id,
                schema::APPLICATION_ID
            ),
        ));
    }
    if !header.counter_valid {
        return Err(reject(
            "HEADER_MISMATCH",
            "the header's page count is stale (change counter differs from version-valid-for)"
                .into(),
        ));
    }
    let computed = header
        .page_count
        .saturating_mul(u64::from(header.page_size));
    if computed != size {
        return Err(reject(
            "HEADER_MISMATCH",
            format!(
                "page size {} times page count {} is {computed} bytes, but the file is {size} bytes",
                header.page_size, header.page_count
            ),
        ));
    }
    if let Some(manifest) = expected
        && (manifest.page_size != header.page_size || manifest.page_count != header.page_count)
    {
        return Err(reject(
            "MANIFEST_MISMATCH",
            format!(
                "header has {} pages of {} bytes, the manifest says {} of {}",
                header.page_count, header.page_size, manifest.page_count, manifest.page_size
            ),
        ));
    }
    if header.user_version > schema::SCHEMA_VERSION {
        return Err(reject(
            "SCHEMA_VERSION_MISMATCH",
            format!(
                "snapshot schema version {} is newer than this build's {}; upgrade keyward on this site",
                header.user_version,
                schema::SCHEMA_VERSION
            ),
        ));
    }
    if header.user_version < 1 {
        return Err(reject(
            "SCHEMA_VERSION_MISMATCH",
            format!(
                "snapshot schema version {} is not one that keyward writes (1 to {})",
                header.user_version,
                schema::SCHEMA_VERSION
            ),
        ));
    }
    Ok(())
}

fn check_integrity(conn: &Connection) -> Result<(), SnapshotError> {
    let mut stmt = conn.prepare("PRAGMA integrity_check(20)")?;
    let lines: Vec<String> = stmt
        .query_map([], |row| row.get(0))
        .and_then(|rows| rows.collect())
        .map_err(|err| reject("CORRUPT", format!("integrity check could not run: {err}")))?;
    if lines != ["ok"] {
        return Err(reject(
            "CORRUPT",
            format!("integrity check failed: {}", lines.join("; ")),
        ));
    }
    Ok(())
}

/// Brings an accepted snapshot of an older schema version up to this build's, in place, then
/// checks its objects again. Does nothing to a file at this build's version. Call it only on a
/// temp file that passed [`verify_file`] and admission.
pub fn migrate_if_older(path: &Path) -> Result<(), SnapshotError> {
    let from = DatabaseHeader::read(path)?.user_version;
    if from >= schema::SCHEMA_VERSION {
        return Ok(());
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(path, flags)?;
    conn.pragma_update(None, "trusted_schema", false)?;
    schema::migrate(&mut conn).map_err(|err| migration_error(from, err))?;
    // Closing moves the WAL into the file and deletes it, so the file is complete on its own.
    conn.close().map_err(|(_, err)| SnapshotError::from(err))?;
    tracing::info!(
        from,
        to = schema::SCHEMA_VERSION,
        "migrated a snapshot of an older schema version"
    );

    let conn = open_immutable(path)?;
    check_schema(&conn, schema::SCHEMA_VERSION)
}

/// Tells a failure of this site (full disk, I/O) from a snapshot that cannot be migrated, so
/// that the sender retries the first and gives up on the second.
fn migration_error(from: i32, err: schema::SchemaError) -> SnapshotError {
    let source = match &err {
        schema::SchemaError::Migration { source, .. } | schema::SchemaError::Sqlite(source) => {
            Some(source)
        }
        _ => None,
    };
    match source.and_then(rusqlite::Error::sqlite_error_code) {
        Some(rusqlite::ErrorCode::DiskFull) => SnapshotError::DiskFull(err.to_string()),
        Some(
            rusqlite::ErrorCode::SystemIoFailure
            | rusqlite::ErrorCode::CannotOpen
            | rusqlite::ErrorCode::ReadOnly
            | rusqlite::ErrorCode::DatabaseBusy
            | rusqlite::ErrorCode::DatabaseLocked
            | rusqlite::ErrorCode::OutOfMemory,
        ) => SnapshotError::Internal(format!("migrating a snapshot failed on this site: {err}")),
        _ => reject(
            "MIGRATION_FAILED",
            format!(
                "migrating the snapshot from schema version {from} to {} failed: {err}",
                schema::SCHEMA_VERSION
            ),
        ),
    }
}

fn check_schema(conn: &Connection, version: i32) -> Result<(), SnapshotError> {
    let expected = schema::expected_objects_at(version)
        .map_err(|err| SnapshotError::Internal(err.to_string()))?;
    let found = schema::list_objects(conn)?;
    if found != expected {
        let extra: Vec<String> = found
            .iter()
            .filter(|object| !expected.contains(object))
            .map(|(kind, name, _)| format!("{kind} {name}"))
            .collect();
        let missing: Vec<String> = expected
            .iter()
            .filter(|object| !found.contains(object))
            .map(|(kind, name, _)| format!("{kind} {name}"))
            .collect();
        return Err(reject(
            "SCHEMA_MISMATCH",
            format!(
                "schema differs from keyward's: unexpected [{}], missing or changed [{}]",
                extra.join(", "),
                missing.join(", ")
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod migration_tests {
    use super::*;

    fn failed_with(code: std::ffi::c_int) -> schema::SchemaError {
        schema::SchemaError::Migration {
            version: 2,
            source: rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None),
        }
    }

    #[test]
    fn migration_failure_blames_right_side() {
        let full = migration_error(1, failed_with(rusqlite::ffi::SQLITE_FULL));
        assert_eq!(full.code(), "INSUFFICIENT_STORAGE", "{full}");
        let io = migration_error(1, failed_with(rusqlite::ffi::SQLITE_IOERR));
        assert!(matches!(io, SnapshotError::Internal(_)), "{io}");
        let bad = migration_error(1, failed_with(rusqlite::ffi::SQLITE_CONSTRAINT));
        assert_eq!(bad.code(), "MIGRATION_FAILED", "{bad}");
    }
}
