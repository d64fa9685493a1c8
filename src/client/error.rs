use chrono::{DateTime, Utc};
use thiserror::Error;

use crate::keys::KeyError;
use crate::signing::VerifyError;

/// Failures of the client library. An invalid license is not an error: `validate` returns it
/// as a [`Validation`](super::Validation) with a code other than `VALID`.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The license key failed the local format check, so no request was sent.
    #[error("invalid license key: {0}")]
    InvalidKey(#[from] KeyError),

    /// The builder was given settings that cannot work together.
    #[error("invalid client configuration: {0}")]
    Config(String),

    /// The request did not reach the server or no response arrived in time.
    #[error("license server {url} is unreachable: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },

    /// The redirect file could not be fetched and no earlier or configured server URL exists.
    #[error(
        "no license server URL is known: fetching the redirect file {redirector} failed \
         ({reason}) and no server URL is configured; set a server URL as a fallback"
    )]
    NoServer { redirector: String, reason: String },

    /// The response failed signature, nonce or freshness checks, so its content is ignored.
    #[error("untrusted response from {url} (HTTP {status}): {reason}")]
    UntrustedResponse {
        url: String,
        status: u16,
        reason: UntrustedReason,
    },

    /// The response was signed and fresh but did not have the expected shape.
    #[error("invalid response from {url} (HTTP {status}): {reason}")]
    InvalidResponse {
        url: String,
        status: u16,
        reason: String,
    },

    /// The server returned a signed error, such as `SEATS_EXHAUSTED`, `REVOKED` or
    /// `SITE_STANDBY`.
    #[error("license server rejected the request with {code}: {message}")]
    Rejected {
        code: String,
        message: String,
        /// The active site's URL, sent by a standby site with `SITE_STANDBY`.
        active_url: Option<String>,
    },

    /// The last successful server contact is older than the offline limit, or unknown.
    #[error(
        "{}; connect to the license server to validate again",
        describe_offline_too_long(*last_server_contact, *max_days_offline)
    )]
    OfflineTooLong {
        last_server_contact: Option<DateTime<Utc>>,
        max_days_offline: u32,
    },

    /// The local clock is earlier than the last successful server contact, as it is after the
    /// clock was set back to extend the offline period.
    #[error(
        "the local clock ({now}) is earlier than the last server contact \
         ({last_server_contact}); correct the clock or connect to the license server"
    )]
    ClockBehindLastContact {
        now: DateTime<Utc>,
        last_server_contact: DateTime<Utc>,
    },
}

/// Reason a response is not trusted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UntrustedReason {
    /// The signature header is missing or malformed, names an untrusted key, or does not
    /// match the body bytes.
    #[error("{0}")]
    Signature(#[from] VerifyError),

    /// The body does not echo the nonce that the client sent, as with a replayed response.
    #[error("response nonce {received:?} does not match the request nonce {expected:?}")]
    NonceMismatch {
        expected: String,
        received: Option<String>,
    },

    /// The server time differs from the client's clock by more than the allowed skew, as
    /// with a replayed response or a wrong clock on either side.
    #[error(
        "server time {server_time} differs from the local clock by {skew_seconds} s, more \
         than the allowed {max_skew_seconds} s; check both clocks"
    )]
    ClockSkew {
        server_time: DateTime<Utc>,
        skew_seconds: i64,
        max_skew_seconds: u64,
    },

    /// The signed body lacks a readable nonce or server time, so freshness cannot be checked.
    #[error("signed body has no readable nonce and server time: {0}")]
    MissingFreshness(String),
}

impl ClientError {
    /// Returns a stable machine code for this error: the server's code for a rejection and an
    /// upper-case name of the variant otherwise.
    pub fn code(&self) -> &str {
        match self {
            ClientError::InvalidKey(_) => "INVALID_KEY",
            ClientError::Config(_) => "INVALID_CONFIG",
            ClientError::Unreachable { .. } => "UNREACHABLE",
            ClientError::NoServer { .. } => "NO_SERVER",
            ClientError::UntrustedResponse { .. } => "UNTRUSTED_RESPONSE",
            ClientError::InvalidResponse { .. } => "INVALID_RESPONSE",
            ClientError::Rejected { code, .. } => code,
            ClientError::OfflineTooLong { .. } => "OFFLINE_TOO_LONG",
            ClientError::ClockBehindLastContact { .. } => "CLOCK_BEHIND_LAST_CONTACT",
        }
    }

    /// Returns whether no license server could be reached, which is when an offline check of
    /// a stored computer key may stand in for the server.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            ClientError::Unreachable { .. } | ClientError::NoServer { .. }
        )
    }
}

fn describe_offline_too_long(last: Option<DateTime<Utc>>, max_days: u32) -> String {
    match last {
        Some(last) => format!(
            "the last successful license server contact ({last}) is more than {max_days} days \
             ago"
        ),
        None => "no successful license server contact is recorded".to_string(),
    }
}
