//! Admin endpoints for the signing keys: list, rotate and retire. After a change the server
//! reloads its keyring, so the next response is signed and verified with the new set.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{Method, StatusCode};

use super::routes::RouteTable;

use super::admin::{Admin, mutate, now_text, query};
use super::{ApiError, ApiPath, AppState};
use crate::license::signing_keys::{self, SigningKeyInfo};

pub fn routes() -> RouteTable {
    RouteTable::default()
        .add(Method::GET, "/v1/admin/keys", list_keys)
        .add(Method::POST, "/v1/admin/keys/rotate", rotate_key)
        .add(Method::POST, "/v1/admin/keys/{kid}/retire", retire_key)
}

#[utoipa::path(
    get, path = "/v1/admin/keys", tag = "admin", security(("admin_token" = [])),
    responses((status = 200, description = "Every signing key, current and retired"))
)]
pub async fn list_keys(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
) -> Result<Json<Vec<SigningKeyInfo>>, ApiError> {
    list_now(&state).await.map(Json)
}

/// Lists the keys, marking the one that signs on this server's clock.
async fn list_now(state: &AppState) -> Result<Vec<SigningKeyInfo>, ApiError> {
    let now = now_text(state);
    query(state, move |conn| signing_keys::list(conn, &now)).await
}

/// Query of a rotation.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RotateQuery {
    /// When the new key starts signing (RFC 3339 or YYYY-MM-DD, in the future). It is
    /// published at once, so clients can fetch it before it signs. Absent: it signs now.
    pub activate_at: Option<String>,
}

#[utoipa::path(
    post, path = "/v1/admin/keys/rotate", tag = "admin", security(("admin_token" = [])),
    params(RotateQuery),
    responses(
        (status = 201, description = "Every signing key, with the new one in use or scheduled"),
        (status = 422, description = "activate_at is not a future time, or another key is already scheduled (INVALID_INPUT)", body = ApiError),
    )
)]
pub async fn rotate_key(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    query_params: Result<Query<RotateQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<(StatusCode, Json<Vec<SigningKeyInfo>>), ApiError> {
    let Ok(Query(params)) = query_params else {
        return Err(ApiError::bad_request(
            "the only query parameter is activate_at=TIME",
        ));
    };
    let now = now_text(&state);
    let kid = mutate(&state, move |conn| {
        signing_keys::rotate(conn, &admin.actor, &now, params.activate_at.as_deref())
    })
    .await?;
    state.reload_keys().await?;
    let keyring = state.keyring();
    match keyring.next_activation() {
        Some(at) if keyring.kid() != kid => {
            tracing::info!(key.kid = %kid, signs_from = at, "signing key published, signing later");
        }
        _ => tracing::info!(key.kid = %kid, "signing key rotated"),
    }
    let keys = list_now(&state).await?;
    Ok((StatusCode::CREATED, Json(keys)))
}

#[utoipa::path(
    post, path = "/v1/admin/keys/{kid}/retire", tag = "admin", security(("admin_token" = [])),
    params(("kid" = String, Path, description = "Signing key id")),
    responses(
        (status = 200, description = "Every signing key, with this one retired"),
        (status = 404, description = "No such key (KEY_NOT_FOUND)", body = ApiError),
        (status = 409, description = "The key in use cannot be retired (KEY_IN_USE)", body = ApiError),
    )
)]
pub async fn retire_key(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    ApiPath(kid): ApiPath<String>,
) -> Result<Json<Vec<SigningKeyInfo>>, ApiError> {
    // The key this server signs with is in use, even where the clock rule in the database
    // picks another one.
    if state.keyring().kid() == kid {
        return Err(ApiError::from(crate::license::LicenseError::KeyInUse(kid)));
    }
    let now = now_text(&state);
    let retired = kid.clone();
    mutate(&state, move |conn| {
        signing_keys::retire(conn, &retired, &admin.actor, &now)
    })
    .await?;
    state.reload_keys().await?;
    tracing::info!(key.kid = %kid, "signing key retired");
    list_now(&state).await.map(Json)
}
