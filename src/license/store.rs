//! Licenses: creation, changes, status, renewal, search and the checks of whether one is usable.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Deserialize;

use super::{License, LicenseError, Model, Status, audit, input, products};
use crate::keys::LicenseKey;

/// Fields of a new license.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLicense {
    pub product: String,
    pub model: Model,
    /// Concurrent use through leases instead of activations. Fixed when the license is created.
    #[serde(default)]
    pub floating: bool,
    /// Activations allowed, or for a floating license concurrent leases.
    #[serde(default = "one")]
    pub seats: i64,
    pub expires_at: Option<String>,
    pub duration_days: Option<i64>,
    pub maintenance_expires_at: Option<String>,
    /// Enabled features; must be features of the product. Defaults to all of them.
    pub features: Option<Vec<String>>,
    #[serde(default)]
    pub customer_name: String,
    #[serde(default)]
    pub customer_email: String,
    #[serde(default)]
    pub customer_company: String,
    #[serde(default)]
    pub order_ref: String,
    #[serde(default)]
    pub notes: String,
    /// An existing key to keep (when importing); a new key is generated when absent.
    pub key: Option<String>,
}

fn one() -> i64 {
    1
}

/// Changes to a license; absent fields stay as they are. An empty string clears a date.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LicensePatch {
    pub seats: Option<i64>,
    pub expires_at: Option<String>,
    pub duration_days: Option<i64>,
    pub maintenance_expires_at: Option<String>,
    pub features: Option<Vec<String>>,
    pub customer_name: Option<String>,
    pub customer_email: Option<String>,
    pub customer_company: Option<String>,
    pub order_ref: Option<String>,
    pub notes: Option<String>,
}

/// Search parameters for listing licenses.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LicenseQuery {
    /// Matches customer name, email, company, order reference or key.
    pub q: Option<String>,
    pub product: Option<String>,
    pub status: Option<Status>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

// The product code comes from a scalar subquery, not a join: with a join, SQLite (3.54, STAT4
// build) marks the bound key as plan-relevant and re-prepares the cached statement on every
// call, which tripled the cost of a validation.
const SELECT: &str = "SELECT l.id, l.license_key, \
    (SELECT p.code FROM products p WHERE p.id = l.product_id), l.model, l.seats, l.expires_at, \
    l.duration_days, l.first_activated_at, l.maintenance_expires_at, l.features, \
    l.customer_name, l.customer_email, l.customer_company, l.order_ref, l.notes, l.status, \
    l.created_at, l.updated_at, \
    CASE WHEN l.floating = 1 \
        THEN (SELECT count(*) FROM leases s WHERE s.license_id = l.id) \
        ELSE (SELECT count(*) FROM activations a WHERE a.license_id = l.id AND a.released_at IS NULL) \
    END, \
    l.floating \
    FROM licenses l";

/// A license row together with its row id.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: i64,
    pub license: License,
}

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    let key: String = row.get(1)?;
    let model: String = row.get(3)?;
    let status: String = row.get(15)?;
    let features: String = row.get(9)?;
    let expires_at: Option<String> = row.get(5)?;
    let duration_days: Option<i64> = row.get(6)?;
    let first_activated_at: Option<String> = row.get(7)?;
    let effective = effective_expiry(
        expires_at.as_deref(),
        duration_days,
        first_activated_at.as_deref(),
    );
    Ok(Row {
        id: row.get(0)?,
        license: License {
            key: LicenseKey::parse(&key).map(|k| k.grouped()).unwrap_or(key),
            product: row.get(2)?,
            model: Model::parse(&model).unwrap_or(Model::Permanent),
            floating: row.get(19)?,
            seats: row.get(4)?,
            seats_used: row.get(18)?,
            expires_at,
            duration_days,
            first_activated_at,
            effective_expires_at: effective.map(crate::time::format),
            maintenance_expires_at: row.get(8)?,
            features: serde_json::from_str(&features).unwrap_or_default(),
            customer_name: row.get(10)?,
            customer_email: row.get(11)?,
            customer_company: row.get(12)?,
            order_ref: row.get(13)?,
            notes: row.get(14)?,
            status: Status::parse(&status).unwrap_or(Status::Suspended),
            created_at: row.get(16)?,
            updated_at: row.get(17)?,
        },
    })
}

/// Returns the earlier of the fixed expiry and first activation plus the duration. A duration alone does
/// not expire a license that was never activated.
pub fn effective_expiry(
    expires_at: Option<&str>,
    duration_days: Option<i64>,
    first_activated_at: Option<&str>,
) -> Option<DateTime<Utc>> {
    let fixed = expires_at.and_then(|text| crate::time::parse(text).ok());
    let counted = match (duration_days, first_activated_at) {
        (Some(days), Some(first)) => crate::time::parse(first)
            .ok()
            .map(|at| at + chrono::Duration::days(days)),
        _ => None,
    };
    match (fixed, counted) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Finds a license by key (any accepted input form). A malformed key is reported as not found,
/// exactly like an unknown one, so that keys cannot be enumerated by the difference.
pub fn find(conn: &Connection, key: &str) -> Result<Row, LicenseError> {
    let key = LicenseKey::parse(key).map_err(|_| LicenseError::NotFound)?;
    find_canonical(conn, key.as_str())
}

fn find_canonical(conn: &Connection, canonical: &str) -> Result<Row, LicenseError> {
    // Cached: this lookup runs on every validation, and compiling the statement costs more
    // than running it.
    let sql = format!("{SELECT} WHERE l.license_key = ?1");
    conn.prepare_cached(&sql)?
        .query_row([canonical], from_row)
        .optional()?
        .ok_or(LicenseError::NotFound)
}

fn optional_expiry(
    field: &'static str,
    value: Option<&str>,
) -> Result<Option<String>, LicenseError> {
    match value {
        None | Some("") => Ok(None),
        Some(text) => input::expiry(field, text).map(Some),
    }
}

fn check_features(
    conn: &Connection,
    product: &str,
    wanted: Option<&[String]>,
) -> Result<Vec<String>, LicenseError> {
    let product = products::find(conn, product)?
        .ok_or_else(|| LicenseError::ProductNotFound(product.to_string()))?;
    let Some(wanted) = wanted else {
        return Ok(product.features);
    };
    let wanted = input::features(wanted)?;
    if let Some(unknown) = wanted
        .iter()
        .find(|feature| !product.features.contains(feature))
    {
        return Err(LicenseError::invalid(
            "features",
            format!(
                "{unknown:?} is not a feature of product {:?}; add it to the product first",
                product.code
            ),
        ));
    }
    Ok(wanted)
}

/// Creates a license and returns it.
pub fn create(
    conn: &Connection,
    new: &NewLicense,
    actor: &str,
    now: &str,
) -> Result<License, LicenseError> {
    let product_id = products::id_of(conn, &new.product)?;
    let features = check_features(conn, &new.product, new.features.as_deref())?;
    let seats = input::seats(new.seats)?;
    let expires_at = optional_expiry("expires_at", new.expires_at.as_deref())?;
    let maintenance = optional_expiry(
        "maintenance_expires_at",
        new.maintenance_expires_at.as_deref(),
    )?;
    let duration_days = new.duration_days.map(input::duration_days).transpose()?;
    if new.model == Model::Trial && expires_at.is_none() && duration_days.is_none() {
        return Err(LicenseError::invalid(
            "duration_days",
            "a trial license needs duration_days or expires_at",
        ));
    }
    if new.model == Model::Trial && new.floating {
        return Err(LicenseError::invalid(
            "floating",
            "a trial license cannot be floating, because trial use is counted per computer",
        ));
    }
    let key = match &new.key {
        Some(text) => {
            LicenseKey::parse(text).map_err(|err| LicenseError::invalid("key", format!("{err}")))?
        }
        None => LicenseKey::generate(),
    };
    let exists: Option<i64> = conn
        .query_row(
            "SELECT id FROM licenses WHERE license_key = ?1",
            [key.as_str()],
            |row| row.get(0),
        )
        .optional()?;
    if exists.is_some() {
        return Err(LicenseError::KeyExists(key.grouped()));
    }

    conn.execute(
        "INSERT INTO licenses (license_key, product_id, model, seats, expires_at, duration_days, \
         maintenance_expires_at, features, customer_name, customer_email, customer_company, \
         order_ref, notes, status, created_at, updated_at, floating) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, 'active', ?14, ?14, ?15)",
        params![
            key.as_str(),
            product_id,
            new.model.as_str(),
            seats,
            expires_at,
            duration_days,
            maintenance,
            serde_json::to_string(&features).expect("json"),
            input::text("customer_name", &new.customer_name, 200, false)?,
            input::email(&new.customer_email)?,
            input::text("customer_company", &new.customer_company, 200, false)?,
            input::text("order_ref", &new.order_ref, 200, false)?,
            input::text("notes", &new.notes, 4000, true)?,
            now,
            new.floating,
        ],
    )?;
    audit::record(
        conn,
        now,
        actor,
        "license.create",
        &key.grouped(),
        serde_json::json!({
            "product": new.product,
            "model": new.model,
            "floating": new.floating,
            "seats": seats,
        }),
    )?;
    Ok(find_canonical(conn, key.as_str())?.license)
}

/// Applies a patch to a license and records it in the audit log as `license.update`.
pub fn update(
    conn: &Connection,
    key: &str,
    patch: &LicensePatch,
    actor: &str,
    now: &str,
) -> Result<License, LicenseError> {
    let license = apply_patch(conn, key, patch, now)?;
    let detail = serde_json::to_value(patch).unwrap_or_default();
    audit::record(conn, now, actor, "license.update", &license.key, detail)?;
    Ok(license)
}

/// Applies a patch to a license without an audit entry, so that each caller records its own.
fn apply_patch(
    conn: &Connection,
    key: &str,
    patch: &LicensePatch,
    now: &str,
) -> Result<License, LicenseError> {
    let row = find(conn, key)?;
    let mut license = row.license;
    if let Some(seats) = patch.seats {
        license.seats = input::seats(seats)?;
    }
    if let Some(expires_at) = &patch.expires_at {
        license.expires_at = optional_expiry("expires_at", Some(expires_at))?;
    }
    if let Some(days) = patch.duration_days {
        license.duration_days = if days == 0 {
            None
        } else {
            Some(input::duration_days(days)?)
        };
    }
    if let Some(maintenance) = &patch.maintenance_expires_at {
        license.maintenance_expires_at =
            optional_expiry("maintenance_expires_at", Some(maintenance))?;
    }
    if let Some(features) = &patch.features {
        license.features = check_features(conn, &license.product, Some(features))?;
    }
    if let Some(value) = &patch.customer_name {
        license.customer_name = input::text("customer_name", value, 200, false)?;
    }
    if let Some(value) = &patch.customer_email {
        license.customer_email = input::email(value)?;
    }
    if let Some(value) = &patch.customer_company {
        license.customer_company = input::text("customer_company", value, 200, false)?;
    }
    if let Some(value) = &patch.order_ref {
        license.order_ref = input::text("order_ref", value, 200, false)?;
    }
    if let Some(value) = &patch.notes {
        license.notes = input::text("notes", value, 4000, true)?;
    }
    if license.model == Model::Trial
        && license.expires_at.is_none()
        && license.duration_days.is_none()
    {
        return Err(LicenseError::invalid(
            "duration_days",
            "a trial license needs duration_days or expires_at; to sell the customer a license \
             without an end, create a permanent one",
        ));
    }

    conn.execute(
        "UPDATE licenses SET seats = ?2, expires_at = ?3, duration_days = ?4, \
         maintenance_expires_at = ?5, features = ?6, customer_name = ?7, customer_email = ?8, \
         customer_company = ?9, order_ref = ?10, notes = ?11, updated_at = ?12 WHERE id = ?1",
        params![
            row.id,
            license.seats,
            license.expires_at,
            license.duration_days,
            license.maintenance_expires_at,
            serde_json::to_string(&license.features).expect("json"),
            license.customer_name,
            license.customer_email,
            license.customer_company,
            license.order_ref,
            license.notes,
            now,
        ],
    )?;
    Ok(find_by_id(conn, row.id)?.license)
}

pub(super) fn find_by_id(conn: &Connection, id: i64) -> Result<Row, LicenseError> {
    let sql = format!("{SELECT} WHERE l.id = ?1");
    conn.prepare_cached(&sql)?
        .query_row([id], from_row)
        .optional()?
        .ok_or(LicenseError::NotFound)
}

/// Sets the status (suspend, reinstate, revoke). A revoked license cannot be reinstated.
pub fn set_status(
    conn: &Connection,
    key: &str,
    status: Status,
    actor: &str,
    now: &str,
) -> Result<License, LicenseError> {
    let row = find(conn, key)?;
    if row.license.status == Status::Revoked && status != Status::Revoked {
        return Err(LicenseError::Revoked);
    }
    conn.execute(
        "UPDATE licenses SET status = ?2, updated_at = ?3 WHERE id = ?1",
        (row.id, status.as_str(), now),
    )?;
    let action = match status {
        Status::Active => "license.reinstate",
        Status::Suspended => "license.suspend",
        Status::Revoked => "license.revoke",
    };
    audit::record(
        conn,
        now,
        actor,
        action,
        &row.license.key,
        serde_json::json!({}),
    )?;
    Ok(find_by_id(conn, row.id)?.license)
}

/// Extends a subscription or maintenance plan to new dates.
pub fn renew(
    conn: &Connection,
    key: &str,
    expires_at: Option<&str>,
    maintenance_expires_at: Option<&str>,
    actor: &str,
    now: &str,
) -> Result<License, LicenseError> {
    if expires_at.is_none() && maintenance_expires_at.is_none() {
        return Err(LicenseError::invalid(
            "expires_at",
            "give expires_at, maintenance_expires_at or both",
        ));
    }
    for (field, value) in [
        ("expires_at", expires_at),
        ("maintenance_expires_at", maintenance_expires_at),
    ] {
        let Some(value) = value else { continue };
        let at = input::expiry(field, value).map_err(|_| {
            LicenseError::invalid(
                field,
                format!(
                    "{value:?} is not a renewal date: give a future date (YYYY-MM-DD); to remove \
                     an expiry, update the license with {field} set to \"\""
                ),
            )
        })?;
        if at.as_str() <= now {
            return Err(LicenseError::invalid(
                field,
                format!("{value:?} is not in the future, so it would not renew anything"),
            ));
        }
    }
    // A renewal to a fixed date replaces a limit counted from first activation, which would
    // otherwise keep the license expired (the effective expiry is the earlier of the two).
    let patch = LicensePatch {
        expires_at: expires_at.map(str::to_string),
        duration_days: expires_at.map(|_| 0),
        maintenance_expires_at: maintenance_expires_at.map(str::to_string),
        ..LicensePatch::default()
    };
    let license = apply_patch(conn, key, &patch, now)?;
    audit::record(
        conn,
        now,
        actor,
        "license.renew",
        &license.key,
        serde_json::to_value(&patch).unwrap_or_default(),
    )?;
    Ok(license)
}

/// Deletes a license with its activations.
pub fn delete(conn: &Connection, key: &str, actor: &str, now: &str) -> Result<(), LicenseError> {
    let row = find(conn, key)?;
    conn.execute("DELETE FROM licenses WHERE id = ?1", [row.id])?;
    audit::record(
        conn,
        now,
        actor,
        "license.delete",
        &row.license.key,
        serde_json::json!({}),
    )?;
    Ok(())
}

/// Lists licenses matching a query, newest first.
pub fn list(conn: &Connection, query: &LicenseQuery) -> Result<Vec<License>, LicenseError> {
    let limit = query.limit.unwrap_or(50).clamp(1, 1000);
    let offset = query.offset.unwrap_or(0).max(0);
    let pattern = query.q.as_deref().map(|q| {
        let escaped = q
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        format!("%{escaped}%")
    });
    let key_match = query.q.as_deref().and_then(|q| LicenseKey::parse(q).ok());
    let sql = format!(
        "{SELECT} WHERE (?1 IS NULL OR l.customer_name LIKE ?1 ESCAPE '\\' \
           OR l.customer_email LIKE ?1 ESCAPE '\\' OR l.customer_company LIKE ?1 ESCAPE '\\' \
           OR l.order_ref LIKE ?1 ESCAPE '\\' OR l.license_key = ?2) \
         AND (?3 IS NULL OR l.product_id = (SELECT id FROM products WHERE code = ?3)) AND (?4 IS NULL OR l.status = ?4) \
         ORDER BY l.id DESC LIMIT ?5 OFFSET ?6"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(
        params![
            pattern,
            key_match.as_ref().map(|key| key.as_str().to_string()),
            query.product,
            query.status.map(Status::as_str),
            limit,
            offset
        ],
        |row| from_row(row).map(|row| row.license),
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Returns up to `limit` licenses with a row id above `after_id`, in id order (for export).
pub fn page_by_id(conn: &Connection, after_id: i64, limit: i64) -> Result<Vec<Row>, LicenseError> {
    let sql = format!("{SELECT} WHERE l.id > ?1 ORDER BY l.id LIMIT ?2");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map((after_id, limit), from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Reports why a license cannot be used now, in the order validation checks them.
pub fn check_usable(license: &License, now: DateTime<Utc>) -> Result<(), LicenseError> {
    match license.status {
        Status::Revoked => return Err(LicenseError::Revoked),
        Status::Suspended => return Err(LicenseError::Suspended),
        Status::Active => {}
    }
    if let Some(expiry) = license.effective_expires_at.as_deref()
        && crate::time::parse(expiry)
            .map(|at| at <= now)
            .unwrap_or(false)
    {
        return Err(LicenseError::Expired(expiry.to_string()));
    }
    Ok(())
}
