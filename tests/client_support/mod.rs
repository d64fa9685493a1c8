//! Helpers for the client tests: a real redirector over a file in a temp directory, a
//! loopback proxy that alters responses, and shortcuts for licenses and trusted keys.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use keyward::client::{Client, ClientBuilder};
use keyward::redirect::{ServeError, same_site, serve, set_active};
use keyward::signing::{SIGNATURE_HEADER, TrustedKeys};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use url::Url;

use crate::common::{InProcess, admin};

/// Upper bound on waiting for a redirector or server to reach an expected state.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Returns an HTTP client that ignores proxy settings, so that requests stay on loopback.
pub fn loopback_http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(DEADLINE)
        .build()
        .expect("client")
}

/// Returns the keys that verify responses of `server`.
pub fn trusted_keys(server: &InProcess) -> TrustedKeys {
    TrustedKeys::from_published(server.state.keyring().public_keys()).expect("published keys")
}

/// Returns the base64 public key of a fixed Ed25519 key pair that no test server uses.
pub fn sample_public_key() -> String {
    use base64::Engine;

    let signing = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    base64::engine::general_purpose::STANDARD.encode(signing.verifying_key().to_bytes())
}

/// Returns a client builder for `server` that trusts only `server`'s keys and ignores proxy
/// settings, so that every request stays on loopback.
pub fn builder_for(server: &InProcess) -> ClientBuilder {
    Client::builder()
        .server_url(&server.url)
        .trusted_keys(trusted_keys(server))
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(2))
        .no_proxy()
}

/// Returns a loopback URL on which nothing listens: the port of a listener that this test
/// bound and closed again.
pub async fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("local addr"));
    drop(listener);
    url
}

/// Creates product `app` (if needed) and a license with the given `key` on `base`.
pub async fn seed_license_with_key(base: &str, key: &str, seats: i64) {
    let product = serde_json::json!({"code": "app", "name": "App", "features": ["pro"]});
    let (status, _) = admin(
        base,
        reqwest::Method::POST,
        "/v1/admin/products",
        Some(product),
    )
    .await;
    assert!(status == 201 || status == 409, "creating product: {status}");
    let license =
        serde_json::json!({"product": "app", "model": "permanent", "seats": seats, "key": key});
    let (status, body) = admin(
        base,
        reqwest::Method::POST,
        "/v1/admin/licenses",
        Some(license),
    )
    .await;
    assert_eq!(status, 201, "creating license: {body}");
}

/// Creates a license on `base` from a JSON description and returns its key.
pub async fn create_license(base: &str, license: serde_json::Value) -> String {
    let (status, body) = admin(
        base,
        reqwest::Method::POST,
        "/v1/admin/licenses",
        Some(license),
    )
    .await;
    assert_eq!(status, 201, "creating license: {body}");
    body["key"].as_str().expect("key").to_string()
}

/// Revokes the license `key` on `base`.
pub async fn revoke(base: &str, key: &str) {
    let path = format!("/v1/admin/licenses/{key}/revoke");
    let (status, body) = admin(base, reqwest::Method::POST, &path, None).await;
    assert_eq!(status, 200, "revoking license: {body}");
}

/// Returns a redirect file whose `activeUrl` is `active` and whose `drUrl` is `dr`.
pub fn redirect_xml(active: &str, dr: Option<&str>) -> String {
    let dr = dr
        .map(|dr| format!("<drUrl>{dr}</drUrl>"))
        .unwrap_or_default();
    format!("<QlmRedirection><activeUrl>{active}</activeUrl>{dr}</QlmRedirection>")
}

/// The real redirector serving a file in a temp directory on a loopback port.
pub struct Redirector {
    pub url: String,
    pub path: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServeError>>>,
    _dir: TempDir,
}

impl Redirector {
    /// Starts a redirector whose file names `active` as the active server.
    pub async fn start(active: &str) -> Redirector {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("qlmredirect.xml");
        std::fs::write(&path, redirect_xml(active, None)).expect("write redirect file");

        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!(
            "http://{}/qlmredirect.xml",
            listener.local_addr().expect("local addr")
        );
        let (shutdown, stop) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, path.clone(), async {
            let _ = stop.await;
        }));

        let redirector = Redirector {
            url,
            path,
            shutdown: Some(shutdown),
            task: Some(task),
            _dir: dir,
        };
        redirector.wait_for_active(active).await;
        redirector
    }

    /// Makes `url` the active URL in the file and waits until the redirector serves it.
    pub async fn switch_to(&self, url: &str) {
        set_active(&self.path, &Url::parse(url).expect("url")).expect("set_active");
        self.wait_for_active(url).await;
    }

    /// Polls the redirector until its file names `active` as the active URL.
    pub async fn wait_for_active(&self, active: &str) {
        let expected = Url::parse(active).expect("url");
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Ok(response) = loopback_http().get(&self.url).send().await
                && let Ok(body) = response.bytes().await
                && let Ok((file, _warnings)) = keyward::redirect::parse(&body)
                && same_site(&file.active_url, &expected)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redirector never served activeUrl {active}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the redirector and waits until its port is closed.
    pub async fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(DEADLINE, task)
                .await
                .expect("redirector stops")
                .expect("redirector task")
                .expect("redirector stops cleanly");
        }
    }
}

/// How the proxy alters what passes through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tamper {
    /// Forward requests and responses unchanged.
    Nothing,
    /// Turn the response into a `VALID` validation, keeping the original signature header.
    RewriteBody,
    /// Drop the signature header.
    StripSignature,
    /// Send the server another nonce than the client's, so the signed response echoes it.
    SwapNonce,
    /// Respond to every request with the first response that passed through, signature included.
    Replay,
}

#[derive(Clone)]
struct ProxyState {
    upstream: String,
    tamper: Arc<Mutex<Tamper>>,
    recorded: Arc<Mutex<Option<(StatusCode, String, Bytes)>>>,
    requests: Arc<Mutex<usize>>,
}

/// A loopback HTTP proxy in front of one license server that can alter its traffic.
pub struct Proxy {
    pub url: String,
    state: ProxyState,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Proxy {
    pub async fn start(upstream: &str, tamper: Tamper) -> Proxy {
        let state = ProxyState {
            upstream: upstream.trim_end_matches('/').to_string(),
            tamper: Arc::new(Mutex::new(tamper)),
            recorded: Arc::new(Mutex::new(None)),
            requests: Arc::new(Mutex::new(0)),
        };
        let router = Router::new().fallback(forward).with_state(state.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let (shutdown, stop) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stop.await;
                })
                .await;
        });
        Proxy {
            url,
            state,
            shutdown: Some(shutdown),
        }
    }

    /// Returns the number of requests that reached the proxy.
    pub fn requests(&self) -> usize {
        *self.state.requests.lock().unwrap()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

async fn forward(State(state): State<ProxyState>, uri: Uri, body: Bytes) -> Response {
    *state.requests.lock().unwrap() += 1;
    let tamper = *state.tamper.lock().unwrap();
    if tamper == Tamper::Replay
        && let Some((status, signature, body)) = state.recorded.lock().unwrap().clone()
    {
        return (status, [(SIGNATURE_HEADER, signature)], body).into_response();
    }

    let mut request: serde_json::Value = serde_json::from_slice(&body).expect("JSON request");
    if tamper == Tamper::SwapNonce {
        request["nonce"] = serde_json::json!("a-nonce-the-client-never-sent");
    }
    let response = loopback_http()
        .post(format!("{}{}", state.upstream, uri.path()))
        .json(&request)
        .send()
        .await
        .expect("upstream request");
    let status = StatusCode::from_u16(response.status().as_u16()).expect("status");
    let signature = response
        .headers()
        .get(SIGNATURE_HEADER)
        .map(|value| value.to_str().expect("ascii").to_string())
        .unwrap_or_default();
    let mut body = response.bytes().await.expect("upstream body");
    state
        .recorded
        .lock()
        .unwrap()
        .get_or_insert_with(|| (status, signature.clone(), body.clone()));

    if tamper == Tamper::RewriteBody {
        let mut value: serde_json::Value = serde_json::from_slice(&body).expect("JSON response");
        value["code"] = serde_json::json!("VALID");
        value["valid"] = serde_json::json!(true);
        body = Bytes::from(serde_json::to_vec(&value).expect("serialize"));
    }
    let mut headers = HeaderMap::new();
    headers.insert("content-type", "application/json".parse().unwrap());
    if tamper != Tamper::StripSignature {
        headers.insert(SIGNATURE_HEADER, signature.parse().unwrap());
    }
    (status, headers, body).into_response()
}

/// A request seen by [`FakeRedirector`]: the `If-None-Match` value and the status returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRequest {
    pub if_none_match: Option<String>,
    pub status: u16,
}

#[derive(Clone)]
struct FakeRedirectorState {
    body: Arc<Mutex<String>>,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
}

/// A redirect file server that records each request, for checks on caching. It sends the
/// same ETag as the real redirector and 304 when `If-None-Match` matches it exactly.
pub struct FakeRedirector {
    pub url: String,
    state: FakeRedirectorState,
    shutdown: Option<oneshot::Sender<()>>,
}

impl FakeRedirector {
    pub async fn start(body: &str) -> FakeRedirector {
        let state = FakeRedirectorState {
            body: Arc::new(Mutex::new(body.to_string())),
            seen: Arc::new(Mutex::new(Vec::new())),
        };
        let router = Router::new()
            .fallback(serve_fake_file)
            .with_state(state.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!(
            "http://{}/qlmredirect.xml",
            listener.local_addr().expect("local addr")
        );
        let (shutdown, stop) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stop.await;
                })
                .await;
        });
        FakeRedirector {
            url,
            state,
            shutdown: Some(shutdown),
        }
    }

    pub fn set_body(&self, body: &str) {
        *self.state.body.lock().unwrap() = body.to_string();
    }

    pub fn seen(&self) -> Vec<SeenRequest> {
        self.state.seen.lock().unwrap().clone()
    }
}

impl Drop for FakeRedirector {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

async fn serve_fake_file(State(state): State<FakeRedirectorState>, headers: HeaderMap) -> Response {
    let body = state.body.lock().unwrap().clone();
    let etag = keyward::redirect::etag_for(body.as_bytes());
    let if_none_match = headers
        .get("if-none-match")
        .map(|value| value.to_str().expect("ascii").to_string());
    let status = if if_none_match.as_deref() == Some(etag.as_str()) {
        StatusCode::NOT_MODIFIED
    } else {
        StatusCode::OK
    };
    state.seen.lock().unwrap().push(SeenRequest {
        if_none_match,
        status: status.as_u16(),
    });

    if status == StatusCode::NOT_MODIFIED {
        return (status, [("etag", etag)]).into_response();
    }
    (status, [("etag", etag)], body).into_response()
}
