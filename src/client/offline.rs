//! Offline validation: checking a stored computer key with the trusted public keys when the
//! license server cannot be reached, limited by the time since the last server contact.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::ClientError;
use crate::keys::LicenseKey;
use crate::license::validate::ValidationCode;
use crate::signing::{ComputerKeyClaims, TrustedKeys};

/// Result of checking a computer key locally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComputerKeyCheck {
    pub code: ValidationCode,
    /// Claims of the key, present whenever its signature verified.
    pub claims: Option<ComputerKeyClaims>,
}

/// Checks `computer_key` for `key` on `computer_id` at time `now`.
///
/// Returns `COMPUTER_MISMATCH` when the key does not verify with `trusted` or names another
/// license or computer (as the server does), `PRODUCT_MISMATCH` when `product` is given and
/// differs, and `EXPIRED` when the license expiry in the key has passed. Revocation and
/// suspension are only known to the server.
pub fn check_computer_key(
    trusted: &TrustedKeys,
    computer_key: &str,
    key: &LicenseKey,
    computer_id: &str,
    product: Option<&str>,
    now: DateTime<Utc>,
) -> ComputerKeyCheck {
    let mismatch = |claims| ComputerKeyCheck {
        code: ValidationCode::ComputerMismatch,
        claims,
    };
    let Ok(claims) = trusted.verify_computer_key(computer_key) else {
        return mismatch(None);
    };

    let same_license = LicenseKey::parse(&claims.license_key).is_ok_and(|claimed| claimed == *key);
    if !same_license || claims.computer_id != computer_id {
        return mismatch(Some(claims));
    }

    let code = if product.is_some_and(|product| product != claims.product) {
        ValidationCode::ProductMismatch
    } else if is_expired(claims.expires_at.as_deref(), now) {
        ValidationCode::Expired
    } else {
        ValidationCode::Valid
    };
    ComputerKeyCheck {
        code,
        claims: Some(claims),
    }
}

/// Returns whether the expiry `expires_at` has passed at `now`. An expiry that does not parse
/// counts as passed, because the server always writes RFC 3339 and a key in another format
/// cannot be relied on.
fn is_expired(expires_at: Option<&str>, now: DateTime<Utc>) -> bool {
    match expires_at {
        None => false,
        Some(text) => crate::time::parse(text).map_or(true, |expiry| expiry <= now),
    }
}

/// Checks the offline period: fails when `last_server_contact` is unknown or more than
/// `max_days_offline` days before `now`, or more than `max_clock_skew` after `now`.
pub fn check_offline_period(
    last_server_contact: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    max_days_offline: u32,
    max_clock_skew: Duration,
) -> Result<(), ClientError> {
    let too_long = ClientError::OfflineTooLong {
        last_server_contact,
        max_days_offline,
    };
    let Some(last) = last_server_contact else {
        return Err(too_long);
    };

    let skew = chrono::Duration::from_std(max_clock_skew).unwrap_or(chrono::Duration::MAX);
    let latest_allowed = now
        .checked_add_signed(skew)
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    if last > latest_allowed {
        return Err(ClientError::ClockBehindLastContact {
            now,
            last_server_contact: last,
        });
    }
    if now - last > chrono::Duration::days(i64::from(max_days_offline)) {
        return Err(too_long);
    }
    Ok(())
}
