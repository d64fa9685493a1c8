//! Client endpoints for floating licenses: checkout, heartbeat and checkin of leases. Like the
//! other client endpoints, every response is signed and carries the server time and nonce.
//! Leases are written on the active site only, and a standby site returns `SITE_STANDBY`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::client::{ClientLicense, check_nonce, signed, signed_error};
use super::{ApiError, ApiJson, AppState};
use crate::license::leases::{self, Granted, LeaseResult};
use crate::license::{LicenseError, input};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckoutRequest {
    pub key: String,
    pub computer_id: String,
    pub nonce: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    pub key: String,
    pub lease_id: String,
    /// Lets the server lease a seat again when it does not hold this lease (after a failover).
    pub computer_id: Option<String>,
    pub nonce: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckinRequest {
    pub key: String,
    pub lease_id: String,
    pub nonce: Option<String>,
}

/// The response to a checkout or heartbeat.
#[derive(Debug, Serialize, Deserialize)]
pub struct LeaseResponse {
    pub result: LeaseResult,
    /// The lease to heartbeat and check in from now on. A restored lease may have a new id.
    pub lease_id: String,
    pub expires_at: String,
    pub license: ClientLicense,
    pub server_time: String,
    pub nonce: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CheckinResponse {
    /// Always `CHECKED_IN`.
    pub result: String,
    pub license: ClientLicense,
    pub server_time: String,
    pub nonce: Option<String>,
}

/// Maximum length of a lease id, in characters. Issued ids have 32.
const MAX_LEASE_ID: usize = 64;

#[utoipa::path(
    post, path = "/v1/leases/checkout", tag = "client",
    responses((status = 200, description = "A lease on a seat of a floating license; errors use the client error shape; signed"))
)]
pub async fn checkout(
    State(state): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    request: Result<ApiJson<CheckoutRequest>, ApiError>,
) -> Response {
    let ApiJson(request) = match request {
        Ok(request) => request,
        Err(err) => return signed_error(&state, err, None),
    };
    let nonce = request.nonce.clone();
    let result = async {
        check_nonce(&request.nonce)?;
        state.require_active()?;
        let now = state.clock.now();
        let ttl = state.config.lease_ttl();
        let client_addr = addr.ip().to_string();
        state
            .db
            .write(move |conn| {
                leases::checkout(
                    conn,
                    &request.key,
                    &request.computer_id,
                    &client_addr,
                    ttl,
                    now,
                )
            })
            .await
            .map_err(|err: LicenseError| state.error(err))
    }
    .await;
    respond_granted(&state, result, nonce)
}

#[utoipa::path(
    post, path = "/v1/leases/heartbeat", tag = "client",
    responses((status = 200, description = "The lease with a new expiry (EXTENDED or RESTORED); signed"))
)]
pub async fn heartbeat(
    State(state): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    request: Result<ApiJson<HeartbeatRequest>, ApiError>,
) -> Response {
    let ApiJson(request) = match request {
        Ok(request) => request,
        Err(err) => return signed_error(&state, err, None),
    };
    let nonce = request.nonce.clone();
    let result = async {
        check_nonce(&request.nonce)?;
        input::identifier("lease_id", &request.lease_id, MAX_LEASE_ID)?;
        state.require_active()?;
        let now = state.clock.now();
        let ttl = state.config.lease_ttl();
        let client_addr = addr.ip().to_string();
        state
            .db
            .write(move |conn| {
                leases::heartbeat(
                    conn,
                    &request.key,
                    &request.lease_id,
                    request.computer_id.as_deref(),
                    &client_addr,
                    ttl,
                    now,
                )
            })
            .await
            .map_err(|err: LicenseError| state.error(err))
    }
    .await;
    respond_granted(&state, result, nonce)
}

#[utoipa::path(
    post, path = "/v1/leases/checkin", tag = "client",
    responses((status = 200, description = "The seat is free again; signed"))
)]
pub async fn checkin(
    State(state): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    request: Result<ApiJson<CheckinRequest>, ApiError>,
) -> Response {
    let ApiJson(request) = match request {
        Ok(request) => request,
        Err(err) => return signed_error(&state, err, None),
    };
    let nonce = request.nonce.clone();
    let result = async {
        check_nonce(&request.nonce)?;
        input::identifier("lease_id", &request.lease_id, MAX_LEASE_ID)?;
        state.require_active()?;
        let now = state.clock.now();
        let client_addr = addr.ip().to_string();
        state
            .db
            .write(move |conn| {
                leases::checkin(conn, &request.key, &request.lease_id, &client_addr, now)
            })
            .await
            .map_err(|err: LicenseError| state.error(err))
    }
    .await;
    match result {
        Ok(license) => {
            let body = CheckinResponse {
                result: "CHECKED_IN".into(),
                license: ClientLicense::from(&license),
                server_time: crate::time::format(state.clock.now()),
                nonce,
            };
            signed(&state, StatusCode::OK, &body)
        }
        Err(err) => signed_error(&state, err, nonce),
    }
}

fn respond_granted(
    state: &AppState,
    result: Result<Granted, ApiError>,
    nonce: Option<String>,
) -> Response {
    match result {
        Ok(granted) => {
            let body = LeaseResponse {
                result: granted.result,
                lease_id: granted.lease.lease_id,
                expires_at: granted.lease.expires_at,
                license: ClientLicense::from(&granted.license),
                server_time: crate::time::format(state.clock.now()),
                nonce,
            };
            signed(state, StatusCode::OK, &body)
        }
        Err(err) => signed_error(state, err, nonce),
    }
}
