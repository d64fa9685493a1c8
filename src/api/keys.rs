//! Admin endpoints for the signing keys: list, rotate and retire. After a change the server
//! reloads its keyring, so the next response is signed and verified with the new set.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};

use super::admin::{Admin, mutate, now_text, query};
use super::{ApiError, ApiPath, AppState};
use crate::license::signing_keys::{self, SigningKeyInfo};

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/admin/keys", get(list_keys))
        .route("/v1/admin/keys/rotate", post(rotate_key))
        .route("/v1/admin/keys/{kid}/retire", post(retire_key))
}

async fn list_keys(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
) -> Result<Json<Vec<SigningKeyInfo>>, ApiError> {
    query(&state, signing_keys::list).await.map(Json)
}

async fn rotate_key(
    State(state): State<Arc<AppState>>,
    admin: Admin,
) -> Result<(StatusCode, Json<Vec<SigningKeyInfo>>), ApiError> {
    let now = now_text(&state);
    let kid = mutate(&state, move |conn| {
        signing_keys::rotate(conn, &admin.actor, &now)
    })
    .await?;
    state.reload_keys().await?;
    tracing::info!(key.kid = %kid, "signing key rotated");
    let keys = query(&state, signing_keys::list).await?;
    Ok((StatusCode::CREATED, Json(keys)))
}

async fn retire_key(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    ApiPath(kid): ApiPath<String>,
) -> Result<Json<Vec<SigningKeyInfo>>, ApiError> {
    let now = now_text(&state);
    let retired = kid.clone();
    mutate(&state, move |conn| {
        signing_keys::retire(conn, &retired, &admin.actor, &now)
    })
    .await?;
    state.reload_keys().await?;
    tracing::info!(key.kid = %kid, "signing key retired");
    query(&state, signing_keys::list).await.map(Json)
}
