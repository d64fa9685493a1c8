//! Metrics in the Prometheus text format, served at `GET /metrics`.
//!
//! Request metrics are counted as requests finish ([`http`]); the site and replication gauges
//! are computed on each scrape from the role, the database position and the replication status.
//! A gauge whose value is unknown (no snapshot yet, database query timed out) is left out rather
//! than reported as zero.

pub mod exposition;
pub mod http;

use chrono::{DateTime, Utc};

use crate::role::{Position, Role};
use crate::snapshot::status::ReplicationStatus;
use exposition::{Exposition, Kind};

/// Database facts read for one scrape.
#[derive(Debug, Clone)]
pub struct DatabaseFacts {
    pub position: Position,
    /// When this database was created (RFC 3339).
    pub created_at: String,
}

/// Everything the site and replication gauges are computed from.
#[derive(Debug, Clone)]
pub struct SiteFacts {
    pub role: Role,
    pub writable: bool,
    /// `None` when the database query failed or timed out.
    pub database: Option<DatabaseFacts>,
    pub replication: ReplicationStatus,
    pub peer_configured: bool,
    pub now: DateTime<Utc>,
}

fn unix_seconds(text: &str) -> Option<f64> {
    crate::time::parse(text)
        .ok()
        .map(|at| at.timestamp_millis() as f64 / 1000.0)
}

fn age_seconds(now: DateTime<Utc>, text: &str) -> Option<f64> {
    let at = crate::time::parse(text).ok()?;
    Some(((now - at).num_milliseconds() as f64 / 1000.0).max(0.0))
}

fn flag(value: bool) -> f64 {
    if value { 1.0 } else { 0.0 }
}

/// Writes the role, position, snapshot, shipping, lag, rejection and divergence metrics.
pub fn write_site(out: &mut Exposition, facts: &SiteFacts) {
    out.family(
        "keyward_build_info",
        Kind::Gauge,
        "Always 1; the version label names the running keyward version.",
    );
    out.sample(
        "keyward_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );

    out.family(
        "keyward_role",
        Kind::Gauge,
        "1 for the role this site has now, 0 for the other.",
    );
    for role in [Role::Active, Role::Standby] {
        out.sample(
            "keyward_role",
            &[("role", role.as_str())],
            flag(facts.role == role),
        );
    }
    out.single(
        "keyward_writable",
        Kind::Gauge,
        "1 when this site accepts client and admin writes.",
        flag(facts.writable),
    );
    out.single(
        "keyward_database_up",
        Kind::Gauge,
        "1 when the database completed the scrape's query in time.",
        flag(facts.database.is_some()),
    );
    if let Some(database) = &facts.database {
        write_position(out, &database.position);
    }

    write_snapshots(out, facts);
    write_shipping(out, &facts.replication);
    write_lag(out, facts);
    write_receiving(out, &facts.replication);
}

fn write_position(out: &mut Exposition, position: &Position) {
    let epoch = position.current_epoch().map_or(0, |epoch| epoch.epoch);
    out.single(
        "keyward_epoch",
        Kind::Gauge,
        "Number of the current epoch of this database (0 before the first promotion).",
        epoch as f64,
    );
    out.single(
        "keyward_write_seq",
        Kind::Gauge,
        "Write sequence of this database: one more for every commit that changed it.",
        position.write_seq as f64,
    );
}

fn write_snapshots(out: &mut Exposition, facts: &SiteFacts) {
    let status = &facts.replication;
    if let Some(last) = &status.last_snapshot {
        if let Some(at) = unix_seconds(&last.created_at) {
            out.single(
                "keyward_last_snapshot_timestamp_seconds",
                Kind::Gauge,
                "Unix time at which the newest local snapshot was taken.",
                at,
            );
        }
        out.single(
            "keyward_last_snapshot_sequence",
            Kind::Gauge,
            "Sequence number of the newest local snapshot.",
            last.sequence as f64,
        );
        out.single(
            "keyward_last_snapshot_size_bytes",
            Kind::Gauge,
            "Size of the newest local snapshot file in bytes.",
            last.size as f64,
        );
    }
    // The same rule as `keyward status --max-snapshot-age`: an active site counts from the
    // snapshot it took, a standby site from the snapshot it applied.
    let newest = match facts.role {
        Role::Active => status.last_snapshot.as_ref().map(|s| s.created_at.as_str()),
        Role::Standby => status.last_applied.as_ref().map(|a| a.at.as_str()),
    };
    if let Some(age) = newest.and_then(|at| age_seconds(facts.now, at)) {
        out.single(
            "keyward_snapshot_age_seconds",
            Kind::Gauge,
            "Seconds since the newest snapshot was taken (active site) or applied (standby site).",
            age,
        );
    }
}

fn write_shipping(out: &mut Exposition, status: &ReplicationStatus) {
    if let Some(at) = status.last_shipped_at.as_deref().and_then(unix_seconds) {
        out.single(
            "keyward_last_ship_success_timestamp_seconds",
            Kind::Gauge,
            "Unix time of the last snapshot the peer accepted.",
            at,
        );
    }
    if let Some(shipped) = &status.last_shipped {
        out.single(
            "keyward_last_shipped_sequence",
            Kind::Gauge,
            "Sequence number of the last snapshot the peer accepted.",
            shipped.sequence as f64,
        );
    }
    if let Some(at) = status
        .last_ship_failure
        .as_ref()
        .and_then(|failure| unix_seconds(&failure.at))
    {
        out.single(
            "keyward_last_ship_failure_timestamp_seconds",
            Kind::Gauge,
            "Unix time of the last failed shipment.",
            at,
        );
    }
    out.single(
        "keyward_ship_failure_streak",
        Kind::Gauge,
        "Shipments that failed since the last success.",
        status.ship_failure_streak as f64,
    );
}

/// Replication lag of an active site with a peer: writes not yet in a shipped snapshot, and an
/// estimate of how long the oldest of them has waited.
fn write_lag(out: &mut Exposition, facts: &SiteFacts) {
    if facts.role != Role::Active || !facts.peer_configured {
        return;
    }
    let Some(database) = &facts.database else {
        return;
    };
    let shipped = facts.replication.last_shipped.as_ref();
    let shipped_seq = shipped.map_or(0, |s| s.write_seq);
    let lag_writes = (database.position.write_seq - shipped_seq).max(0);
    out.single(
        "keyward_replication_lag_writes",
        Kind::Gauge,
        "Write sequences committed here but not in the last snapshot the peer accepted.",
        lag_writes as f64,
    );
    // Every unshipped write happened after the last shipped snapshot was taken (or after the
    // database was created, when nothing was shipped), so that time bounds the oldest one's age.
    let lag_seconds = if lag_writes == 0 {
        Some(0.0)
    } else {
        let since = shipped.map_or(database.created_at.as_str(), |s| s.created_at.as_str());
        age_seconds(facts.now, since)
    };
    if let Some(lag_seconds) = lag_seconds {
        out.single(
            "keyward_replication_lag_seconds",
            Kind::Gauge,
            "Upper bound on the age of the oldest write the peer does not have: seconds since \
             the last shipped snapshot was taken, or 0 when nothing is unshipped.",
            lag_seconds,
        );
    }
}

fn write_receiving(out: &mut Exposition, status: &ReplicationStatus) {
    if let Some(applied) = &status.last_applied {
        if let Some(at) = unix_seconds(&applied.at) {
            out.single(
                "keyward_last_applied_timestamp_seconds",
                Kind::Gauge,
                "Unix time at which this site last swapped in a received or restored snapshot.",
                at,
            );
        }
        out.single(
            "keyward_last_applied_write_seq",
            Kind::Gauge,
            "Write sequence of the last snapshot this site swapped in.",
            applied.write_seq as f64,
        );
    }

    let name = "keyward_snapshot_rejections_total";
    out.family(
        name,
        Kind::Counter,
        "Snapshot uploads and restores that were rejected (secret, size, verification or admission), by error code.",
    );
    for (code, count) in &status.rejections_by_code {
        out.sample(name, &[("code", code)], *count as f64);
    }
    out.single(
        "keyward_divergence",
        Kind::Gauge,
        "1 while the last incoming snapshot was rejected as diverged and none was applied since.",
        flag(status.divergence.is_some()),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::status::SnapshotSummary;

    fn facts(write_seq: i64, shipped_write_seq: Option<i64>) -> SiteFacts {
        let replication = ReplicationStatus {
            last_shipped: shipped_write_seq.map(|write_seq| SnapshotSummary {
                sequence: 4,
                created_at: "2026-01-01T00:00:00Z".into(),
                size: 4096,
                write_seq,
            }),
            ..ReplicationStatus::default()
        };
        SiteFacts {
            role: Role::Active,
            writable: true,
            database: Some(DatabaseFacts {
                position: Position {
                    database_id: "db".into(),
                    write_seq,
                    epochs: Vec::new(),
                },
                created_at: "2025-12-31T00:00:00Z".into(),
            }),
            replication,
            peer_configured: true,
            now: crate::time::parse("2026-01-01T00:01:40Z").unwrap(),
        }
    }

    fn render(facts: &SiteFacts) -> String {
        let mut out = Exposition::default();
        write_site(&mut out, facts);
        out.finish()
    }

    #[test]
    fn lag_counts_from_last_shipped_snapshot() {
        let text = render(&facts(12, Some(9)));
        assert!(
            text.contains("keyward_replication_lag_writes 3\n"),
            "{text}"
        );
        assert!(
            text.contains("keyward_replication_lag_seconds 100\n"),
            "{text}"
        );
    }

    #[test]
    fn lag_is_zero_when_everything_shipped() {
        let text = render(&facts(9, Some(9)));
        assert!(
            text.contains("keyward_replication_lag_writes 0\n"),
            "{text}"
        );
        assert!(
            text.contains("keyward_replication_lag_seconds 0\n"),
            "{text}"
        );
    }

    #[test]
    fn lag_without_shipment_counts_from_database_creation() {
        let text = render(&facts(5, None));
        assert!(
            text.contains("keyward_replication_lag_writes 5\n"),
            "{text}"
        );
        assert!(
            text.contains("keyward_replication_lag_seconds 86500\n"),
            "{text}"
        );
    }

    #[test]
    fn standby_reports_no_lag() {
        let mut standby = facts(5, None);
        standby.role = Role::Standby;
        let text = render(&standby);
        assert!(!text.contains("keyward_replication_lag"), "{text}");
        assert!(
            text.contains("keyward_role{role=\"standby\"} 1\n"),
            "{text}"
        );
    }
}
