//! License validation: one reason code per check.

use chrono::{DateTime, Utc};
use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use super::{License, LicenseError, activations, blocked, leases, store};
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

/// The result of a validation: the code, and the license details unless the key was not found
/// or the computer is blocked.
#[derive(Debug, Clone)]
pub struct Validation {
    pub code: ValidationCode,
    pub license: Option<License>,
    /// Row id of the license, for recording the last contact time.
    pub license_id: Option<i64>,
}

/// Validates `key` for `computer_id`. When `product` is given, the license must be for it. When
/// `computer_key` is given, it must verify with `trusted` and name this key and computer.
pub fn validate(
    conn: &Connection,
    key: &str,
    computer_id: &str,
    product: Option<&str>,
    computer_key: Option<&str>,
    trusted: &TrustedKeys,
    now: DateTime<Utc>,
) -> Result<Validation, LicenseError> {
    let row = match store::find(conn, key) {
        Ok(row) => row,
        Err(LicenseError::NotFound) => {
            return Ok(Validation {
                code: ValidationCode::NotFound,
                license: None,
                license_id: None,
            });
        }
        Err(err) => return Err(err),
    };
    if blocked::is_blocked(conn, computer_id)? {
        return Ok(Validation {
            code: ValidationCode::ComputerBlocked,
            license: None,
            license_id: None,
        });
    }
    let code = match store::check_usable(&row.license, now) {
        Err(LicenseError::Revoked) => ValidationCode::Revoked,
        Err(LicenseError::Suspended) => ValidationCode::Suspended,
        Err(LicenseError::Expired(_)) => ValidationCode::Expired,
        Err(err) => return Err(err),
        Ok(()) => {
            let binding = Binding {
                computer_id,
                product,
                computer_key,
            };
            check_binding(conn, &row, &binding, trusted, now)?
        }
    };
    Ok(Validation {
        code,
        license: Some(row.license),
        license_id: Some(row.id),
    })
}

/// The computer, product and computer key that a validation checks besides the license key.
struct Binding<'a> {
    computer_id: &'a str,
    product: Option<&'a str>,
    computer_key: Option<&'a str>,
}

/// Checks the product, then that the computer holds a live activation (or, for a floating
/// license, a live lease), then the computer key when one is given.
fn check_binding(
    conn: &Connection,
    row: &store::Row,
    binding: &Binding<'_>,
    trusted: &TrustedKeys,
    now: DateTime<Utc>,
) -> Result<ValidationCode, LicenseError> {
    if binding
        .product
        .is_some_and(|product| product != row.license.product)
    {
        return Ok(ValidationCode::ProductMismatch);
    }
    let bound = if row.license.floating {
        leases::holds_lease(conn, row.id, binding.computer_id, now)?
    } else {
        activations::is_activated(conn, row.id, binding.computer_id)?
    };
    if !bound {
        return Ok(ValidationCode::NotActivated);
    }
    if let Some(token) = binding.computer_key {
        let matches = trusted.verify_computer_key(token).is_ok_and(|claims| {
            claims.computer_id == binding.computer_id && claims.license_key == row.license.key
        });
        if !matches {
            return Ok(ValidationCode::ComputerMismatch);
        }
    }
    Ok(ValidationCode::Valid)
}
