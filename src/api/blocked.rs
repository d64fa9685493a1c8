//! Admin endpoints to block, unblock and list computers.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode};

use super::routes::RouteTable;
use serde::Deserialize;

use super::admin::{Admin, mutate, now_text, query};
use super::{ApiError, ApiJson, ApiPath, AppState};
use crate::license::blocked::{self, BlockedComputer};

pub fn routes() -> RouteTable {
    RouteTable::default()
        .add(Method::GET, "/v1/admin/blocked-computers", list_blocked)
        .add(Method::POST, "/v1/admin/blocked-computers", block_computer)
        .add(
            Method::DELETE,
            "/v1/admin/blocked-computers/{computer_id}",
            unblock_computer,
        )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockRequest {
    computer_id: String,
    #[serde(default)]
    reason: String,
}

#[utoipa::path(
    get, path = "/v1/admin/blocked-computers", tag = "admin", security(("admin_token" = [])),
    responses((status = 200, description = "Blocked computer ids"))
)]
pub async fn list_blocked(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
) -> Result<Json<Vec<BlockedComputer>>, ApiError> {
    query(&state, blocked::list).await.map(Json)
}

#[utoipa::path(
    post, path = "/v1/admin/blocked-computers", tag = "admin", security(("admin_token" = [])),
    responses(
        (status = 201, description = "The computer id is blocked; blocking it again replaces the reason"),
        (status = 422, description = "Invalid computer id or reason (INVALID_INPUT)", body = ApiError),
    )
)]
pub async fn block_computer(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    ApiJson(request): ApiJson<BlockRequest>,
) -> Result<(StatusCode, Json<BlockedComputer>), ApiError> {
    let now = now_text(&state);
    let blocked = mutate(&state, move |conn| {
        blocked::block(
            conn,
            &request.computer_id,
            &request.reason,
            &admin.actor,
            &now,
        )
    })
    .await?;
    Ok((StatusCode::CREATED, Json(blocked)))
}

#[utoipa::path(
    delete, path = "/v1/admin/blocked-computers/{computer_id}", tag = "admin", security(("admin_token" = [])),
    params(("computer_id" = String, Path, description = "Computer id")),
    responses(
        (status = 204, description = "The computer id is no longer blocked"),
        (status = 404, description = "The computer id is not blocked (COMPUTER_NOT_BLOCKED)", body = ApiError),
    )
)]
pub async fn unblock_computer(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    ApiPath(computer_id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let now = now_text(&state);
    mutate(&state, move |conn| {
        blocked::unblock(conn, &computer_id, &admin.actor, &now)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
