//! Activations (a license bound to one computer) and releases, with the checks that guard
//! them: blocked computers, trial use, activation and release limits, and seats.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension};

use super::limits::{self, Policy};
use super::store::{check_usable, find, find_by_id};
use super::{Activation, License, LicenseError, Model, audit, blocked, input, trials};

/// A request to activate a license on a computer.
#[derive(Debug, Clone)]
pub struct NewActivation<'a> {
    pub key: &'a str,
    pub computer_id: &'a str,
    pub computer_name: &'a str,
    /// The client's IP address, or `offline` for an activation from a request file.
    pub client_addr: &'a str,
}

/// Result of an activation.
#[derive(Debug, Clone)]
pub struct Activated {
    pub license: License,
    /// True when this computer already held an activation (no extra seat was used).
    pub already_active: bool,
}

/// Activates a license on a computer. Activating the same computer again is idempotent and
/// uses no seat, no trial and no part of the activation limit.
///
/// Checks, in order: the key (`NOT_FOUND`), the computer (`COMPUTER_BLOCKED`), the license's
/// status and expiry, that it is not floating, then for a new activation the trial use
/// (`TRIAL_USED`), the computer's activations in the last 24 hours (`ACTIVATION_LIMIT`) and the
/// seats (`SEATS_EXHAUSTED`).
pub fn activate(
    conn: &Connection,
    new: &NewActivation<'_>,
    actor: &str,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Result<Activated, LicenseError> {
    let computer_id = input::identifier("computer_id", new.computer_id, 256)?;
    let computer_name = input::text("computer_name", new.computer_name, 256, false)?;
    let row = find(conn, new.key)?;
    let license = row.license;
    blocked::check(conn, &computer_id)?;
    check_usable(&license, now)?;
    if license.floating {
        return Err(LicenseError::FloatingLicense);
    }

    if is_activated(conn, row.id, &computer_id)? {
        return Ok(Activated {
            license,
            already_active: true,
        });
    }
    let now_text = crate::time::format(now);
    if license.model == Model::Trial {
        trials::check_and_record(
            conn,
            &license,
            &computer_id,
            policy.trials_per_computer,
            &now_text,
        )?;
    }
    limits::check_activation_rate(conn, &computer_id, policy, now)?;
    if license.seats_used >= license.seats {
        return Err(LicenseError::SeatsExhausted {
            seats: license.seats,
        });
    }

    conn.prepare_cached(
        "INSERT INTO activations (license_id, computer_id, computer_name, client_addr, \
         activated_at, last_seen_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
    )?
    .execute((
        row.id,
        &computer_id,
        &computer_name,
        new.client_addr,
        &now_text,
    ))?;
    conn.prepare_cached(
        "UPDATE licenses SET first_activated_at = ?2 WHERE id = ?1 AND first_activated_at IS NULL",
    )?
    .execute((row.id, &now_text))?;
    let mut detail =
        serde_json::json!({"computer_id": computer_id, "computer_name": computer_name});
    if new.client_addr == OFFLINE_ADDR {
        detail["offline"] = serde_json::Value::Bool(true);
    }
    audit::record(
        conn,
        &now_text,
        actor,
        "activation.create",
        &license.key,
        detail,
    )?;
    Ok(Activated {
        license: find_by_id(conn, row.id)?.license,
        already_active: false,
    })
}

/// The `client_addr` stored for an activation made from an offline request file.
pub const OFFLINE_ADDR: &str = "offline";

/// Releases the activation of a computer, freeing its seat.
///
/// A release by a client (any actor but `admin:...`) counts toward the license's release limit
/// and fails with `RELEASE_LIMIT` once the limit is reached. Admin releases are not limited and
/// not counted.
pub fn release(
    conn: &Connection,
    key: &str,
    computer_id: &str,
    actor: &str,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Result<License, LicenseError> {
    let row = find(conn, key)?;
    let by_admin = actor.starts_with("admin:");
    if row.license.floating && by_admin {
        // A floating license holds leases, not activations: the admin frees the computer's seat.
        return super::leases::end_for_computer(conn, &row, computer_id, actor, now);
    }
    if !is_activated(conn, row.id, computer_id)? {
        return Err(LicenseError::NotActivated);
    }
    if !by_admin {
        limits::check_release_rate(conn, row.id, row.license.seats, policy, now)?;
    }

    let now_text = crate::time::format(now);
    let released_by = if by_admin { "admin" } else { "client" };
    conn.execute(
        "UPDATE activations SET released_at = ?3, released_by = ?4 \
         WHERE license_id = ?1 AND computer_id = ?2 AND released_at IS NULL",
        (row.id, computer_id, &now_text, released_by),
    )?;
    let action = if by_admin {
        "activation.force_release"
    } else {
        "activation.release"
    };
    let detail = serde_json::json!({"computer_id": computer_id});
    audit::record(conn, &now_text, actor, action, &row.license.key, detail)?;
    Ok(find_by_id(conn, row.id)?.license)
}

/// Returns whether a computer holds a live activation of the license with row id `license_id`.
pub fn is_activated(
    conn: &Connection,
    license_id: i64,
    computer_id: &str,
) -> Result<bool, LicenseError> {
    let found: Option<i64> = conn
        .prepare_cached(
            "SELECT 1 FROM activations WHERE license_id = ?1 AND computer_id = ?2 AND released_at IS NULL",
        )?
        .query_row((license_id, computer_id), |row| row.get(0))
        .optional()?;
    Ok(found.is_some())
}

/// Lists the activations of a license, live ones first.
pub fn activations(conn: &Connection, key: &str) -> Result<Vec<Activation>, LicenseError> {
    let row = find(conn, key)?;
    let mut stmt = conn.prepare(
        "SELECT computer_id, computer_name, client_addr, activated_at, released_at, last_seen_at \
         FROM activations WHERE license_id = ?1 ORDER BY released_at IS NOT NULL, id",
    )?;
    let rows = stmt.query_map([row.id], |r| {
        Ok(Activation {
            computer_id: r.get(0)?,
            computer_name: r.get(1)?,
            client_addr: r.get(2)?,
            activated_at: r.get(3)?,
            released_at: r.get(4)?,
            last_seen_at: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Stores buffered last-contact times: `(license row id, computer id, time)`.
pub fn record_last_seen(
    conn: &Connection,
    seen: &[(i64, String, String)],
) -> Result<(), LicenseError> {
    let mut stmt = conn.prepare_cached(
        "UPDATE activations SET last_seen_at = max(coalesce(last_seen_at, ''), ?3) \
         WHERE license_id = ?1 AND computer_id = ?2 AND released_at IS NULL",
    )?;
    for (license_id, computer_id, at) in seen {
        stmt.execute((license_id, computer_id, at))?;
    }
    Ok(())
}
