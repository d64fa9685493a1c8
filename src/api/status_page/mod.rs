//! The status page at `GET /status`: HTML, CSS and JavaScript built into the binary.
//!
//! The page itself is public and contains no data. It shows a sign-in form for an admin token,
//! keeps the token in the tab's session storage, and reads everything it shows from the admin
//! API with that token as a bearer credential. The content security policy allows scripts,
//! styles and requests from this server only, so the page loads nothing from anywhere else.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

const PAGE: &str = include_str!("index.html");
const STYLESHEET: &str = include_str!("style.css");
const SCRIPT: &str = include_str!("app.js");

const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; \
    frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    response
}

/// Serves the status page.
#[utoipa::path(
    get, path = "/status", tag = "operations",
    responses((status = 200, description = "The status page; sign in with an admin token", content_type = "text/html"))
)]
pub async fn page() -> Response {
    asset("text/html; charset=utf-8", PAGE)
}

/// Serves the status page's stylesheet.
#[utoipa::path(
    get, path = "/status/style.css", tag = "operations",
    responses((status = 200, description = "The status page's stylesheet", content_type = "text/css"))
)]
pub async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", STYLESHEET)
}

/// Serves the status page's script.
#[utoipa::path(
    get, path = "/status/app.js", tag = "operations",
    responses((status = 200, description = "The status page's script", content_type = "text/javascript"))
)]
pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}
