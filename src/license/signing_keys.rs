//! Rotation and retirement of the Ed25519 signing keys stored in `signing_keys`.
//!
//! The newest key that is not retired signs, unless its `created_at` lies ahead (a scheduled
//! rotation), and every key that is not retired is published and verifies. Retiring a key stops both, so responses, computer keys and license files it signed
//! no longer verify with the published keys. After a change the server must reload its keyring.

use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::{LicenseError, audit};
use crate::signing::Keyring;

/// A signing key as the admin API lists it (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKeyInfo {
    pub kid: String,
    /// Base64 (standard alphabet) of the 32-byte Ed25519 public key.
    pub public_key: String,
    pub created_at: String,
    pub retired_at: Option<String>,
    /// True for the key that signs now. A key whose `created_at` lies ahead is published and
    /// signs from then on.
    pub current: bool,
}

/// Lists every signing key, retired ones included, oldest first, marking the one that signs at
/// `now`.
pub fn list(conn: &Connection, now: &str) -> Result<Vec<SigningKeyInfo>, LicenseError> {
    use base64::Engine;
    let current = current_kid(conn, now)?;
    let mut stmt = conn.prepare(
        "SELECT kid, public_key, created_at, retired_at FROM signing_keys \
         ORDER BY created_at, rowid",
    )?;
    let rows = stmt.query_map([], |row| {
        let kid: String = row.get(0)?;
        let public_key: Vec<u8> = row.get(1)?;
        Ok(SigningKeyInfo {
            current: current.as_deref() == Some(kid.as_str()),
            kid,
            public_key: base64::engine::general_purpose::STANDARD.encode(public_key),
            created_at: row.get(2)?,
            retired_at: row.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Adds a new signing key and returns its id. Without `activate_at` it signs at once: its
/// `created_at` is `now`, or the newest key's when the clock reads earlier, so that it sorts as
/// the newest either way. With `activate_at`, a future time, it is published now and signs from
/// then on, so clients can learn it first. One scheduled key may wait at a time.
pub fn rotate(
    conn: &Connection,
    actor: &str,
    now: &str,
    activate_at: Option<&str>,
) -> Result<String, LicenseError> {
    let pending: Option<(String, String)> = conn
        .query_row(
            "SELECT kid, created_at FROM signing_keys WHERE retired_at IS NULL AND created_at > ?1 \
             ORDER BY created_at LIMIT 1",
            [now],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    if let Some((kid, at)) = pending {
        return Err(LicenseError::invalid(
            "activate_at",
            format!(
                "key {kid} is already scheduled to sign from {at}; retire it first to replace it"
            ),
        ));
    }
    let newest: Option<String> = conn.query_row(
        "SELECT max(created_at) FROM signing_keys WHERE retired_at IS NULL",
        [],
        |row| row.get(0),
    )?;
    let created_at = match (activate_at, newest) {
        (Some(at), _) => {
            let at = super::input::expiry("activate_at", at)?;
            if at.as_str() <= now {
                return Err(LicenseError::invalid(
                    "activate_at",
                    format!("{at} is not in the future; rotate without activate_at to switch now"),
                ));
            }
            at
        }
        (None, Some(newest)) if newest.as_str() > now => newest,
        (None, _) => now.to_string(),
    };
    let kid = Keyring::add_key_at(conn, &created_at)?;
    let detail = serde_json::json!({"signs_from": created_at});
    audit::record(conn, now, actor, "key.rotate", &kid, detail)?;
    Ok(kid)
}

/// Retires signing key `kid`, so that it is no longer published or trusted. Fails with
/// `KEY_IN_USE` for the current key and `KEY_NOT_FOUND` for an unknown one. Retiring a retired
/// key changes nothing.
pub fn retire(conn: &Connection, kid: &str, actor: &str, now: &str) -> Result<(), LicenseError> {
    let retired_at: Option<Option<String>> = conn
        .query_row(
            "SELECT retired_at FROM signing_keys WHERE kid = ?1",
            [kid],
            |row| row.get(0),
        )
        .optional()?;
    match retired_at {
        None => return Err(LicenseError::KeyNotFound(kid.to_string())),
        Some(Some(_)) => return Ok(()),
        Some(None) => {}
    }
    let unretired = unretired_count(conn)?;
    if current_kid(conn, now)?.as_deref() == Some(kid) || unretired <= 1 {
        return Err(LicenseError::KeyInUse(kid.to_string()));
    }
    conn.execute(
        "UPDATE signing_keys SET retired_at = ?2 WHERE kid = ?1",
        (kid, now),
    )?;
    audit::record(conn, now, actor, "key.retire", kid, serde_json::json!({}))?;
    Ok(())
}

fn unretired_count(conn: &Connection) -> Result<i64, LicenseError> {
    Ok(conn.query_row(
        "SELECT count(*) FROM signing_keys WHERE retired_at IS NULL",
        [],
        |row| row.get(0),
    )?)
}

/// Returns the id of the key that signs at `now`, by the rule of [`Keyring::load_at`].
fn current_kid(conn: &Connection, now: &str) -> Result<Option<String>, LicenseError> {
    let unretired = unretired_count(conn)?;
    if unretired == 0 {
        return Ok(None);
    }
    Ok(Some(Keyring::load_at(conn, now)?.kid().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_behind_switch_keeps_signing() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::db::schema::migrate(&mut conn).unwrap();
        let old = Keyring::add_key_at(&conn, "2026-01-01T00:00:00Z").unwrap();
        let new = rotate(&conn, "admin:t", "2026-06-01T00:00:00Z", Some("2026-06-02")).unwrap();
        retire(&conn, &old, "admin:t", "2026-06-03T00:00:00Z").unwrap();

        // The clock now reads before the new key's start: it still signs, and cannot be retired.
        let behind = "2026-06-01T12:00:00Z";
        let keyring = Keyring::load_at(&conn, behind).unwrap();
        assert_eq!(keyring.kid(), new);
        assert_eq!(keyring.next_activation(), None);
        assert_eq!(
            current_kid(&conn, behind).unwrap().as_deref(),
            Some(new.as_str())
        );
        let retired = retire(&conn, &new, "admin:t", behind);
        assert!(
            matches!(retired, Err(LicenseError::KeyInUse(_))),
            "{retired:?}"
        );
    }
}
