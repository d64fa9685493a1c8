//! Admin endpoints reject requests without a live admin token, and the rejection changes
//! nothing.

mod common;
mod raw_http;

use common::{ADMIN_TOKEN, InProcess, admin, seed_license, test_config};
use raw_http::{RawResponse, admin_view, assert_error_shape, receive};
use reqwest::Method;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde_json::json;

/// A well-formed token that the server never issued.
const UNKNOWN_TOKEN: &str =
    "kwa_12345678_ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

/// Returns one request to each kind of admin endpoint: reads, creations, changes and deletions.
fn admin_requests(key: &str) -> Vec<(Method, String, Option<serde_json::Value>)> {
    let license = format!("/v1/admin/licenses/{key}");
    vec![
        (Method::GET, "/v1/admin/products".into(), None),
        (
            Method::POST,
            "/v1/admin/products".into(),
            Some(json!({"code": "new", "name": "New"})),
        ),
        (Method::DELETE, "/v1/admin/products/app".into(), None),
        (Method::GET, "/v1/admin/licenses".into(), None),
        (
            Method::POST,
            "/v1/admin/licenses".into(),
            Some(json!({"product": "app", "model": "permanent"})),
        ),
        (Method::GET, license.clone(), None),
        (Method::PATCH, license.clone(), Some(json!({"seats": 9}))),
        (Method::POST, format!("{license}/suspend"), None),
        (Method::POST, format!("{license}/revoke"), None),
        (
            Method::POST,
            format!("{license}/renew"),
            Some(json!({"expires_at": "2099-01-01"})),
        ),
        (Method::GET, format!("{license}/activations"), None),
        (
            Method::POST,
            format!("{license}/activations/pc-1/release"),
            None,
        ),
        (Method::DELETE, license, None),
        (Method::GET, "/v1/admin/audit".into(), None),
        (Method::GET, "/v1/admin/tokens".into(), None),
        (
            Method::POST,
            "/v1/admin/tokens".into(),
            Some(json!({"name": "intruder"})),
        ),
        (Method::DELETE, "/v1/admin/tokens/0badcafe".into(), None),
    ]
}

/// Sends an admin request with the given `Authorization` header value, or none.
async fn send(
    base: &str,
    method: Method,
    path: &str,
    body: Option<&serde_json::Value>,
    authorization: Option<HeaderValue>,
) -> RawResponse {
    let mut request = common::http().request(method, format!("{base}{path}"));
    if let Some(value) = authorization {
        request = request.header(AUTHORIZATION, value);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    receive(request).await
}

fn assert_unauthorized(response: &RawResponse, context: &str) {
    assert_eq!(response.status, 401, "{context}: {}", response.text());
    let body = response.json();
    assert_error_shape(&body, context);
    assert_eq!(body["code"], "UNAUTHORIZED", "{context}");
    let fields = body.as_object().map(|object| object.len());
    assert_eq!(fields, Some(2), "{context}: only code and message: {body}");
}

/// Returns `Authorization` values that must not authenticate, each with a name for messages.
fn bad_authorizations() -> Vec<(&'static str, Option<HeaderValue>)> {
    let header = |text: String| Some(HeaderValue::from_str(&text).unwrap());
    vec![
        ("missing header", None),
        ("unknown token", header(format!("Bearer {UNKNOWN_TOKEN}"))),
        ("token with a changed digit", {
            let mut wrong = ADMIN_TOKEN.to_string();
            wrong.pop();
            wrong.push('0');
            header(format!("Bearer {wrong}"))
        }),
        ("empty header", header(String::new())),
        ("scheme only", header("Bearer".into())),
        ("scheme and space", header("Bearer ".into())),
        ("token without scheme", header(ADMIN_TOKEN.into())),
        ("basic scheme", header(format!("Basic {ADMIN_TOKEN}"))),
        ("token scheme", header(format!("Token {ADMIN_TOKEN}"))),
        (
            "two tokens",
            header(format!("Bearer {ADMIN_TOKEN} {ADMIN_TOKEN}")),
        ),
        (
            "token with suffix",
            header(format!("Bearer {ADMIN_TOKEN}x")),
        ),
        (
            "prefix of token",
            header(format!("Bearer {}", &ADMIN_TOKEN[..40])),
        ),
        (
            "non-ASCII bytes",
            Some(HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap()),
        ),
    ]
}

#[tokio::test]
async fn bad_credentials_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let base = server.url.as_str();
    let key = seed_license(base, 1).await;
    let activation = json!({"key": key, "computer_id": "pc-1"});
    assert_eq!(
        common::client(base, "/v1/activate", activation).await.0,
        200
    );
    let before = admin_view(base, &[&key]).await;

    for (credential, authorization) in bad_authorizations() {
        for (method, path, body) in admin_requests(&key) {
            let context = format!("{credential}: {method} {path}");
            let response = send(base, method, &path, body.as_ref(), authorization.clone()).await;
            assert_unauthorized(&response, &context);
        }
    }
    assert_eq!(admin_view(base, &[&key]).await, before);
    server.stop().await;
}

#[tokio::test]
async fn revoked_token_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let base = server.url.as_str();

    let (status, created) = admin(
        base,
        Method::POST,
        "/v1/admin/tokens",
        Some(json!({"name": "ci"})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let token = created["token"].as_str().expect("token text").to_string();
    let id = created["id"].as_str().expect("token id").to_string();
    let bearer = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();

    let response = send(
        base,
        Method::GET,
        "/v1/admin/products",
        None,
        Some(bearer.clone()),
    )
    .await;
    assert_eq!(response.status, 200, "new token works: {}", response.text());

    let (status, body) = admin(
        base,
        Method::DELETE,
        &format!("/v1/admin/tokens/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let response = send(
        base,
        Method::GET,
        "/v1/admin/products",
        None,
        Some(bearer.clone()),
    )
    .await;
    assert_unauthorized(&response, "revoked token");
    let product = json!({"code": "late", "name": "Late"});
    let response = send(
        base,
        Method::POST,
        "/v1/admin/products",
        Some(&product),
        Some(bearer),
    )
    .await;
    assert_unauthorized(&response, "revoked token creating a product");

    let (status, products) = admin(base, Method::GET, "/v1/admin/products", None).await;
    assert_eq!(status, 200, "the bootstrap token still works: {products}");
    assert_eq!(products, json!([]), "the revoked token created nothing");
    server.stop().await;
}

#[tokio::test]
async fn new_token_acts_under_own_id() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let base = server.url.as_str();
    let (_, created) = admin(
        base,
        Method::POST,
        "/v1/admin/tokens",
        Some(json!({"name": "ci"})),
    )
    .await;
    let token = created["token"].as_str().unwrap();
    let id = created["id"].as_str().unwrap();

    let product = json!({"code": "app", "name": "App"});
    let response = receive(
        common::http()
            .post(format!("{base}/v1/admin/products"))
            .bearer_auth(token)
            .json(&product),
    )
    .await;
    assert_eq!(response.status, 201, "{}", response.text());
    let audit = raw_http::admin_get(base, "/v1/admin/audit").await;
    assert_eq!(audit[0]["action"], "product.create", "{audit}");
    assert_eq!(audit[0]["actor"], format!("admin:{id}"));
    server.stop().await;
}

/// The authentication scheme is case-insensitive (RFC 9110, section 11.1).
#[tokio::test]
async fn scheme_is_case_insensitive() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProcess::start(test_config(dir.path())).await;
    let base = server.url.as_str();

    for scheme in ["Bearer", "bearer", "BEARER"] {
        let authorization = HeaderValue::from_str(&format!("{scheme} {ADMIN_TOKEN}")).unwrap();
        let response = send(
            base,
            Method::GET,
            "/v1/admin/products",
            None,
            Some(authorization),
        )
        .await;
        assert_eq!(response.status, 200, "{scheme}: {}", response.text());
    }
    server.stop().await;
}

#[test]
fn malformed_bootstrap_token_stops_start() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("site");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data_dir)
        .env("KEYWARD_BOOTSTRAP_ADMIN_TOKEN", "kwa_not_a_token")
        .output()
        .unwrap();

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("bootstrap_admin_token"), "{stderr}");
    assert!(stderr.contains("keyward token generate"), "{stderr}");
    assert!(
        !data_dir.join("keyward.db").exists(),
        "a database was created"
    );
}

#[test]
fn unused_bootstrap_token_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("site");
    let mut first = common::Process::serve(&data_dir, &[]);
    assert_eq!(first.terminate().code(), Some(0));

    // A later start with another token keeps the first one and logs a warning.
    let other = "kwa_0badcafe_ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";
    let second = common::Process::serve(&data_dir, &[("KEYWARD_BOOTSTRAP_ADMIN_TOKEN", other)]);
    assert!(second.wait_for_log(
        "bootstrap_admin_token was not added",
        std::time::Duration::from_secs(5)
    ));
}
