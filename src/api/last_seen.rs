//! Last-contact times, buffered in memory so that a validation never waits for a durable write.
//!
//! A background task flushes the buffer through the writer every `validation.last_seen_flush`
//! (default 5 s). A crash loses at most one interval of last-contact times, never an activation.
//! A standby site drops them: it accepts no writes, and the next snapshot replaces its database.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};

/// Pending `license row id -> computer id -> time` updates.
#[derive(Debug, Default)]
pub struct LastSeenBuffer {
    pending: Mutex<Pending>,
}

#[derive(Debug, Default)]
struct Pending {
    /// Nested so that updating a computer already pending allocates nothing.
    times: HashMap<i64, HashMap<String, DateTime<Utc>>>,
    len: usize,
}

/// Buffers at most this many entries; more are dropped until the next flush.
const MAX_PENDING: usize = 100_000;

impl LastSeenBuffer {
    pub fn record(&self, license_id: i64, computer_id: &str, at: DateTime<Utc>) {
        let mut pending = self.pending.lock().expect("last-seen lock poisoned");
        let pending = &mut *pending;
        if let Some(time) = pending
            .times
            .get_mut(&license_id)
            .and_then(|computers| computers.get_mut(computer_id))
        {
            *time = at;
        } else if pending.len < MAX_PENDING {
            pending
                .times
                .entry(license_id)
                .or_default()
                .insert(computer_id.to_string(), at);
            pending.len += 1;
        }
    }

    /// Takes every pending entry.
    pub fn drain(&self) -> Vec<(i64, String, String)> {
        let mut pending = self.pending.lock().expect("last-seen lock poisoned");
        pending.len = 0;
        pending
            .times
            .drain()
            .flat_map(|(id, computers)| {
                computers
                    .into_iter()
                    .map(move |(computer, at)| (id, computer, crate::time::format(at)))
            })
            .collect()
    }
}
