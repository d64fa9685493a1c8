//! Admin endpoints for licenses and their activations.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::{Admin, mutate, now_text, query};
use crate::api::{ApiError, ApiJson, ApiPath, AppState};
use crate::license::store::{self, LicensePatch, LicenseQuery, NewLicense};
use crate::license::{Status, activations, leases};

#[utoipa::path(
    get, path = "/v1/admin/licenses", tag = "admin", security(("admin_token" = [])),
    params(LicenseQuery),
    responses(
        (status = 200, description = "Matching licenses, newest first", body = Vec<crate::license::License>),
        (status = 400, description = "An invalid query parameter (INVALID_INPUT)", body = ApiError),
    )
)]
pub(super) async fn list_licenses(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    query_params: Result<Query<LicenseQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<crate::license::License>>, ApiError> {
    let Query(params) = query_params.map_err(|err| ApiError::bad_request(err.body_text()))?;
    query(&state, |conn| store::list(conn, &params))
        .await
        .map(Json)
}

#[utoipa::path(
    post, path = "/v1/admin/licenses", tag = "admin", security(("admin_token" = [])),
    request_body = NewLicense,
    responses(
        (status = 201, description = "The new license with its key", body = crate::license::License),
        (status = 404, description = "No such product (PRODUCT_NOT_FOUND)", body = ApiError),
        (status = 409, description = "The supplied key exists (KEY_EXISTS)", body = ApiError),
        (status = 422, description = "An invalid field (INVALID_INPUT)", body = ApiError),
        (status = 503, description = "This site is standby (SITE_STANDBY)", body = ApiError),
    )
)]
pub(super) async fn create_license(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    ApiJson(new): ApiJson<NewLicense>,
) -> Result<(StatusCode, Json<crate::license::License>), ApiError> {
    let now = now_text(&state);
    let license = mutate(&state, move |conn| {
        store::create(conn, &new, &admin.actor, &now)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(license)))
}

#[utoipa::path(
    get, path = "/v1/admin/licenses/{key}", tag = "admin", security(("admin_token" = [])),
    params(("key" = String, Path, description = "License key")),
    responses(
        (status = 200, description = "The license", body = crate::license::License),
        (status = 404, description = "No such license (NOT_FOUND)", body = ApiError),
    )
)]
pub(super) async fn show_license(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    ApiPath(key): ApiPath<String>,
) -> Result<Json<crate::license::License>, ApiError> {
    query(&state, |conn| {
        store::find(conn, &key).map(|row| row.license)
    })
    .await
    .map(Json)
}

#[utoipa::path(
    patch, path = "/v1/admin/licenses/{key}", tag = "admin", security(("admin_token" = [])),
    params(("key" = String, Path, description = "License key")),
    request_body = LicensePatch,
    responses(
        (status = 200, description = "The changed license", body = crate::license::License),
        (status = 404, description = "No such license (NOT_FOUND)", body = ApiError),
        (status = 422, description = "An invalid field (INVALID_INPUT)", body = ApiError),
    )
)]
pub(super) async fn update_license(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    ApiPath(key): ApiPath<String>,
    ApiJson(patch): ApiJson<LicensePatch>,
) -> Result<Json<crate::license::License>, ApiError> {
    let now = now_text(&state);
    mutate(&state, move |conn| {
        store::update(conn, &key, &patch, &admin.actor, &now)
    })
    .await
    .map(Json)
}

#[utoipa::path(
    delete, path = "/v1/admin/licenses/{key}", tag = "admin", security(("admin_token" = [])),
    params(("key" = String, Path, description = "License key")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such license (NOT_FOUND)", body = ApiError),
    )
)]
pub(super) async fn delete_license(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    ApiPath(key): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let now = now_text(&state);
    mutate(&state, move |conn| {
        store::delete(conn, &key, &admin.actor, &now)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_status(
    state: Arc<AppState>,
    admin: Admin,
    key: String,
    status: Status,
) -> Result<Json<crate::license::License>, ApiError> {
    let now = now_text(&state);
    mutate(&state, move |conn| {
        store::set_status(conn, &key, status, &admin.actor, &now)
    })
    .await
    .map(Json)
}

#[utoipa::path(
    post, path = "/v1/admin/licenses/{key}/suspend", tag = "admin", security(("admin_token" = [])),
    params(("key" = String, Path, description = "License key")),
    responses(
        (status = 200, description = "The suspended license", body = crate::license::License),
        (status = 404, description = "No such license (NOT_FOUND)", body = ApiError),
    )
)]
pub(super) async fn suspend_license(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    ApiPath(key): ApiPath<String>,
) -> Result<Json<crate::license::License>, ApiError> {
    set_status(state, admin, key, Status::Suspended).await
}

#[utoipa::path(
    post, path = "/v1/admin/licenses/{key}/reinstate", tag = "admin", security(("admin_token" = [])),
    params(("key" = String, Path, description = "License key")),
    responses(
        (status = 200, description = "The reinstated license", body = crate::license::License),
        (status = 404, description = "No such license (NOT_FOUND)", body = ApiError),
    )
)]
pub(super) async fn reinstate_license(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    ApiPath(key): ApiPath<String>,
) -> Result<Json<crate::license::License>, ApiError> {
    set_status(state, admin, key, Status::Active).await
}

#[utoipa::path(
    post, path = "/v1/admin/licenses/{key}/revoke", tag = "admin", security(("admin_token" = [])),
    params(("key" = String, Path, description = "License key")),
    responses(
        (status = 200, description = "The revoked license", body = crate::license::License),
        (status = 404, description = "No such license (NOT_FOUND)", body = ApiError),
    )
)]
pub(super) async fn revoke_license(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    ApiPath(key): ApiPath<String>,
) -> Result<Json<crate::license::License>, ApiError> {
    set_status(state, admin, key, Status::Revoked).await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RenewRequest {
    expires_at: Option<String>,
    maintenance_expires_at: Option<String>,
}

#[utoipa::path(
    post, path = "/v1/admin/licenses/{key}/renew", tag = "admin", security(("admin_token" = [])),
    params(("key" = String, Path, description = "License key")),
    request_body = RenewRequest,
    responses(
        (status = 200, description = "The renewed license", body = crate::license::License),
        (status = 404, description = "No such license (NOT_FOUND)", body = ApiError),
        (status = 422, description = "An invalid date (INVALID_INPUT)", body = ApiError),
    )
)]
pub(super) async fn renew_license(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    ApiPath(key): ApiPath<String>,
    ApiJson(request): ApiJson<RenewRequest>,
) -> Result<Json<crate::license::License>, ApiError> {
    let now = now_text(&state);
    mutate(&state, move |conn| {
        store::renew(
            conn,
            &key,
            request.expires_at.as_deref(),
            request.maintenance_expires_at.as_deref(),
            &admin.actor,
            &now,
        )
    })
    .await
    .map(Json)
}

#[utoipa::path(
    get, path = "/v1/admin/licenses/{key}/activations", tag = "admin", security(("admin_token" = [])),
    params(("key" = String, Path, description = "License key")),
    responses(
        (status = 200, description = "Activations of the license, released ones included", body = Vec<crate::license::Activation>),
        (status = 404, description = "No such license (NOT_FOUND)", body = ApiError),
    )
)]
pub(super) async fn list_activations(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    ApiPath(key): ApiPath<String>,
) -> Result<Json<Vec<crate::license::Activation>>, ApiError> {
    query(&state, |conn| activations::activations(conn, &key))
        .await
        .map(Json)
}

#[utoipa::path(
    post, path = "/v1/admin/licenses/{key}/activations/{computer_id}/release", tag = "admin",
    security(("admin_token" = [])),
    params(
        ("key" = String, Path, description = "License key"),
        ("computer_id" = String, Path, description = "Computer whose activation to release"),
    ),
    responses(
        (status = 200, description = "The license after the release", body = crate::license::License),
        (status = 404, description = "No such license (NOT_FOUND), or no lease of this computer on a floating license (LEASE_NOT_FOUND)", body = ApiError),
        (status = 409, description = "The computer has no activation (NOT_ACTIVATED)", body = ApiError),
    )
)]
/// Releases a computer's activation, or on a floating license ends its lease.
pub(super) async fn force_release(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    ApiPath((key, computer_id)): ApiPath<(String, String)>,
) -> Result<Json<crate::license::License>, ApiError> {
    let now = state.clock.now();
    let policy = state.config.license_policy();
    mutate(&state, move |conn| {
        activations::release(conn, &key, &computer_id, &admin.actor, &policy, now)
    })
    .await
    .map(Json)
}

#[utoipa::path(
    get, path = "/v1/admin/licenses/{key}/leases", tag = "admin", security(("admin_token" = [])),
    params(("key" = String, Path, description = "License key")),
    responses((status = 200, description = "Leases of a floating license"))
)]
pub(super) async fn list_leases(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    ApiPath(key): ApiPath<String>,
) -> Result<Json<Vec<leases::Lease>>, ApiError> {
    let now = state.clock.now();
    query(&state, |conn| leases::list(conn, &key, now))
        .await
        .map(Json)
}
