//! License validation: one reason code per check.

use chrono::{DateTime, Utc};
use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use super::{License, LicenseError, store};
use crate::signing::TrustedKeys;

/// The outcome of a validation. Exactly one code is returned, the first that applies in this
/// order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ValidationCode {
    Valid,
    NotFound,
    Revoked,
    Suspended,
    Expired,
    ProductMismatch,
    NotActivated,
    ComputerMismatch,
}

/// What a validation returns: the code, and the license details unless the key was not found.
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
    let code = match store::check_usable(&row.license, now) {
        Err(LicenseError::Revoked) => ValidationCode::Revoked,
        Err(LicenseError::Suspended) => ValidationCode::Suspended,
        Err(LicenseError::Expired(_)) => ValidationCode::Expired,
        Err(err) => return Err(err),
        Ok(()) => check_binding(conn, &row, computer_id, product, computer_key, trusted)?,
    };
    Ok(Validation {
        code,
        license: Some(row.license),
        license_id: Some(row.id),
    })
}

fn check_binding(
    conn: &Connection,
    row: &store::Row,
    computer_id: &str,
    product: Option<&str>,
    computer_key: Option<&str>,
    trusted: &TrustedKeys,
) -> Result<ValidationCode, LicenseError> {
    if product.is_some_and(|product| product != row.license.product) {
        return Ok(ValidationCode::ProductMismatch);
    }
    if !store::is_activated(conn, row.id, computer_id)? {
        return Ok(ValidationCode::NotActivated);
    }
    if let Some(token) = computer_key {
        let matches = trusted.verify_computer_key(token).is_ok_and(|claims| {
            claims.computer_id == computer_id && claims.license_key == row.license.key
        });
        if !matches {
            return Ok(ValidationCode::ComputerMismatch);
        }
    }
    Ok(ValidationCode::Valid)
}
