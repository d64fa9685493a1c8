//! The per-address rate limit on client endpoints (`limits.requests_per_minute` and
//! `limits.request_burst`). A rejected request gets `429 RATE_LIMITED` with `Retry-After` in
//! seconds, signed like every client response.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;

use super::{ApiError, AppState, client};

/// A token taken from the client's address bucket. Used as a route layer
/// (`axum::middleware::from_extractor`), so it runs before the handler and its rejection is the
/// `429` response. It finds the state in the request extensions, where [`super::router`] puts it.
pub struct ClientRateLimit;

impl<S: Send + Sync> FromRequestParts<S> for ClientRateLimit {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(state) = parts.extensions.get::<Arc<AppState>>().cloned() else {
            return Ok(ClientRateLimit);
        };
        let Some(limiter) = &state.rate_limiter else {
            return Ok(ClientRateLimit);
        };
        let Some(ConnectInfo(addr)) = parts.extensions.get::<ConnectInfo<SocketAddr>>().copied()
        else {
            return Ok(ClientRateLimit);
        };
        // The bucket is chosen by the peer address, which `forwarded` replaced with the
        // X-Forwarded-For client when the peer is one of limits.trusted_proxies.
        let retry_after = match limiter.check(addr.ip(), state.clock.now()) {
            Ok(()) => return Ok(ClientRateLimit),
            Err(seconds) => seconds,
        };

        tracing::debug!(
            client.addr = %addr.ip(),
            retry_after,
            path = %parts.uri.path(),
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
        Err(response)
    }
}
