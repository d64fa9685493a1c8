//! The per-address rate limit on client endpoints (`limits.requests_per_minute` and
//! `limits.request_burst`). A rejected request gets `429 RATE_LIMITED` with `Retry-After` in
//! seconds, signed like every client response.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use super::{ApiError, AppState, client};

/// Takes a token for the client's address before the handler runs, or returns `429` when the
/// address has none left.
pub async fn limit_client_requests(
    State(state): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let Some(limiter) = &state.rate_limiter else {
        return next.run(request).await;
    };
    // NOTE: the bucket is chosen by the TCP peer address. Forwarding headers such as
    // X-Forwarded-For are not read, so behind a reverse proxy all clients share one bucket.
    let retry_after = match limiter.check(addr.ip(), state.clock.now()) {
        Ok(()) => return next.run(request).await,
        Err(seconds) => seconds,
    };

    tracing::debug!(
        client.addr = %addr.ip(),
        retry_after,
        path = %request.uri().path(),
        "request rate-limited"
    );
    let err = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "RATE_LIMITED",
        format!(
            "too many requests from this address (limits.requests_per_minute); retry in \
             {retry_after} s"
        ),
    );
    let mut response = client::signed_error(&state, err, None);
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from_str(&retry_after.to_string()).expect("digits are a valid header"),
    );
    response
}
