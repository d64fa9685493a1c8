//! Timestamps and the clock.
//!
//! Times are stored as RFC 3339 UTC text with whole seconds (`2026-01-31T12:00:00Z`), so that
//! SQLite compares them correctly as strings.

use chrono::{DateTime, SecondsFormat, Utc};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Source of the current time, injectable so that expiry and lease logic can be tested without
/// sleeping.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that returns the system time shifted by an adjustable offset, for tests.
#[derive(Debug, Default)]
pub struct OffsetClock {
    offset_seconds: AtomicI64,
}

impl OffsetClock {
    pub fn advance(&self, seconds: i64) {
        self.offset_seconds.fetch_add(seconds, Ordering::SeqCst);
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::seconds(self.offset_seconds.load(Ordering::SeqCst))
    }
}

pub type SharedClock = Arc<dyn Clock>;

/// Formats a time the way the database stores it.
pub fn format(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Parses a stored or client-supplied RFC 3339 time.
pub fn parse(text: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    DateTime::parse_from_rfc3339(text).map(|at| at.with_timezone(&Utc))
}
