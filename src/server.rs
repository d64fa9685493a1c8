//! Starting and stopping the license server: open the database, restore the role, start the
//! background tasks and serve HTTP until the shutdown future resolves.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::api::{self, AppState};
use crate::config::Config;
use crate::db::{Db, DbError};
use crate::license::tokens;
use crate::role::{Role, RoleState};
use crate::signing::Keyring;
use crate::time::SharedClock;

/// A prepared server: the database is open and the role known, nothing is listening yet.
pub struct Server {
    pub state: Arc<AppState>,
    /// Held for the server's life so offline tools know it is running.
    _lock: std::fs::File,
    /// The admin token created on this start, if the database had none. Shown once.
    pub bootstrap_token: Option<String>,
}

impl Server {
    /// Opens the data directory: finishes or rolls back an interrupted swap, opens and migrates
    /// the database, creates the signing key and the first admin token if missing, and restores
    /// the persisted role.
    pub async fn open(config: Config, clock: SharedClock) -> anyhow::Result<Server> {
        let data_dir = config.data_dir.clone();
        crate::fsutil::create_private_dir(&data_dir)
            .with_context(|| format!("while creating data directory {}", data_dir.display()))?;
        let lock = crate::snapshot::offline::lock_data_dir(&data_dir)?;
        crate::snapshot::swap::recover(&data_dir).with_context(|| {
            format!(
                "while recovering an interrupted swap in {}",
                data_dir.display()
            )
        })?;
        let site_id = crate::role::load_site_id(&data_dir)
            .with_context(|| format!("while reading the site id in {}", data_dir.display()))?;

        let provided = Some(config.bootstrap_admin_token.expose()).filter(|t| !t.is_empty());
        let mut bootstrap_token = None;
        let db_path = config.db_path();
        let mut db = Db::open(&db_path, |conn| {
            Keyring::ensure_key(conn)?;
            let now = crate::time::format(chrono::Utc::now());
            bootstrap_token = tokens::ensure_bootstrap(conn, provided, &now)
                .map_err(|err| DbError::Schema(err.to_string()))?;
            Ok(())
        })
        .with_context(|| format!("while opening database {}", db_path.display()))?;
        db.set_gate_timeout(config.duration_of("receive.swap_wait"));
        let db = Arc::new(db);

        let initial = if !config.redirect.url.is_empty() || config.initial_role == "standby" {
            Role::Standby
        } else {
            Role::Active
        };
        let role = Arc::new(RoleState::load(&data_dir, &site_id, initial)?);
        match crate::role::follow::read_at_start(&config).await {
            Some(reading) if reading.role == Role::Active => {
                role.set_active_url(Some(reading.active_url.to_string()));
                let reason = format!(
                    "redirect file names this site ({}) as activeUrl at start",
                    reading.active_url
                );
                role.promote(&db, &reason).await?;
            }
            Some(reading) if role.role() == Role::Active => {
                let reason = format!(
                    "redirect file names {} as activeUrl at start",
                    reading.active_url
                );
                role.demote(&db, &reason, Some(reading.active_url.to_string()))?;
            }
            // Already standby: keep the recorded reason and time of the last role change.
            Some(reading) => {
                role.set_active_url(Some(reading.active_url.to_string()));
                db.set_writable(false);
            }
            None if role.role() == Role::Active => {
                role.promote(&db, "start as active").await?;
            }
            None => db.set_writable(false),
        }

        let now = crate::time::format(clock.now());
        let keyring = db.read(move |conn| Keyring::load_at(conn, &now)).await?;
        let config = Arc::new(config);
        let snapshots = Arc::new(crate::snapshot::SnapshotService::new(
            config.clone(),
            db.clone(),
            role.clone(),
            clock.clone(),
        )?);
        let state = AppState::new(db, config, clock, role, keyring, snapshots)?;
        Ok(Server {
            state: Arc::new(state),
            _lock: lock,
            bootstrap_token,
        })
    }

    /// Serves HTTP on `listener` until `shutdown` resolves, then lets in-flight requests finish,
    /// flushes buffered last-contact times and closes the database.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Server {
            state, _lock: lock, ..
        } = self;
        let addr = listener.local_addr()?;
        let config = &state.config;
        tracing::info!(
            listen = %addr,
            data_dir = %config.data_dir.display(),
            database = %config.db_path().display(),
            role = state.role.role().as_str(),
            site.id = state.role.site_id(),
            "keyward serving"
        );

        let tasks = spawn_background(&state);
        let app = api::router(state.clone());
        if config.tls_cert.is_empty() {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(shutdown)
            .await
            .context("while serving HTTP")?;
        } else {
            crate::tls::serve(listener, app, &config.tls_cert, &config.tls_key, shutdown).await?;
        }

        for task in tasks {
            task.abort();
        }
        flush_last_seen(&state).await;
        state
            .db
            .close()
            .await
            .context("while closing the database")?;
        drop(lock);
        tracing::info!("keyward stopped");
        Ok(())
    }
}

fn spawn_background(state: &Arc<AppState>) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    let flusher = state.clone();
    let every = state.config.duration_of("validation.last_seen_flush");
    tasks.push(tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every.max(Duration::from_millis(100)));
        ticker.tick().await;
        loop {
            ticker.tick().await;
            flush_last_seen(&flusher).await;
        }
    }));
    // A key scheduled to sign later takes over once its time has come on this site's clock.
    let keys = state.clone();
    tasks.push(tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = crate::time::format(keys.clock.now());
            let due = keys.keyring().next_activation().is_some_and(|at| at <= now.as_str());
            if due && let Err(err) = keys.reload_keys().await {
                tracing::error!(code = err.code, message = %err.message, "switching to the scheduled signing key failed");
            }
        }
    }));
    let reclaimer = state.clone();
    let every = state.config.duration_of("leases.reclaim_every");
    tasks.push(tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every.max(Duration::from_millis(100)));
        ticker.tick().await;
        loop {
            ticker.tick().await;
            reclaim_expired_leases(&reclaimer).await;
        }
    }));
    tasks.extend(crate::snapshot::spawn_tasks(state.clone()));
    if !state.config.redirect.url.is_empty() {
        tasks.push(tokio::spawn(crate::role::follow::run(state.clone())));
    }
    tasks
}

/// Writes buffered last-contact times. On a standby site they are dropped.
pub async fn flush_last_seen(state: &AppState) {
    let pending = state.last_seen.drain();
    if pending.is_empty() || !state.db.is_writable() {
        return;
    }
    let count = pending.len();
    let result = state
        .db
        .write_untracked(move |conn| crate::license::activations::record_last_seen(conn, &pending))
        .await;
    if let Err(err) = result {
        tracing::warn!(error = %err, count, "writing last-contact times failed");
    }
}

/// Deletes expired leases on the active site. The count is read first, so that a run with
/// nothing to delete writes nothing and does not advance the write sequence.
pub async fn reclaim_expired_leases(state: &AppState) {
    if !state.db.is_writable() {
        return;
    }
    let now = state.clock.now();
    let expired = state
        .db
        .read(|conn| {
            crate::license::leases::count_expired(conn, now)
                .map_err(crate::license::LicenseError::into_db_error)
        })
        .await;
    match expired {
        Ok(0) => return,
        Ok(_) => {}
        Err(err) => {
            tracing::warn!(error = %err, "counting expired leases failed");
            return;
        }
    }
    let result = state
        .db
        .write(move |conn| crate::license::leases::reclaim_expired(conn, now))
        .await;
    match result {
        Ok(count) => tracing::debug!(count, "expired leases reclaimed"),
        Err(err) => tracing::warn!(error = %err, "reclaiming expired leases failed"),
    }
}

/// Installs the SIGINT and SIGTERM handlers now and returns a future that resolves on either.
/// Installing them before the server announces its address means a signal sent right after
/// the announcement shuts down gracefully instead of killing the process.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).expect("installing the SIGINT handler");
    let mut terminate = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("SIGINT received, shutting down"),
            _ = terminate.recv() => tracing::info!("SIGTERM received, shutting down"),
        }
    }
}
