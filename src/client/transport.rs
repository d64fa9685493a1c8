//! Signed requests: each request carries a fresh random nonce, and each response must be
//! signed over its exact bytes by a trusted key, echo that nonce and carry a server time close
//! to the local clock.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use url::Url;

use super::state::SignedBody;
use super::{ClientError, UntrustedReason};
use crate::api::client::ClientError as ErrorBody;
use crate::signing::{PublicKeyInfo, SIGNATURE_HEADER, TrustedKeys};
use crate::time::SharedClock;

/// Maximum size of a response body read from a license server. Real responses are under
/// 4 KiB, and larger bodies are rejected without being read whole.
pub(crate) const MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// Number of random bytes in a request nonce, sent as hex.
const NONCE_BYTES: usize = 16;

/// A verified response: the parsed body, the server's time and the signed bytes.
#[derive(Debug)]
pub(crate) struct Verified<T> {
    pub(crate) body: T,
    pub(crate) server_time: DateTime<Utc>,
    pub(crate) proof: SignedBody,
}

/// The fields that every client endpoint response carries, success or error.
#[derive(Deserialize)]
struct Freshness {
    nonce: Option<String>,
    server_time: String,
}

/// A request body with the nonce added.
#[derive(Serialize)]
struct WithNonce<'a, R> {
    #[serde(flatten)]
    request: &'a R,
    nonce: &'a str,
}

/// Sends signed requests to license servers and checks their responses.
#[derive(Debug)]
pub(crate) struct Transport {
    pub(crate) http: reqwest::Client,
    trusted: TrustedKeys,
    max_clock_skew: Duration,
    clock: SharedClock,
}

impl Transport {
    pub(crate) fn new(
        http: reqwest::Client,
        trusted: TrustedKeys,
        max_clock_skew: Duration,
        clock: SharedClock,
    ) -> Transport {
        Transport {
            http,
            trusted,
            max_clock_skew,
            clock,
        }
    }

    pub(crate) fn trusted(&self) -> &TrustedKeys {
        &self.trusted
    }

    /// Posts `request` with a new nonce to `path` below `base` and returns the verified
    /// response. A signed error response becomes [`ClientError::Rejected`].
    pub(crate) async fn post<R: Serialize, T: DeserializeOwned>(
        &self,
        base: &Url,
        path: &str,
        request: &R,
    ) -> Result<Verified<T>, ClientError> {
        let url = endpoint(base, path)?;
        let nonce = crate::ids::random_hex(NONCE_BYTES);
        let body = WithNonce {
            request,
            nonce: &nonce,
        };

        let unreachable = |source| ClientError::Unreachable {
            url: url.to_string(),
            source,
        };
        let response = self
            .http
            .post(url.clone())
            .json(&body)
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status();
        let signature = response
            .headers()
            .get(SIGNATURE_HEADER)
            .map(|value| value.to_str().unwrap_or_default().to_string());
        let bytes = read_limited(response, MAX_RESPONSE_BYTES)
            .await
            .map_err(|err| match err {
                ReadError::Http(source) => unreachable(source),
                ReadError::TooLarge => ClientError::InvalidResponse {
                    url: url.to_string(),
                    status: status.as_u16(),
                    reason: format!("body is larger than {MAX_RESPONSE_BYTES} bytes"),
                },
            })?;

        let untrusted = |reason| ClientError::UntrustedResponse {
            url: url.to_string(),
            status: status.as_u16(),
            reason,
        };
        self.trusted
            .verify_header(signature.as_deref(), &bytes)
            .map_err(|err| untrusted(UntrustedReason::Signature(err)))?;
        let server_time = self.check_freshness(&bytes, &nonce).map_err(untrusted)?;

        let invalid = |err: serde_json::Error| ClientError::InvalidResponse {
            url: url.to_string(),
            status: status.as_u16(),
            reason: err.to_string(),
        };
        if status.is_success() {
            let body = serde_json::from_slice(&bytes).map_err(invalid)?;
            let proof = SignedBody {
                body: String::from_utf8_lossy(&bytes).into_owned(),
                signature: signature.unwrap_or_default(),
            };
            return Ok(Verified {
                body,
                server_time,
                proof,
            });
        }
        let error: ErrorBody = serde_json::from_slice(&bytes).map_err(invalid)?;
        Err(ClientError::Rejected {
            code: error.code,
            message: error.message,
            active_url: error.active_url,
        })
    }

    /// Checks the echoed nonce and the server time of a body whose signature verified, and
    /// returns the server time.
    fn check_freshness(&self, bytes: &[u8], nonce: &str) -> Result<DateTime<Utc>, UntrustedReason> {
        let freshness: Freshness = serde_json::from_slice(bytes)
            .map_err(|err| UntrustedReason::MissingFreshness(err.to_string()))?;
        if freshness.nonce.as_deref() != Some(nonce) {
            return Err(UntrustedReason::NonceMismatch {
                expected: nonce.to_string(),
                received: freshness.nonce,
            });
        }

        let server_time = crate::time::parse(&freshness.server_time).map_err(|err| {
            UntrustedReason::MissingFreshness(format!(
                "server_time {:?}: {err}",
                freshness.server_time
            ))
        })?;
        let skew = server_time.signed_duration_since(self.clock.now());
        let max_skew =
            chrono::Duration::from_std(self.max_clock_skew).unwrap_or(chrono::Duration::MAX);
        if skew.abs() > max_skew {
            return Err(UntrustedReason::ClockSkew {
                server_time,
                skew_seconds: skew.num_seconds(),
                max_skew_seconds: self.max_clock_skew.as_secs(),
            });
        }
        Ok(server_time)
    }
}

/// Returns the URL of `path` below `base`, keeping every segment of the base path.
pub(crate) fn endpoint(base: &Url, path: &str) -> Result<Url, ClientError> {
    let mut directory = base.clone();
    if !directory.path().ends_with('/') {
        directory.set_path(&format!("{}/", directory.path()));
    }
    directory.join(path.trim_start_matches('/')).map_err(|err| {
        ClientError::Config(format!(
            "cannot join {path:?} to the server URL {base}: {err}"
        ))
    })
}

/// Builds the HTTP client used for license servers and the redirector. HTTP redirects are
/// not followed, because the server and redirector URLs are configured or come from the
/// redirect file.
pub(crate) fn build_http(
    timeout: Duration,
    connect_timeout: Duration,
    ca_file: Option<&Path>,
    use_system_proxy: bool,
) -> Result<reqwest::Client, ClientError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(connect_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("keyward-client/", env!("CARGO_PKG_VERSION")));
    if !use_system_proxy {
        builder = builder.no_proxy();
    }

    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|err| {
            ClientError::Config(format!("failed to read CA file {}: {err}", path.display()))
        })?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|err| {
            ClientError::Config(format!(
                "CA file {} is not a PEM certificate: {err}",
                path.display()
            ))
        })?;
        if certificates.is_empty() {
            return Err(ClientError::Config(format!(
                "CA file {} contains no PEM certificate",
                path.display()
            )));
        }
        builder = builder.tls_certs_merge(certificates);
    }

    builder
        .build()
        .map_err(|err| ClientError::Config(format!("failed to build the HTTP client: {err}")))
}

/// Fetches the public keys that a license server publishes at `/v1/keys`.
///
/// The response is not signed, so trusting these keys is trust on first use: anyone who can
/// respond as `server_url` at this moment chooses the keys. Prefer keys copied from
/// `keyward keys` on the server.
pub async fn fetch_public_keys(
    server_url: &Url,
    timeout: Duration,
    ca_file: Option<&Path>,
) -> Result<Vec<PublicKeyInfo>, ClientError> {
    #[derive(Deserialize)]
    struct PublicKeys {
        keys: Vec<PublicKeyInfo>,
    }

    let http = build_http(timeout, timeout, ca_file, true)?;
    let url = endpoint(server_url, "v1/keys")?;
    let unreachable = |source| ClientError::Unreachable {
        url: url.to_string(),
        source,
    };
    let response = http.get(url.clone()).send().await.map_err(unreachable)?;
    let status = response.status().as_u16();
    let invalid = |reason: String| ClientError::InvalidResponse {
        url: url.to_string(),
        status,
        reason,
    };
    if !response.status().is_success() {
        return Err(invalid("expected HTTP 200".into()));
    }

    let bytes = read_limited(response, MAX_RESPONSE_BYTES)
        .await
        .map_err(|err| match err {
            ReadError::Http(source) => unreachable(source),
            ReadError::TooLarge => {
                invalid(format!("body is larger than {MAX_RESPONSE_BYTES} bytes"))
            }
        })?;
    let keys: PublicKeys =
        serde_json::from_slice(&bytes).map_err(|err| invalid(err.to_string()))?;
    Ok(keys.keys)
}

pub(crate) enum ReadError {
    Http(reqwest::Error),
    TooLarge,
}

/// Reads a response body, failing as soon as it passes `max` bytes.
pub(crate) async fn read_limited(
    mut response: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, ReadError> {
    if response
        .content_length()
        .is_some_and(|length| length > max as u64)
    {
        return Err(ReadError::TooLarge);
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Http)? {
        if bytes.len() + chunk.len() > max {
            return Err(ReadError::TooLarge);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}
