//! Last-contact times, buffered in memory so that a validation never waits for a durable write.
//!
//! A background task flushes the buffer through the writer every `validation.last_seen_flush`
//! (default 5 s). A crash loses at most one interval of last-contact times, never an activation.
//! A standby site drops them: it accepts no writes, and the next snapshot replaces its database.

use std::collections::HashMap;
use std::sync::Mutex;

/// Pending `(license row id, computer id) -> time` updates.
#[derive(Debug, Default)]
pub struct LastSeenBuffer {
    pending: Mutex<HashMap<(i64, String), String>>,
}

/// Buffers at most this many entries; more are dropped until the next flush.
const MAX_PENDING: usize = 100_000;

impl LastSeenBuffer {
    pub fn record(&self, license_id: i64, computer_id: &str, at: String) {
        let mut pending = self.pending.lock().expect("last-seen lock poisoned");
        if pending.len() < MAX_PENDING
            || pending.contains_key(&(license_id, computer_id.to_string()))
        {
            pending.insert((license_id, computer_id.to_string()), at);
        }
    }

    /// Takes every pending entry.
    pub fn drain(&self) -> Vec<(i64, String, String)> {
        let mut pending = self.pending.lock().expect("last-seen lock poisoned");
        pending
            .drain()
            .map(|((id, computer), at)| (id, computer, at))
            .collect()
    }
}
