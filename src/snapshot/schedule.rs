//! The snapshot scheduler. The next run is counted from the newest snapshot's creation time,
//! not from process start, so a process restarted more often than the interval still
//! snapshots on time. Only the active site takes scheduled snapshots, and only when the
//! database changed since the newest one.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::SnapshotService;
use crate::role::Role;

/// When the next snapshot is due, given the newest snapshot's time.
pub fn next_due(
    last: Option<DateTime<Utc>>,
    every: Option<Duration>,
    daily_at: Option<(u32, u32)>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let Some(last) = last else {
        return (every.is_some() || daily_at.is_some()).then_some(now);
    };
    let by_interval = every
        .map(|every| last + chrono::Duration::from_std(every).unwrap_or(chrono::Duration::MAX));
    let by_daily = daily_at.and_then(|(hour, minute)| {
        let same_day = last.date_naive().and_hms_opt(hour, minute, 0)?.and_utc();
        Some(if same_day > last {
            same_day
        } else {
            same_day + chrono::Duration::days(1)
        })
    });
    match (by_interval, by_daily) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

pub async fn run(service: Arc<SnapshotService>) {
    let every = service.config.snapshot_every().ok().flatten();
    let daily_at = service.config.snapshot_daily_at().ok().flatten();
    if every.is_none() && daily_at.is_none() {
        return;
    }
    let mut unchanged_since: Option<DateTime<Utc>> = None;
    loop {
        let now = service.clock.now();
        let newest = service.newest();
        let last = newest
            .as_ref()
            .and_then(|snapshot| crate::time::parse(&snapshot.manifest.created_at).ok())
            .max(unchanged_since);
        let due = next_due(last, every, daily_at, now).unwrap_or(now + chrono::Duration::hours(1));
        if due > now {
            let wait = (due - now)
                .to_std()
                .unwrap_or_default()
                .min(Duration::from_secs(60));
            tokio::time::sleep(wait).await;
            continue;
        }
        if service.role.role() != Role::Active {
            unchanged_since = Some(now);
            continue;
        }
        let write_seq = match service.db.state().await {
            Ok(state) => state.write_seq,
            Err(err) => {
                tracing::warn!(error = %err, "reading the write sequence for the scheduler failed");
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
        };
        let changed = newest
            .as_ref()
            .is_none_or(|s| s.manifest.position.write_seq != write_seq);
        if !changed {
            tracing::debug!(
                write_seq,
                "database unchanged since the newest snapshot; skipping"
            );
            unchanged_since = Some(now);
            continue;
        }
        unchanged_since = None;
        if let Err(err) = service.take_now().await {
            tracing::error!(error = %err, "scheduled snapshot failed; retrying in 60 s");
            unchanged_since = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        crate::time::parse(text).unwrap()
    }

    #[test]
    fn first_run_is_due_now() {
        let now = at("2026-01-01T10:00:00Z");
        assert_eq!(
            next_due(None, Some(Duration::from_secs(900)), None, now),
            Some(now)
        );
        assert_eq!(next_due(None, None, None, now), None);
    }

    #[test]
    fn interval_counts_from_last_snapshot() {
        let last = at("2026-01-01T10:00:00Z");
        let now = at("2026-01-01T10:05:00Z");
        let due = next_due(Some(last), Some(Duration::from_secs(900)), None, now);
        assert_eq!(due, Some(at("2026-01-01T10:15:00Z")));
    }

    #[test]
    fn restart_after_interval_is_due_immediately() {
        let last = at("2026-01-01T10:00:00Z");
        let now = at("2026-01-01T11:00:00Z");
        let due = next_due(Some(last), Some(Duration::from_secs(900)), None, now).unwrap();
        assert!(due <= now);
    }

    #[test]
    fn daily_time_is_next_occurrence_after_last() {
        let before = at("2026-01-01T01:00:00Z");
        assert_eq!(
            next_due(Some(before), None, Some((2, 30)), before),
            Some(at("2026-01-01T02:30:00Z"))
        );
        let after = at("2026-01-01T03:00:00Z");
        assert_eq!(
            next_due(Some(after), None, Some((2, 30)), after),
            Some(at("2026-01-02T02:30:00Z"))
        );
    }
}
