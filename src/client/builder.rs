use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use super::resolver::Resolver;
use super::state::StateStore;
use super::transport::{Transport, build_http};
use super::{Client, ClientError, Inner};
use crate::signing::TrustedKeys;
use crate::time::{SharedClock, SystemClock};

/// Default time a fetched `activeUrl` is used before the redirect file is checked again.
pub const DEFAULT_REDIRECT_TTL: Duration = Duration::from_secs(60);

/// Default maximum difference between the server time in a response and the local clock.
pub const DEFAULT_MAX_CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// Default number of days a stored computer key is accepted offline after the last
/// successful server contact.
pub const DEFAULT_MAX_DAYS_OFFLINE: u32 = 7;

/// Default limit on a whole request, from connecting to reading the response.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Default limit on opening a connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings for a [`Client`]. At least one trusted key is required, and either a server URL
/// or an enabled DR site with a redirector URL.
#[derive(Debug)]
pub struct ClientBuilder {
    server_url: Option<String>,
    enable_dr_site: bool,
    redirector_url: Option<String>,
    trusted: TrustedKeys,
    key_errors: Vec<String>,
    timeout: Duration,
    connect_timeout: Duration,
    redirect_ttl: Duration,
    state_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    max_days_offline: u32,
    max_clock_skew: Duration,
    product: Option<String>,
    use_system_proxy: bool,
    clock: SharedClock,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            server_url: None,
            enable_dr_site: false,
            redirector_url: None,
            trusted: TrustedKeys::default(),
            key_errors: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            redirect_ttl: DEFAULT_REDIRECT_TTL,
            state_file: None,
            ca_file: None,
            max_days_offline: DEFAULT_MAX_DAYS_OFFLINE,
            max_clock_skew: DEFAULT_MAX_CLOCK_SKEW,
            product: None,
            use_system_proxy: true,
            clock: Arc::new(SystemClock),
        }
    }
}

impl ClientBuilder {
    /// Sets the license server's base URL. With a DR site enabled, it is the last fallback
    /// when the redirect file cannot be fetched and no earlier `activeUrl` is known.
    pub fn server_url(mut self, url: impl Into<String>) -> Self {
        self.server_url = Some(url.into());
        self
    }

    /// Sets whether the active server comes from the redirect file at the redirector URL.
    pub fn enable_dr_site(mut self, enable: bool) -> Self {
        self.enable_dr_site = enable;
        self
    }

    /// Sets the URL of the redirect file (`qlmredirect.xml`). It is only used when
    /// [`enable_dr_site`](Self::enable_dr_site) is true.
    pub fn redirector_url(mut self, url: impl Into<String>) -> Self {
        self.redirector_url = Some(url.into());
        self
    }

    /// Trusts the Ed25519 public key `public_key_base64` (standard base64 of 32 bytes) under
    /// the key id `kid`, as `keyward keys` prints them.
    pub fn trusted_key(mut self, kid: &str, public_key_base64: &str) -> Self {
        if let Err(err) = self.trusted.add(kid, public_key_base64) {
            self.key_errors.push(format!("trusted key {kid:?}: {err}"));
        }
        self
    }

    /// Replaces the trusted keys with `keys`.
    pub fn trusted_keys(mut self, keys: TrustedKeys) -> Self {
        self.trusted = keys;
        self
    }

    /// Sets the limit on a whole request, from connecting to reading the response.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the limit on opening a connection.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets how long a fetched `activeUrl` is used before the redirect file is checked again.
    pub fn redirect_ttl(mut self, ttl: Duration) -> Self {
        self.redirect_ttl = ttl;
        self
    }

    /// Keeps the client state (last active URL, redirect ETag, last server contact) in this
    /// JSON file. Its directory must exist.
    pub fn state_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.state_file = Some(path.into());
        self
    }

    /// Adds the PEM certificates in this file as trusted roots for HTTPS, next to the
    /// built-in ones.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Sets how many days after the last successful server contact a stored computer key is
    /// still accepted offline.
    pub fn max_days_offline(mut self, days: u32) -> Self {
        self.max_days_offline = days;
        self
    }

    /// Sets the maximum difference between a response's server time and the local clock.
    pub fn max_clock_skew(mut self, skew: Duration) -> Self {
        self.max_clock_skew = skew;
        self
    }

    /// Requires licenses to be for this product code, online and offline.
    pub fn product(mut self, code: impl Into<String>) -> Self {
        self.product = Some(code.into());
        self
    }

    /// Ignores the proxy settings in the environment (`HTTP_PROXY`, `HTTPS_PROXY`,
    /// `ALL_PROXY`, `NO_PROXY`), which are used by default.
    pub fn no_proxy(mut self) -> Self {
        self.use_system_proxy = false;
        self
    }

    /// Sets the clock used for freshness and offline checks, for tests.
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Checks the settings, loads the state file and builds the client.
    pub fn build(self) -> Result<Client, ClientError> {
        if let Some(err) = self.key_errors.first() {
            return Err(ClientError::Config(err.clone()));
        }
        if self.trusted.is_empty() {
            return Err(ClientError::Config(
                "no trusted public key; add the server's keys (see `keyward keys`) with \
                 trusted_key(kid, base64), because responses must be verifiable"
                    .into(),
            ));
        }

        let server_url = parse_optional_url("server URL", self.server_url.as_deref())?;
        let redirector = match (self.enable_dr_site, self.redirector_url.as_deref()) {
            (true, None) => {
                return Err(ClientError::Config(
                    "enable_dr_site needs a redirector URL; set redirector_url".into(),
                ));
            }
            (true, Some(url)) => Some(parse_url("redirector URL", url)?),
            (false, _) => None,
        };
        if redirector.is_none() && server_url.is_none() {
            return Err(ClientError::Config(
                "no license server: set server_url, or enable_dr_site with redirector_url".into(),
            ));
        }
        if let Some(path) = &self.state_file {
            check_state_directory(path)?;
        }

        let http = build_http(
            self.timeout,
            self.connect_timeout,
            self.ca_file.as_deref(),
            self.use_system_proxy,
        )?;
        let state = StateStore::open(self.state_file, &self.trusted);
        let resolver = Resolver::new(redirector, server_url, self.redirect_ttl, &state.get());
        let transport = Transport::new(http, self.trusted, self.max_clock_skew, self.clock.clone());
        Ok(Client {
            inner: Arc::new(Inner {
                transport,
                resolver,
                state,
                product: self.product,
                max_days_offline: self.max_days_offline,
                max_clock_skew: self.max_clock_skew,
                clock: self.clock,
            }),
        })
    }
}

fn parse_optional_url(name: &str, url: Option<&str>) -> Result<Option<Url>, ClientError> {
    url.map(|url| parse_url(name, url)).transpose()
}

fn parse_url(name: &str, text: &str) -> Result<Url, ClientError> {
    let url = Url::parse(text)
        .map_err(|err| ClientError::Config(format!("invalid {name} {text:?}: {err}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ClientError::Config(format!(
            "invalid {name} {text:?}: the scheme must be http or https"
        )));
    }
    Ok(url)
}

fn check_state_directory(path: &std::path::Path) -> Result<(), ClientError> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => std::path::Path::new("."),
    };
    if directory.is_dir() {
        return Ok(());
    }
    Err(ClientError::Config(format!(
        "the directory of the state file {} does not exist; create it first",
        path.display()
    )))
}
