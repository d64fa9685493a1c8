//! Finding the active license server: from the redirect file when a DR site is enabled,
//! otherwise the configured server URL.
//!
//! The `activeUrl` of the redirect file is cached for the redirect TTL. After the TTL the file
//! is fetched again with `If-None-Match`, and a 304 keeps the cached URL for another TTL. When
//! the file cannot be fetched, the last known good URL is used (from memory, which starts from
//! the state file), then the configured server URL.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{ETAG, IF_NONE_MATCH};
use tokio::sync::Mutex;
use tokio::time::Instant;
use url::Url;

use super::ClientError;
use super::state::{ClientState, StateStore};
use super::transport::{ReadError, read_limited};
use crate::redirect::MAX_REDIRECT_FILE_BYTES;

/// Resolves the URL of the active license server.
#[derive(Debug)]
pub(crate) struct Resolver {
    /// URL of the redirect file. `None` when the DR site is not enabled.
    redirector: Option<Url>,
    server_url: Option<Url>,
    ttl: Duration,
    cache: Mutex<Cache>,
}

#[derive(Debug, Default)]
struct Cache {
    /// Last known good `activeUrl`.
    active_url: Option<Url>,
    /// ETag of the redirect file that contained `active_url`.
    etag: Option<String>,
    /// When the redirect file was last fetched or found unchanged. `None` forces a fetch.
    checked_at: Option<Instant>,
    /// Whether the last fetch failed, so that recovery is logged once.
    failing: bool,
}

enum Fetched {
    NotModified,
    File {
        active_url: Url,
        etag: Option<String>,
    },
}

impl Resolver {
    /// Creates a resolver, starting from the URL and ETag in `persisted` when they came from
    /// the same redirect file URL.
    pub(crate) fn new(
        redirector: Option<Url>,
        server_url: Option<Url>,
        ttl: Duration,
        persisted: &ClientState,
    ) -> Resolver {
        let mut cache = Cache::default();
        let same_redirector = redirector
            .as_ref()
            .is_some_and(|url| persisted.redirector_url.as_deref() == Some(url.as_str()));
        if same_redirector {
            cache.active_url = persisted
                .active_url
                .as_deref()
                .and_then(|url| Url::parse(url).ok());
            if cache.active_url.is_some() {
                cache.etag = persisted.redirect_etag.clone();
            }
        }
        Resolver {
            redirector,
            server_url,
            ttl,
            cache: Mutex::new(cache),
        }
    }

    /// Returns whether the active URL comes from a redirect file.
    pub(crate) fn follows_redirects(&self) -> bool {
        self.redirector.is_some()
    }

    /// Returns the active server URL. With `refresh`, the redirect file is fetched even when
    /// the cached URL is within its TTL.
    pub(crate) async fn resolve(
        &self,
        http: &reqwest::Client,
        state: &StateStore,
        refresh: bool,
    ) -> Result<Url, ClientError> {
        let Some(redirector) = &self.redirector else {
            return self.configured_url();
        };

        let mut cache = self.cache.lock().await;
        let fresh = cache
            .checked_at
            .is_some_and(|checked_at| checked_at.elapsed() < self.ttl);
        if fresh && !refresh {
            if let Some(url) = &cache.active_url {
                return Ok(url.clone());
            }
            return self.fallback_url(redirector, "the last fetch failed");
        }

        let result = fetch_redirect_file(http, redirector, cache.etag.as_deref()).await;
        cache.checked_at = Some(Instant::now());
        match result {
            Ok(Fetched::NotModified) => {
                log_recovery(&mut cache, redirector);
                let url = cache.active_url.clone();
                // An ETag is only sent together with a cached URL, so this is always Some.
                url.ok_or_else(|| ClientError::NoServer {
                    redirector: redirector.to_string(),
                    reason: "HTTP 304 without a cached copy".into(),
                })
            }
            Ok(Fetched::File { active_url, etag }) => {
                log_recovery(&mut cache, redirector);
                self.store(&mut cache, state, redirector, active_url, etag)
                    .await
            }
            Err(reason) => {
                if !cache.failing {
                    tracing::warn!(
                        redirect.url = %redirector,
                        error = %reason,
                        fallback.url = ?cache.active_url.as_ref().or(self.server_url.as_ref()).map(Url::as_str),
                        "failed to fetch the redirect file; using the last known server URL"
                    );
                }
                cache.failing = true;
                match &cache.active_url {
                    Some(url) => Ok(url.clone()),
                    None => self.fallback_url(redirector, &reason),
                }
            }
        }
    }

    /// Caches a freshly fetched active URL and persists it with its ETag.
    async fn store(
        &self,
        cache: &mut Cache,
        state: &StateStore,
        redirector: &Url,
        active_url: Url,
        etag: Option<String>,
    ) -> Result<Url, ClientError> {
        if cache.active_url.as_ref() != Some(&active_url) {
            tracing::info!(
                redirect.url = %redirector,
                previous.url = cache.active_url.as_ref().map_or("(none)", Url::as_str),
                active.url = %active_url,
                "active license server changed"
            );
        }
        cache.active_url = Some(active_url.clone());
        cache.etag = etag.clone();

        let persisted = ClientState {
            redirector_url: Some(redirector.to_string()),
            active_url: Some(active_url.to_string()),
            redirect_etag: etag,
            ..ClientState::default()
        };
        state
            .update(|state| {
                let changed = state.redirector_url != persisted.redirector_url
                    || state.active_url != persisted.active_url
                    || state.redirect_etag != persisted.redirect_etag;
                state.redirector_url = persisted.redirector_url;
                state.active_url = persisted.active_url;
                state.redirect_etag = persisted.redirect_etag;
                changed
            })
            .await;
        Ok(active_url)
    }

    fn configured_url(&self) -> Result<Url, ClientError> {
        // The builder requires a server URL whenever no redirector is set.
        self.server_url
            .clone()
            .ok_or_else(|| ClientError::Config("no server URL is configured".into()))
    }

    fn fallback_url(&self, redirector: &Url, reason: &str) -> Result<Url, ClientError> {
        self.server_url
            .clone()
            .ok_or_else(|| ClientError::NoServer {
                redirector: redirector.to_string(),
                reason: reason.to_string(),
            })
    }
}

fn log_recovery(cache: &mut Cache, redirector: &Url) {
    if cache.failing {
        tracing::info!(redirect.url = %redirector, "redirect file is reachable again");
        cache.failing = false;
    }
}

/// Fetches the redirect file, sending `etag` in `If-None-Match` when given. Returns a reason
/// text on failure, because every failure leads to the same fallback.
async fn fetch_redirect_file(
    http: &reqwest::Client,
    url: &Url,
    etag: Option<&str>,
) -> Result<Fetched, String> {
    let mut request = http.get(url.clone());
    if let Some(etag) = etag {
        request = request.header(IF_NONE_MATCH, etag);
    }
    let response = request.send().await.map_err(|err| err.to_string())?;

    let status = response.status();
    if status == StatusCode::NOT_MODIFIED && etag.is_some() {
        return Ok(Fetched::NotModified);
    }
    if status != StatusCode::OK {
        return Err(format!("HTTP {status}"));
    }

    let etag = response
        .headers()
        .get(ETAG)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    let bytes = read_limited(response, MAX_REDIRECT_FILE_BYTES)
        .await
        .map_err(|err| match err {
            ReadError::Http(err) => err.to_string(),
            ReadError::TooLarge => {
                format!("redirect file is larger than {MAX_REDIRECT_FILE_BYTES} bytes")
            }
        })?;
    let (file, _warnings) = crate::redirect::parse(&bytes).map_err(|err| err.to_string())?;
    Ok(Fetched::File {
        active_url: file.active_url,
        etag,
    })
}
