//! `GET /metrics`: Prometheus text exposition of request, site and replication metrics.
//!
//! The endpoint needs no credentials, like `/healthz`, so a scraper needs no admin token. It
//! exposes no keys, tokens, secrets, license keys or customer data: only counts, times, sizes,
//! sequence numbers, the role and error codes.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::AppState;
use super::health::PROBE_DB_TIMEOUT;
use crate::metrics::exposition::{self, Exposition};
use crate::metrics::{DatabaseFacts, SiteFacts};
use crate::role::Role;

/// Renders every metric. Position gauges are left out when the database query times out after
/// [`PROBE_DB_TIMEOUT`], and `keyward_database_up` is 0 then.
#[utoipa::path(
    get, path = "/metrics", tag = "operations",
    responses((
        status = 200,
        description = "Metrics in the Prometheus text format 0.0.4",
        body = String,
        content_type = "text/plain; version=0.0.4",
    ))
)]
pub async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let query = state.db.read(|conn| {
        let position = crate::role::read_position(conn)?;
        let database = crate::db::read_state(conn)?;
        Ok(DatabaseFacts {
            position,
            created_at: database.created_at,
        })
    });
    let database = match tokio::time::timeout(PROBE_DB_TIMEOUT, query).await {
        Ok(Ok(facts)) => Some(facts),
        Ok(Err(err)) => {
            tracing::debug!(error = %err, "metrics: database query failed");
            None
        }
        Err(_) => None,
    };
    let role = state.role.role();
    let facts = SiteFacts {
        role,
        writable: role == Role::Active && state.db.is_writable(),
        database,
        replication: state.snapshots.status.get(),
        peer_configured: !state.config.peer.url.is_empty(),
        now: chrono::Utc::now(),
    };

    let mut out = Exposition::default();
    crate::metrics::write_site(&mut out, &facts);
    state.metrics.write(&mut out);
    (
        [(header::CONTENT_TYPE, exposition::CONTENT_TYPE)],
        out.finish(),
    )
}
