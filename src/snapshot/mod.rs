//! Snapshots: taking them, shipping them to the DR peer, receiving and swapping them in.

pub mod receive;
pub mod swap;

use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::api::AppState;
use crate::config::Config;
use crate::db::Db;
use crate::role::RoleState;
use crate::time::SharedClock;

/// Takes, stores, ships and applies snapshots.
pub struct SnapshotService {
    pub config: Arc<Config>,
    pub db: Arc<Db>,
    pub role: Arc<RoleState>,
    pub clock: SharedClock,
}

impl SnapshotService {
    pub fn new(
        config: Arc<Config>,
        db: Arc<Db>,
        role: Arc<RoleState>,
        clock: SharedClock,
    ) -> anyhow::Result<SnapshotService> {
        Ok(SnapshotService {
            config,
            db,
            role,
            clock,
        })
    }
}

pub fn spawn_tasks(_state: Arc<AppState>) -> Vec<JoinHandle<()>> {
    Vec::new()
}
