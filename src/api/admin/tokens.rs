//! Admin endpoints for admin tokens.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use super::{Admin, mutate, now_text, query};
use crate::api::{ApiError, ApiJson, ApiPath, AppState};
use crate::license::tokens;

#[utoipa::path(
    get, path = "/v1/admin/tokens", tag = "admin", security(("admin_token" = [])),
    responses(
        (status = 200, description = "Admin tokens, without their secrets", body = Vec<tokens::TokenInfo>),
    )
)]
pub(super) async fn list_tokens(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
) -> Result<Json<Vec<tokens::TokenInfo>>, ApiError> {
    query(&state, tokens::list).await.map(Json)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewToken {
    name: String,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(super) struct CreatedToken {
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
pub(super) async fn create_token(
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
pub(super) async fn revoke_token(
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
