//! Limits on trials, activations and releases that keep one computer or one key from abusing
//! the server. The values come from the `[trials]` and `[limits]` config sections.
//!
//! Every count here is taken inside the write job that then makes the change, and the writer
//! thread applies writes one at a time, so parallel requests cannot exceed a limit.

use chrono::{DateTime, Duration, Utc};
use rusqlite::{Connection, OptionalExtension};

use super::LicenseError;

/// The limits in force. A limit of 0 disables that check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Distinct trial licenses of one product that one computer may activate, ever.
    pub trials_per_computer: i64,
    /// Activations one computer may make in any 24 hours, over all licenses.
    pub activations_per_computer_per_day: i64,
    /// Releases by clients of one license within `release_period`, per seat of the license.
    /// Admin releases do not count.
    pub releases_per_seat: i64,
    pub release_period: Duration,
}

impl Policy {
    /// Returns a policy with every limit disabled.
    pub fn unlimited() -> Policy {
        Policy {
            trials_per_computer: 0,
            activations_per_computer_per_day: 0,
            releases_per_seat: 0,
            release_period: Duration::zero(),
        }
    }
}

/// Rejects a new activation with `ACTIVATION_LIMIT` when `computer_id` already made the maximum
/// number of activations in the 24 hours before `now`. Released activations count too, so that
/// activating and releasing in a loop is limited as well.
pub fn check_activation_rate(
    conn: &Connection,
    computer_id: &str,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Result<(), LicenseError> {
    let limit = policy.activations_per_computer_per_day;
    if limit <= 0 {
        return Ok(());
    }
    let since = crate::time::format(now - Duration::days(1));
    let oldest = oldest_of_newest(
        conn,
        "SELECT activated_at FROM activations WHERE computer_id = ?1 AND activated_at > ?2 \
         ORDER BY activated_at DESC LIMIT 1 OFFSET ?3",
        (computer_id, &since, limit - 1),
    )?;
    match oldest {
        Some(at) => Err(LicenseError::ActivationLimit {
            limit,
            retry_at: retry_time(&at, Duration::days(1)),
        }),
        None => Ok(()),
    }
}

/// Rejects a client release with `RELEASE_LIMIT` when clients already released the license with
/// row id `license_id` and `seats` seats the maximum number of times within the release period
/// before `now`. The maximum is `releases_per_seat` times `seats`.
pub fn check_release_rate(
    conn: &Connection,
    license_id: i64,
    seats: i64,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Result<(), LicenseError> {
    let limit = policy.releases_per_seat.saturating_mul(seats);
    if limit <= 0 || policy.release_period <= Duration::zero() {
        return Ok(());
    }
    let since = crate::time::format(now - policy.release_period);
    let oldest = oldest_of_newest(
        conn,
        "SELECT released_at FROM activations \
         WHERE license_id = ?1 AND released_by = 'client' AND released_at > ?2 \
         ORDER BY released_at DESC LIMIT 1 OFFSET ?3",
        (license_id, &since, limit - 1),
    )?;
    match oldest {
        Some(at) => Err(LicenseError::ReleaseLimit {
            limit,
            retry_at: retry_time(&at, policy.release_period),
        }),
        None => Ok(()),
    }
}

/// Runs a query that returns the `limit`-th newest time inside the window, if there are that
/// many. Once that time leaves the window, one more event fits.
fn oldest_of_newest(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Option<String>, LicenseError> {
    Ok(conn
        .prepare_cached(sql)?
        .query_row(params, |row| row.get::<_, String>(0))
        .optional()?)
}

fn retry_time(event_at: &str, window: Duration) -> String {
    crate::time::parse(event_at)
        .map(|at| crate::time::format(at + window))
        .unwrap_or_else(|_| event_at.to_string())
}
