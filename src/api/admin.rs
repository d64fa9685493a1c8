//! Admin endpoints under `/v1/admin`, behind a bearer admin token.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::{ApiError, ApiJson, ApiPath, AppState};
use crate::license::products::{NewProduct, ProductPatch};
use crate::license::store::{LicensePatch, LicenseQuery, NewLicense};
use crate::license::{LicenseError, Status, activations, audit, leases, products, store, tokens};

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

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/v1/admin/products",
            get(list_products).post(create_product),
        )
        .route(
            "/v1/admin/products/{code}",
            get(show_product)
                .patch(update_product)
                .delete(delete_product),
        )
        .route(
            "/v1/admin/licenses",
            get(list_licenses).post(create_license),
        )
        .route(
            "/v1/admin/licenses/{key}",
            get(show_license)
                .patch(update_license)
                .delete(delete_license),
        )
        .route("/v1/admin/licenses/{key}/suspend", post(suspend_license))
        .route(
            "/v1/admin/licenses/{key}/reinstate",
            post(reinstate_license),
        )
        .route("/v1/admin/licenses/{key}/revoke", post(revoke_license))
        .route("/v1/admin/licenses/{key}/renew", post(renew_license))
        .route(
            "/v1/admin/licenses/{key}/activations",
            get(list_activations),
        )
        .route(
            "/v1/admin/licenses/{key}/activations/{computer_id}/release",
            post(force_release),
        )
        .route("/v1/admin/licenses/{key}/leases", get(list_leases))
        .route("/v1/admin/audit", get(list_audit))
        .route("/v1/admin/tokens", get(list_tokens).post(create_token))
        .route("/v1/admin/tokens/{id}", axum::routing::delete(revoke_token))
}

pub(super) fn now_text(state: &AppState) -> String {
    crate::time::format(state.clock.now())
}

/// Runs a mutation through the writer after checking that this site is active.
pub(super) async fn mutate<T: Send + 'static>(
    state: &AppState,
    job: impl FnOnce(&rusqlite::Connection) -> Result<T, LicenseError> + Send + 'static,
) -> Result<T, ApiError> {
    state.require_active()?;
    state.db.write(job).await.map_err(|err| state.error(err))
}

/// Runs a read on a pooled connection.
pub(super) async fn query<T>(
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

async fn list_products(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
) -> Result<Json<Vec<crate::license::Product>>, ApiError> {
    query(&state, products::list).await.map(Json)
}

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

async fn suspend_license(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    ApiPath(key): ApiPath<String>,
) -> Result<Json<crate::license::License>, ApiError> {
    set_status(state, admin, key, Status::Suspended).await
}

async fn reinstate_license(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    ApiPath(key): ApiPath<String>,
) -> Result<Json<crate::license::License>, ApiError> {
    set_status(state, admin, key, Status::Active).await
}

async fn revoke_license(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    ApiPath(key): ApiPath<String>,
) -> Result<Json<crate::license::License>, ApiError> {
    set_status(state, admin, key, Status::Revoked).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RenewRequest {
    expires_at: Option<String>,
    maintenance_expires_at: Option<String>,
}

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

async fn list_activations(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    ApiPath(key): ApiPath<String>,
) -> Result<Json<Vec<crate::license::Activation>>, ApiError> {
    query(&state, |conn| activations::activations(conn, &key))
        .await
        .map(Json)
}

async fn list_leases(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    ApiPath(key): ApiPath<String>,
) -> Result<Json<Vec<leases::Lease>>, ApiError> {
    let now = state.clock.now();
    query(&state, |conn| leases::list(conn, &key, now))
        .await
        .map(Json)
}

async fn force_release(
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    before: Option<i64>,
    limit: Option<i64>,
}

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

async fn list_tokens(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
) -> Result<Json<Vec<tokens::TokenInfo>>, ApiError> {
    query(&state, tokens::list).await.map(Json)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
}

#[derive(Debug, serde::Serialize)]
struct CreatedToken {
    #[serde(flatten)]
    info: tokens::TokenInfo,
    /// Shown once; only its hash is stored.
    token: String,
}

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
