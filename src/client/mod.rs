//! The client library: activate, validate and release licenses against a keyward server, and
//! check a stored computer key offline.
//!
//! ```no_run
//! # async fn example() -> Result<(), keyward::client::ClientError> {
//! let client = keyward::client::Client::builder()
//!     .server_url("https://lic.example.com/")
//!     .trusted_key("k1a2b3c4d", "<base64 public key from `keyward keys`>")
//!     .build()?;
//! let validation = client.validate("7K3M-QW2D-H8XP-R4TN-B6YC-Z9GV-F1J1", "pc-1", None).await?;
//! println!("{:?}", validation.code);
//! # Ok(())
//! # }
//! ```
//!
//! Every response must carry a valid signature by a trusted key over its exact bytes, echo the
//! request's random nonce and carry a server time within the allowed clock skew. A response
//! that fails any check is a [`ClientError::UntrustedResponse`], never a license result.
//!
//! # Layout
//!
//! - [`ClientBuilder`]: settings and their defaults.
//! - `resolver`: finds the active server, following the redirect file when a DR site is
//!   enabled.
//! - `transport`: sends requests with a nonce and verifies the responses.
//! - `ops`: the operations, with one retry when the active server moved.
//! - [`offline`]: computer-key checks without the server.
//! - [`ClientState`]: the optional state file.

mod builder;
mod error;
pub mod offline;
mod ops;
mod resolver;
mod state;
mod transport;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};
use url::Url;

pub use crate::api::client::ClientLicense;
pub use crate::license::validate::ValidationCode;
pub use builder::{
    ClientBuilder, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_CLOCK_SKEW, DEFAULT_MAX_DAYS_OFFLINE,
    DEFAULT_REDIRECT_TTL, DEFAULT_TIMEOUT,
};
pub use error::{ClientError, UntrustedReason};
pub use state::{ClientState, SignedBody};
pub use transport::fetch_public_keys;

use crate::signing::ComputerKeyClaims;
use crate::time::SharedClock;

/// A license client. Cloning is cheap, and clones share the cached server URL and state.
#[derive(Debug, Clone)]
pub struct Client {
    inner: std::sync::Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    transport: transport::Transport,
    resolver: resolver::Resolver,
    state: state::StateStore,
    product: Option<String>,
    max_days_offline: u32,
    max_clock_skew: Duration,
    clock: SharedClock,
}

/// A successful activation.
#[derive(Debug, Clone, Serialize)]
pub struct Activation {
    /// Signed token binding the license to this computer; store it for offline checks.
    pub computer_key: String,
    pub license: ClientLicense,
    /// Whether this computer held an activation of the license already.
    pub already_active: bool,
}

/// The outcome of a validation, from the server or from a stored computer key.
#[derive(Debug, Clone, Serialize)]
pub struct Validation {
    pub code: ValidationCode,
    /// License details from the server. `None` offline and when the key was not found.
    pub license: Option<ClientLicense>,
    /// Claims of the computer key checked offline. `None` for a server result.
    pub claims: Option<ComputerKeyClaims>,
    pub source: ValidationSource,
}

impl Validation {
    pub fn is_valid(&self) -> bool {
        self.code == ValidationCode::Valid
    }
}

/// Origin of a validation result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "checked_by", rename_all = "snake_case")]
pub enum ValidationSource {
    /// The license server at `url` sent a verified response.
    Server {
        #[serde(serialize_with = "serialize_url")]
        url: Url,
        server_time: DateTime<Utc>,
    },
    /// The stored computer key was checked locally.
    Offline {
        last_server_contact: Option<DateTime<Utc>>,
    },
}

impl Client {
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// Returns the URL of the active license server, fetching the redirect file when the
    /// cached `activeUrl` is older than the redirect TTL.
    pub async fn active_url(&self) -> Result<Url, ClientError> {
        let inner = &self.inner;
        inner
            .resolver
            .resolve(&inner.transport.http, &inner.state, false)
            .await
    }

    /// Returns the signed server time of the newest confirmation of any license (an
    /// activation or a `VALID` validation). Offline checks use [`Self::last_server_contact_for`].
    pub fn last_server_contact(&self) -> Option<DateTime<Utc>> {
        self.inner.state.get().last_server_contact
    }

    /// Returns the signed server time of the last confirmation of license `key` on
    /// `computer_id`, from this process or the verified proof in the state file. `None` when
    /// the server never confirmed it, or refused or released it since.
    pub fn last_server_contact_for(&self, key: &str, computer_id: &str) -> Option<DateTime<Utc>> {
        let key = crate::keys::LicenseKey::parse(key).ok()?;
        let state = self.inner.state.get();
        let proof = state
            .contact_proofs
            .get(&state::proof_key(&key, computer_id))?;
        proof
            .confirmed_at(self.inner.transport.trusted(), &key, computer_id)
            .ok()
    }

    /// Returns a copy of the client state that the state file mirrors.
    pub fn state(&self) -> ClientState {
        self.inner.state.get()
    }
}

fn serialize_url<S: Serializer>(url: &Url, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(url.as_str())
}
