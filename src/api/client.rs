//! Client endpoints: activate, validate, release and the public keys. Every response, errors
//! included, carries the server time and the client's nonce and is signed over its exact bytes.
//! The lease and license-file endpoints build on the helpers here.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiJson, AppState};
use crate::license::activations::{self, NewActivation};
use crate::license::validate::ValidationCode;
use crate::license::{License, LicenseError, Model, Status, input, validate};
use crate::signing::{ComputerKeyClaims, SIGNATURE_HEADER};

/// Longest nonce accepted, in bytes.
const MAX_NONCE: usize = 128;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivateRequest {
    pub key: String,
    pub computer_id: String,
    #[serde(default)]
    pub computer_name: String,
    pub nonce: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateRequest {
    pub key: String,
    pub computer_id: String,
    pub computer_key: Option<String>,
    pub product: Option<String>,
    pub nonce: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    pub key: String,
    pub computer_id: String,
    pub nonce: Option<String>,
}

/// The license details a client sees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClientLicense {
    pub key: String,
    pub product: String,
    pub model: Model,
    /// Concurrent use through leases; absent in responses of servers without floating licenses.
    #[serde(default)]
    pub floating: bool,
    pub status: Status,
    pub seats: i64,
    pub seats_used: i64,
    pub features: Vec<String>,
    pub expires_at: Option<String>,
    pub maintenance_expires_at: Option<String>,
}

impl From<&License> for ClientLicense {
    fn from(license: &License) -> Self {
        ClientLicense {
            key: license.key.clone(),
            product: license.product.clone(),
            model: license.model,
            floating: license.floating,
            status: license.status,
            seats: license.seats,
            seats_used: license.seats_used,
            features: license.features.clone(),
            expires_at: license.effective_expires_at.clone(),
            maintenance_expires_at: license.maintenance_expires_at.clone(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ActivateResponse {
    /// `ACTIVATED`, or `ALREADY_ACTIVATED` when this computer held an activation already.
    pub result: String,
    pub computer_key: String,
    pub license: ClientLicense,
    pub server_time: String,
    pub nonce: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ValidateResponse {
    pub code: ValidationCode,
    pub valid: bool,
    pub license: Option<ClientLicense>,
    pub server_time: String,
    pub nonce: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReleaseResponse {
    pub result: String,
    pub license: ClientLicense,
    pub server_time: String,
    pub nonce: Option<String>,
}

/// A client-endpoint error: the API error shape plus server time and nonce.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClientError {
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_url: Option<String>,
    pub server_time: String,
    pub nonce: Option<String>,
}

/// Serializes `value`, signs the bytes and returns them as a JSON response.
pub(crate) fn signed(state: &AppState, status: StatusCode, value: &impl Serialize) -> Response {
    let body = serde_json::to_vec(value).expect("response serializes");
    let signature = state.keyring().sign_header(&body);
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        SIGNATURE_HEADER,
        HeaderValue::from_str(&signature).expect("ascii header"),
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// Returns `err` as a signed client error carrying the server time and `nonce`.
pub(crate) fn signed_error(state: &AppState, err: ApiError, nonce: Option<String>) -> Response {
    let body = ClientError {
        code: err.code.to_string(),
        message: err.message,
        active_url: err.active_url,
        server_time: crate::time::format(state.clock.now()),
        nonce,
    };
    signed(state, err.status, &body)
}

pub(crate) fn check_nonce(nonce: &Option<String>) -> Result<(), ApiError> {
    match nonce {
        Some(nonce) if nonce.len() > MAX_NONCE || nonce.chars().any(char::is_control) => {
            Err(ApiError::bad_request(format!(
                "nonce must be at most {MAX_NONCE} bytes with no control characters"
            )))
        }
        _ => Ok(()),
    }
}

/// Checks the fields that validation compares with stored values the way activation checks
/// them, so that a control character gets `INVALID_INPUT` and not a negative validation code.
/// The key is left to the lookup, which returns `NOT_FOUND` for malformed and unknown keys alike.
fn check_validate_fields(request: &ValidateRequest) -> Result<(), ApiError> {
    input::identifier("computer_id", &request.computer_id, 256)?;
    if let Some(product) = &request.product {
        input::text("product", product, 64, false)?;
    }
    if let Some(computer_key) = &request.computer_key {
        input::text("computer_key", computer_key, super::MAX_JSON_BODY, false)?;
    }
    Ok(())
}

pub(crate) fn client_actor(addr: &SocketAddr) -> String {
    format!("client:{}", addr.ip())
}

#[utoipa::path(
    post, path = "/v1/activate", tag = "client",
    request_body = ActivateRequest,
    responses(
        (status = 200, description = "ACTIVATED or ALREADY_ACTIVATED, with a computer key; signed", body = ActivateResponse),
        (status = 403, description = "The license is revoked, suspended or expired; signed", body = ClientError),
        (status = 404, description = "Unknown or malformed key (NOT_FOUND); signed", body = ClientError),
        (status = 409, description = "Every seat is in use (SEATS_EXHAUSTED); signed", body = ClientError),
        (status = 503, description = "This site is standby (SITE_STANDBY, with active_url); signed", body = ClientError),
    )
)]
pub async fn activate(
    State(state): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    request: Result<ApiJson<ActivateRequest>, ApiError>,
) -> Response {
    let ApiJson(request) = match request {
        Ok(request) => request,
        Err(err) => return signed_error(&state, err, None),
    };
    let nonce = request.nonce.clone();
    match activate_inner(&state, &addr, request).await {
        Ok(body) => signed(&state, StatusCode::OK, &body),
        Err(err) => signed_error(&state, err, nonce),
    }
}

async fn activate_inner(
    state: &AppState,
    addr: &SocketAddr,
    request: ActivateRequest,
) -> Result<ActivateResponse, ApiError> {
    check_nonce(&request.nonce)?;
    state.require_active()?;
    let now = state.clock.now();
    let actor = client_actor(addr);
    let client_addr = addr.ip().to_string();
    let policy = state.config.license_policy();
    let (key, computer_id, computer_name) = (
        request.key.clone(),
        request.computer_id.clone(),
        request.computer_name.clone(),
    );
    let activated = state
        .db
        .write(move |conn| {
            let new = NewActivation {
                key: &key,
                computer_id: &computer_id,
                computer_name: &computer_name,
                client_addr: &client_addr,
            };
            activations::activate(conn, &new, &actor, &policy, now)
        })
        .await
        .map_err(|err: LicenseError| state.error(err))?;
    let license = &activated.license;
    let claims = computer_key_claims(license, &request.computer_id, now);
    Ok(ActivateResponse {
        result: activation_result(&activated).into(),
        computer_key: state.keyring().issue_computer_key(claims),
        license: ClientLicense::from(license),
        server_time: crate::time::format(now),
        nonce: request.nonce,
    })
}

/// Returns `ACTIVATED`, or `ALREADY_ACTIVATED` when no new seat was used.
pub(crate) fn activation_result(activated: &activations::Activated) -> &'static str {
    if activated.already_active {
        "ALREADY_ACTIVATED"
    } else {
        "ACTIVATED"
    }
}

/// Builds the claims of a computer key for `computer_id` on `license`, issued at `now`. The
/// keyring fills in its key id when it signs them.
pub(crate) fn computer_key_claims(
    license: &License,
    computer_id: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> ComputerKeyClaims {
    ComputerKeyClaims {
        kid: String::new(),
        license_key: license.key.clone(),
        computer_id: computer_id.to_string(),
        product: license.product.clone(),
        features: license.features.clone(),
        expires_at: license.effective_expires_at.clone(),
        maintenance_expires_at: license.maintenance_expires_at.clone(),
        issued_at: crate::time::format(now),
    }
}

#[utoipa::path(
    post, path = "/v1/validate", tag = "client",
    request_body = ValidateRequest,
    responses(
        (status = 200, description = "Exactly one validation code; signed", body = ValidateResponse),
        (status = 400, description = "An invalid field (INVALID_INPUT); signed", body = ClientError),
    )
)]
pub async fn validate(
    State(state): State<Arc<AppState>>,
    request: Result<ApiJson<ValidateRequest>, ApiError>,
) -> Response {
    let ApiJson(request) = match request {
        Ok(request) => request,
        Err(err) => return signed_error(&state, err, None),
    };
    if let Err(err) = check_nonce(&request.nonce) {
        return signed_error(&state, err, None);
    }
    if let Err(err) = check_validate_fields(&request) {
        return signed_error(&state, err, request.nonce);
    }
    let now = state.clock.now();
    let trusted = state.trusted();
    let result = state
        .db
        .read(|conn| {
            validate::validate(
                conn,
                &request.key,
                &request.computer_id,
                request.product.as_deref(),
                request.computer_key.as_deref(),
                &trusted,
                now,
            )
            .map_err(|err| match err {
                LicenseError::Db(db) => db,
                other => crate::db::DbError::Sqlite(other.to_string()),
            })
        })
        .await;
    let validation = match result {
        Ok(validation) => validation,
        Err(err) => return signed_error(&state, state.error(err), request.nonce),
    };
    if let (Some(license_id), ValidationCode::Valid) = (validation.license_id, validation.code) {
        state
            .last_seen
            .record(license_id, &request.computer_id, crate::time::format(now));
    }
    let body = ValidateResponse {
        code: validation.code,
        valid: validation.code == ValidationCode::Valid,
        license: validation.license.as_ref().map(ClientLicense::from),
        server_time: crate::time::format(now),
        nonce: request.nonce,
    };
    signed(&state, StatusCode::OK, &body)
}

#[utoipa::path(
    post, path = "/v1/release", tag = "client",
    request_body = ReleaseRequest,
    responses(
        (status = 200, description = "The seat is free (RELEASED); signed", body = ReleaseResponse),
        (status = 404, description = "Unknown or malformed key (NOT_FOUND); signed", body = ClientError),
        (status = 409, description = "The computer has no activation (NOT_ACTIVATED); signed", body = ClientError),
        (status = 503, description = "This site is standby (SITE_STANDBY, with active_url); signed", body = ClientError),
    )
)]
pub async fn release(
    State(state): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    request: Result<ApiJson<ReleaseRequest>, ApiError>,
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
        let actor = client_actor(&addr);
        let policy = state.config.license_policy();
        let (key, computer_id) = (request.key.clone(), request.computer_id.clone());
        state
            .db
            .write(move |conn| activations::release(conn, &key, &computer_id, &actor, &policy, now))
            .await
            .map_err(|err: LicenseError| state.error(err))
    }
    .await;
    match result {
        Ok(license) => {
            let body = ReleaseResponse {
                result: "RELEASED".into(),
                license: ClientLicense::from(&license),
                server_time: crate::time::format(state.clock.now()),
                nonce,
            };
            signed(&state, StatusCode::OK, &body)
        }
        Err(err) => signed_error(&state, err, nonce),
    }
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PublicKeysResponse {
    pub signing_kid: String,
    pub keys: Vec<crate::signing::PublicKeyInfo>,
}

#[utoipa::path(
    get, path = "/v1/keys", tag = "client",
    responses(
        (status = 200, description = "The public keys that verify response signatures and computer keys", body = PublicKeysResponse),
    )
)]
pub async fn public_keys(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let keyring = state.keyring();
    axum::Json(PublicKeysResponse {
        signing_kid: keyring.kid().to_string(),
        keys: keyring.public_keys().to_vec(),
    })
}
