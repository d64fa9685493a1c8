//! Admin endpoint for the audit log.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;

use super::{Admin, query};
use crate::api::{ApiError, AppState};
use crate::license::audit;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct AuditQuery {
    /// Only entries with an id below this one, for paging.
    before: Option<i64>,
    /// Entries to return, 1 to 1000 (default 100).
    limit: Option<i64>,
}

#[utoipa::path(
    get, path = "/v1/admin/audit", tag = "admin", security(("admin_token" = [])),
    params(AuditQuery),
    responses(
        (status = 200, description = "Audit log entries, newest first", body = Vec<audit::AuditEntry>),
        (status = 400, description = "An invalid query parameter (INVALID_INPUT)", body = ApiError),
    )
)]
pub(super) async fn list_audit(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    query_params: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<audit::AuditEntry>>, ApiError> {
    let Query(params) = query_params.map_err(|err| ApiError::bad_request(err.body_text()))?;
    let limit = params.limit.unwrap_or(100).clamp(1, 1000);
    query(&state, |conn| audit::list(conn, params.before, limit))
        .await
        .map(Json)
}
