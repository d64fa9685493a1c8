//! Trial use per computer and product, so that a computer cannot start a fresh trial by
//! deleting its local state or by asking for another trial key.
//!
//! A row in `trial_uses` is written when a computer first activates a trial license and is
//! never removed by a release or by deleting the license. Deleting the product removes its rows.

use rusqlite::{Connection, OptionalExtension};

use super::{License, LicenseError, products};
use crate::keys::LicenseKey;

/// Checks that `computer_id` may activate the trial `license` and records the use.
///
/// Activating a trial key the computer used before is allowed again, because its duration
/// counts from the license's first activation and so grants no fresh trial. Another trial key
/// of the same product fails with `TRIAL_USED` once the computer used `limit` of them. A
/// `limit` of 0 records the use without limiting it.
pub fn check_and_record(
    conn: &Connection,
    license: &License,
    computer_id: &str,
    limit: i64,
    now: &str,
) -> Result<(), LicenseError> {
    let product_id = products::id_of(conn, &license.product)?;
    // Stored in canonical form, like `licenses.license_key`.
    let key = LicenseKey::parse(&license.key)
        .map(|key| key.as_str().to_string())
        .unwrap_or_else(|_| license.key.clone());
    let used_before: Option<i64> = conn
        .query_row(
            "SELECT 1 FROM trial_uses \
             WHERE product_id = ?1 AND computer_id = ?2 AND license_key = ?3",
            (product_id, computer_id, &key),
            |row| row.get(0),
        )
        .optional()?;
    if used_before.is_some() {
        return Ok(());
    }

    if limit > 0 {
        let used: i64 = conn.query_row(
            "SELECT count(*) FROM trial_uses WHERE product_id = ?1 AND computer_id = ?2",
            (product_id, computer_id),
            |row| row.get(0),
        )?;
        if used >= limit {
            return Err(LicenseError::TrialUsed {
                product: license.product.clone(),
                limit,
            });
        }
    }

    conn.execute(
        "INSERT INTO trial_uses (product_id, computer_id, license_key, first_activated_at) \
         VALUES (?1, ?2, ?3, ?4)",
        (product_id, computer_id, &key, now),
    )?;
    Ok(())
}
