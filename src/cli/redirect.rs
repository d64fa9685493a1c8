//! `keyward redirect` (edit and show a redirect file) and `keyward redirector` (serve one).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use url::Url;

use crate::redirect::{self, MAX_REDIRECT_FILE_BYTES, RedirectorState};

/// Limit on fetching a redirect file for `keyward redirect show --url`.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Subcommand)]
pub enum RedirectCommand {
    /// Make URL the active server in a redirect file. When URL is the drUrl, the active and
    /// DR entries swap. The file is replaced atomically and then printed.
    SetActive {
        /// Base URL of the license server that becomes active (http or https).
        url: String,
        /// Redirect file to change (qlmredirect.xml).
        #[arg(long)]
        file: PathBuf,
        /// Accept a URL that is neither the file's activeUrl nor its drUrl, such as a
        /// replacement server. Without it such a URL is rejected as a likely typo.
        #[arg(long)]
        new_server: bool,
    },
    /// Print the URLs in a redirect file and any parser warnings.
    Show(ShowArgs),
}

/// Source of the redirect file: exactly one of --file and --url.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct ShowArgs {
    /// Redirect file on disk.
    #[arg(long)]
    file: Option<PathBuf>,
    /// URL to fetch the redirect file from, such as a redirector's /qlmredirect.xml.
    #[arg(long)]
    url: Option<String>,
}

/// Options of `keyward redirector`.
#[derive(Debug, Args)]
pub struct RedirectorArgs {
    /// TOML file with any of: file, listen, tls_cert, tls_key, allow_plain_http. Flags win.
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Redirect file to serve. Edits are picked up while running, and an invalid edit leaves
    /// the last valid version in service.
    #[arg(long)]
    file: Option<PathBuf>,
    /// Address to listen on, ADDRESS:PORT [default: 127.0.0.1:8480].
    #[arg(long)]
    listen: Option<String>,
    /// PEM certificate chain for HTTPS (with --tls-key).
    #[arg(long)]
    tls_cert: Option<String>,
    /// PEM private key for HTTPS (with --tls-cert).
    #[arg(long)]
    tls_key: Option<String>,
    /// Serve plain HTTP on a non-loopback address (behind a TLS proxy).
    #[arg(long)]
    allow_plain_http: bool,
}

/// The redirector's settings file (`--config`).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedirectorConfig {
    pub file: Option<PathBuf>,
    pub listen: Option<String>,
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    #[serde(default)]
    pub allow_plain_http: bool,
}

impl RedirectorConfig {
    /// Reads a redirector settings file.
    pub fn load(path: &std::path::Path) -> anyhow::Result<RedirectorConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        toml::from_str(&text)
            .with_context(|| format!("invalid redirector config {}", path.display()))
    }
}

/// Runs a `keyward redirect` command.
pub async fn run(command: RedirectCommand) -> anyhow::Result<ExitCode> {
    match command {
        RedirectCommand::SetActive {
            url,
            file,
            new_server,
        } => {
            let url = Url::parse(&url).with_context(|| format!("invalid URL {url:?}"))?;
            if !new_server {
                check_known_server(&file, &url)?;
            }
            let written = redirect::set_active(&file, &url)?;
            print!("{}", redirect::show(written.to_xml().as_bytes())?);
        }
        RedirectCommand::Show(ShowArgs { file, url }) => {
            let bytes = match (file, url) {
                (Some(file), _) => redirect::read_file(&file)?,
                (None, Some(url)) => fetch(&url).await?,
                (None, None) => anyhow::bail!("pass --file FILE or --url URL"),
            };
            print!("{}", redirect::show(&bytes)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Rejects `url` unless the redirect file at `path` already names it as activeUrl or drUrl: a
/// mistyped URL would leave no site active and every write failing.
fn check_known_server(path: &std::path::Path, url: &Url) -> anyhow::Result<()> {
    let (current, _warnings) = redirect::parse(&redirect::read_file(path)?)
        .with_context(|| format!("invalid redirect file {}", path.display()))?;
    let known = redirect::same_site(&current.active_url, url)
        || current
            .dr_url
            .as_ref()
            .is_some_and(|dr| redirect::same_site(dr, url));
    if !known {
        let dr = current
            .dr_url
            .as_ref()
            .map_or("(none)".to_string(), Url::to_string);
        anyhow::bail!(
            "{url} is neither the activeUrl ({}) nor the drUrl ({dr}) in {}; check it for a typo, \
             or pass --new-server to make a new server active",
            current.active_url,
            path.display()
        );
    }
    Ok(())
}

/// Serves a redirect file until SIGINT or SIGTERM.
pub async fn run_redirector(flags: RedirectorArgs) -> anyhow::Result<ExitCode> {
    let file_config = match &flags.config {
        Some(path) => RedirectorConfig::load(path)?,
        None => RedirectorConfig::default(),
    };
    let args = RedirectorConfig {
        file: flags.file.or(file_config.file),
        listen: flags.listen.or(file_config.listen),
        tls_cert: flags.tls_cert.or(file_config.tls_cert),
        tls_key: flags.tls_key.or(file_config.tls_key),
        allow_plain_http: flags.allow_plain_http || file_config.allow_plain_http,
    };
    let Some(file) = args.file.clone() else {
        anyhow::bail!("no redirect file: pass --file FILE or set file in the --config file");
    };
    let listen = args
        .listen
        .clone()
        .unwrap_or_else(|| "127.0.0.1:8480".to_string());
    if args.tls_cert.is_some() != args.tls_key.is_some() {
        anyhow::bail!("set both the TLS certificate and key (--tls-cert, --tls-key), or neither");
    }
    // Check the file before binding, so an invalid file fails without a listening line.
    RedirectorState::load(&file)?;
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("while binding {listen}; choose another --listen"))?;
    let local = listener.local_addr()?;
    crate::tls::check_plain_http(
        local,
        args.tls_cert.is_some(),
        args.allow_plain_http,
        "--allow-plain-http",
    )?;
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        println!("keyward redirector listening on http://{local}");
        redirect::serve(listener, file, crate::server::shutdown_signal()).await?;
        return Ok(ExitCode::SUCCESS);
    };
    let state = RedirectorState::load(&file)?;
    let watcher = redirect::spawn_watcher(state.clone());
    println!("keyward redirector listening on https://{local}");
    let served = crate::tls::serve(
        listener,
        redirect::router(state),
        cert,
        key,
        crate::server::shutdown_signal(),
    )
    .await;
    watcher.abort();
    served?;
    Ok(ExitCode::SUCCESS)
}

async fn fetch(url: &str) -> anyhow::Result<Vec<u8>> {
    let http = reqwest::Client::builder().timeout(FETCH_TIMEOUT).build()?;
    let mut response = http
        .get(url)
        .send()
        .await
        .with_context(|| format!("while fetching {url}"))?
        .error_for_status()
        .with_context(|| format!("while fetching {url}"))?;

    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > MAX_REDIRECT_FILE_BYTES {
            anyhow::bail!("{url} returned more than {MAX_REDIRECT_FILE_BYTES} bytes");
        }
    }
    Ok(bytes)
}
