//! The optional client state file: what the client learned from the redirector and the
//! license server, kept so a restarted client can use it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::keys::LicenseKey;
use crate::signing::TrustedKeys;

/// Client state kept between runs. Written as JSON with mode 0600, because the contact proof
/// contains the license key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientState {
    /// URL of the redirect file that `active_url` and `redirect_etag` came from.
    #[serde(default)]
    pub redirector_url: Option<String>,
    /// Last `activeUrl` read from the redirect file.
    #[serde(default)]
    pub active_url: Option<String>,
    /// ETag of the redirect file that contained `active_url`.
    #[serde(default)]
    pub redirect_etag: Option<String>,
    /// Last time a license server confirmed any license: the newest server time in
    /// `contact_proofs`. The client ignores this field and reads the times from the proofs, so
    /// the field is only for people reading the file.
    #[serde(default)]
    pub last_server_contact: Option<DateTime<Utc>>,
    /// Signed confirmations by license key (canonical form) and computer id, joined by one
    /// space: the server's response to the latest activation or `VALID` validation of that
    /// license on that computer. Each proof names both, so an edit of the file cannot extend
    /// the offline period, and a refusal by the server removes the entry.
    #[serde(default)]
    pub contact_proofs: BTreeMap<String, SignedBody>,
}

/// A response body exactly as the server signed it, with its signature header. The body
/// contains the license key, so `Debug` shows only its length.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedBody {
    pub body: String,
    /// Value of the `keyward-signature` header.
    pub signature: String,
}

impl std::fmt::Debug for SignedBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedBody")
            .field("body", &format_args!("<{} bytes>", self.body.len()))
            .field("signature", &self.signature)
            .finish()
    }
}

impl SignedBody {
    /// Verifies the signature with `trusted`, checks that the body confirms `key` on
    /// `computer_id` (an activation, or a validation with code `VALID`) and returns the signed
    /// `server_time`.
    pub fn confirmed_at(
        &self,
        trusted: &TrustedKeys,
        key: &LicenseKey,
        computer_id: &str,
    ) -> Result<DateTime<Utc>, String> {
        trusted
            .verify_header(Some(&self.signature), self.body.as_bytes())
            .map_err(|err| err.to_string())?;
        let body: Confirmation =
            serde_json::from_str(&self.body).map_err(|err| format!("signed body: {err}"))?;
        let confirms = body.code.as_deref() == Some("VALID")
            || matches!(
                body.result.as_deref(),
                Some("ACTIVATED" | "ALREADY_ACTIVATED")
            );
        if !confirms {
            return Err("the signed response does not confirm a license".into());
        }
        let named = body.license.map(|license| license.key);
        if !named.is_some_and(|named| LicenseKey::parse(&named).is_ok_and(|named| named == *key)) {
            return Err(format!("the signed response is not about license {key}"));
        }
        if body.computer_id.as_deref() != Some(computer_id) {
            return Err(format!(
                "the signed response is not about computer {computer_id:?}"
            ));
        }
        crate::time::parse(&body.server_time).map_err(|err| format!("server_time: {err}"))
    }

    /// Returns the `server_time` of the body without checking the signature.
    pub(crate) fn server_time(&self) -> Option<DateTime<Utc>> {
        let body: Confirmation = serde_json::from_str(&self.body).ok()?;
        crate::time::parse(&body.server_time).ok()
    }
}

/// The fields of an activation or validation response that a contact proof is checked by.
#[derive(Deserialize)]
struct Confirmation {
    server_time: String,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    result: Option<String>,
    #[serde(default)]
    license: Option<NamedLicense>,
    #[serde(default)]
    computer_id: Option<String>,
}

#[derive(Deserialize)]
struct NamedLicense {
    key: String,
}

/// Returns the `contact_proofs` key of `key` on `computer_id`.
pub(crate) fn proof_key(key: &LicenseKey, computer_id: &str) -> String {
    format!("{} {computer_id}", key.as_str())
}

impl ClientState {
    /// Returns the newest server time among the contact proofs, without checking signatures.
    pub(crate) fn newest_contact(&self) -> Option<DateTime<Utc>> {
        self.contact_proofs
            .values()
            .filter_map(SignedBody::server_time)
            .max()
    }
}

impl ClientState {
    /// Reads the state file at `path`. Returns the default state when the file does not
    /// exist.
    pub fn read(path: &Path) -> std::io::Result<ClientState> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Ok(ClientState::default());
            }
            Err(err) => return Err(err),
        };
        serde_json::from_slice(&bytes)
            .map_err(|err| std::io::Error::new(std::io::ErrorKind::InvalidData, err))
    }
}

/// The state in memory, and the file that mirrors it when one is configured.
pub(crate) struct StateStore {
    path: Option<PathBuf>,
    state: Arc<Mutex<ClientState>>,
    /// Serializes writers, so that the last file write carries the newest state.
    write_lock: Arc<Mutex<()>>,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl StateStore {
    /// Loads the state file at `path`, if any. An unreadable or invalid file is logged and
    /// replaced on the next write. The last server contact is taken from the signed proof
    /// and dropped when the proof does not verify with `trusted`.
    pub(crate) fn open(path: Option<PathBuf>, trusted: &TrustedKeys) -> StateStore {
        let mut state = match &path {
            Some(path) => ClientState::read(path).unwrap_or_else(|err| {
                tracing::warn!(
                    state.file = %path.display(),
                    error = %err,
                    "ignoring unreadable client state file; it is rewritten on the next change"
                );
                ClientState::default()
            }),
            None => ClientState::default(),
        };
        keep_verified_proofs(&mut state, trusted, path.as_deref());
        state.last_server_contact = state.newest_contact();
        StateStore {
            path,
            state: Arc::new(Mutex::new(state)),
            write_lock: Arc::new(Mutex::new(())),
        }
    }

    pub(crate) fn get(&self) -> ClientState {
        lock(&self.state).clone()
    }

    /// Applies `change` to the state and, when it returns true, writes the state file. A
    /// failed write is logged and the state in memory keeps the change.
    pub(crate) async fn update(&self, change: impl FnOnce(&mut ClientState) -> bool) {
        let changed = change(&mut lock(&self.state));
        let Some(path) = self.path.clone() else {
            return;
        };
        if !changed {
            return;
        }

        let state = self.state.clone();
        let write_lock = self.write_lock.clone();
        let written = tokio::task::spawn_blocking(move || {
            let _writing = lock(&write_lock);
            let bytes = serde_json::to_vec_pretty(&*lock(&state)).expect("state serializes");
            crate::fsutil::write_atomically(&path, &bytes).map_err(|err| (path, err))
        })
        .await;

        match written {
            Ok(Ok(())) => {}
            Ok(Err((path, err))) => tracing::warn!(
                state.file = %path.display(),
                error = %err,
                "failed to write the client state file"
            ),
            Err(err) => tracing::warn!(error = %err, "client state file writer task failed"),
        }
    }
}

/// Drops each contact proof that does not verify with `trusted` or does not confirm the
/// license it is filed under.
fn keep_verified_proofs(state: &mut ClientState, trusted: &TrustedKeys, path: Option<&Path>) {
    state.contact_proofs.retain(|entry, proof| {
        // A license key has no spaces, so the first one ends it.
        let (key, computer_id) = entry.split_once(' ').unwrap_or((entry, ""));
        let checked = LicenseKey::parse(key)
            .map_err(|err| err.to_string())
            .and_then(|key| proof.confirmed_at(trusted, &key, computer_id));
        match checked {
            Ok(_) => true,
            Err(err) => {
                tracing::warn!(
                    state.file = ?path.map(Path::display),
                    error = %err,
                    "ignoring a server contact in the client state file, because its signed \
                     proof does not verify"
                );
                false
            }
        }
    });
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every update replaces whole fields, so a panic elsewhere cannot leave the value torn.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
