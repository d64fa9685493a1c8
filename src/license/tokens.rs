//! Admin bearer tokens. Only a SHA-256 hash of each token is stored, in the database, so tokens
//! keep working on a DR site restored from a snapshot.
//!
//! A token reads `kwa_<id>_<secret>`: the id (8 hex digits) names the token in the audit log and
//! the secret is 256 random bits in hex.

use rusqlite::{Connection, OptionalExtension};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{LicenseError, audit};

/// An admin token as listed (never with its secret).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn generate() -> (String, String) {
    let id = crate::ids::random_hex(4);
    let token = format!("kwa_{id}_{}", crate::ids::random_hex(32));
    (id, token)
}

/// Checks the shape of a token supplied by an operator (for the bootstrap token).
pub fn check_format(token: &str) -> Result<String, LicenseError> {
    let parts: Vec<&str> = token.split('_').collect();
    let valid = parts.len() == 3
        && parts[0] == "kwa"
        && parts[1].len() == 8
        && parts[2].len() >= 32
        && parts[1..]
            .iter()
            .all(|part| part.chars().all(|ch| ch.is_ascii_hexdigit()));
    if !valid {
        return Err(LicenseError::invalid(
            "admin token",
            "expected kwa_<8 hex digits>_<at least 32 hex digits>; \
             generate one with `keyward token generate`",
        ));
    }
    Ok(parts[1].to_string())
}

/// Returns a fresh token text without storing it.
pub fn generate_text() -> String {
    generate().1
}

/// Creates a token and returns `(info, token text)`. The text is shown once and never stored.
pub fn create(
    conn: &Connection,
    name: &str,
    actor: &str,
    now: &str,
) -> Result<(TokenInfo, String), LicenseError> {
    let (id, token) = generate();
    insert(conn, &id, name, &token, actor, now)?;
    let info = TokenInfo {
        id,
        name: name.into(),
        created_at: now.into(),
        revoked_at: None,
    };
    Ok((info, token))
}

fn insert(
    conn: &Connection,
    id: &str,
    name: &str,
    token: &str,
    actor: &str,
    now: &str,
) -> Result<(), LicenseError> {
    let name = super::input::identifier("name", name, 100)?;
    conn.execute(
        "INSERT INTO admin_tokens (id, name, token_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
        (id, &name, hash(token), now),
    )?;
    audit::record(
        conn,
        now,
        actor,
        "token.create",
        id,
        serde_json::json!({"name": name}),
    )?;
    Ok(())
}

/// On a database with no admin token, stores `provided` (or a new token) and returns its text.
/// Returns `None` when a token already exists.
pub fn ensure_bootstrap(
    conn: &Connection,
    provided: Option<&str>,
    now: &str,
) -> Result<Option<String>, LicenseError> {
    let count: i64 = conn.query_row("SELECT count(*) FROM admin_tokens", [], |row| row.get(0))?;
    if count > 0 {
        if let Some(token) = provided
            && authenticate(conn, token)?.is_none()
        {
            tracing::warn!(
                "bootstrap_admin_token was not added because this database already has admin \
                 tokens and it is not one of them; use an existing token, or `keyward token \
                 create` with one"
            );
        }
        return Ok(None);
    }
    let (id, token) = match provided {
        Some(token) => (check_format(token)?, token.to_string()),
        None => generate(),
    };
    insert(conn, &id, "bootstrap", &token, "system", now)?;
    Ok(Some(token))
}

/// Returns the id of the live token matching `token`, if any. The lookup is by SHA-256 hash, so
/// the comparison time does not depend on how much of a guessed secret is right.
pub fn authenticate(conn: &Connection, token: &str) -> Result<Option<String>, LicenseError> {
    Ok(conn
        .prepare_cached("SELECT id FROM admin_tokens WHERE token_hash = ?1 AND revoked_at IS NULL")?
        .query_row([hash(token)], |row| row.get(0))
        .optional()?)
}

pub fn list(conn: &Connection) -> Result<Vec<TokenInfo>, LicenseError> {
    let mut stmt = conn.prepare(
        "SELECT id, name, created_at, revoked_at FROM admin_tokens ORDER BY created_at, id",
    )?;
    let rows = stmt.query_map([], |row| {
        Ok(TokenInfo {
            id: row.get(0)?,
            name: row.get(1)?,
            created_at: row.get(2)?,
            revoked_at: row.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn revoke(conn: &Connection, id: &str, actor: &str, now: &str) -> Result<(), LicenseError> {
    let changed = conn.execute(
        "UPDATE admin_tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
        (id, now),
    )?;
    if changed == 0 {
        return Err(LicenseError::TokenNotFound(id.into()));
    }
    audit::record(conn, now, actor, "token.revoke", id, serde_json::json!({}))?;
    Ok(())
}
