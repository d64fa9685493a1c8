//! Per-request observability: a request id on every request and response, a tracing span that
//! carries it, request metrics, and one log line per finished request.
//!
//! The span and the log line name the matched route template, never the raw path or query,
//! because paths hold license keys and queries hold customer search terms. Headers are never
//! logged, so neither are admin tokens nor the peer secret.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use super::AppState;
use crate::metrics::http::{UNMATCHED_ROUTE, method_label};

/// Header that carries the request id, in requests and responses.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Maximum length of an incoming request id; a longer one is replaced by a generated id.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Routes polled by load balancers and scrapers, logged at DEBUG so they do not flood the log.
const PROBE_ROUTES: &[&str] = &["/healthz", "/readyz", "/metrics"];

/// Returns a fresh request id of 32 hex digits: a random prefix drawn once per process and a
/// counter, unique without a system call for randomness on every request.
fn new_request_id() -> HeaderValue {
    static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| crate::ids::random_hex(8));
    let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    HeaderValue::from_str(&format!("{prefix}{count:016x}")).expect("hex digits are a header")
}

/// Wraps every route of `router` with the request id, span, metrics and log layer.
pub fn layer(router: Router, state: Arc<AppState>) -> Router {
    router.layer(axum::middleware::from_fn_with_state(state, observe))
}

/// Returns true for request ids that are safe to log and echo: 1 to 128 ASCII letters, digits
/// and `-_.:/+=`.
pub fn is_usable_request_id(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id
            .iter()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-_.:/+=".contains(byte))
}

/// Gives the request an id and echoes it in the response. The id is the caller's when
/// [`is_usable_request_id`] accepts it, else a fresh one. Runs the request inside a `request`
/// span, then records its metrics and logs its outcome.
async fn observe(State(state): State<Arc<AppState>>, mut request: Request, next: Next) -> Response {
    let request_id = match request.headers().get(REQUEST_ID_HEADER) {
        Some(value) if is_usable_request_id(value.as_bytes()) => value.clone(),
        _ => {
            let fresh = new_request_id();
            request
                .headers_mut()
                .insert(REQUEST_ID_HEADER, fresh.clone());
            fresh
        }
    };
    let route = request.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map_or(UNMATCHED_ROUTE, MatchedPath::as_str);
    let method = method_label(request.method());
    let span = tracing::info_span!(
        "request",
        // Checked by `is_usable_request_id` or generated: ASCII.
        request_id = request_id.to_str().unwrap_or_default(),
        method,
        route,
    );

    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    let latency = started.elapsed();
    let status = response.status().as_u16();
    state.metrics.record(route, method, status, latency);
    response.headers_mut().insert(REQUEST_ID_HEADER, request_id);

    let _entered = span.enter();
    let latency_ms = latency.as_micros() as f64 / 1000.0;
    if PROBE_ROUTES.contains(&route) {
        tracing::debug!(status, latency_ms, "request finished");
    } else {
        tracing::info!(status, latency_ms, "request finished");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_id_rules() {
        assert!(is_usable_request_id(b"3f2a-77:trace/1"));
        assert!(!is_usable_request_id(b""));
        assert!(!is_usable_request_id(b"has space"));
        assert!(!is_usable_request_id(b"line\nbreak"));
        assert!(!is_usable_request_id(&[b'a'; MAX_REQUEST_ID_LEN + 1]));
        assert!(is_usable_request_id(&[b'a'; MAX_REQUEST_ID_LEN]));
    }
}
