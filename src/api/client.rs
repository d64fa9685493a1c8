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
    /// The computer id from the request, which this response is about.
    #[serde(default)]
    pub computer_id: String,
    pub server_time: String,
    pub nonce: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ValidateResponse {
    pub code: ValidationCode,
    pub valid: bool,
    pub license: Option<ClientLicense>,
    /// The computer id from the request, which this response is about.
    #[serde(default)]
    pub computer_id: String,
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
        computer_id: request.computer_id,
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
    let entry = match validation_entry(&state, &request.key, &request.computer_id, now).await {
        Ok(entry) => entry,
        Err(err) => return signed_error(&state, state.error(err), request.nonce),
    };
    let binding = validate::Binding {
        computer_id: &request.computer_id,
        product: request.product.as_deref(),
        computer_key: request.computer_key.as_deref(),
    };
    let code = validate::decide(&entry.facts, &binding, &state.trusted(), now);
    if let (validate::Facts::Found { row, .. }, ValidationCode::Valid) = (&entry.facts, code) {
        state.last_seen.record(row.id, &request.computer_id, now);
    }
    let body = ValidateReply {
        code,
        valid: code == ValidationCode::Valid,
        license: entry.license_json.as_deref(),
        computer_id: &request.computer_id,
        server_time: &crate::time::format(now),
        nonce: request.nonce.as_deref(),
    };
    signed(&state, StatusCode::OK, &body)
}

/// The facts of one validation and the license as clients see it, already in JSON, so that a
/// cached entry serves a validation without reading or serialising the license again.
#[derive(Debug)]
pub struct ValidationEntry {
    facts: validate::Facts,
    license_json: Option<Box<serde_json::value::RawValue>>,
}

/// The [`ValidateResponse`] of a validation with borrowed parts. It serialises to the same JSON.
#[derive(Serialize)]
struct ValidateReply<'a> {
    code: ValidationCode,
    valid: bool,
    license: Option<&'a serde_json::value::RawValue>,
    computer_id: &'a str,
    server_time: &'a str,
    nonce: Option<&'a str>,
}

/// Returns the entry for validating `key` on `computer_id`: from memory while the database has
/// not changed since it was read, else from the database.
async fn validation_entry(
    state: &AppState,
    key: &str,
    computer_id: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Arc<ValidationEntry>, crate::db::DbError> {
    // Read before the database: data read afterwards is at least this new.
    let version = state.db.data_version();
    if let Some(entry) = state.validation_facts.get(version, key, computer_id) {
        return Ok(entry);
    }
    let facts = state
        .db
        .read(|conn| {
            validate::load_facts(conn, key, computer_id, now).map_err(LicenseError::into_db_error)
        })
        .await?;
    let license_json = match &facts {
        validate::Facts::Found { row, .. } => Some(
            serde_json::value::to_raw_value(&ClientLicense::from(&row.license))
                .expect("license serializes"),
        ),
        validate::Facts::NotFound | validate::Facts::ComputerBlocked => None,
    };
    let lasting = facts.is_lasting();
    let entry = Arc::new(ValidationEntry {
        facts,
        license_json,
    });
    if lasting {
        state
            .validation_facts
            .insert(version, key, computer_id, entry.clone());
    }
    Ok(entry)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_reply_serialises_as_validate_response() {
        let license = ClientLicense {
            key: "53TB-9WMY-V1KX-BK4M-RPZV-DFD0-DNVK".into(),
            product: "app \"pro\"".into(),
            model: Model::Subscription,
            floating: false,
            status: Status::Active,
            seats: 3,
            seats_used: 1,
            features: vec!["export".into(), "pro".into()],
            expires_at: Some("2027-01-01T00:00:00Z".into()),
            maintenance_expires_at: None,
        };
        for (license, nonce) in [(Some(license), Some("n-1")), (None, None)] {
            let response = ValidateResponse {
                code: ValidationCode::Valid,
                valid: true,
                license: license.clone(),
                computer_id: "pc-1".into(),
                server_time: "2026-12-04T10:00:00Z".into(),
                nonce: nonce.map(str::to_string),
            };
            let json = license
                .as_ref()
                .map(|license| serde_json::value::to_raw_value(license).unwrap());
            let reply = ValidateReply {
                code: ValidationCode::Valid,
                valid: true,
                license: json.as_deref(),
                computer_id: "pc-1",
                server_time: "2026-12-04T10:00:00Z",
                nonce,
            };
            assert_eq!(
                serde_json::to_string(&reply).unwrap(),
                serde_json::to_string(&response).unwrap()
            );
        }
    }
}
