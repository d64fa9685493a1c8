use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use url::Url;

use super::{FileError, RedirectFile, parse, read_file, same_site};

/// Number of SHA-256 bytes that go into an ETag: 128 bits, shown as 32 hex digits.
const ETAG_DIGEST_BYTES: usize = 16;

/// The last valid version of the redirect file.
#[derive(Debug, Clone)]
pub struct RedirectSnapshot {
    /// Exact bytes of the file as read from disk, served to clients unchanged.
    pub bytes: Bytes,
    /// Strong ETag of `bytes`, including the quotes.
    pub etag: String,
    pub file: RedirectFile,
    /// Parser warnings for this version.
    pub warnings: Vec<String>,
    pub loaded_at: DateTime<Utc>,
}

impl RedirectSnapshot {
    fn new(bytes: Vec<u8>, file: RedirectFile, warnings: Vec<String>) -> Self {
        RedirectSnapshot {
            etag: etag_for(&bytes),
            bytes: Bytes::from(bytes),
            file,
            warnings,
            loaded_at: Utc::now(),
        }
    }

    /// Returns whether `site` is the server that `activeUrl` names (see [`same_site`]).
    pub fn is_active_site(&self, site: &Url) -> bool {
        same_site(&self.file.active_url, site)
    }
}

/// The most recent failed reload: the file on disk is invalid or unreadable.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadFailure {
    pub message: String,
    /// When this failure was first seen. Later reloads of the same bad content keep it.
    pub at: DateTime<Utc>,
}

/// Result of [`RedirectorState::reload`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The file on disk matches the served version.
    Unchanged,
    /// A new valid version is now served.
    Updated,
    /// The file on disk is invalid or unreadable, so the last valid version is still served.
    Rejected,
}

/// Shared state of the redirector: the served version of the redirect file and the last
/// reload failure. Cloning is cheap, and all clones see the same state.
#[derive(Debug, Clone)]
pub struct RedirectorState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    current: watch::Sender<Arc<RedirectSnapshot>>,
    last_error: Mutex<Option<ReloadFailure>>,
}

impl RedirectorState {
    /// Reads and validates the redirect file at `path`. Fails if the file is unreadable or
    /// invalid, because there is no earlier version to fall back to.
    pub fn load(path: impl Into<PathBuf>) -> Result<Self, FileError> {
        let path = path.into();
        let bytes = read_file(&path)?;
        let (file, warnings) = parse(&bytes).map_err(|source| FileError::Invalid {
            path: path.clone(),
            source,
        })?;

        let snapshot = RedirectSnapshot::new(bytes, file, warnings);
        log_warnings(&path, &snapshot);
        let (current, _) = watch::channel(Arc::new(snapshot));

        Ok(RedirectorState {
            inner: Arc::new(Inner {
                path,
                current,
                last_error: Mutex::new(None),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Returns the version being served.
    pub fn current(&self) -> Arc<RedirectSnapshot> {
        self.inner.current.borrow().clone()
    }

    /// Returns a receiver that is notified each time a new valid version is loaded.
    pub fn subscribe(&self) -> watch::Receiver<Arc<RedirectSnapshot>> {
        self.inner.current.subscribe()
    }

    /// Returns the failure of the latest reload, or `None` if the file on disk is the served
    /// version.
    pub fn last_error(&self) -> Option<ReloadFailure> {
        self.lock_last_error().clone()
    }

    /// Reads the file again and serves it if it changed and is valid. An invalid or unreadable
    /// file is logged once per distinct error and recorded for [`last_error`](Self::last_error).
    pub fn reload(&self) -> ReloadOutcome {
        let path = self.path();
        let bytes = match read_file(path) {
            Ok(bytes) => bytes,
            Err(err) => return self.record_failure(&err),
        };

        if bytes == self.current().bytes {
            self.clear_failure();
            return ReloadOutcome::Unchanged;
        }

        let (file, warnings) = match parse(&bytes) {
            Ok(parsed) => parsed,
            Err(source) => {
                let err = FileError::Invalid {
                    path: path.to_path_buf(),
                    source,
                };
                return self.record_failure(&err);
            }
        };

        let snapshot = RedirectSnapshot::new(bytes, file, warnings);
        tracing::info!(
            redirect.file = %path.display(),
            redirect.etag = %snapshot.etag,
            redirect.active_url = %snapshot.file.active_url,
            "redirect file reloaded"
        );
        log_warnings(path, &snapshot);

        self.inner.current.send_replace(Arc::new(snapshot));
        self.clear_failure();
        ReloadOutcome::Updated
    }

    fn record_failure(&self, err: &FileError) -> ReloadOutcome {
        let message = err.to_string();
        let mut last_error = self.lock_last_error();

        // The fallback poll rereads the same bad file every two seconds, so log each error once.
        let is_repeat = last_error
            .as_ref()
            .is_some_and(|failure| failure.message == message);
        if !is_repeat {
            tracing::warn!(
                redirect.file = %self.path().display(),
                error = %message,
                served.etag = %self.current().etag,
                "redirect file reload failed; still serving the last valid version"
            );
            *last_error = Some(ReloadFailure {
                message,
                at: Utc::now(),
            });
        }
        ReloadOutcome::Rejected
    }

    fn clear_failure(&self) {
        if self.lock_last_error().take().is_some() {
            tracing::info!(
                redirect.file = %self.path().display(),
                "redirect file is valid again"
            );
        }
    }

    fn lock_last_error(&self) -> std::sync::MutexGuard<'_, Option<ReloadFailure>> {
        // The guarded value is replaced whole, so a panic elsewhere cannot leave it half-written.
        self.inner
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Computes the strong ETag of a redirect file: a quoted prefix of its SHA-256 in hex.
pub fn etag_for(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    format!("\"{}\"", hex::encode(&digest[..ETAG_DIGEST_BYTES]))
}

fn log_warnings(path: &Path, snapshot: &RedirectSnapshot) {
    for warning in &snapshot.warnings {
        tracing::warn!(
            redirect.file = %path.display(),
            redirect.etag = %snapshot.etag,
            warning = %warning,
            "redirect file warning"
        );
    }
}
