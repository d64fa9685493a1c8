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
    /// Redirect file to serve. Edits are picked up while running, and an invalid edit leaves
    /// the last valid version in service.
    #[arg(long)]
    file: PathBuf,
    /// Address to listen on, ADDRESS:PORT.
    #[arg(long, default_value = "127.0.0.1:8480")]
    listen: String,
}

/// Runs a `keyward redirect` command.
pub async fn run(command: RedirectCommand) -> anyhow::Result<ExitCode> {
    match command {
        RedirectCommand::SetActive { url, file } => {
            let url = Url::parse(&url).with_context(|| format!("invalid URL {url:?}"))?;
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

/// Serves a redirect file until SIGINT or SIGTERM.
pub async fn run_redirector(args: RedirectorArgs) -> anyhow::Result<ExitCode> {
    // Check the file before binding, so an invalid file fails without a listening line.
    RedirectorState::load(&args.file)?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("while binding {}; choose another --listen", args.listen))?;
    let local = listener.local_addr()?;
    println!("keyward redirector listening on http://{local}");

    redirect::serve(listener, args.file, crate::server::shutdown_signal()).await?;
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
