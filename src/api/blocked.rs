//! Admin endpoints to block, unblock and list computers.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;

use super::admin::{Admin, mutate, now_text, query};
use super::{ApiError, ApiJson, ApiPath, AppState};
use crate::license::blocked::{self, BlockedComputer};

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/v1/admin/blocked-computers",
            get(list_blocked).post(block_computer),
        )
        .route(
            "/v1/admin/blocked-computers/{computer_id}",
            delete(unblock_computer),
        )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BlockRequest {
    computer_id: String,
    #[serde(default)]
    reason: String,
}

async fn list_blocked(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
) -> Result<Json<Vec<BlockedComputer>>, ApiError> {
    query(&state, blocked::list).await.map(Json)
}

async fn block_computer(
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

async fn unblock_computer(
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
