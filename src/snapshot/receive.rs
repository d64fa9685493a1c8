//! The peer endpoint that receives snapshots.

use std::sync::Arc;

use axum::Router;

use crate::api::AppState;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
}
