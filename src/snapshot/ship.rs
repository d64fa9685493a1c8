//! Shipping snapshots to the DR peer: streamed from disk through a zstd encoder, so memory stays
//! flat whatever the size, with retries on capped exponential backoff with jitter.

use std::sync::Arc;
use std::time::Duration;

use async_compression::tokio::bufread::ZstdEncoder;
use base64::Engine;
use tokio::io::BufReader;
use tokio_util::io::ReaderStream;

use super::{SnapshotService, StoredSnapshot};
use crate::config::Config;
use crate::role::Role;

/// HTTP client and settings for shipping.
pub struct Shipper {
    pub(super) client: reqwest::Client,
    max_backoff: Duration,
}

/// Failure of a shipment.
#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    /// The peer rejected this snapshot for good (fencing, divergence, a failed check); retrying
    /// the same file cannot succeed.
    #[error("peer rejected the snapshot: {code}: {message}")]
    Rejected { code: String, message: String },
    /// A failure that a retry may fix (network, timeouts, 5xx, busy).
    #[error("shipping failed: {0}")]
    Transient(String),
    #[error("no peer is configured: set peer.url")]
    NoPeer,
    #[error("no snapshot to ship; take one with `keyward snapshot`")]
    NoSnapshot,
    #[error("this site is standby and ships nothing")]
    Standby,
}

impl ShipError {
    pub fn code(&self) -> &str {
        match self {
            ShipError::Rejected { code, .. } => code,
            ShipError::Transient(_) => "TRANSIENT",
            ShipError::NoPeer => "NO_PEER",
            ShipError::NoSnapshot => "NO_SNAPSHOT",
            ShipError::Standby => "SITE_STANDBY",
        }
    }
}

impl Shipper {
    pub fn new(config: &Config) -> anyhow::Result<Shipper> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(120));
        if !config.peer.ca_file.is_empty() {
            let pem = std::fs::read(&config.peer.ca_file).map_err(|err| {
                anyhow::anyhow!("cannot read peer.ca_file {}: {err}", config.peer.ca_file)
            })?;
            let certificate = reqwest::Certificate::from_pem(&pem).map_err(|err| {
                anyhow::anyhow!(
                    "peer.ca_file {} is not a PEM certificate: {err}",
                    config.peer.ca_file
                )
            })?;
            builder = builder.add_root_certificate(certificate);
        }
        let client = builder.build()?;
        Ok(Shipper {
            client,
            max_backoff: config.duration_of("peer.max_backoff"),
        })
    }

    /// Uploads one snapshot file to `peer_url`. Returns the peer's result (`APPLIED` or
    /// `ALREADY_CURRENT`).
    pub async fn upload(
        &self,
        peer_url: &str,
        secret: &str,
        snapshot: &StoredSnapshot,
    ) -> Result<String, ShipError> {
        let file = tokio::fs::File::open(&snapshot.path).await.map_err(|err| {
            ShipError::Transient(format!("cannot open {}: {err}", snapshot.path.display()))
        })?;
        let encoder = ZstdEncoder::with_quality(
            BufReader::with_capacity(256 * 1024, file),
            async_compression::Level::Fastest,
        );
        let body = reqwest::Body::wrap_stream(ReaderStream::with_capacity(encoder, 256 * 1024));
        let manifest = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&snapshot.manifest).expect("manifest json"));
        let url = format!("{}/v1/peer/snapshots", peer_url.trim_end_matches('/'));
        let response = self
            .client
            .post(&url)
            .bearer_auth(secret)
            .header(super::receive::MANIFEST_HEADER, manifest)
            .header(reqwest::header::CONTENT_ENCODING, "zstd")
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(body)
            .send()
            .await
            .map_err(|err| ShipError::Transient(format!("{url}: {}", error_chain(&err))))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        if status.is_success() {
            return Ok(body["result"].as_str().unwrap_or("APPLIED").to_string());
        }
        let code = body["code"].as_str().unwrap_or("HTTP_ERROR").to_string();
        let message = body["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("HTTP {status}: {text}"));
        let transient = status.is_server_error()
            || status.as_u16() == 408
            || status.as_u16() == 429
            || matches!(
                code.as_str(),
                "TRANSFER_FAILED" | "RECEIVE_IN_PROGRESS" | "BUSY"
            );
        if transient {
            Err(ShipError::Transient(format!(
                "HTTP {status} {code}: {message}"
            )))
        } else {
            Err(ShipError::Rejected { code, message })
        }
    }

    fn backoff(&self, failures: u32) -> Duration {
        let base = Duration::from_millis(500).saturating_mul(1 << failures.min(16));
        let capped = base.min(self.max_backoff);
        // Jitter: between 75% and 125% of the capped delay.
        let random = u64::from(crate::ids::random_bytes(2)[0]);
        capped.mul_f64(0.75 + (random as f64 / 255.0) * 0.5)
    }
}

pub(super) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

impl SnapshotService {
    /// Ships the newest snapshot to the peer once, now.
    pub async fn ship_newest(&self) -> Result<(StoredSnapshot, String), ShipError> {
        if self.config.peer.url.is_empty() {
            return Err(ShipError::NoPeer);
        }
        if self.role.role() != Role::Active {
            return Err(ShipError::Standby);
        }
        let _one_at_a_time = self.ship_lock.lock().await;
        let snapshot = self.newest().ok_or(ShipError::NoSnapshot)?;
        self.set_shipping(Some(snapshot.manifest.sequence));
        let result = self
            .shipper
            .upload(
                &self.config.peer.url,
                self.config.peer.secret.expose(),
                &snapshot,
            )
            .await;
        self.set_shipping(None);
        let outcome = result?;
        self.status.shipped(&snapshot.manifest);
        Ok((snapshot, outcome))
    }
}

/// Runs the shipping loop: whenever a snapshot newer than the last shipped one exists and this
/// site is active, it ships it and retries transient failures with backoff. A newer snapshot
/// supersedes a pending older one, because every attempt picks the newest.
pub async fn run(service: Arc<SnapshotService>) {
    if service.config.peer.url.is_empty() {
        return;
    }
    let peer = service.config.peer.url.clone();
    let mut failures: u32 = 0;
    let mut rejected_sequence: Option<u64> = None;
    loop {
        let pending = service.newest().filter(|snapshot| {
            let sequence = snapshot.manifest.sequence;
            let shipped = service.status.get().last_shipped.map(|s| s.sequence);
            shipped.is_none_or(|done| sequence > done) && Some(sequence) != rejected_sequence
        });
        let wait = match (pending, service.role.role()) {
            (Some(snapshot), Role::Active) => match service.ship_newest().await {
                Ok((shipped, outcome)) => {
                    if failures > 0 {
                        tracing::info!(peer.url = %peer, failures, snapshot.seq = shipped.manifest.sequence, "shipping recovered");
                    } else {
                        tracing::info!(peer.url = %peer, snapshot.seq = shipped.manifest.sequence, outcome, "snapshot shipped");
                    }
                    failures = 0;
                    None
                }
                Err(ShipError::Rejected { code, message }) => {
                    let streak = service.status.ship_failed(&code, &message);
                    tracing::error!(peer.url = %peer, snapshot.seq = snapshot.manifest.sequence, code, message, streak, "peer rejected the snapshot; not retrying it");
                    rejected_sequence = Some(snapshot.manifest.sequence);
                    failures += 1;
                    None
                }
                Err(err) => {
                    let streak = service.status.ship_failed(err.code(), &err.to_string());
                    let delay = service.shipper.backoff(failures);
                    failures = failures.saturating_add(1);
                    // Log the first failures, then every tenth, so a long outage does not flood the log.
                    if streak <= 3 || streak.is_multiple_of(10) {
                        tracing::warn!(peer.url = %peer, error = %err, streak, retry_in_ms = delay.as_millis() as u64, "shipping failed; will retry");
                    }
                    Some(delay)
                }
            },
            _ => None,
        };
        match wait {
            Some(delay) => {
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = service.ship_wakeup.notified() => {}
                }
            }
            None => {
                tokio::select! {
                    _ = service.ship_wakeup.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(30)) => {}
                }
            }
        }
    }
}
