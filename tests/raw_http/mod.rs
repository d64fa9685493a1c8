//! Requests that keep the raw response (status, headers and exact body bytes), for checking
//! signatures and comparing responses byte for byte, and a read of everything the admin API
//! shows, for checking that a rejected request changed nothing.

#![allow(dead_code)]

use keyward::api::client::PublicKeysResponse;
use keyward::signing::{SIGNATURE_HEADER, TrustedKeys};
use reqwest::Method;
use reqwest::header::HeaderMap;

/// A response as received.
pub struct RawResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// Parses the body as JSON, panicking with the body text when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!(
                "response body is not JSON ({err}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Returns the `keyward-signature` header, if present and ASCII.
    pub fn signature(&self) -> Option<&str> {
        self.headers
            .get(SIGNATURE_HEADER)
            .and_then(|value| value.to_str().ok())
    }

    /// Returns the body as text, for assertion messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `body` as is with the given content type and optional bearer token.
pub async fn send_bytes(
    base: &str,
    method: Method,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
    token: Option<&str>,
) -> RawResponse {
    let mut request = crate::common::http()
        .request(method, format!("{base}{path}"))
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    receive(request).await
}

/// Posts a JSON body to a client endpoint.
pub async fn post_json(base: &str, path: &str, body: &serde_json::Value) -> RawResponse {
    let bytes = serde_json::to_vec(body).expect("request serializes");
    send_bytes(base, Method::POST, path, "application/json", bytes, None).await
}

/// Sends a prepared request and reads the whole response.
pub async fn receive(request: reqwest::RequestBuilder) -> RawResponse {
    let response = request.send().await.expect("request reaches the server");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.expect("response body").to_vec();
    RawResponse {
        status,
        headers,
        body,
    }
}

/// Fetches the published public keys from `GET /v1/keys`.
pub async fn trusted_keys(base: &str) -> TrustedKeys {
    let published: PublicKeysResponse = crate::common::http()
        .get(format!("{base}/v1/keys"))
        .send()
        .await
        .expect("GET /v1/keys")
        .json()
        .await
        .expect("public keys parse");
    assert!(!published.keys.is_empty(), "GET /v1/keys published no keys");
    TrustedKeys::from_published(&published.keys).expect("published keys are valid")
}

/// Reads products, licenses, admin tokens, the audit log and the activations of `keys` through
/// the admin API. Two equal results mean that nothing visible changed in between.
pub async fn admin_view(base: &str, keys: &[&str]) -> serde_json::Value {
    let mut view = serde_json::Map::new();
    for path in [
        "/v1/admin/products",
        "/v1/admin/licenses?limit=1000",
        "/v1/admin/audit?limit=1000",
        "/v1/admin/tokens",
    ] {
        view.insert(path.to_string(), admin_get(base, path).await);
    }
    for key in keys {
        let path = format!("/v1/admin/licenses/{key}/activations");
        let activations = admin_get(base, &path).await;
        view.insert(path, activations);
    }
    serde_json::Value::Object(view)
}

/// Sends an admin GET with the test token and returns the JSON body, asserting 200.
pub async fn admin_get(base: &str, path: &str) -> serde_json::Value {
    let (status, body) = crate::common::admin(base, Method::GET, path, None).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// Asserts that `body` has the API error shape: a non-empty string `code` and `message`.
pub fn assert_error_shape(body: &serde_json::Value, context: &str) {
    assert!(
        body["code"].as_str().is_some_and(|code| !code.is_empty()),
        "{context}: error body has no code: {body}"
    );
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|message| !message.is_empty()),
        "{context}: error body has no message: {body}"
    );
}
