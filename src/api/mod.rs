//! The HTTP API: client endpoints (the license key is the credential; every response signed),
//! admin endpoints (bearer admin token), the peer endpoint that receives snapshots, and the
//! operations endpoints (probes, metrics, the OpenAPI document and the status page), which need
//! no credentials.

pub mod admin;
pub mod blocked;
pub mod client;
pub mod documents;
pub mod error;
pub mod forwarded;
pub mod health;
pub mod import;
pub mod keys;
pub mod last_seen;
pub mod leases;
pub mod metrics;
pub mod observe;
pub mod openapi;
pub mod rate_limit;
pub mod replication;
pub mod routes;
pub mod status_page;

use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Method;

use crate::config::Config;
use crate::db::Db;
use crate::role::{Role, RoleState};
use crate::signing::{Keyring, TrustedKeys};
use crate::time::SharedClock;

pub use error::{ApiError, ApiJson, ApiPath};
pub use routes::RouteTable;

/// Largest JSON request body accepted by client and admin endpoints.
pub const MAX_JSON_BODY: usize = 64 * 1024;

/// Shared state of the HTTP handlers.
pub struct AppState {
    pub db: Arc<Db>,
    pub config: Arc<Config>,
    pub clock: SharedClock,
    pub role: Arc<RoleState>,
    pub last_seen: last_seen::LastSeenBuffer,
    /// Recent validation facts, dropped whenever the database changes.
    pub validation_facts: crate::db::cache::VersionCache<client::ValidationEntry>,
    keys: RwLock<(Arc<Keyring>, Arc<TrustedKeys>)>,
    pub snapshots: Arc<crate::snapshot::SnapshotService>,
    pub metrics: crate::metrics::http::RequestMetrics,
    /// Per-address limit on client requests; `None` when `limits.requests_per_minute` is 0.
    pub rate_limiter: Option<crate::ratelimit::RateLimiter>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

impl AppState {
    pub fn new(
        db: Arc<Db>,
        config: Arc<Config>,
        clock: SharedClock,
        role: Arc<RoleState>,
        keyring: Keyring,
        snapshots: Arc<crate::snapshot::SnapshotService>,
    ) -> Result<AppState, crate::signing::VerifyError> {
        let trusted = TrustedKeys::from_published(keyring.public_keys())?;
        let validation_facts =
            crate::db::cache::VersionCache::new(config.validation.cache_entries as usize);
        let rate_limiter = crate::ratelimit::RateLimiter::new(
            config.limits.requests_per_minute,
            config.limits.request_burst,
            crate::ratelimit::DEFAULT_MAX_TRACKED,
        );
        Ok(AppState {
            db,
            config,
            clock,
            role,
            last_seen: last_seen::LastSeenBuffer::default(),
            validation_facts,
            keys: RwLock::new((Arc::new(keyring), Arc::new(trusted))),
            snapshots,
            metrics: crate::metrics::http::RequestMetrics::default(),
            rate_limiter,
        })
    }

    pub fn keyring(&self) -> Arc<Keyring> {
        self.keys.read().expect("keyring lock poisoned").0.clone()
    }

    pub fn trusted(&self) -> Arc<TrustedKeys> {
        self.keys.read().expect("keyring lock poisoned").1.clone()
    }

    /// Reloads the signing keys from the database (after a snapshot swap or a key rotation).
    pub async fn reload_keys(&self) -> Result<(), ApiError> {
        let now = crate::time::format(self.clock.now());
        let keyring = self
            .db
            .read(move |conn| Keyring::load_at(conn, &now))
            .await?;
        let trusted = TrustedKeys::from_published(keyring.public_keys())
            .map_err(|err| ApiError::internal("reloading signing keys", err))?;
        *self.keys.write().expect("keyring lock poisoned") = (Arc::new(keyring), Arc::new(trusted));
        Ok(())
    }

    /// Rejects a write on a standby site with `SITE_STANDBY` and the active site's URL.
    pub fn require_active(&self) -> Result<(), ApiError> {
        if self.role.role() == Role::Active && self.db.is_writable() {
            return Ok(());
        }
        Err(self.standby_error())
    }

    pub fn standby_error(&self) -> ApiError {
        let mut err = ApiError::from(crate::db::DbError::ReadOnly);
        err.active_url = self.role.current().active_url;
        err
    }

    /// Converts a domain error, filling in the active site's URL for `SITE_STANDBY`.
    pub fn error(&self, err: impl Into<ApiError>) -> ApiError {
        let mut err = err.into();
        if err.code == "SITE_STANDBY" {
            err.active_url = self.role.current().active_url;
        }
        err
    }
}

/// Lists every endpoint with its handler.
pub fn route_table() -> RouteTable {
    let client_routes = RouteTable::default()
        .add(Method::POST, "/v1/activate", client::activate)
        .add(Method::POST, "/v1/validate", client::validate)
        .add(Method::POST, "/v1/release", client::release)
        .add(Method::POST, "/v1/leases/checkout", leases::checkout)
        .add(Method::POST, "/v1/leases/heartbeat", leases::heartbeat)
        .add(Method::POST, "/v1/leases/checkin", leases::checkin)
        .add(Method::POST, "/v1/license-file", documents::license_file)
        .add(Method::GET, "/v1/keys", client::public_keys)
        .map_router(|router| {
            router.route_layer(axum::middleware::from_extractor::<
                rate_limit::ClientRateLimit,
            >())
        });
    let json_api = client_routes
        .merge(admin::routes())
        .merge(blocked::routes())
        .merge(documents::routes())
        .merge(keys::routes())
        .map_router(|router| router.layer(DefaultBodyLimit::max(MAX_JSON_BODY)));
    let operations = RouteTable::default()
        .add(Method::GET, "/healthz", health::healthz)
        .add(Method::GET, "/readyz", health::readyz)
        .add(Method::GET, "/metrics", metrics::metrics)
        .add(Method::GET, "/v1/openapi.json", openapi::openapi_json)
        .add(Method::GET, "/status", status_page::page)
        .add(Method::GET, "/status/style.css", status_page::stylesheet)
        .add(Method::GET, "/status/app.js", status_page::script);
    // Restore streams its body with its own size cap (receive.max_snapshot_bytes).
    operations
        .merge(json_api)
        .merge(replication::routes())
        .merge(import::routes())
        .merge(crate::snapshot::receive::routes())
}

/// Builds the router with every endpoint, request ids, request metrics and request logs.
pub fn router(state: Arc<AppState>) -> Router {
    let router = route_table()
        .into_router()
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                "this endpoint does not accept that method; the Allow header lists the ones it does",
            )
        })
        .fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "NO_ROUTE",
                "no such endpoint; see the README for the API",
            )
        })
        .with_state(state.clone())
        .layer(axum::Extension(state.clone()));
    let router = forwarded::layer(router, state.config.trusted_proxies());
    observe::layer(router, state)
}
