//! Admin endpoints under `/v1/admin`, behind a bearer admin token.

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::Method;
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::Deserialize;

use super::routes::RouteTable;
use super::{ApiError, ApiJson, ApiPath, AppState};
use crate::license::products::{NewProduct, ProductPatch};
use crate::license::store::{LicensePatch, LicenseQuery, NewLicense};
use crate::license::{LicenseError, Status, audit, products, store, tokens};

/// An authenticated admin request; `actor` is `admin:<token id>`.
pub struct Admin {
    pub actor: String,
}

impl FromRequestParts<Arc<AppState>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(axum::http::header::AUTHORIZATION);
        let token = header
            .and_then(|value| value.to_str().ok())
            .and_then(bearer_token)
            .ok_or_else(ApiError::unauthorized)?
            .to_string();
        let id = state
            .db
            .read(move |conn| {
                tokens::authenticate(conn, &token).map_err(|err| match err {
                    LicenseError::Db(db) => db,
                    other => crate::db::DbError::Sqlite(other.to_string()),
                })
            })
            .await?;
        match id {
            Some(id) => Ok(Admin {
                actor: format!("admin:{id}"),
            }),
            None => Err(ApiError::unauthorized()),
        }
    }
}

/// Returns the token of a `Bearer` credential. The scheme name is case-insensitive (RFC 9110,
/// section 11.1), so `bearer` and `BEARER` work too.
fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("Bearer")
        .then_some(token.trim())
}

pub fn routes() -> RouteTable {
    RouteTable::default()
        .add(Method::GET, "/v1/admin/products", list_products)
        .add(Method::POST, "/v1/admin/products", create_product)
        .add(Method::GET, "/v1/admin/products/{code}", show_product)
        .add(Method::PATCH, "/v1/admin/products/{code}", update_product)
        .add(Method::DELETE, "/v1/admin/products/{code}", delete_product)
        .add(Method::GET, "/v1/admin/licenses", list_licenses)
        .add(Method::POST, "/v1/admin/licenses", create_license)
        .add(Method::GET, "/v1/admin/licenses/{key}", show_license)
        .add(Method::PATCH, "/v1/admin/licenses/{key}", update_license)
        .add(Method::DELETE, "/v1/admin/licenses/{key}", delete_license)
        .add(
            Method::POST,
            "/v1/admin/licenses/{key}/suspend",
            suspend_license,
        )
        .add(
            Method::POST,
            "/v1/admin/licenses/{key}/reinstate",
            reinstate_license,
        )
        .add(
            Method::POST,
            "/v1/admin/licenses/{key}/revoke",
            revoke_license,
        )
        .add(
            Method::POST,
            "/v1/admin/licenses/{key}/renew",
            renew_license,
        )
        .add(
            Method::GET,
            "/v1/admin/licenses/{key}/activations",
            list_activations,
        )
        .add(
            Method::POST,
            "/v1/admin/licenses/{key}/activations/{computer_id}/release",
            force_release,
        )
        .add(Method::GET, "/v1/admin/audit", list_audit)
        .add(Method::GET, "/v1/admin/tokens", list_tokens)
        .add(Method::POST, "/v1/admin/tokens", create_token)
        .add(Method::DELETE, "/v1/admin/tokens/{id}", revoke_token)
}

fn now_text(state: &AppState) -> String {
    crate::time::format(state.clock.now())
}

/// Runs a mutation through the writer after checking that this site is active.
async fn mutate<T: Send + 'static>(
    state: &AppState,
    job: impl FnOnce(&rusqlite::Connection) -> Result<T, LicenseError> + Send + 'static,
) -> Result<T, ApiError> {
    state.require_active()?;
    state.db.write(job).await.map_err(|err| state.error(err))
}

/// Runs a read on a pooled connection.
async fn query<T>(
    state: &AppState,
    job: impl FnOnce(&rusqlite::Connection) -> Result<T, LicenseError>,
) -> Result<T, ApiError> {
    let mut failure = None;
    let result = state
        .db
        .read(|conn| match job(conn) {
            Ok(value) => Ok(Some(value)),
            Err(err) => {
                failure = Some(err);
                Ok(None)
            }
        })
        .await?;
    match (result, failure) {
        (Some(value), _) => Ok(value),
        (None, Some(err)) => Err(state.error(err)),
        (None, None) => Err(ApiError::internal("query", "no result")),
    }
}

#[utoipa::path(
    get, path = "/v1/admin/products", tag = "admin", security(("admin_token" = [])),
    responses(
        (status = 200, description = "Every product", body = Vec<crate::license::Product>),
        (status = 401, description = "Missing or invalid admin token", body = ApiError),
    )
)]
async fn list_products(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
) -> Result<Json<Vec<crate::license::Product>>, ApiError> {
    query(&state, products::list).await.map(Json)
}

#[utoipa::path(
    post, path = "/v1/admin/products", tag = "admin", security(("admin_token" = [])),
    request_body = NewProduct,
    responses(
        (status = 201, description = "The new product", body = crate::license::Product),
        (status = 409, description = "A product with this code exists (PRODUCT_EXISTS)", body = ApiError),
        (status = 422, description = "An invalid field (INVALID_INPUT)", body = ApiError),
        (status = 503, description = "This site is standby (SITE_STANDBY)", body = ApiError),
    )
)]
async fn create_product(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    ApiJson(new): ApiJson<NewProduct>,
) -> Result<(StatusCode, Json<crate::license::Product>), ApiError> {
    let now = now_text(&state);
    let product = mutate(&state, move |conn| {
        products::create(conn, &new, &admin.actor, &now)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(product)))
}

#[utoipa::path(
    get, path = "/v1/admin/products/{code}", tag = "admin", security(("admin_token" = [])),
    params(("code" = String, Path, description = "Product code")),
    responses(
        (status = 200, description = "The product", body = crate::license::Product),
        (status = 404, description = "No such product (PRODUCT_NOT_FOUND)", body = ApiError),
    )
)]
async fn show_product(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    ApiPath(code): ApiPath<String>,
) -> Result<Json<crate::license::Product>, ApiError> {
    query(&state, |conn| {
        products::find(conn, &code)?.ok_or(LicenseError::ProductNotFound(code.clone()))
    })
    .await
    .map(Json)
}

#[utoipa::path(
    patch, path = "/v1/admin/products/{code}", tag = "admin", security(("admin_token" = [])),
    params(("code" = String, Path, description = "Product code")),
    request_body = ProductPatch,
    responses(
        (status = 200, description = "The changed product", body = crate::license::Product),
        (status = 404, description = "No such product (PRODUCT_NOT_FOUND)", body = ApiError),
        (status = 503, description = "This site is standby (SITE_STANDBY)", body = ApiError),
    )
)]
async fn update_product(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    ApiPath(code): ApiPath<String>,
    ApiJson(patch): ApiJson<ProductPatch>,
) -> Result<Json<crate::license::Product>, ApiError> {
    let now = now_text(&state);
    mutate(&state, move |conn| {
        products::update(conn, &code, &patch, &admin.actor, &now)
    })
    .await
    .map(Json)
}

#[utoipa::path(
    delete, path = "/v1/admin/products/{code}", tag = "admin", security(("admin_token" = [])),
    params(("code" = String, Path, description = "Product code")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such product (PRODUCT_NOT_FOUND)", body = ApiError),
        (status = 409, description = "Licenses still use the product (PRODUCT_IN_USE)", body = ApiError),
    )
)]
async fn delete_product(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    ApiPath(code): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let now = now_text(&state);
    mutate(&state, move |conn| {
        products::delete(conn, &code, &admin.actor, &now)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get, path = "/v1/admin/licenses", tag = "admin", security(("admin_token" = [])),
    params(LicenseQuery),
    responses(
        (status = 200, description = "Matching licenses, newest first", body = Vec<crate::license::License>),
        (status = 400, description = "An invalid query parameter (INVALID_INPUT)", body = ApiError),
    )
)]
async fn list_licenses(
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
async fn create_license(
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
async fn show_license(
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
async fn update_license(
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
async fn delete_license(
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
async fn suspend_license(
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
async fn reinstate_license(
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
async fn revoke_license(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    ApiPath(key): ApiPath<String>,
) -> Result<Json<crate::license::License>, ApiError> {
    set_status(state, admin, key, Status::Revoked).await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RenewRequest {
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
async fn renew_license(
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
async fn list_activations(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    ApiPath(key): ApiPath<String>,
) -> Result<Json<Vec<crate::license::Activation>>, ApiError> {
    query(&state, |conn| store::activations(conn, &key))
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
        (status = 404, description = "No such license (NOT_FOUND)", body = ApiError),
        (status = 409, description = "The computer has no activation (NOT_ACTIVATED)", body = ApiError),
    )
)]
async fn force_release(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    ApiPath((key, computer_id)): ApiPath<(String, String)>,
) -> Result<Json<crate::license::License>, ApiError> {
    let now = state.clock.now();
    mutate(&state, move |conn| {
        store::release(conn, &key, &computer_id, &admin.actor, now)
    })
    .await
    .map(Json)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
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
async fn list_audit(
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

#[utoipa::path(
    get, path = "/v1/admin/tokens", tag = "admin", security(("admin_token" = [])),
    responses(
        (status = 200, description = "Admin tokens, without their secrets", body = Vec<tokens::TokenInfo>),
    )
)]
async fn list_tokens(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
) -> Result<Json<Vec<tokens::TokenInfo>>, ApiError> {
    query(&state, tokens::list).await.map(Json)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
struct CreatedToken {
    #[serde(flatten)]
    info: tokens::TokenInfo,
    /// Shown once; only its hash is stored.
    token: String,
}

#[utoipa::path(
    post, path = "/v1/admin/tokens", tag = "admin", security(("admin_token" = [])),
    request_body = NewToken,
    responses(
        (status = 201, description = "The new token; its secret is shown only here", body = CreatedToken),
        (status = 503, description = "This site is standby (SITE_STANDBY)", body = ApiError),
    )
)]
async fn create_token(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    ApiJson(request): ApiJson<NewToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let now = now_text(&state);
    let (info, token) = mutate(&state, move |conn| {
        tokens::create(conn, &request.name, &admin.actor, &now)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(CreatedToken { info, token })))
}

#[utoipa::path(
    delete, path = "/v1/admin/tokens/{id}", tag = "admin", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Token id (the 8 hex digits after kwa_)")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such token (TOKEN_NOT_FOUND)", body = ApiError),
    )
)]
async fn revoke_token(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let now = now_text(&state);
    mutate(&state, move |conn| {
        tokens::revoke(conn, &id, &admin.actor, &now)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
