//! Receiving snapshots: the peer upload endpoint and the admin restore endpoint.
//!
//! The peer endpoint checks the peer secret and the manifest before reading any of the body,
//! streams the body (zstd-compressed or plain) into a temp file in `incoming/` with a size cap,
//! then verifies and applies it. The live path is never written to directly.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_compression::tokio::bufread::ZstdDecoder;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use futures_util::TryStreamExt;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};

use super::manifest::Manifest;
use super::{SnapshotError, SnapshotService};
use crate::api::routes::RouteTable;
use crate::api::{ApiError, AppState};

/// Header carrying the base64url (no padding) JSON manifest of an upload.
pub const MANIFEST_HEADER: &str = "keyward-manifest";

pub fn routes() -> RouteTable {
    RouteTable::default().add(Method::POST, "/v1/peer/snapshots", receive_from_peer)
}

/// Maps a snapshot error to an HTTP response with the API error shape.
pub fn error_response(err: &SnapshotError) -> ApiError {
    let status = match err {
        SnapshotError::Rejected(rejection) => match rejection.code {
            "UNAUTHORIZED" => StatusCode::UNAUTHORIZED,
            "PEER_DISABLED" => StatusCode::FORBIDDEN,
            "TOO_LARGE" => StatusCode::PAYLOAD_TOO_LARGE,
            "SITE_ACTIVE" | "DIVERGED" | "DIFFERENT_DATABASE" | "STALE_SNAPSHOT" | "SAME_SITE" => {
                StatusCode::CONFLICT
            }
            "INVALID_MANIFEST" | "INVALID_ENCODING" => StatusCode::BAD_REQUEST,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        },
        SnapshotError::InProgress | SnapshotError::Busy => StatusCode::SERVICE_UNAVAILABLE,
        _ if err.code() == "INSUFFICIENT_STORAGE" => {
            let message = format!(
                "{err}; free space in the data directory (snapshot.keep_last and \
                 receive.keep_pre_restore set how many copies it keeps)"
            );
            return ApiError::new(StatusCode::INSUFFICIENT_STORAGE, err.code(), message);
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    // The code has its own field, so a rejection's message does not repeat it.
    let message = match err {
        SnapshotError::Rejected(rejection) => rejection.message.clone(),
        other => other.to_string(),
    };
    ApiError::new(status, err.code(), message)
}

/// Compares the presented secret with the configured one in constant time.
pub fn secret_matches(presented: &str, configured: &str) -> bool {
    let presented = Sha256::digest(presented.as_bytes());
    let configured = Sha256::digest(configured.as_bytes());
    presented.ct_eq(&configured).into()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
}

fn parse_manifest_header(headers: &HeaderMap) -> Result<Option<Manifest>, SnapshotError> {
    let Some(value) = headers.get(MANIFEST_HEADER) else {
        return Ok(None);
    };
    let bad = |detail: String| SnapshotError::rejected("INVALID_MANIFEST", detail);
    let text = value
        .to_str()
        .map_err(|_| bad("manifest header is not ASCII".into()))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|err| bad(format!("manifest header is not base64url: {err}")))?;
    Manifest::parse(&bytes)
        .map(Some)
        .map_err(|err| bad(err.to_string()))
}

#[utoipa::path(
    post, path = "/v1/peer/snapshots", tag = "replication", security(("peer_secret" = [])),
    params(
        ("keyward-manifest" = String, Header, description = "The snapshot's JSON manifest, base64url without padding"),
        ("content-encoding" = Option<String>, Header, description = "zstd, or absent for an uncompressed file"),
    ),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The snapshot file"),
    responses(
        (status = 200, description = "APPLIED, or ALREADY_CURRENT when this site has exactly this position", body = super::ApplyOutcome),
        (status = 401, description = "Missing or wrong peer secret (UNAUTHORIZED)", body = ApiError),
        (status = 409, description = "Refused by fencing: SITE_ACTIVE, DIVERGED, DIFFERENT_DATABASE, STALE_SNAPSHOT or SAME_SITE", body = ApiError),
        (status = 413, description = "Larger than receive.max_snapshot_bytes (TOO_LARGE)", body = ApiError),
        (status = 422, description = "The file failed verification", body = ApiError),
        (status = 503, description = "Another snapshot is being received (RECEIVE_IN_PROGRESS)", body = ApiError),
    )
)]
async fn receive_from_peer(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let service = state.snapshots.clone();
    let result = receive_checked(&service, &headers, body).await;
    finish(&state, result).await
}

async fn receive_checked(
    service: &SnapshotService,
    headers: &HeaderMap,
    body: Body,
) -> Result<super::ApplyOutcome, SnapshotError> {
    // `apply_file` counts the rejections after the upload. Count the earlier ones here, so the
    // status and `/metrics` also show a peer with the wrong secret or an oversized snapshot.
    let (path, manifest, sha256) = match receive_upload(service, headers, body).await {
        Ok(upload) => upload,
        Err(err) if matches!(err.code(), "UNAUTHORIZED" | "PEER_DISABLED") => {
            service.status.rejected_unsaved(&err);
            return Err(err);
        }
        Err(err) => {
            service.status.rejected(&err);
            return Err(err);
        }
    };
    service
        .apply_file(path, Some(manifest), Some(sha256), false)
        .await
}

/// Checks the secret and the manifest, then streams the body into a temp file. Returns the
/// file, the manifest and the file's SHA-256.
async fn receive_upload(
    service: &SnapshotService,
    headers: &HeaderMap,
    body: Body,
) -> Result<(std::path::PathBuf, Manifest, String), SnapshotError> {
    let configured = service.config.peer.secret.expose();
    if configured.is_empty() {
        return Err(SnapshotError::rejected(
            "PEER_DISABLED",
            "this site does not receive snapshots: set peer.secret (KEYWARD_PEER_SECRET) on both sites",
        ));
    }
    let authorized = bearer(headers).is_some_and(|presented| secret_matches(presented, configured));
    if !authorized {
        return Err(SnapshotError::rejected(
            "UNAUTHORIZED",
            "missing or wrong peer secret; set the same peer.secret (KEYWARD_PEER_SECRET) on both sites",
        ));
    }
    let manifest = parse_manifest_header(headers)?.ok_or_else(|| {
        SnapshotError::rejected(
            "INVALID_MANIFEST",
            format!("the {MANIFEST_HEADER} header is missing"),
        )
    })?;
    if manifest.source_site_id == service.role.site_id() {
        return Err(SnapshotError::rejected(
            "SAME_SITE",
            "the snapshot comes from this very site: peer.url points back at this instance; set it to the other site's URL",
        ));
    }
    let max = service.config.receive.max_snapshot_bytes;
    if manifest.size > max {
        return Err(SnapshotError::rejected(
            "TOO_LARGE",
            format!(
                "snapshot is {} bytes, above receive.max_snapshot_bytes = {max}",
                manifest.size
            ),
        ));
    }
    // Cheap early refusal, before the body is read; the full rules run again after verification.
    if service.role.role() == crate::role::Role::Active {
        return Err(SnapshotError::rejected(
            "SITE_ACTIVE",
            "this site is active and takes no snapshots; only a standby site receives them",
        ));
    }

    let compressed = is_zstd(headers)?;
    let limit = manifest.size;
    let (path, sha256) = stream_to_temp(&service.incoming_dir(), body, compressed, limit).await?;
    crate::failpoint::hit("receive.after_upload");
    Ok((path, manifest, sha256))
}

fn is_zstd(headers: &HeaderMap) -> Result<bool, SnapshotError> {
    match headers
        .get(axum::http::header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?"))
    {
        None | Some("identity") => Ok(false),
        Some("zstd") => Ok(true),
        Some(other) => Err(SnapshotError::rejected(
            "INVALID_ENCODING",
            format!("content-encoding {other:?} is not supported; use zstd or none"),
        )),
    }
}

async fn finish(state: &AppState, result: Result<super::ApplyOutcome, SnapshotError>) -> Response {
    match result {
        Ok(outcome) => {
            if outcome.result == "APPLIED"
                && let Err(err) = state.reload_keys().await
            {
                tracing::error!(code = err.code, message = %err.message, "reloading signing keys after a swap failed");
            }
            (StatusCode::OK, axum::Json(outcome)).into_response()
        }
        Err(err) => {
            tracing::warn!(code = err.code(), error = %err, "snapshot rejected");
            error_response(&err).into_response()
        }
    }
}

/// Streams a request body into a new temp file in `dir`, decompressing zstd when `compressed`,
/// and fails once more than `limit` bytes arrive. Returns the path and the SHA-256 of what was
/// written. The file is fsynced; it is removed on any failure.
pub async fn stream_to_temp(
    dir: &Path,
    body: Body,
    compressed: bool,
    limit: u64,
) -> Result<(PathBuf, String), SnapshotError> {
    crate::fsutil::create_private_dir(dir).map_err(|err| SnapshotError::io("create", dir, err))?;
    let path = dir.join(format!("upload-{}.tmp", crate::ids::random_hex(6)));
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let reader = tokio_util::io::StreamReader::new(stream);
    let result = if compressed {
        let mut decoder = ZstdDecoder::new(BufReader::new(reader));
        decoder.multiple_members(true);
        write_limited(&path, decoder, limit).await
    } else {
        write_limited(&path, reader, limit).await
    };
    match result {
        Ok(sha256) => Ok((path, sha256)),
        Err(err) => {
            let _ = tokio::fs::remove_file(&path).await;
            Err(err)
        }
    }
}

async fn write_limited(
    path: &Path,
    mut reader: impl AsyncRead + Unpin,
    limit: u64,
) -> Result<String, SnapshotError> {
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .await
        .map_err(|err| SnapshotError::io("create", path, err))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    let mut written = 0u64;
    let mut first_chunk = true;
    loop {
        let count = reader.read(&mut buffer).await.map_err(|err| {
            SnapshotError::rejected(
                "TRANSFER_FAILED",
                format!("reading the upload failed after {written} bytes: {err}"),
            )
        })?;
        if count == 0 {
            break;
        }
        written += count as u64;
        if written > limit {
            return Err(SnapshotError::rejected(
                "TOO_LARGE",
                format!("upload is larger than the announced or allowed {limit} bytes"),
            ));
        }
        hasher.update(&buffer[..count]);
        file.write_all(&buffer[..count])
            .await
            .map_err(|err| SnapshotError::io("write", path, err))?;
        if first_chunk {
            first_chunk = false;
            crate::failpoint::hit("receive.mid_upload");
        }
    }
    file.sync_all()
        .await
        .map_err(|err| SnapshotError::io("fsync", path, err))?;
    Ok(hex::encode(hasher.finalize()))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RestoreQuery {
    /// Skip the fencing and divergence rules; integrity checks still run.
    #[serde(default)]
    pub force: bool,
}

/// `POST /v1/admin/restore[?force=true]`: restores a snapshot file sent as the body (plain or
/// zstd), with the same checks as a peer upload. A manifest header is optional.
#[utoipa::path(
    post, path = "/v1/admin/restore", tag = "replication", security(("admin_token" = [])),
    params(
        RestoreQuery,
        ("keyward-manifest" = Option<String>, Header, description = "The snapshot's JSON manifest, base64url without padding"),
        ("content-encoding" = Option<String>, Header, description = "zstd, or absent for an uncompressed file"),
    ),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The snapshot file"),
    responses(
        (status = 200, description = "APPLIED, or ALREADY_CURRENT; the replaced database is kept in pre-restore/", body = super::ApplyOutcome),
        (status = 409, description = "Refused by fencing; retry with force=true after checking `keyward diff`", body = ApiError),
        (status = 422, description = "The file failed verification", body = ApiError),
    )
)]
pub async fn admin_restore(
    State(state): State<Arc<AppState>>,
    _admin: crate::api::admin::Admin,
    query: Result<Query<RestoreQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Ok(Query(query)) = query else {
        return ApiError::bad_request("the only query parameter is force=true|false")
            .into_response();
    };
    let service = state.snapshots.clone();
    let result = async {
        let manifest = parse_manifest_header(&headers)?;
        let compressed = is_zstd(&headers)?;
        let limit = service.config.receive.max_snapshot_bytes;
        let (path, sha256) =
            stream_to_temp(&service.incoming_dir(), body, compressed, limit).await?;
        service
            .apply_file(path, manifest, Some(sha256), query.force)
            .await
    }
    .await;
    finish(&state, result).await
}

#[cfg(test)]
mod tests {
    use super::secret_matches;

    // Only the result is asserted. Both sides are hashed to 32 bytes and compared with
    // `subtle::ConstantTimeEq`, so the time taken does not depend on where they differ. A timing
    // assertion would measure nanosecond differences and fail at random on a shared CI machine.
    #[test]
    fn secret_matches_only_exact_secret() {
        let secret = "peer-secret-0123456789";
        assert!(secret_matches(secret, secret));
        assert!(!secret_matches("peer-secret-012345678X", secret));
        assert!(!secret_matches("Xeer-secret-0123456789", secret));
        assert!(!secret_matches("peer-secret-012345678", secret));
        assert!(!secret_matches("peer-secret-01234567890", secret));
        assert!(!secret_matches("PEER-SECRET-0123456789", secret));
        assert!(!secret_matches("", secret));
        assert!(!secret_matches(secret, ""));
    }
}
