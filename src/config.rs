//! Configuration, in layers: built-in defaults ([`DEFAULT_CONFIG`]), then a TOML file, then
//! `KEYWARD_*` environment variables, then command-line flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The built-in defaults, printed by `keyward config default`.
pub const DEFAULT_CONFIG: &str = r#"# keyward configuration. Every key is optional; these are the built-in defaults.
# Environment variables override the file: KEYWARD_<SECTION>_<KEY> (for example
# KEYWARD_PEER_SECRET), or KEYWARD_<KEY> for top-level keys. Flags override both.

# Directory for the database, snapshots, and this site's identity and role.
data_dir = "keyward-data"
# Address the HTTP API listens on. Plain HTTP is only allowed on loopback unless
# allow_plain_http is true; set tls_cert and tls_key to serve HTTPS.
listen = "127.0.0.1:8470"
# This site's public URL, as it appears in the redirect file (activeUrl or drUrl).
site_url = ""
# Log format: "text" or "json". The log level comes from RUST_LOG (default "info").
log_format = "text"
# PEM files for HTTPS.
tls_cert = ""
tls_key = ""
# Serve plain HTTP on a non-loopback address (a warning is logged at start).
allow_plain_http = false
# Role on first start when no redirect file is configured: "active" or "standby".
# After that the role is persisted in the data directory and changed with
# `keyward promote` and `keyward demote`.
initial_role = "active"
# Admin token to store on first start instead of generating one (kwa_<8 hex>_<hex>).
bootstrap_admin_token = ""

[snapshot]
# Take a snapshot this often ("15m", "1h"); empty or "0" disables the interval.
every = "15m"
# Or at this UTC time every day ("02:30"); empty disables it.
daily_at = ""
# Keep this many snapshots (0 = no count limit) ...
keep_last = 10
# ... and delete snapshots older than this ("7d"; empty = no age limit). The newest good
# snapshot and one being shipped are never deleted.
max_age = "7d"

[peer]
# Base URL of the DR peer that receives snapshots; empty disables shipping.
url = ""
# Secret shared by both sites for snapshot transfer (not an admin token). Required on
# both sites when shipping is used. Prefer KEYWARD_PEER_SECRET to keeping it in this file.
secret = ""
# PEM file with the CA that signed the peer's certificate; empty uses the system roots.
ca_file = ""
# Longest wait between retries of a failed shipment.
max_backoff = "5m"

[receive]
# Largest snapshot accepted from a peer, in bytes, after decompression.
max_snapshot_bytes = 17179869184
# Copies of the database kept from before each swap or restore.
keep_pre_restore = 3
# How long a request waits for a swap to finish before it fails with BUSY.
swap_wait = "30s"

[redirect]
# URL of qlmredirect.xml. When set (with site_url), this site is active exactly when
# activeUrl names site_url; otherwise `keyward promote` and `keyward demote` set the role.
url = ""
# How often the redirect file is fetched.
poll = "15s"

[validation]
# How often buffered last-contact times are written. A crash loses at most this much of
# them, never an activation.
last_seen_flush = "5s"
# Validations kept in memory, each answered again without reading the database until the
# next write (about 2 KiB each at most; 0 = read the database for every validation).
cache_entries = 20000

[leases]
# How long a lease of a floating license lasts after its checkout or last heartbeat.
# Clients should heartbeat well within this time, for example every third of it.
ttl = "15m"
# How often expired leases are deleted. They stop counting at expiry regardless; a
# checkout also deletes the expired leases of its license.
reclaim_every = "1m"

[trials]
# Trial licenses of one product that one computer ID may activate, ever (0 = no limit).
# The count survives releases, so deleting local state does not grant a fresh trial.
max_per_computer = 1

[limits]
# Activations one computer ID may make in any 24 hours over all licenses (0 = no limit).
# Activating a computer that is already active does not count.
activations_per_computer_per_day = 10
# Releases by clients of one license within release_period, per seat of the license
# (0 = no limit): a 3-seat license may be released 15 times. Releases through the admin
# API do not count.
releases_per_seat = 5
release_period = "30d"
# Requests to client endpoints per IP address (IPv6: per /64 prefix) and minute, refilled
# continuously into a bucket of request_burst requests (0 = no limit). Behind a reverse
# proxy every request comes from the proxy's address unless the proxy is listed below.
requests_per_minute = 600
request_burst = 100
# Reverse proxies trusted to name the client in X-Forwarded-For: IP addresses or CIDR blocks,
# such as ["127.0.0.1", "10.0.0.0/8"]. For a request from one of them, the rate limit and the
# activation records use the rightmost address in that header that is not a listed proxy.
trusted_proxies = []
"#;

/// A secret value whose `Debug` output is masked.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("\"***\"")
        }
    }
}

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: String,
    pub site_url: String,
    pub log_format: String,
    pub tls_cert: String,
    pub tls_key: String,
    pub allow_plain_http: bool,
    pub initial_role: String,
    pub bootstrap_admin_token: Secret,
    pub snapshot: SnapshotConfig,
    pub peer: PeerConfig,
    pub receive: ReceiveConfig,
    pub redirect: RedirectConfig,
    pub validation: ValidationConfig,
    pub leases: LeasesConfig,
    pub trials: TrialsConfig,
    pub limits: LimitsConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotConfig {
    pub every: String,
    pub daily_at: String,
    pub keep_last: usize,
    pub max_age: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    pub url: String,
    pub secret: Secret,
    pub ca_file: String,
    pub max_backoff: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiveConfig {
    pub max_snapshot_bytes: u64,
    pub keep_pre_restore: usize,
    pub swap_wait: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedirectConfig {
    pub url: String,
    pub poll: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationConfig {
    pub last_seen_flush: String,
    pub cache_entries: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeasesConfig {
    pub ttl: String,
    pub reclaim_every: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrialsConfig {
    pub max_per_computer: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    pub activations_per_computer_per_day: u32,
    pub releases_per_seat: u32,
    pub release_period: String,
    pub requests_per_minute: u32,
    pub request_burst: u32,
    pub trusted_proxies: Vec<String>,
}

/// An invalid configuration value, named by its key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid value {value:?} for {key}: {message}")]
    Value {
        key: String,
        value: String,
        message: String,
    },
}

fn value_error(key: &str, value: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Value {
        key: key.into(),
        value: value.into(),
        message: message.into(),
    }
}

impl Default for Config {
    fn default() -> Self {
        toml::from_str(DEFAULT_CONFIG).expect("built-in default configuration parses")
    }
}

/// Environment variables read as configuration, with the key each sets.
const ENV_KEYS: &[(&str, &str)] = &[
    ("KEYWARD_DATA_DIR", "data_dir"),
    ("KEYWARD_LISTEN", "listen"),
    ("KEYWARD_SITE_URL", "site_url"),
    ("KEYWARD_LOG_FORMAT", "log_format"),
    ("KEYWARD_TLS_CERT", "tls_cert"),
    ("KEYWARD_TLS_KEY", "tls_key"),
    ("KEYWARD_ALLOW_PLAIN_HTTP", "allow_plain_http"),
    ("KEYWARD_INITIAL_ROLE", "initial_role"),
    ("KEYWARD_BOOTSTRAP_ADMIN_TOKEN", "bootstrap_admin_token"),
    ("KEYWARD_SNAPSHOT_EVERY", "snapshot.every"),
    ("KEYWARD_SNAPSHOT_DAILY_AT", "snapshot.daily_at"),
    ("KEYWARD_SNAPSHOT_KEEP_LAST", "snapshot.keep_last"),
    ("KEYWARD_SNAPSHOT_MAX_AGE", "snapshot.max_age"),
    ("KEYWARD_PEER_URL", "peer.url"),
    ("KEYWARD_PEER_SECRET", "peer.secret"),
    ("KEYWARD_PEER_CA_FILE", "peer.ca_file"),
    ("KEYWARD_PEER_MAX_BACKOFF", "peer.max_backoff"),
    (
        "KEYWARD_RECEIVE_MAX_SNAPSHOT_BYTES",
        "receive.max_snapshot_bytes",
    ),
    (
        "KEYWARD_RECEIVE_KEEP_PRE_RESTORE",
        "receive.keep_pre_restore",
    ),
    ("KEYWARD_RECEIVE_SWAP_WAIT", "receive.swap_wait"),
    ("KEYWARD_REDIRECT_URL", "redirect.url"),
    ("KEYWARD_REDIRECT_POLL", "redirect.poll"),
    (
        "KEYWARD_VALIDATION_LAST_SEEN_FLUSH",
        "validation.last_seen_flush",
    ),
    (
        "KEYWARD_VALIDATION_CACHE_ENTRIES",
        "validation.cache_entries",
    ),
    ("KEYWARD_LEASES_TTL", "leases.ttl"),
    ("KEYWARD_LEASES_RECLAIM_EVERY", "leases.reclaim_every"),
    ("KEYWARD_TRIALS_MAX_PER_COMPUTER", "trials.max_per_computer"),
    (
        "KEYWARD_LIMITS_ACTIVATIONS_PER_COMPUTER_PER_DAY",
        "limits.activations_per_computer_per_day",
    ),
    (
        "KEYWARD_LIMITS_RELEASES_PER_SEAT",
        "limits.releases_per_seat",
    ),
    ("KEYWARD_LIMITS_RELEASE_PERIOD", "limits.release_period"),
    (
        "KEYWARD_LIMITS_REQUESTS_PER_MINUTE",
        "limits.requests_per_minute",
    ),
    ("KEYWARD_LIMITS_REQUEST_BURST", "limits.request_burst"),
    ("KEYWARD_LIMITS_TRUSTED_PROXIES", "limits.trusted_proxies"),
];

/// Environment variables that start with `KEYWARD_` but are not configuration.
const OTHER_ENV: &[&str] = &[
    "KEYWARD_CONFIG",
    "KEYWARD_FAILPOINT",
    "KEYWARD_ADMIN_TOKEN",
    "KEYWARD_URL",
];

impl Config {
    /// Loads defaults, then `file` if given, then the environment. Returns the config and a
    /// warning for each unknown `KEYWARD_*` variable.
    pub fn load(file: Option<&Path>) -> Result<(Config, Vec<String>), ConfigError> {
        let mut table: toml::Table = toml::from_str(DEFAULT_CONFIG).expect("defaults parse");
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.into(),
                source,
            })?;
            let overlay: toml::Table = toml::from_str(&text).map_err(|err| ConfigError::Parse {
                path: path.into(),
                message: err.to_string(),
            })?;
            merge(&mut table, overlay);
        }
        let mut warnings = Vec::new();
        for (name, value) in std::env::vars() {
            if !name.starts_with("KEYWARD_") {
                continue;
            }
            match ENV_KEYS.iter().find(|(env, _)| *env == name) {
                Some((_, key)) => set_key(&mut table, key, &value)?,
                None if OTHER_ENV.contains(&name.as_str()) => {}
                None => warnings.push(format!("ignoring unknown environment variable {name}")),
            }
        }
        let config: Config =
            toml::Value::Table(table)
                .try_into()
                .map_err(|err: toml::de::Error| ConfigError::Parse {
                    path: file
                        .map(Path::to_path_buf)
                        .unwrap_or_else(|| "environment".into()),
                    message: err.to_string(),
                })?;
        config.check()?;
        Ok((config, warnings))
    }

    /// Validates every value, naming the key of the first bad one.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err(value_error(
                "log_format",
                &self.log_format,
                "expected \"text\" or \"json\"",
            ));
        }
        if !matches!(self.initial_role.as_str(), "active" | "standby") {
            return Err(value_error(
                "initial_role",
                &self.initial_role,
                "expected \"active\" or \"standby\"",
            ));
        }
        self.snapshot_every()?;
        self.snapshot_daily_at()?;
        self.snapshot_max_age()?;
        optional_url("site_url", &self.site_url)?;
        optional_url("peer.url", &self.peer.url)?;
        optional_url("redirect.url", &self.redirect.url)?;
        duration("peer.max_backoff", &self.peer.max_backoff)?;
        duration("receive.swap_wait", &self.receive.swap_wait)?;
        duration("redirect.poll", &self.redirect.poll)?;
        duration(
            "validation.last_seen_flush",
            &self.validation.last_seen_flush,
        )?;

        bounded_duration("leases.ttl", &self.leases.ttl, true, 365)?;
        bounded_duration(
            "leases.reclaim_every",
            &self.leases.reclaim_every,
            true,
            365,
        )?;
        bounded_duration(
            "limits.release_period",
            &self.limits.release_period,
            false,
            3650,
        )?;
        if self.limits.requests_per_minute > 0 && self.limits.request_burst == 0 {
            return Err(value_error(
                "limits.request_burst",
                "0",
                "a rate limit needs a burst of at least 1; or set limits.requests_per_minute = 0",
            ));
        }
        let token = self.bootstrap_admin_token.expose();
        if !token.is_empty()
            && let Err(err) = crate::license::tokens::check_format(token)
        {
            return Err(value_error("bootstrap_admin_token", "***", err.to_string()));
        }
        for entry in &self.limits.trusted_proxies {
            crate::api::forwarded::parse_proxy(entry)
                .map_err(|message| value_error("limits.trusted_proxies", entry, message))?;
        }
        if !self.peer.url.is_empty() && self.peer.secret.is_empty() {
            return Err(value_error(
                "peer.secret",
                "",
                "shipping to peer.url needs a shared secret; set KEYWARD_PEER_SECRET on both sites",
            ));
        }
        if !self.peer.secret.is_empty() && self.peer.secret.expose().len() < 16 {
            return Err(value_error(
                "peer.secret",
                "***",
                "use at least 16 characters",
            ));
        }
        if !self.redirect.url.is_empty() && self.site_url.is_empty() {
            return Err(value_error(
                "site_url",
                "",
                "following redirect.url needs this site's public URL in site_url",
            ));
        }
        if self.tls_cert.is_empty() != self.tls_key.is_empty() {
            return Err(value_error(
                "tls_key",
                &self.tls_key,
                "set both tls_cert and tls_key, or neither",
            ));
        }
        Ok(())
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen.parse().map_err(|_| {
            value_error(
                "listen",
                &self.listen,
                "expected ADDRESS:PORT, e.g. 127.0.0.1:8470",
            )
        })
    }

    /// Returns the snapshot interval, or `None` when disabled.
    pub fn snapshot_every(&self) -> Result<Option<Duration>, ConfigError> {
        match self.snapshot.every.trim() {
            "" | "0" => Ok(None),
            text => {
                duration("snapshot.every", text).map(|every| Some(every).filter(|d| !d.is_zero()))
            }
        }
    }

    /// Returns the daily snapshot time as (hour, minute) UTC, or `None` when disabled.
    pub fn snapshot_daily_at(&self) -> Result<Option<(u32, u32)>, ConfigError> {
        let text = self.snapshot.daily_at.trim();
        if text.is_empty() {
            return Ok(None);
        }
        let parsed = chrono::NaiveTime::parse_from_str(text, "%H:%M").map_err(|_| {
            value_error(
                "snapshot.daily_at",
                text,
                "expected HH:MM in UTC, e.g. 02:30",
            )
        })?;
        use chrono::Timelike;
        Ok(Some((parsed.hour(), parsed.minute())))
    }

    pub fn snapshot_max_age(&self) -> Result<Option<Duration>, ConfigError> {
        match self.snapshot.max_age.trim() {
            "" | "0" => Ok(None),
            text => duration("snapshot.max_age", text).map(Some),
        }
    }

    pub fn duration_of(&self, key: &str) -> Duration {
        let text = match key {
            "peer.max_backoff" => &self.peer.max_backoff,
            "receive.swap_wait" => &self.receive.swap_wait,
            "redirect.poll" => &self.redirect.poll,
            "validation.last_seen_flush" => &self.validation.last_seen_flush,
            "leases.ttl" => &self.leases.ttl,
            "leases.reclaim_every" => &self.leases.reclaim_every,
            "limits.release_period" => &self.limits.release_period,
            other => panic!("no duration key {other}"),
        };
        duration(key, text).expect("checked at load")
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("keyward.db")
    }

    /// Returns the parsed `limits.trusted_proxies`, checked at load.
    pub fn trusted_proxies(&self) -> Vec<ipnet::IpNet> {
        self.limits
            .trusted_proxies
            .iter()
            .filter_map(|entry| crate::api::forwarded::parse_proxy(entry).ok())
            .collect()
    }

    /// Builds the trial, activation and release limits from `[trials]` and `[limits]`.
    pub fn license_policy(&self) -> crate::license::limits::Policy {
        let period = self.duration_of("limits.release_period");
        crate::license::limits::Policy {
            trials_per_computer: i64::from(self.trials.max_per_computer),
            activations_per_computer_per_day: i64::from(
                self.limits.activations_per_computer_per_day,
            ),
            releases_per_seat: i64::from(self.limits.releases_per_seat),
            release_period: chrono::Duration::from_std(period).expect("bounded at load"),
        }
    }

    /// Returns how long a lease lasts after its checkout or last heartbeat (`leases.ttl`).
    pub fn lease_ttl(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.duration_of("leases.ttl")).expect("bounded at load")
    }
}

fn duration(key: &str, text: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(text.trim()).map_err(|err| {
        value_error(
            key,
            text,
            format!("{err}; use a duration like 30s, 15m or 1h"),
        )
    })
}

/// Parses a duration of at most `max_days` days, and longer than zero when `nonzero`. The
/// bound keeps time arithmetic on it far from overflow.
fn bounded_duration(
    key: &str,
    text: &str,
    nonzero: bool,
    max_days: u64,
) -> Result<Duration, ConfigError> {
    let value = duration(key, text)?;
    if nonzero && value.is_zero() {
        return Err(value_error(key, text, "must be longer than zero"));
    }
    if value > Duration::from_secs(max_days * 24 * 60 * 60) {
        return Err(value_error(
            key,
            text,
            format!("must be at most {max_days} days"),
        ));
    }
    Ok(value)
}

fn optional_url(key: &str, text: &str) -> Result<(), ConfigError> {
    if text.is_empty() {
        return Ok(());
    }
    let url = url::Url::parse(text).map_err(|err| {
        value_error(
            key,
            text,
            format!("{err}; expected an absolute URL such as https://lic.example.com/"),
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(value_error(
            key,
            text,
            "expected an http:// or https:// URL",
        ));
    }
    Ok(())
}

fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(existing)), toml::Value::Table(inner)) => {
                merge(existing, inner)
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

fn set_key(table: &mut toml::Table, key: &str, text: &str) -> Result<(), ConfigError> {
    let (section, name) = match key.split_once('.') {
        Some((section, name)) => (Some(section), name),
        None => (None, key),
    };
    let target = match section {
        Some(section) => table
            .get_mut(section)
            .and_then(toml::Value::as_table_mut)
            .expect("section exists in defaults"),
        None => table,
    };
    let value = match target.get(name) {
        Some(toml::Value::Integer(_)) => text
            .parse()
            .map(toml::Value::Integer)
            .map_err(|_| value_error(key, text, "expected a whole number"))?,
        Some(toml::Value::Boolean(_)) => text
            .parse()
            .map(toml::Value::Boolean)
            .map_err(|_| value_error(key, text, "expected true or false"))?,
        // Lists come from the environment separated by commas.
        Some(toml::Value::Array(_)) => toml::Value::Array(
            text.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| toml::Value::String(item.to_string()))
                .collect(),
        ),
        _ => toml::Value::String(text.to_string()),
    };
    target.insert(name.to_string(), value);
    Ok(())
}
