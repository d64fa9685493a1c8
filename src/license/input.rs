//! Checks on values that come from clients, admins and import files.

use chrono::{DateTime, Datelike, NaiveDate, Utc};

use super::LicenseError;

/// Checks a free-text field: at most `max_chars` characters, no NUL or other control characters
/// (except newline and tab where `multiline` allows them).
pub fn text(
    field: &'static str,
    value: &str,
    max_chars: usize,
    multiline: bool,
) -> Result<String, LicenseError> {
    let count = value.chars().count();
    if count > max_chars {
        return Err(LicenseError::invalid(
            field,
            format!("{count} characters is longer than the maximum of {max_chars}"),
        ));
    }
    let allowed = |ch: char| !ch.is_control() || (multiline && (ch == '\n' || ch == '\t'));
    if let Some(bad) = value.chars().find(|ch| !allowed(*ch)) {
        return Err(LicenseError::invalid(
            field,
            format!(
                "contains the control character U+{:04X}; remove it",
                bad as u32
            ),
        ));
    }
    Ok(value.to_string())
}

/// Checks a required identifier-like field (computer id, product code): 1 to `max_chars`
/// printable characters with no surrounding whitespace.
pub fn identifier(
    field: &'static str,
    value: &str,
    max_chars: usize,
) -> Result<String, LicenseError> {
    if value.is_empty() {
        return Err(LicenseError::invalid(field, "must not be empty"));
    }
    if value.trim() != value {
        return Err(LicenseError::invalid(
            field,
            "must not start or end with whitespace",
        ));
    }
    text(field, value, max_chars, false)
}

/// Checks a product code: 1 to 64 characters of `A-Z a-z 0-9 . _ -`.
pub fn product_code(value: &str) -> Result<String, LicenseError> {
    name_token("product", value)
}

/// Checks a list of feature names and returns them sorted without duplicates.
pub fn features(values: &[String]) -> Result<Vec<String>, LicenseError> {
    let mut checked = Vec::with_capacity(values.len());
    for value in values {
        checked.push(name_token("features", value)?);
    }
    if checked.len() > 256 {
        return Err(LicenseError::invalid("features", "more than 256 features"));
    }
    checked.sort();
    checked.dedup();
    Ok(checked)
}

fn name_token(field: &'static str, value: &str) -> Result<String, LicenseError> {
    let valid_char = |ch: char| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-');
    if value.is_empty() || value.len() > 64 || !value.chars().all(valid_char) {
        return Err(LicenseError::invalid(
            field,
            format!("{value:?} must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' or '-'"),
        ));
    }
    Ok(value.to_string())
}

/// Checks an email address loosely (one `@` with text on both sides); empty is allowed.
pub fn email(value: &str) -> Result<String, LicenseError> {
    let value = text("customer_email", value, 254, false)?;
    if value.is_empty() {
        return Ok(value);
    }
    match value.split_once('@') {
        Some((local, domain))
            if !local.is_empty() && !domain.is_empty() && !domain.contains('@') =>
        {
            Ok(value)
        }
        _ => Err(LicenseError::invalid(
            "customer_email",
            format!("{value:?} is not an email address"),
        )),
    }
}

/// Parses an expiry given as RFC 3339 (`2027-01-31T00:00:00Z`) or as a date (`2027-01-31`,
/// meaning the end of that day in UTC) and returns the stored form.
pub fn expiry(field: &'static str, value: &str) -> Result<String, LicenseError> {
    let at = parse_expiry(value).ok_or_else(|| {
        LicenseError::invalid(
            field,
            format!("{value:?} is not a date (YYYY-MM-DD) or an RFC 3339 time"),
        )
    })?;
    // Outside these years the stored text is no longer plain RFC 3339 (`-0001-...`,
    // `+10000-...`), so the expiry could not be read back and would be ignored.
    if !(1970..=9999).contains(&at.year()) {
        return Err(LicenseError::invalid(
            field,
            format!(
                "{value:?} is in UTC year {}, outside 1970 to 9999",
                at.year()
            ),
        ));
    }
    Ok(crate::time::format(at))
}

fn parse_expiry(value: &str) -> Option<DateTime<Utc>> {
    if let Ok(at) = crate::time::parse(value) {
        return Some(at);
    }
    let date = NaiveDate::parse_from_str(value, "%Y-%m-%d").ok()?;
    Some(date.and_hms_opt(23, 59, 59)?.and_utc())
}

/// Checks a seat count: 1 to 1,000,000.
pub fn seats(value: i64) -> Result<i64, LicenseError> {
    if !(1..=1_000_000).contains(&value) {
        return Err(LicenseError::invalid(
            "seats",
            format!("{value} is not between 1 and 1000000"),
        ));
    }
    Ok(value)
}

/// Checks a duration in days: 1 to 36,500.
pub fn duration_days(value: i64) -> Result<i64, LicenseError> {
    if !(1..=36_500).contains(&value) {
        return Err(LicenseError::invalid(
            "duration_days",
            format!("{value} is not between 1 and 36500"),
        ));
    }
    Ok(value)
}
