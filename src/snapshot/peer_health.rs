//! Checking whether the peer is reachable: `GET {peer.url}/healthz` with a short timeout, through
//! the same HTTP client (and `peer.ca_file`) that ships snapshots.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::ship::{Shipper, error_chain};

/// How long a peer health check may take before the peer counts as unreachable.
pub const PEER_CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// Result of one peer health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PeerHealth {
    pub url: String,
    /// True when the peer's `/healthz` returned a 2xx status in time.
    pub reachable: bool,
    /// HTTP status the peer returned, if it returned one.
    pub http_status: Option<u16>,
    /// Reason the check failed; absent when reachable.
    pub error: Option<String>,
    /// Time the check took, in milliseconds.
    pub elapsed_ms: u64,
}

impl Shipper {
    /// Sends `GET {peer_url}/healthz` and reports whether the peer returned a 2xx status within
    /// [`PEER_CHECK_TIMEOUT`]. Never sends the peer secret.
    pub async fn check_peer(&self, peer_url: &str) -> PeerHealth {
        let url = format!("{}/healthz", peer_url.trim_end_matches('/'));
        let started = Instant::now();
        let result = self
            .client
            .get(&url)
            .timeout(PEER_CHECK_TIMEOUT)
            .send()
            .await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let (reachable, http_status, error) = match result {
            Ok(response) if response.status().is_success() => {
                (true, Some(response.status().as_u16()), None)
            }
            Ok(response) => {
                let status = response.status();
                (
                    false,
                    Some(status.as_u16()),
                    Some(format!("{url} returned HTTP {status}")),
                )
            }
            Err(err) if err.is_timeout() => (
                false,
                None,
                Some(format!(
                    "{url} timed out after {} s",
                    PEER_CHECK_TIMEOUT.as_secs()
                )),
            ),
            Err(err) => (false, None, Some(format!("{url}: {}", error_chain(&err)))),
        };
        if let Some(error) = &error {
            tracing::warn!(peer.url = %peer_url, error = %error, "peer health check failed");
        }
        PeerHealth {
            url: peer_url.to_string(),
            reachable,
            http_status,
            error,
            elapsed_ms,
        }
    }
}
