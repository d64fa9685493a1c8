//! Admin endpoints for snapshots, shipping, restore, roles and status.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use serde::Serialize;

use super::admin::Admin;
use super::routes::RouteTable;
use super::{ApiError, AppState};
use crate::role::{Position, Role, RoleRecord};
use crate::snapshot::manifest::Manifest;
use crate::snapshot::peer_health::PeerHealth;
use crate::snapshot::status::ReplicationStatus;

pub fn routes() -> RouteTable {
    RouteTable::default()
        .add(Method::GET, "/v1/admin/snapshots", list_snapshots)
        .add(Method::POST, "/v1/admin/snapshots", take_snapshot)
        .add(Method::POST, "/v1/admin/ship", ship_now)
        .add(
            Method::POST,
            "/v1/admin/restore",
            crate::snapshot::receive::admin_restore,
        )
        .add(Method::POST, "/v1/admin/promote", promote)
        .add(Method::POST, "/v1/admin/demote", demote)
        .add(Method::GET, "/v1/admin/status", status)
}

fn snapshot_error(err: crate::snapshot::SnapshotError) -> ApiError {
    crate::snapshot::receive::error_response(&err)
}

#[utoipa::path(
    post, path = "/v1/admin/snapshots", tag = "replication", security(("admin_token" = [])),
    responses(
        (status = 201, description = "The manifest of the snapshot just taken", body = Manifest),
        (status = 500, description = "The snapshot could not be taken", body = ApiError),
    )
)]
async fn take_snapshot(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
) -> Result<(StatusCode, Json<Manifest>), ApiError> {
    let snapshot = state.snapshots.take_now().await.map_err(snapshot_error)?;
    Ok((StatusCode::CREATED, Json(snapshot.manifest)))
}

#[utoipa::path(
    get, path = "/v1/admin/snapshots", tag = "replication", security(("admin_token" = [])),
    responses(
        (status = 200, description = "Manifests of the stored snapshots, oldest first", body = Vec<Manifest>),
    )
)]
async fn list_snapshots(State(state): State<Arc<AppState>>, _admin: Admin) -> Json<Vec<Manifest>> {
    let dir = state.snapshots.snapshots_dir();
    let list = tokio::task::spawn_blocking(move || crate::snapshot::store::list(&dir))
        .await
        .unwrap_or_default();
    Json(list.into_iter().map(|snapshot| snapshot.manifest).collect())
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ShipResult {
    sequence: u64,
    result: String,
}

#[utoipa::path(
    post, path = "/v1/admin/ship", tag = "replication", security(("admin_token" = [])),
    responses(
        (status = 200, description = "The peer accepted the newest snapshot", body = ShipResult),
        (status = 409, description = "No peer, no snapshot, a standby site, or the peer rejected it", body = ApiError),
        (status = 502, description = "The peer could not be reached (PEER_UNREACHABLE)", body = ApiError),
    )
)]
async fn ship_now(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
) -> Result<Json<ShipResult>, ApiError> {
    use crate::snapshot::ship::ShipError;
    match state.snapshots.ship_newest().await {
        Ok((snapshot, result)) => Ok(Json(ShipResult {
            sequence: snapshot.manifest.sequence,
            result,
        })),
        Err(err) => {
            let status = match &err {
                ShipError::Rejected { .. } => StatusCode::CONFLICT,
                ShipError::Transient(_) => StatusCode::BAD_GATEWAY,
                ShipError::NoPeer | ShipError::NoSnapshot | ShipError::Standby => {
                    StatusCode::CONFLICT
                }
            };
            let code: &'static str = match err.code() {
                "TRANSIENT" => "PEER_UNREACHABLE",
                "NO_PEER" => "NO_PEER",
                "NO_SNAPSHOT" => "NO_SNAPSHOT",
                "SITE_STANDBY" => "SITE_STANDBY",
                _ => "PEER_REJECTED",
            };
            Err(ApiError::new(status, code, err.to_string()))
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RoleResponse {
    role: RoleRecord,
    position: Position,
}

#[utoipa::path(
    post, path = "/v1/admin/promote", tag = "replication", security(("admin_token" = [])),
    responses(
        (status = 200, description = "This site is active; a new epoch started unless it already was", body = RoleResponse),
        (status = 409, description = "The role comes from the redirect file (ROLE_FROM_REDIRECT)", body = ApiError),
    )
)]
async fn promote(
    State(state): State<Arc<AppState>>,
    admin: Admin,
) -> Result<Json<RoleResponse>, ApiError> {
    require_manual_role(&state)?;
    let reason = format!("promoted by {}", admin.actor);
    state
        .role
        .promote(&state.db, &reason)
        .await
        .map_err(|err| ApiError::internal("promote", err))?;
    role_response(&state).await
}

#[utoipa::path(
    post, path = "/v1/admin/demote", tag = "replication", security(("admin_token" = [])),
    responses(
        (status = 200, description = "This site is standby", body = RoleResponse),
        (status = 409, description = "The role comes from the redirect file (ROLE_FROM_REDIRECT)", body = ApiError),
    )
)]
async fn demote(
    State(state): State<Arc<AppState>>,
    admin: Admin,
) -> Result<Json<RoleResponse>, ApiError> {
    require_manual_role(&state)?;
    let reason = format!("demoted by {}", admin.actor);
    let active_url = state.role.current().active_url;
    state
        .role
        .demote(&state.db, &reason, active_url)
        .map_err(|err| ApiError::internal("demote", err))?;
    role_response(&state).await
}

/// Rejects `promote` and `demote` on a site whose role follows the redirect file.
fn require_manual_role(state: &AppState) -> Result<(), ApiError> {
    if state.config.redirect.url.is_empty() {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "ROLE_FROM_REDIRECT",
        "this site takes its role from the redirect file (redirect.url); edit activeUrl there instead",
    ))
}

async fn role_response(state: &AppState) -> Result<Json<RoleResponse>, ApiError> {
    let position = state.db.read(crate::role::read_position).await?;
    Ok(Json(RoleResponse {
        role: state.role.current(),
        position,
    }))
}

/// Everything `keyward status` prints.
#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct StatusResponse {
    pub site_id: String,
    pub role: RoleRecord,
    pub writable: bool,
    pub position: Position,
    pub database_bytes: u64,
    pub licenses: i64,
    pub activations: i64,
    pub replication: ReplicationStatus,
    pub peer_url: String,
    /// The peer's `/healthz`, checked for this response; absent when no peer is configured.
    pub peer: Option<PeerHealth>,
    pub keyward_version: String,
}

#[utoipa::path(
    get, path = "/v1/admin/status", tag = "replication", security(("admin_token" = [])),
    responses(
        (status = 200, description = "Role, position, counts, replication state and peer reachability", body = StatusResponse),
    )
)]
async fn status(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
) -> Result<Json<StatusResponse>, ApiError> {
    let (position, licenses, activations, database_bytes) = state
        .db
        .read(|conn| {
            let position = crate::role::read_position(conn)?;
            let licenses: i64 =
                conn.query_row("SELECT count(*) FROM licenses", [], |r| r.get(0))?;
            let activations: i64 = conn.query_row(
                "SELECT count(*) FROM activations WHERE released_at IS NULL",
                [],
                |r| r.get(0),
            )?;
            let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
            let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
            Ok((position, licenses, activations, (pages * page_size) as u64))
        })
        .await?;
    let peer = match state.config.peer.url.as_str() {
        "" => None,
        url => Some(state.snapshots.shipper.check_peer(url).await),
    };
    Ok(Json(StatusResponse {
        site_id: state.role.site_id().to_string(),
        role: state.role.current(),
        writable: state.role.role() == Role::Active && state.db.is_writable(),
        position,
        database_bytes,
        licenses,
        activations,
        replication: state.snapshots.status.get(),
        peer_url: state.config.peer.url.clone(),
        peer,
        keyward_version: env!("CARGO_PKG_VERSION").to_string(),
    }))
}
