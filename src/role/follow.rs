//! Following the redirect file: a site is active exactly when `activeUrl` names its `site_url`.
//!
//! The file is read once at start, before the site serves, then every `redirect.poll`. A
//! change takes effect within one interval. When the file cannot be fetched or is invalid, the
//! site keeps its last known role (persisted in `role.json`), so a restart during a redirector
//! outage changes nothing.

use std::sync::Arc;
use std::time::Duration;

use url::Url;

use super::Role;
use crate::api::AppState;
use crate::config::Config;
use crate::redirect::{RedirectFile, same_site};

/// Role the redirect file gives this site, with the active URL it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    pub active_url: Url,
    pub role: Role,
}

/// Fetches and parses the redirect file; reports the role it gives to `site_url`.
pub async fn fetch(
    client: &reqwest::Client,
    redirect_url: &str,
    site_url: &Url,
) -> Result<Reading, String> {
    let response = client
        .get(redirect_url)
        .send()
        .await
        .map_err(|err| format!("fetching {redirect_url} failed: {err}"))?;
    if !response.status().is_success() {
        return Err(format!(
            "fetching {redirect_url} returned HTTP {}",
            response.status()
        ));
    }
    let bytes = response
        .bytes()
        .await
        .map_err(|err| format!("reading {redirect_url} failed: {err}"))?;
    let (file, _warnings): (RedirectFile, _) = crate::redirect::parse(&bytes)
        .map_err(|err| format!("redirect file {redirect_url} is invalid: {err}"))?;
    let role = if same_site(&file.active_url, site_url) {
        Role::Active
    } else {
        Role::Standby
    };
    Ok(Reading {
        active_url: file.active_url,
        role,
    })
}

/// Applies a reading: promotes or demotes when the role differs, records the active URL.
pub async fn apply(state: &AppState, reading: &Reading) {
    let active_url = Some(reading.active_url.to_string());
    let current = state.role.role();
    match (current, reading.role) {
        (Role::Standby, Role::Active) => {
            state.role.set_active_url(active_url);
            let reason = format!(
                "redirect file names this site ({}) as activeUrl",
                reading.active_url
            );
            if let Err(err) = state.role.promote(&state.db, &reason).await {
                tracing::error!(error = %err, "promotion requested by the redirect file failed");
            }
        }
        (Role::Active, Role::Standby) => {
            let reason = format!("redirect file names {} as activeUrl", reading.active_url);
            if let Err(err) = state.role.demote(&state.db, &reason, active_url) {
                tracing::error!(error = %err, "demotion requested by the redirect file failed");
            }
        }
        _ => state.role.set_active_url(active_url),
    }
}

/// Builds the HTTP client for fetching the redirect file, trusting `peer.ca_file` if set.
pub fn http_client(config: &Config) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(10));
    let ca_file = &config.peer.ca_file;
    if !ca_file.is_empty() {
        let pem = std::fs::read(ca_file)?;
        builder = builder.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
    }
    Ok(builder.build()?)
}

/// Reads the redirect file once before the site serves, so that a site restarted after a
/// failover starts as standby instead of taking writes until the first poll. Returns `None`
/// when `redirect.url` is unset or the file cannot be read: the persisted role then applies.
pub async fn read_at_start(config: &Config) -> Option<Reading> {
    if config.redirect.url.is_empty() {
        return None;
    }
    let read = async {
        let site_url = Url::parse(&config.site_url).map_err(|err| err.to_string())?;
        let client = http_client(config).map_err(|err| err.to_string())?;
        fetch(&client, &config.redirect.url, &site_url).await
    };
    match read.await {
        Ok(reading) => Some(reading),
        Err(err) => {
            tracing::warn!(redirect.url = %config.redirect.url, error = %err, "cannot read the redirect file at start, so the site starts in its last known role");
            None
        }
    }
}

/// Polls the redirect file forever. Runs only when `redirect.url` is set.
pub async fn run(state: Arc<AppState>) {
    let redirect_url = state.config.redirect.url.clone();
    let Ok(site_url) = Url::parse(&state.config.site_url) else {
        tracing::error!(site_url = %state.config.site_url, "site_url is not a URL; not following the redirect file");
        return;
    };
    let client = match http_client(&state.config) {
        Ok(client) => client,
        Err(err) => {
            tracing::error!(error = %err, "cannot build the HTTP client for the redirect file");
            return;
        }
    };
    let poll = state
        .config
        .duration_of("redirect.poll")
        .max(Duration::from_millis(50));
    let mut failures: u64 = 0;
    loop {
        match fetch(&client, &redirect_url, &site_url).await {
            Ok(reading) => {
                if failures > 0 {
                    tracing::info!(redirect.url = %redirect_url, failures, "redirect file reachable again");
                }
                failures = 0;
                apply(&state, &reading).await;
            }
            Err(err) => {
                failures += 1;
                if failures <= 3 || failures.is_multiple_of(20) {
                    tracing::warn!(redirect.url = %redirect_url, error = %err, failures, role = state.role.role().as_str(), "cannot read the redirect file; keeping the last known role");
                }
            }
        }
        tokio::time::sleep(poll).await;
    }
}
