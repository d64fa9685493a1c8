//! CSV import and export of licenses (`/v1/admin/licenses/import` and `/export`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::admin::Admin;
use super::routes::RouteTable;
use super::{ApiError, AppState};
use crate::license::LicenseError;
use crate::license::csv_io::{self, ImportError};

/// Largest CSV accepted by one import.
pub const MAX_IMPORT_BYTES: usize = 256 * 1024 * 1024;

pub fn routes() -> RouteTable {
    RouteTable::default()
        .add(Method::POST, "/v1/admin/licenses/import", import)
        .add(Method::GET, "/v1/admin/licenses/export", export)
        .map_router(|router| router.layer(DefaultBodyLimit::max(MAX_IMPORT_BYTES)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ImportQuery {
    #[serde(default)]
    create_products: bool,
}

/// Imports licenses from a CSV body (columns in the README), all or nothing.
#[utoipa::path(
    post, path = "/v1/admin/licenses/import", tag = "licenses", security(("admin_token" = [])),
    params(ImportQuery),
    request_body(content = String, content_type = "text/csv", description = "CSV with the header row"),
    responses(
        (status = 200, description = "Number of licenses imported and products created"),
        (status = 422, description = "Invalid CSV or rows (with line numbers); nothing imported", body = ApiError),
    )
)]
pub async fn import(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    query: Result<Query<ImportQuery>, axum::extract::rejection::QueryRejection>,
    body: Bytes,
) -> Response {
    let Ok(Query(query)) = query else {
        return ApiError::bad_request("the only query parameter is create_products=true|false")
            .into_response();
    };
    if let Err(err) = state.require_active() {
        return err.into_response();
    }
    let now = crate::time::format(state.clock.now());
    let result = state
        .db
        .write(move |conn| csv_io::import(conn, &body, query.create_products, &admin.actor, &now))
        .await;
    match result {
        Ok(summary) => (StatusCode::OK, axum::Json(summary)).into_response(),
        Err(ImportError::Rows { count, errors }) => {
            let rows = if count == 1 { "row is" } else { "rows are" };
            let body = serde_json::json!({
                "code": "INVALID_ROWS",
                "message": format!("{count} {rows} invalid; nothing was imported"),
                "errors": errors,
            });
            (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(body)).into_response()
        }
        Err(ImportError::Csv(message)) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "INVALID_CSV", message).into_response()
        }
        Err(ImportError::License(err)) => state.error(err).into_response(),
    }
}

/// Exports every license as CSV in the import format.
#[utoipa::path(
    get, path = "/v1/admin/licenses/export", tag = "licenses", security(("admin_token" = [])),
    responses((status = 200, description = "CSV of every license", content_type = "text/csv", body = String))
)]
pub async fn export(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
) -> Result<Response, ApiError> {
    let csv = state
        .db
        .read_blocking(|conn| {
            let mut out = Vec::new();
            csv_io::export(conn, &mut out).map_err(LicenseError::into_db_error)?;
            Ok(out)
        })
        .await?;
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], csv).into_response())
}
