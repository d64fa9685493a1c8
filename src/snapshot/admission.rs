//! Whether this site may take an incoming snapshot: the fencing and divergence rules.
//!
//! A snapshot overwrites the receiver's database whole, so it is accepted only when it cannot
//! destroy a write that the receiver has and the sender never saw:
//! - an active site takes no snapshot (unless forced);
//! - a snapshot of another database is taken only by a fresh receiver (write sequence 0);
//! - a snapshot at the receiver's exact position is already applied;
//! - a snapshot older than what the receiver holds is stale;
//! - otherwise the receiver's position must be contained in the snapshot's epoch history,
//!   or the two sites have diverged.

use super::manifest::Manifest;
use super::status::AppliedSnapshot;
use super::verify::Rejection;
use crate::role::{Position, Role};

pub struct Request<'a> {
    pub role: Role,
    pub local: &'a Position,
    pub incoming: &'a Position,
    pub manifest: Option<&'a Manifest>,
    pub last_applied: Option<&'a AppliedSnapshot>,
    pub force: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Accept,
    AlreadyCurrent,
    Reject(Rejection),
}

/// Applies the rules in order. `force` skips every rule (an operator's manual restore).
pub fn decide(request: &Request<'_>) -> Decision {
    if request.force {
        return Decision::Accept;
    }
    let (local, incoming) = (request.local, request.incoming);
    if request.role == Role::Active {
        return Decision::Reject(Rejection::new(
            "SITE_ACTIVE",
            "this site is active and takes no snapshots; demote it first, or use `keyward restore --force`",
        ));
    }
    if local.database_id != incoming.database_id {
        if local.write_seq == 0 {
            return Decision::Accept;
        }
        return Decision::Reject(Rejection::new(
            "DIFFERENT_DATABASE",
            format!(
                "snapshot is of database {}, but this site holds database {} with {} writes; \
                 refusing to replace it (use `keyward restore --force` if that is intended)",
                incoming.database_id, local.database_id, local.write_seq
            ),
        ));
    }
    if incoming == local {
        return Decision::AlreadyCurrent;
    }
    if let (Some(manifest), Some(last)) = (request.manifest, request.last_applied) {
        let same_source = last.database_id == incoming.database_id
            && last.source_site_id.as_deref() == Some(manifest.source_site_id.as_str());
        if same_source && last.sequence.is_some_and(|seq| manifest.sequence <= seq) {
            return Decision::Reject(Rejection::new(
                "STALE_SNAPSHOT",
                format!(
                    "snapshot sequence {} from {} is not newer than the last applied ({}); this \
                     site already has newer data from there, so nothing needs doing",
                    manifest.sequence,
                    manifest.source_site_id,
                    last.sequence.unwrap_or_default()
                ),
            ));
        }
    }
    if local.contains(incoming) && incoming.write_seq < local.write_seq {
        return Decision::Reject(Rejection::new(
            "STALE_SNAPSHOT",
            format!(
                "snapshot is at write sequence {}, older than this site's {}; to go back to it \
                 anyway, run `keyward restore --force` on this site",
                incoming.write_seq, local.write_seq
            ),
        ));
    }
    if !incoming.contains(local) {
        return Decision::Reject(Rejection::new(
            "DIVERGED",
            format!(
                "this site holds writes the sender never saw: local epoch {} at write sequence {} \
                 is not in the snapshot's history (sender at epoch {} write sequence {}); compare \
                 with `keyward diff`, then accept it with `keyward restore --force` on this site",
                describe_epoch(local),
                local.write_seq,
                describe_epoch(incoming),
                incoming.write_seq
            ),
        ));
    }
    Decision::Accept
}

fn describe_epoch(position: &Position) -> String {
    position
        .current_epoch()
        .map(|epoch| format!("{} ({})", epoch.epoch, epoch.epoch_id))
        .unwrap_or_else(|| "none".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::role::Epoch;

    fn epoch(number: i64, id: &str, started_seq: i64) -> Epoch {
        Epoch {
            epoch: number,
            epoch_id: id.into(),
            site_id: "site".into(),
            started_seq,
            started_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    fn position(write_seq: i64, epochs: Vec<Epoch>) -> Position {
        Position {
            database_id: "db1".into(),
            write_seq,
            epochs,
        }
    }

    fn decide_standby(local: &Position, incoming: &Position) -> Decision {
        decide(&Request {
            role: Role::Standby,
            local,
            incoming,
            manifest: None,
            last_applied: None,
            force: false,
        })
    }

    fn code(decision: Decision) -> &'static str {
        match decision {
            Decision::Accept => "ACCEPT",
            Decision::AlreadyCurrent => "ALREADY_CURRENT",
            Decision::Reject(rejection) => rejection.code,
        }
    }

    #[test]
    fn newer_snapshot_same_epoch_accepted() {
        let local = position(10, vec![epoch(1, "a", 1)]);
        let incoming = position(20, vec![epoch(1, "a", 1)]);
        assert_eq!(code(decide_standby(&local, &incoming)), "ACCEPT");
    }

    #[test]
    fn older_snapshot_is_stale() {
        let local = position(20, vec![epoch(1, "a", 1)]);
        let incoming = position(10, vec![epoch(1, "a", 1)]);
        assert_eq!(code(decide_standby(&local, &incoming)), "STALE_SNAPSHOT");
    }

    #[test]
    fn same_position_is_already_current() {
        let local = position(20, vec![epoch(1, "a", 1)]);
        assert_eq!(
            code(decide_standby(&local, &local.clone())),
            "ALREADY_CURRENT"
        );
    }

    #[test]
    fn promoted_peer_covering_local_writes_accepted() {
        // Old primary shipped up to 90, then the DR promoted at 91.
        let local = position(90, vec![epoch(1, "a", 1)]);
        let incoming = position(150, vec![epoch(1, "a", 1), epoch(2, "b", 91)]);
        assert_eq!(code(decide_standby(&local, &incoming)), "ACCEPT");
    }

    #[test]
    fn unshipped_local_writes_are_divergence() {
        // Old primary wrote up to 100 but only 90 reached the DR before it promoted.
        let local = position(100, vec![epoch(1, "a", 1)]);
        let incoming = position(150, vec![epoch(1, "a", 1), epoch(2, "b", 91)]);
        assert_eq!(code(decide_standby(&local, &incoming)), "DIVERGED");
    }

    #[test]
    fn both_promoted_from_same_base_is_divergence() {
        let local = position(95, vec![epoch(1, "a", 1), epoch(2, "x", 91)]);
        let incoming = position(150, vec![epoch(1, "a", 1), epoch(2, "b", 91)]);
        assert_eq!(code(decide_standby(&local, &incoming)), "DIVERGED");
    }

    #[test]
    fn other_database_rejected_unless_fresh() {
        let local = position(5, vec![epoch(1, "a", 1)]);
        let mut incoming = position(50, vec![epoch(1, "z", 1)]);
        incoming.database_id = "db2".into();
        assert_eq!(
            code(decide_standby(&local, &incoming)),
            "DIFFERENT_DATABASE"
        );
        let fresh = position(0, vec![]);
        assert_eq!(code(decide_standby(&fresh, &incoming)), "ACCEPT");
    }

    #[test]
    fn active_site_rejects_unless_forced() {
        let local = position(10, vec![epoch(1, "a", 1)]);
        let incoming = position(20, vec![epoch(1, "a", 1)]);
        let mut request = Request {
            role: Role::Active,
            local: &local,
            incoming: &incoming,
            manifest: None,
            last_applied: None,
            force: false,
        };
        assert_eq!(code(decide(&request)), "SITE_ACTIVE");
        request.force = true;
        assert_eq!(code(decide(&request)), "ACCEPT");
    }
}
