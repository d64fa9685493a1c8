//! Schema migrations and the markers that identify a keyward database.
//!
//! `PRAGMA application_id` is set to [`APPLICATION_ID`] so that a foreign SQLite file is
//! recognisable, and `PRAGMA user_version` is the number of migrations applied.

use rusqlite::Connection;

/// `PRAGMA application_id` of every keyward database: the ASCII bytes "KWRD".
pub const APPLICATION_ID: i32 = 0x4b57_5244;

/// Migrations in order. Migration `i` (0-based) moves the schema from version `i` to `i + 1`.
/// A migration is never edited once released: add a new one instead.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE database_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    database_id TEXT NOT NULL,
    write_seq INTEGER NOT NULL,
    created_at TEXT NOT NULL
) STRICT;

CREATE TABLE epochs (
    epoch INTEGER PRIMARY KEY,
    epoch_id TEXT NOT NULL UNIQUE,
    site_id TEXT NOT NULL,
    started_seq INTEGER NOT NULL,
    started_at TEXT NOT NULL
) STRICT;

CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    secret_key BLOB NOT NULL,
    public_key BLOB NOT NULL,
    created_at TEXT NOT NULL,
    retired_at TEXT
) STRICT;

CREATE TABLE admin_tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT
) STRICT;

CREATE TABLE products (
    id INTEGER PRIMARY KEY,
    code TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    features TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
) STRICT;

CREATE TABLE licenses (
    id INTEGER PRIMARY KEY,
    license_key TEXT NOT NULL UNIQUE,
    product_id INTEGER NOT NULL REFERENCES products(id),
    model TEXT NOT NULL CHECK (model IN ('permanent', 'subscription', 'trial')),
    seats INTEGER NOT NULL CHECK (seats > 0),
    expires_at TEXT,
    duration_days INTEGER CHECK (duration_days > 0),
    first_activated_at TEXT,
    maintenance_expires_at TEXT,
    features TEXT NOT NULL,
    customer_name TEXT NOT NULL,
    customer_email TEXT NOT NULL,
    customer_company TEXT NOT NULL,
    order_ref TEXT NOT NULL,
    notes TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'revoked')),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
) STRICT;

CREATE INDEX licenses_product ON licenses(product_id);
CREATE INDEX licenses_customer_email ON licenses(customer_email);

CREATE TABLE activations (
    id INTEGER PRIMARY KEY,
    license_id INTEGER NOT NULL REFERENCES licenses(id) ON DELETE CASCADE,
    computer_id TEXT NOT NULL,
    computer_name TEXT NOT NULL,
    client_addr TEXT NOT NULL,
    activated_at TEXT NOT NULL,
    released_at TEXT,
    last_seen_at TEXT
) STRICT;

CREATE UNIQUE INDEX activations_live ON activations(license_id, computer_id)
    WHERE released_at IS NULL;

CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    object TEXT NOT NULL,
    detail TEXT NOT NULL
) STRICT;

CREATE TRIGGER audit_log_append_only_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_append_only_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
"#,
    // Floating licenses and their leases, who released an activation (release limits count
    // client releases only), trial use per computer (filled from existing trial activations),
    // and blocked computers.
    r#"
ALTER TABLE licenses ADD COLUMN floating INTEGER NOT NULL DEFAULT 0 CHECK (floating IN (0, 1));

ALTER TABLE activations ADD COLUMN released_by TEXT CHECK (released_by IN ('client', 'admin'));

CREATE INDEX activations_computer ON activations(computer_id, activated_at);
CREATE INDEX activations_released ON activations(license_id, released_at);

CREATE TABLE leases (
    id INTEGER PRIMARY KEY,
    lease_id TEXT NOT NULL UNIQUE,
    license_id INTEGER NOT NULL REFERENCES licenses(id) ON DELETE CASCADE,
    computer_id TEXT NOT NULL,
    client_addr TEXT NOT NULL,
    checked_out_at TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
) STRICT;

CREATE UNIQUE INDEX leases_computer ON leases(license_id, computer_id);
CREATE INDEX leases_expiry ON leases(expires_at);

CREATE TABLE trial_uses (
    product_id INTEGER NOT NULL REFERENCES products(id) ON DELETE CASCADE,
    computer_id TEXT NOT NULL,
    license_key TEXT NOT NULL,
    first_activated_at TEXT NOT NULL,
    PRIMARY KEY (product_id, computer_id, license_key)
) STRICT;

INSERT INTO trial_uses (product_id, computer_id, license_key, first_activated_at)
SELECT l.product_id, a.computer_id, l.license_key, min(a.activated_at)
FROM activations a JOIN licenses l ON l.id = a.license_id
WHERE l.model = 'trial'
GROUP BY l.product_id, a.computer_id, l.license_key;

CREATE TABLE blocked_computers (
    computer_id TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    blocked_at TEXT NOT NULL,
    blocked_by TEXT NOT NULL
) STRICT;
"#,
];

/// Schema version this build writes and serves.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// Errors from checking or migrating a database file.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error(
        "not a keyward database: application_id is {found:#x}, expected {APPLICATION_ID:#x}; \
         point --data-dir at a keyward data directory"
    )]
    ForeignDatabase { found: i32 },
    #[error(
        "database schema version {found} is newer than this build supports ({SCHEMA_VERSION}); \
         upgrade keyward"
    )]
    TooNew { found: i32 },
    #[error("migration to schema version {version} failed: {source}")]
    Migration {
        version: i32,
        source: rusqlite::Error,
    },
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

/// Reads `(application_id, user_version)`.
pub fn read_markers(conn: &Connection) -> rusqlite::Result<(i32, i32)> {
    let application_id = conn.pragma_query_value(None, "application_id", |row| row.get(0))?;
    let user_version = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    Ok((application_id, user_version))
}

/// Checks that a database is a keyward database this build can serve, or a new file that can
/// become one. Only reads, so a foreign file is left as it is.
///
/// A file with no tables, `application_id` 0 and `user_version` 0 is taken as new.
pub fn check_markers(conn: &Connection) -> Result<(), SchemaError> {
    let (application_id, version) = read_markers(conn)?;
    if application_id != APPLICATION_ID {
        let table_count: i64 =
            conn.query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))?;
        if application_id != 0 || version != 0 || table_count != 0 {
            return Err(SchemaError::ForeignDatabase {
                found: application_id,
            });
        }
    }
    if version > SCHEMA_VERSION {
        return Err(SchemaError::TooNew { found: version });
    }
    Ok(())
}

/// Applies every pending migration, each in its own transaction together with the bump of
/// `user_version`, so a crash mid-migration leaves the previous version intact.
///
/// Fails as [`check_markers`] does on a foreign or too new database. Returns the number of
/// migrations applied.
pub fn migrate(conn: &mut Connection) -> Result<usize, SchemaError> {
    migrate_to(conn, SCHEMA_VERSION)
}

/// Applies the pending migrations up to schema version `target`, as [`migrate`] does.
pub fn migrate_to(conn: &mut Connection, target: i32) -> Result<usize, SchemaError> {
    check_markers(conn)?;
    let (_, version) = read_markers(conn)?;

    let mut applied = 0;
    let pending = MIGRATIONS
        .iter()
        .enumerate()
        .take(target.max(0) as usize)
        .skip(version as usize);
    for (index, sql) in pending {
        let target = index as i32 + 1;
        crate::failpoint::hit("migrate.before_commit");
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let result = tx
            .execute_batch(sql)
            .and_then(|()| tx.pragma_update(None, "application_id", APPLICATION_ID))
            .and_then(|()| tx.pragma_update(None, "user_version", target))
            .and_then(|()| tx.commit());
        result.map_err(|source| SchemaError::Migration {
            version: target,
            source,
        })?;
        applied += 1;
    }
    Ok(applied)
}

/// Returns the `sqlite_schema` rows (`type`, `name`, `sql`) that the migrations up to schema
/// `version` create, sorted by name. A received snapshot of that version must contain exactly
/// these objects and nothing else.
pub fn expected_objects_at(
    version: i32,
) -> Result<Vec<(String, String, Option<String>)>, SchemaError> {
    let mut conn = Connection::open_in_memory()?;
    migrate_to(&mut conn, version)?;
    Ok(list_objects(&conn)?)
}

/// Lists the `sqlite_schema` rows of a connection's main database, sorted by name.
pub fn list_objects(conn: &Connection) -> rusqlite::Result<Vec<(String, String, Option<String>)>> {
    let mut stmt =
        conn.prepare("SELECT type, name, sql FROM main.sqlite_schema ORDER BY name, type")?;
    let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
    rows.collect()
}
