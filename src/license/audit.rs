//! The append-only audit log of every mutation.

use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use super::LicenseError;

/// One audit log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub at: String,
    /// `admin:<token id>`, `client:<address>`, `cli:<user>` or `system`.
    pub actor: String,
    pub action: String,
    pub object: String,
    /// Details of the change; the fields depend on the action.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// Appends an entry. Call it inside the transaction that makes the change.
pub fn record(
    conn: &Connection,
    at: &str,
    actor: &str,
    action: &str,
    object: &str,
    detail: serde_json::Value,
) -> Result<(), LicenseError> {
    conn.prepare_cached(
        "INSERT INTO audit_log (at, actor, action, object, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute((at, actor, action, object, detail.to_string()))?;
    Ok(())
}

/// Lists entries newest first, those with an id below `before` when given.
pub fn list(
    conn: &Connection,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<AuditEntry>, LicenseError> {
    let mut stmt = conn.prepare(
        "SELECT id, at, actor, action, object, detail FROM audit_log \
         WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map((before.unwrap_or(i64::MAX), limit), |row| {
        let detail: String = row.get(5)?;
        Ok(AuditEntry {
            id: row.get(0)?,
            at: row.get(1)?,
            actor: row.get(2)?,
            action: row.get(3)?,
            object: row.get(4)?,
            detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::String(detail)),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
