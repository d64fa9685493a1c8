//! Leases of floating (concurrent-use) licenses. A floating license's seats limit how many
//! computers hold a live lease at once. A lease lasts `leases.ttl` from its checkout or last
//! heartbeat.
//!
//! An expired lease stops counting at its expiry time. Every checkout, and every heartbeat that
//! does not find its lease live, first deletes the expired leases of its license, and a
//! background task deletes all expired leases every `leases.reclaim_every`. A computer holds at most one lease per license, so checking out
//! again returns its lease with a new expiry.
//!
//! The audit log records checkouts, restores and checkins. Heartbeats and reclaims are not
//! recorded, because they happen every few minutes for every running copy.

use chrono::{DateTime, Duration, Utc};
use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::store::{self, Row, check_usable, find, find_by_id};
use super::{License, LicenseError, audit, blocked, input};

/// A lease as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub lease_id: String,
    pub computer_id: String,
    pub client_addr: String,
    pub checked_out_at: String,
    pub heartbeat_at: String,
    pub expires_at: String,
}

/// Outcome of a checkout or heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LeaseResult {
    /// A new lease took a seat.
    CheckedOut,
    /// The computer already held a lease, which was extended.
    AlreadyCheckedOut,
    /// A heartbeat extended a live lease.
    Extended,
    /// A heartbeat named a lease the server did not hold (expired, or lost in a failover), and a
    /// free seat was leased again.
    Restored,
}

/// A lease granted or extended, with the license as it is afterwards.
#[derive(Debug, Clone)]
pub struct Granted {
    pub result: LeaseResult,
    pub lease: Lease,
    pub license: License,
}

/// Checks out a lease of the floating license `key` for `computer_id`.
pub fn checkout(
    conn: &Connection,
    key: &str,
    computer_id: &str,
    client_addr: &str,
    ttl: Duration,
    now: DateTime<Utc>,
) -> Result<Granted, LicenseError> {
    let computer_id = input::identifier("computer_id", computer_id, 256)?;
    let row = find_floating(conn, key)?;
    blocked::check(conn, &computer_id)?;
    check_usable(&row.license, now)?;
    reclaim_license(conn, row.id, now)?;
    grant(conn, &row, &computer_id, None, client_addr, ttl, now)
}

/// Extends lease `lease_id` of the floating license `key` to `ttl` from now.
///
/// When the server does not hold the lease as live, because it expired or because this site
/// took over after a failover with leases from an older snapshot, the heartbeat leases a seat
/// again if one is free (`RESTORED`), keeping the lease id when it is free. That needs the
/// computer id, from the expired lease or from `computer_id`; without one the result is
/// `LEASE_NOT_FOUND`. A full license returns `SEATS_EXHAUSTED`.
pub fn heartbeat(
    conn: &Connection,
    key: &str,
    lease_id: &str,
    computer_id: Option<&str>,
    client_addr: &str,
    ttl: Duration,
    now: DateTime<Utc>,
) -> Result<Granted, LicenseError> {
    let computer_id = computer_id
        .map(|id| input::identifier("computer_id", id, 256))
        .transpose()?;
    let row = find_floating(conn, key)?;
    let stored = find_lease(conn, row.id, lease_id)?;
    if let (Some(lease), Some(requested)) = (&stored, &computer_id)
        && &lease.computer_id != requested
    {
        return Err(LicenseError::LeaseNotFound);
    }
    let computer_id = match (&stored, computer_id) {
        (Some(lease), _) => lease.computer_id.clone(),
        (None, Some(requested)) => requested,
        (None, None) => return Err(LicenseError::LeaseNotFound),
    };
    blocked::check(conn, &computer_id)?;
    check_usable(&row.license, now)?;

    let now_text = crate::time::format(now);
    if let Some(lease) = stored.filter(|lease| lease.expires_at > now_text) {
        let lease = extend(conn, row.id, lease, ttl, now)?;
        return Ok(Granted {
            result: LeaseResult::Extended,
            lease,
            license: find_by_id(conn, row.id)?.license,
        });
    }
    reclaim_license(conn, row.id, now)?;
    grant(
        conn,
        &row,
        &computer_id,
        Some(lease_id),
        client_addr,
        ttl,
        now,
    )
}

/// Checks in lease `lease_id` of the floating license `key`, freeing its seat. An expired lease
/// that was not yet reclaimed is checked in too.
pub fn checkin(
    conn: &Connection,
    key: &str,
    lease_id: &str,
    client_addr: &str,
    now: DateTime<Utc>,
) -> Result<License, LicenseError> {
    let row = find_floating(conn, key)?;
    let lease = find_lease(conn, row.id, lease_id)?.ok_or(LicenseError::LeaseNotFound)?;
    conn.execute(
        "DELETE FROM leases WHERE license_id = ?1 AND lease_id = ?2",
        (row.id, lease_id),
    )?;
    audit::record(
        conn,
        &crate::time::format(now),
        &format!("client:{client_addr}"),
        "lease.checkin",
        &row.license.key,
        serde_json::json!({"lease_id": lease_id, "computer_id": lease.computer_id}),
    )?;
    Ok(find_by_id(conn, row.id)?.license)
}

/// Ends the lease that `computer_id` holds on the floating license `row`, live or expired but
/// not yet reclaimed, freeing its seat. Fails with `LEASE_NOT_FOUND` when it holds none.
pub fn end_for_computer(
    conn: &Connection,
    row: &Row,
    computer_id: &str,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<License, LicenseError> {
    let lease_id: Option<String> = conn
        .query_row(
            "DELETE FROM leases WHERE license_id = ?1 AND computer_id = ?2 RETURNING lease_id",
            (row.id, computer_id),
            |found| found.get(0),
        )
        .optional()?;
    let Some(lease_id) = lease_id else {
        return Err(LicenseError::LeaseNotFound);
    };
    audit::record(
        conn,
        &crate::time::format(now),
        actor,
        "lease.force_end",
        &row.license.key,
        serde_json::json!({"lease_id": lease_id, "computer_id": computer_id}),
    )?;
    Ok(find_by_id(conn, row.id)?.license)
}

/// Returns whether `computer_id` holds a live lease of the license with row id `license_id`.
pub fn holds_lease(
    conn: &Connection,
    license_id: i64,
    computer_id: &str,
    now: DateTime<Utc>,
) -> Result<bool, LicenseError> {
    let found: Option<i64> = conn
        .query_row(
            "SELECT 1 FROM leases WHERE license_id = ?1 AND computer_id = ?2 AND expires_at > ?3",
            (license_id, computer_id, crate::time::format(now)),
            |row| row.get(0),
        )
        .optional()?;
    Ok(found.is_some())
}

/// Lists the live leases of a license, oldest checkout first.
pub fn list(conn: &Connection, key: &str, now: DateTime<Utc>) -> Result<Vec<Lease>, LicenseError> {
    let row = store::find(conn, key)?;
    let sql = format!(
        "SELECT {COLUMNS} FROM leases WHERE license_id = ?1 AND expires_at > ?2 \
         ORDER BY checked_out_at, id"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map((row.id, crate::time::format(now)), from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Counts the leases of every license that expired at or before `now`.
pub fn count_expired(conn: &Connection, now: DateTime<Utc>) -> Result<i64, LicenseError> {
    Ok(conn.query_row(
        "SELECT count(*) FROM leases WHERE expires_at <= ?1",
        [crate::time::format(now)],
        |row| row.get(0),
    )?)
}

/// Deletes the leases of every license that expired at or before `now`. Returns how many.
pub fn reclaim_expired(conn: &Connection, now: DateTime<Utc>) -> Result<usize, LicenseError> {
    Ok(conn.execute(
        "DELETE FROM leases WHERE expires_at <= ?1",
        [crate::time::format(now)],
    )?)
}

const COLUMNS: &str =
    "lease_id, computer_id, client_addr, checked_out_at, heartbeat_at, expires_at";

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Lease> {
    Ok(Lease {
        lease_id: row.get(0)?,
        computer_id: row.get(1)?,
        client_addr: row.get(2)?,
        checked_out_at: row.get(3)?,
        heartbeat_at: row.get(4)?,
        expires_at: row.get(5)?,
    })
}

fn find_floating(conn: &Connection, key: &str) -> Result<Row, LicenseError> {
    let row = find(conn, key)?;
    if !row.license.floating {
        return Err(LicenseError::NotFloating);
    }
    Ok(row)
}

fn find_lease(
    conn: &Connection,
    license_id: i64,
    lease_id: &str,
) -> Result<Option<Lease>, LicenseError> {
    let sql = format!("SELECT {COLUMNS} FROM leases WHERE license_id = ?1 AND lease_id = ?2");
    Ok(conn
        .query_row(&sql, (license_id, lease_id), from_row)
        .optional()?)
}

fn find_computer_lease(
    conn: &Connection,
    license_id: i64,
    computer_id: &str,
) -> Result<Option<Lease>, LicenseError> {
    let sql = format!("SELECT {COLUMNS} FROM leases WHERE license_id = ?1 AND computer_id = ?2");
    Ok(conn
        .query_row(&sql, (license_id, computer_id), from_row)
        .optional()?)
}

fn reclaim_license(
    conn: &Connection,
    license_id: i64,
    now: DateTime<Utc>,
) -> Result<(), LicenseError> {
    conn.execute(
        "DELETE FROM leases WHERE license_id = ?1 AND expires_at <= ?2",
        (license_id, crate::time::format(now)),
    )?;
    Ok(())
}

fn extend(
    conn: &Connection,
    license_id: i64,
    mut lease: Lease,
    ttl: Duration,
    now: DateTime<Utc>,
) -> Result<Lease, LicenseError> {
    lease.heartbeat_at = crate::time::format(now);
    lease.expires_at = crate::time::format(now + ttl);
    conn.execute(
        "UPDATE leases SET heartbeat_at = ?3, expires_at = ?4 \
         WHERE license_id = ?1 AND lease_id = ?2",
        (
            license_id,
            &lease.lease_id,
            &lease.heartbeat_at,
            &lease.expires_at,
        ),
    )?;
    Ok(lease)
}

/// Leases a seat to `computer_id`, or extends the lease it already holds. Expired leases of the
/// license must have been reclaimed first, so that every stored lease counts.
///
/// `restore_id` is the lease id a heartbeat requested. It is reused when it is well-formed and
/// not taken, and the result is then `RESTORED`.
fn grant(
    conn: &Connection,
    row: &Row,
    computer_id: &str,
    restore_id: Option<&str>,
    client_addr: &str,
    ttl: Duration,
    now: DateTime<Utc>,
) -> Result<Granted, LicenseError> {
    if let Some(lease) = find_computer_lease(conn, row.id, computer_id)? {
        let lease = extend(conn, row.id, lease, ttl, now)?;
        let result = match restore_id {
            Some(_) => LeaseResult::Restored,
            None => LeaseResult::AlreadyCheckedOut,
        };
        return Ok(Granted {
            result,
            lease,
            license: find_by_id(conn, row.id)?.license,
        });
    }
    let used: i64 = conn.query_row(
        "SELECT count(*) FROM leases WHERE license_id = ?1",
        [row.id],
        |r| r.get(0),
    )?;
    if used >= row.license.seats {
        return Err(LicenseError::SeatsExhausted {
            seats: row.license.seats,
        });
    }

    let lease_id = match restore_id {
        Some(id) if is_lease_id(id) && !lease_id_taken(conn, id)? => id.to_string(),
        _ => crate::ids::random_hex(16),
    };
    let now_text = crate::time::format(now);
    let lease = Lease {
        lease_id,
        computer_id: computer_id.to_string(),
        client_addr: client_addr.to_string(),
        checked_out_at: now_text.clone(),
        heartbeat_at: now_text.clone(),
        expires_at: crate::time::format(now + ttl),
    };
    conn.execute(
        "INSERT INTO leases (lease_id, license_id, computer_id, client_addr, checked_out_at, \
         heartbeat_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6)",
        (
            &lease.lease_id,
            row.id,
            &lease.computer_id,
            &lease.client_addr,
            &now_text,
            &lease.expires_at,
        ),
    )?;
    conn.execute(
        "UPDATE licenses SET first_activated_at = coalesce(first_activated_at, ?2) WHERE id = ?1",
        (row.id, &now_text),
    )?;

    let (result, action) = match restore_id {
        Some(_) => (LeaseResult::Restored, "lease.restore"),
        None => (LeaseResult::CheckedOut, "lease.checkout"),
    };
    audit::record(
        conn,
        &now_text,
        &format!("client:{client_addr}"),
        action,
        &row.license.key,
        serde_json::json!({"lease_id": lease.lease_id, "computer_id": computer_id}),
    )?;
    Ok(Granted {
        result,
        lease,
        license: find_by_id(conn, row.id)?.license,
    })
}

/// Returns whether `text` has the form of a lease id: 32 lowercase hex digits.
fn is_lease_id(text: &str) -> bool {
    text.len() == 32 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn lease_id_taken(conn: &Connection, lease_id: &str) -> Result<bool, LicenseError> {
    let found: Option<i64> = conn
        .query_row(
            "SELECT 1 FROM leases WHERE lease_id = ?1",
            [lease_id],
            |row| row.get(0),
        )
        .optional()?;
    Ok(found.is_some())
}
