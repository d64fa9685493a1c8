//! Liveness (`/healthz`) and readiness (`/readyz`) probes. Neither needs credentials.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::AppState;
use crate::db::DbError;
use crate::role::Role;

/// How long a probe waits for the database before it reports the site not ready. A snapshot
/// swap closes the database for longer than this while it renames files and reopens them.
pub const PROBE_DB_TIMEOUT: Duration = Duration::from_secs(2);

/// The readiness of this site.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Readiness {
    pub ready: bool,
    /// The role this site serves as. It is always known while the server runs: it comes from
    /// `role.json`, or from the configuration on the first start.
    pub role: Role,
    /// Reason the site is not ready; absent when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Returns "ok" while the process serves HTTP.
#[utoipa::path(
    get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is up", body = String, content_type = "text/plain"))
)]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Reports ready when the database completes a query within [`PROBE_DB_TIMEOUT`].
#[utoipa::path(
    get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "The database completes a query and the role is known", body = Readiness),
        (status = 503, description = "Not ready, for example while a snapshot swap keeps the database closed", body = Readiness),
    )
)]
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let probe = state.db.read(|conn| {
        let write_seq: i64 = conn.query_row(
            "SELECT write_seq FROM database_state WHERE id = 1",
            [],
            |row| row.get(0),
        )?;
        Ok(write_seq)
    });
    let reason = match tokio::time::timeout(PROBE_DB_TIMEOUT, probe).await {
        Ok(Ok(_)) => None,
        Ok(Err(DbError::Busy)) | Err(_) => Some(format!(
            "the database query timed out after {} ms; a snapshot swap may be keeping the database closed",
            PROBE_DB_TIMEOUT.as_millis()
        )),
        Ok(Err(DbError::Closed)) => Some("the database is closed".to_string()),
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "readiness query failed");
            Some("the database query failed; see the server log".to_string())
        }
    };
    let readiness = Readiness {
        ready: reason.is_none(),
        role: state.role.role(),
        reason,
    };
    if readiness.ready {
        return (StatusCode::OK, Json(readiness)).into_response();
    }
    tracing::debug!(reason = readiness.reason.as_deref(), "not ready");
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(readiness)).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}
