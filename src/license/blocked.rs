//! Computers blocked by an admin. A blocked computer cannot activate, check out a lease, get a
//! license file or an offline activation, and its validations return `COMPUTER_BLOCKED`.
//! Blocking leaves its existing activations in place, so unblocking restores them.

use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::{LicenseError, audit, input};

/// A blocked computer as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockedComputer {
    pub computer_id: String,
    pub reason: String,
    pub blocked_at: String,
    /// The admin actor that blocked it (`admin:<token id>`).
    pub blocked_by: String,
}

/// Returns whether `computer_id` is blocked.
pub fn is_blocked(conn: &Connection, computer_id: &str) -> Result<bool, LicenseError> {
    let found: Option<i64> = conn
        .prepare_cached("SELECT 1 FROM blocked_computers WHERE computer_id = ?1")?
        .query_row([computer_id], |row| row.get(0))
        .optional()?;
    Ok(found.is_some())
}

/// Fails with `COMPUTER_BLOCKED` when `computer_id` is blocked.
pub fn check(conn: &Connection, computer_id: &str) -> Result<(), LicenseError> {
    if is_blocked(conn, computer_id)? {
        return Err(LicenseError::ComputerBlocked(computer_id.to_string()));
    }
    Ok(())
}

/// Blocks a computer. Blocking it again replaces the reason.
pub fn block(
    conn: &Connection,
    computer_id: &str,
    reason: &str,
    actor: &str,
    now: &str,
) -> Result<BlockedComputer, LicenseError> {
    let computer_id = input::identifier("computer_id", computer_id, 256)?;
    let reason = input::text("reason", reason, 1000, false)?;
    conn.execute(
        "INSERT INTO blocked_computers (computer_id, reason, blocked_at, blocked_by) \
         VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (computer_id) DO UPDATE SET reason = excluded.reason",
        (&computer_id, &reason, now, actor),
    )?;
    audit::record(
        conn,
        now,
        actor,
        "computer.block",
        &computer_id,
        serde_json::json!({"reason": reason}),
    )?;
    find(conn, &computer_id)?.ok_or(LicenseError::ComputerNotBlocked(computer_id))
}

/// Unblocks a computer, or fails with `COMPUTER_NOT_BLOCKED`.
pub fn unblock(
    conn: &Connection,
    computer_id: &str,
    actor: &str,
    now: &str,
) -> Result<(), LicenseError> {
    let removed = conn.execute(
        "DELETE FROM blocked_computers WHERE computer_id = ?1",
        [computer_id],
    )?;
    if removed == 0 {
        return Err(LicenseError::ComputerNotBlocked(computer_id.to_string()));
    }
    audit::record(
        conn,
        now,
        actor,
        "computer.unblock",
        computer_id,
        serde_json::json!({}),
    )?;
    Ok(())
}

const COLUMNS: &str = "computer_id, reason, blocked_at, blocked_by";

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<BlockedComputer> {
    Ok(BlockedComputer {
        computer_id: row.get(0)?,
        reason: row.get(1)?,
        blocked_at: row.get(2)?,
        blocked_by: row.get(3)?,
    })
}

fn find(conn: &Connection, computer_id: &str) -> Result<Option<BlockedComputer>, LicenseError> {
    let sql = format!("SELECT {COLUMNS} FROM blocked_computers WHERE computer_id = ?1");
    Ok(conn.query_row(&sql, [computer_id], from_row).optional()?)
}

/// Lists blocked computers, most recently blocked first.
pub fn list(conn: &Connection) -> Result<Vec<BlockedComputer>, LicenseError> {
    let sql =
        format!("SELECT {COLUMNS} FROM blocked_computers ORDER BY blocked_at DESC, computer_id");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}
