//! License validation: one reason code per check.

use chrono::{DateTime, Utc};
use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use super::{LicenseError, activations, blocked, leases, store};
use crate::signing::TrustedKeys;

/// The outcome of a validation. Exactly one code is returned, the first that applies in this
/// order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ValidationCode {
    Valid,
    NotFound,
    ComputerBlocked,
    Revoked,
    Suspended,
    Expired,
    ProductMismatch,
    NotActivated,
    ComputerMismatch,
}

/// The database state a validation depends on. The code follows from these facts, the request
/// and the clock, so facts can be kept in memory while the database does not change.
#[derive(Debug, Clone)]
pub enum Facts {
    NotFound,
    ComputerBlocked,
    Found {
        row: Box<store::Row>,
        /// Whether the computer holds a live activation, or for a floating license a lease that
        /// was live when the facts were read.
        bound: bool,
    },
}

impl Facts {
    /// Returns whether these facts stay true until the database changes. A lease expires with
    /// time, so the facts of a floating license are true only at the moment they were read.
    pub fn is_lasting(&self) -> bool {
        match self {
            Facts::Found { row, .. } => !row.license.floating,
            Facts::NotFound | Facts::ComputerBlocked => true,
        }
    }
}

/// Reads the facts that validating `key` for `computer_id` at `now` depends on, in one read
/// transaction, so that they come from one state of the database.
pub fn load_facts(
    conn: &Connection,
    key: &str,
    computer_id: &str,
    now: DateTime<Utc>,
) -> Result<Facts, LicenseError> {
    let txn = conn.unchecked_transaction()?;
    let row = match store::find(&txn, key) {
        Ok(row) => row,
        Err(LicenseError::NotFound) => return Ok(Facts::NotFound),
        Err(err) => return Err(err),
    };
    if blocked::is_blocked(&txn, computer_id)? {
        return Ok(Facts::ComputerBlocked);
    }
    let bound = if row.license.floating {
        leases::holds_lease(&txn, row.id, computer_id, now)?
    } else {
        activations::is_activated(&txn, row.id, computer_id)?
    };
    txn.finish()?;
    Ok(Facts::Found {
        row: Box::new(row),
        bound,
    })
}

/// Decides the code of a validation from its facts.
pub fn decide(
    facts: &Facts,
    binding: &Binding<'_>,
    trusted: &TrustedKeys,
    now: DateTime<Utc>,
) -> ValidationCode {
    let (row, bound) = match facts {
        Facts::NotFound => return ValidationCode::NotFound,
        Facts::ComputerBlocked => return ValidationCode::ComputerBlocked,
        Facts::Found { row, bound } => (row, *bound),
    };
    match store::check_usable(&row.license, now) {
        Err(LicenseError::Revoked) => ValidationCode::Revoked,
        Err(LicenseError::Suspended) => ValidationCode::Suspended,
        // `check_usable` fails for no other reason.
        Err(_) => ValidationCode::Expired,
        Ok(()) => check_binding(row, bound, binding, trusted),
    }
}

/// The computer, product and computer key that a validation checks besides the license key.
pub struct Binding<'a> {
    pub computer_id: &'a str,
    pub product: Option<&'a str>,
    pub computer_key: Option<&'a str>,
}

/// Checks the product, then that the computer holds a live activation (or, for a floating
/// license, a live lease), then the computer key when one is given.
fn check_binding(
    row: &store::Row,
    bound: bool,
    binding: &Binding<'_>,
    trusted: &TrustedKeys,
) -> ValidationCode {
    if binding
        .product
        .is_some_and(|product| product != row.license.product)
    {
        return ValidationCode::ProductMismatch;
    }
    if !bound {
        return ValidationCode::NotActivated;
    }
    if let Some(token) = binding.computer_key {
        let matches = trusted.verify_computer_key(token).is_ok_and(|claims| {
            claims.computer_id == binding.computer_id && claims.license_key == row.license.key
        });
        if !matches {
            return ValidationCode::ComputerMismatch;
        }
    }
    ValidationCode::Valid
}
