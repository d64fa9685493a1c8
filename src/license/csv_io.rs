//! License import and export as CSV.
//!
//! Columns, in this order, with a header row:
//! `key,product,model,seats,expires_at,duration_days,maintenance_expires_at,features,customer_name,customer_email,customer_company,order_ref,notes,floating,status`
//!
//! The last two columns may be left out of the header: `status`, or both `floating` and
//! `status`. `floating` is `true` or `false`, and `status` is `active` (also when empty),
//! `suspended` or `revoked`.
//!
//! - `key` is optional on import: empty generates a new key, a value keeps that key.
//! - `model` is `permanent`, `subscription` or `trial`; `seats` defaults to 1 when empty.
//! - Dates are `YYYY-MM-DD` (end of that day, UTC) or RFC 3339; empty means none.
//! - `features` is a `;`-separated list; empty means all of the product's features and `-`
//!   means none.
//! - The time of the first activation is not exported, so a license with `duration_days`
//!   starts its term again at its first activation after an import.
//!
//! An import is all or nothing: every row is checked, and one bad row rolls back the whole
//! file. Each bad row is reported with its line number.

use rusqlite::Connection;
use serde::Serialize;

use super::store::{self, NewLicense};
use super::{LicenseError, Model, Status, products};

/// The header row, in column order.
pub const COLUMNS: [&str; 15] = [
    "key",
    "product",
    "model",
    "seats",
    "expires_at",
    "duration_days",
    "maintenance_expires_at",
    "features",
    "customer_name",
    "customer_email",
    "customer_company",
    "order_ref",
    "notes",
    "floating",
    "status",
];

/// Columns a header must have at least: the optional `floating` and `status` may be left out.
const REQUIRED_COLUMNS: usize = 13;

/// `features` value of a license with no features, which an empty value cannot express.
const NO_FEATURES: &str = "-";

/// Rows reported at most in one failed import; the rest are counted.
const MAX_REPORTED_ERRORS: usize = 100;

/// A bad row: the line number in the file (the header is line 1) and the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    pub line: u64,
    pub message: String,
}

/// Failure of an import.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{count} {} invalid; nothing was imported", if *count == 1 { "row is" } else { "rows are" })]
    Rows { count: usize, errors: Vec<RowError> },
    #[error("invalid CSV: {0}")]
    Csv(String),
    #[error(transparent)]
    License(#[from] LicenseError),
}

impl From<crate::db::DbError> for ImportError {
    fn from(err: crate::db::DbError) -> Self {
        ImportError::License(LicenseError::Db(err))
    }
}

/// Summary of a successful import.
#[derive(Debug, Clone, Serialize)]
pub struct ImportSummary {
    pub imported: usize,
    pub products_created: Vec<String>,
}

fn optional(text: &str) -> Option<String> {
    let trimmed = text.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

fn parse_row(record: &csv::StringRecord, columns: usize) -> Result<(NewLicense, Status), String> {
    if record.len() != columns {
        return Err(format!("has {} columns, expected {columns}", record.len()));
    }
    let field = |index: usize| record.get(index).unwrap_or("");
    let model = Model::parse(field(2).trim()).ok_or_else(|| {
        format!(
            "model {:?} is not permanent, subscription or trial",
            field(2)
        )
    })?;
    let seats = match field(3).trim() {
        "" => 1,
        text => text
            .parse()
            .map_err(|_| format!("seats {text:?} is not a whole number"))?,
    };
    let duration_days = match field(5).trim() {
        "" => None,
        text => Some(
            text.parse()
                .map_err(|_| format!("duration_days {text:?} is not a whole number"))?,
        ),
    };
    let features: Option<Vec<String>> = match field(7).trim() {
        NO_FEATURES => Some(Vec::new()),
        text => {
            let listed: Vec<String> = text
                .split(';')
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .map(str::to_string)
                .collect();
            (!listed.is_empty()).then_some(listed)
        }
    };
    let status = match field(14).trim() {
        "" | "active" => Status::Active,
        "suspended" => Status::Suspended,
        "revoked" => Status::Revoked,
        other => {
            return Err(format!(
                "status {other:?} is not active, suspended or revoked"
            ));
        }
    };
    let license = NewLicense {
        floating: match field(13).trim() {
            "" | "false" => false,
            "true" => true,
            other => return Err(format!("floating {other:?} is not true or false")),
        },
        key: optional(field(0)),
        product: field(1).trim().to_string(),
        model,
        seats,
        expires_at: optional(field(4)),
        duration_days,
        maintenance_expires_at: optional(field(6)),
        features,
        customer_name: field(8).to_string(),
        customer_email: field(9).trim().to_string(),
        customer_company: field(10).to_string(),
        order_ref: field(11).to_string(),
        notes: field(12).to_string(),
    };
    Ok((license, status))
}

/// Imports every row of `data` inside the caller's transaction. With `create_products`,
/// products that do not exist are created with the features their rows name.
pub fn import(
    conn: &Connection,
    data: &[u8],
    create_products: bool,
    actor: &str,
    now: &str,
) -> Result<ImportSummary, ImportError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(data);
    let headers = reader
        .headers()
        .map_err(|err| ImportError::Csv(err.to_string()))?
        .clone();
    let found: Vec<&str> = headers.iter().map(str::trim).collect();
    let columns = found.len();
    if found != COLUMNS[..columns.min(COLUMNS.len())] || columns < REQUIRED_COLUMNS {
        return Err(ImportError::Csv(format!(
            "header must be exactly: {}; found: {}",
            COLUMNS.join(","),
            found.join(",")
        )));
    }

    let mut rows = Vec::new();
    let mut errors = Vec::new();
    // Line numbers are counted from byte offsets: the reader's own count is off by one in
    // files with CRLF line ends.
    let mut counted = LineCounter::default();
    for (index, record) in reader.records().enumerate() {
        let line = record
            .as_ref()
            .ok()
            .and_then(|r| r.position())
            .map(|p| counted.line_at(data, p.byte()))
            .unwrap_or(index as u64 + 2);
        match record
            .map_err(|err| err.to_string())
            .and_then(|record| parse_row(&record, columns))
        {
            Ok(row) => rows.push((line, row)),
            Err(message) => errors.push(RowError { line, message }),
        }
    }

    let mut products_created = Vec::new();
    if create_products {
        create_missing_products(conn, &rows, actor, now, &mut products_created, &mut errors)?;
    }
    let mut imported = 0;
    for (line, (row, status)) in &rows {
        let created = store::create(conn, row, actor, now).and_then(|license| match status {
            Status::Active => Ok(license),
            other => store::set_status(conn, &license.key, *other, actor, now),
        });
        match created {
            Ok(_) => imported += 1,
            Err(LicenseError::Db(err)) => return Err(ImportError::License(LicenseError::Db(err))),
            Err(err) => errors.push(RowError {
                line: *line,
                message: err.to_string(),
            }),
        }
    }
    if !errors.is_empty() {
        errors.sort_by_key(|error| error.line);
        let count = errors.len();
        errors.truncate(MAX_REPORTED_ERRORS);
        return Err(ImportError::Rows { count, errors });
    }
    // Every row is written but the caller's transaction has not committed yet.
    crate::failpoint::hit("import.before_commit");
    Ok(ImportSummary {
        imported,
        products_created,
    })
}

fn create_missing_products(
    conn: &Connection,
    rows: &[(u64, (NewLicense, Status))],
    actor: &str,
    now: &str,
    created: &mut Vec<String>,
    errors: &mut Vec<RowError>,
) -> Result<(), ImportError> {
    let mut wanted: std::collections::BTreeMap<String, (u64, std::collections::BTreeSet<String>)> =
        Default::default();
    for (line, (row, _)) in rows {
        let entry = wanted
            .entry(row.product.clone())
            .or_insert((*line, Default::default()));
        entry.1.extend(row.features.clone().unwrap_or_default());
    }
    for (code, (line, features)) in wanted {
        if products::find(conn, &code)?.is_some() {
            continue;
        }
        let new = products::NewProduct {
            code: code.clone(),
            name: code.clone(),
            version: String::new(),
            features: features.into_iter().collect(),
        };
        match products::create(conn, &new, actor, now) {
            Ok(_) => created.push(code),
            Err(err) => errors.push(RowError {
                line,
                message: err.to_string(),
            }),
        }
    }
    Ok(())
}

/// Counts lines up to byte offsets that only grow, so each record costs only its own bytes.
#[derive(Default)]
struct LineCounter {
    byte: usize,
    line: u64,
}

impl LineCounter {
    /// Returns the 1-based line of the record at byte offset `byte` in `data`. After a CRLF the
    /// reader may place a record at the `\n` that ends the line before, so line ends at the
    /// offset are skipped first.
    fn line_at(&mut self, data: &[u8], byte: u64) -> u64 {
        let mut byte = (byte as usize).min(data.len());
        while data.get(byte).is_some_and(|b| *b == b'\r' || *b == b'\n') {
            byte += 1;
        }
        if byte < self.byte {
            *self = LineCounter::default();
        }
        self.line += data[self.byte..byte]
            .iter()
            .filter(|b| **b == b'\n')
            .count() as u64;
        self.byte = byte;
        self.line + 1
    }
}

/// Writes every license as CSV, in the import format, oldest first.
pub fn export(conn: &Connection, out: &mut impl std::io::Write) -> Result<usize, LicenseError> {
    let mut writer = csv::Writer::from_writer(out);
    let io_error = |err: csv::Error| LicenseError::invalid("export", err.to_string());
    writer.write_record(COLUMNS).map_err(io_error)?;
    let mut count = 0;
    let mut after_id = 0;
    loop {
        let page = store::page_by_id(conn, after_id, 1000)?;
        let Some(last) = page.last() else { break };
        after_id = last.id;
        for license in page.into_iter().map(|row| row.license) {
            let seats = license.seats.to_string();
            let duration = license
                .duration_days
                .map(|d| d.to_string())
                .unwrap_or_default();
            let features = if license.features.is_empty() {
                NO_FEATURES.to_string()
            } else {
                license.features.join(";")
            };
            writer
                .write_record([
                    license.key.as_str(),
                    license.product.as_str(),
                    license.model.as_str(),
                    seats.as_str(),
                    license.expires_at.as_deref().unwrap_or(""),
                    duration.as_str(),
                    license.maintenance_expires_at.as_deref().unwrap_or(""),
                    features.as_str(),
                    license.customer_name.as_str(),
                    license.customer_email.as_str(),
                    license.customer_company.as_str(),
                    license.order_ref.as_str(),
                    license.notes.as_str(),
                    if license.floating { "true" } else { "false" },
                    license.status.as_str(),
                ])
                .map_err(io_error)?;
            count += 1;
        }
    }
    writer
        .flush()
        .map_err(|err| LicenseError::invalid("export", err.to_string()))?;
    Ok(count)
}
