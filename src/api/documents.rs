//! Signed documents for offline use: license files (a client endpoint) and offline activation
//! responses (an admin endpoint). [`crate::offline`] describes the formats and verifies them.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;

use super::routes::RouteTable;
use chrono::{DateTime, Utc};
use rusqlite::Connection;
use serde::Deserialize;

use super::admin::{Admin, mutate, query};
use super::client::{
    ClientLicense, activation_result, check_nonce, computer_key_claims, signed, signed_error,
};
use super::{ApiError, ApiJson, AppState};
use crate::license::activations::{self, NewActivation, OFFLINE_ADDR};
use crate::license::{License, LicenseError, blocked, input, store};
use crate::offline::{
    LICENSE_FILE_TYPE, LicenseFile, OFFLINE_ACTIVATION_TYPE, OfflineActivation, OfflineRequest,
};
use crate::signing::SignedDocument;

pub fn routes() -> RouteTable {
    RouteTable::default().add(
        Method::POST,
        "/v1/admin/offline-activations",
        offline_activate,
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LicenseFileRequest {
    pub key: String,
    pub computer_id: String,
    pub nonce: Option<String>,
}

/// Returns a signed license file for a computer that holds a live activation. It works on a
/// standby site too, because it only reads.
#[utoipa::path(
    post, path = "/v1/license-file", tag = "client",
    responses((status = 200, description = "A signed license file for an activated computer"))
)]
pub async fn license_file(
    State(state): State<Arc<AppState>>,
    request: Result<ApiJson<LicenseFileRequest>, ApiError>,
) -> Response {
    let ApiJson(request) = match request {
        Ok(request) => request,
        Err(err) => return signed_error(&state, err, None),
    };
    let nonce = request.nonce.clone();
    let result = async {
        check_nonce(&request.nonce)?;
        input::identifier("computer_id", &request.computer_id, 256)?;
        let now = state.clock.now();
        query(&state, |conn| {
            find_activated(conn, &request.key, &request.computer_id, now)
        })
        .await
    }
    .await;
    let license = match result {
        Ok(license) => license,
        Err(err) => return signed_error(&state, err, nonce),
    };

    let keyring = state.keyring();
    let file = LicenseFile {
        kind: LICENSE_FILE_TYPE.into(),
        kid: keyring.kid().to_string(),
        key: license.key.clone(),
        computer_id: request.computer_id,
        product: license.product.clone(),
        features: license.features.clone(),
        expires_at: license.effective_expires_at.clone(),
        maintenance_expires_at: license.maintenance_expires_at.clone(),
        issued_at: crate::time::format(state.clock.now()),
        nonce,
    };
    let payload = serde_json::to_string(&file).expect("license file serializes");
    let document = keyring.sign_document(payload);
    let mut response = signed(&state, StatusCode::OK, &document);
    response.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"license.json\""),
    );
    response
}

/// Finds a license that `computer_id` may use now: not blocked, usable, not floating, and
/// activated on that computer.
fn find_activated(
    conn: &Connection,
    key: &str,
    computer_id: &str,
    now: DateTime<Utc>,
) -> Result<License, LicenseError> {
    let row = store::find(conn, key)?;
    blocked::check(conn, computer_id)?;
    store::check_usable(&row.license, now)?;
    if row.license.floating {
        return Err(LicenseError::FloatingLicense);
    }
    if !activations::is_activated(conn, row.id, computer_id)? {
        return Err(LicenseError::NotActivated);
    }
    Ok(row.license)
}

/// Activates a license from an offline request file with the rules of an online activation, and
/// returns the signed response file.
#[utoipa::path(
    post, path = "/v1/admin/offline-activations", tag = "admin", security(("admin_token" = [])),
    responses((status = 200, description = "The signed offline activation response file"))
)]
pub async fn offline_activate(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    ApiJson(request): ApiJson<OfflineRequest>,
) -> Result<Json<SignedDocument>, ApiError> {
    check_offline_request(&request)?;
    let now = state.clock.now();
    let policy = state.config.license_policy();
    let job_request = request.clone();
    let activated = mutate(&state, move |conn| {
        let new = NewActivation {
            key: &job_request.key,
            computer_id: &job_request.computer_id,
            computer_name: &job_request.computer_name,
            client_addr: OFFLINE_ADDR,
        };
        activations::activate(conn, &new, &admin.actor, &policy, now)
    })
    .await?;

    let keyring = state.keyring();
    let license = &activated.license;
    let claims = computer_key_claims(license, &request.computer_id, now);
    let payload = OfflineActivation {
        kind: OFFLINE_ACTIVATION_TYPE.into(),
        kid: keyring.kid().to_string(),
        result: activation_result(&activated).into(),
        key: license.key.clone(),
        computer_id: request.computer_id,
        computer_name: request.computer_name,
        nonce: request.nonce,
        computer_key: keyring.issue_computer_key(claims),
        license: ClientLicense::from(license),
        issued_at: crate::time::format(now),
    };
    let payload = serde_json::to_string(&payload).expect("offline activation serializes");
    Ok(Json(keyring.sign_document(payload)))
}

/// Checks the fields of a request file that activation does not check itself.
fn check_offline_request(request: &OfflineRequest) -> Result<(), ApiError> {
    if request.nonce.is_empty() {
        return Err(ApiError::bad_request(
            "nonce must not be empty; write the request file with keyward::offline::write_request",
        ));
    }
    check_nonce(&Some(request.nonce.clone()))?;
    if crate::time::parse(&request.created_at).is_err() {
        return Err(ApiError::bad_request(format!(
            "created_at {:?} is not an RFC 3339 time",
            request.created_at
        )));
    }
    Ok(())
}
