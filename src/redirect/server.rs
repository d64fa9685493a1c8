use std::future::Future;
use std::io;
use std::path::PathBuf;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::Serialize;
use thiserror::Error;
use tokio::net::TcpListener;

use super::{FileError, RedirectorState, ReloadFailure, spawn_watcher};

/// Path at which license clients fetch the redirect file.
pub const REDIRECT_FILE_ROUTE: &str = "/qlmredirect.xml";

/// Failures that stop the redirector.
#[derive(Debug, Error)]
pub enum ServeError {
    #[error("redirector cannot start: {0}")]
    Load(#[from] FileError),

    #[error("redirector failed to get its listen address: {0}")]
    LocalAddr(#[source] io::Error),

    #[error("redirector HTTP server failed: {0}")]
    Http(#[source] io::Error),
}

/// Builds the redirector's routes over `state`:
///
/// - `GET /qlmredirect.xml` and `GET /` return the served file with an ETag and
///   `Cache-Control: no-cache`, and 304 when `If-None-Match` matches.
/// - `GET /status` returns the served version and the last reload failure as JSON.
/// - `GET /healthz` returns 200.
pub fn router(state: RedirectorState) -> Router {
    Router::new()
        .route(REDIRECT_FILE_ROUTE, get(redirect_file))
        .route("/", get(redirect_file))
        .route("/status", get(status))
        .route("/healthz", get(healthz))
        .with_state(state)
}

/// Serves the redirect file at `file` on `listener` until `shutdown` completes.
///
/// Fails at once if the file is unreadable or invalid. Afterwards the file is reloaded
/// whenever it changes, and an invalid edit leaves the last valid version in service.
pub async fn serve(
    listener: TcpListener,
    file: PathBuf,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let state = RedirectorState::load(file)?;
    let address = listener.local_addr().map_err(ServeError::LocalAddr)?;
    let current = state.current();
    tracing::info!(
        listen.addr = %address,
        redirect.file = %state.path().display(),
        redirect.etag = %current.etag,
        redirect.active_url = %current.file.active_url,
        "redirector listening"
    );

    let watcher = spawn_watcher(state.clone());
    let result = axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await;
    watcher.abort();

    tracing::info!(listen.addr = %address, "redirector stopped");
    result.map_err(ServeError::Http)
}

async fn redirect_file(State(state): State<RedirectorState>, headers: HeaderMap) -> Response {
    let snapshot = state.current();
    let Ok(etag) = HeaderValue::from_str(&snapshot.etag) else {
        // etag_for only produces quotes and hex digits, which are valid header characters.
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let cache_headers = [
        (header::ETAG, etag),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];

    if if_none_match_matches(&headers, &snapshot.etag) {
        return (StatusCode::NOT_MODIFIED, cache_headers).into_response();
    }

    let content_type = [(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    )];
    (cache_headers, content_type, snapshot.bytes.clone()).into_response()
}

/// Applies the weak comparison that RFC 7232 section 3.2 prescribes for `If-None-Match`, so a
/// `W/` prefix is ignored. The value `*` matches any current version.
fn if_none_match_matches(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .any(|candidate| candidate == "*" || candidate.trim_start_matches("W/") == etag)
}

#[derive(Debug, Serialize)]
struct StatusBody {
    path: String,
    active_url: String,
    dr_url: Option<String>,
    active_net_core_url: Option<String>,
    dr_net_core_url: Option<String>,
    etag: String,
    loaded_at: DateTime<Utc>,
    warnings: Vec<String>,
    last_error: Option<ReloadFailure>,
}

async fn status(State(state): State<RedirectorState>) -> Json<StatusBody> {
    let snapshot = state.current();
    let file = &snapshot.file;

    Json(StatusBody {
        path: state.path().display().to_string(),
        active_url: file.active_url.to_string(),
        dr_url: file.dr_url.as_ref().map(ToString::to_string),
        active_net_core_url: file.active_net_core_url.as_ref().map(ToString::to_string),
        dr_net_core_url: file.dr_net_core_url.as_ref().map(ToString::to_string),
        etag: snapshot.etag.clone(),
        loaded_at: snapshot.loaded_at,
        warnings: snapshot.warnings.clone(),
        last_error: state.last_error(),
    })
}

async fn healthz() -> &'static str {
    "ok\n"
}
