//! `keyward client`: activate, validate and release licenses through the client library, as
//! an application would, and print the result as JSON.
//!
//! Exit codes: 0 when the license is valid or the activation or release succeeded, 1 when the
//! license is not valid or the server rejected the request, and 2 when no trusted response was
//! received (invalid input, unreachable server, untrusted response).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;
use url::Url;

use crate::client::{Client, ClientError};

/// Exit code for a license that is not valid or a request the server rejected.
const EXIT_NOT_VALID: u8 = 1;

/// Exit code when no trusted response was received.
const EXIT_NO_ANSWER: u8 = 2;

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Activate a license on this computer and print the computer key.
    Activate {
        #[command(flatten)]
        connection: ConnectionArgs,
        #[command(flatten)]
        license: LicenseArgs,
        /// Name of this computer, shown to administrators.
        #[arg(long, default_value = "")]
        computer_name: String,
    },
    /// Validate a license on this computer with the server.
    Validate {
        #[command(flatten)]
        connection: ConnectionArgs,
        #[command(flatten)]
        license: LicenseArgs,
        /// Computer key from the activation, which the server checks as well.
        #[arg(long)]
        computer_key: Option<String>,
        /// When no server is reachable, check --computer-key locally instead, within the
        /// offline limit counted from the last server contact in --state-file.
        #[arg(long, requires_all = ["computer_key", "state_file"])]
        offline_fallback: bool,
        /// Days after the last server contact that --offline-fallback accepts.
        #[arg(long, default_value_t = crate::client::DEFAULT_MAX_DAYS_OFFLINE)]
        max_days_offline: u32,
    },
    /// Release this computer's activation of a license.
    Release {
        #[command(flatten)]
        connection: ConnectionArgs,
        #[command(flatten)]
        license: LicenseArgs,
    },
}

/// License key and computer identifier of a command.
#[derive(Debug, Args)]
pub struct LicenseArgs {
    /// License key, e.g. 7K3M-QW2D-H8XP-R4TN-B6YC-Z9GV-F1J1.
    #[arg(long)]
    key: String,
    /// Stable identifier of this computer.
    #[arg(long)]
    computer_id: String,
}

/// Connection settings: the license server and the keys that sign its responses.
#[derive(Debug, Args)]
pub struct ConnectionArgs {
    /// Base URL of the license server. With --redirector, it is used only when the redirect
    /// file cannot be fetched and no earlier active URL is known.
    #[arg(long, required_unless_present = "redirector")]
    server: Option<String>,
    /// URL of the redirect file (qlmredirect.xml). The client uses its activeUrl and follows
    /// changes to it.
    #[arg(long)]
    redirector: Option<String>,
    /// Trusted public key as KID=BASE64, from the kid and public_key fields that
    /// `keyward keys` prints. Repeat for several keys.
    #[arg(
        long = "public-key",
        value_name = "KID=BASE64",
        required_unless_present = "fetch_keys"
    )]
    public_keys: Vec<String>,
    /// Trust the keys that --server publishes at /v1/keys without verifying them (trust on
    /// first use). Prints the keys so they can be pinned with --public-key.
    #[arg(long, conflicts_with = "public_keys", requires = "server")]
    fetch_keys: bool,
    /// JSON file that keeps the last active URL, the redirect ETag and the last server
    /// contact between runs. Its directory must exist.
    #[arg(long)]
    state_file: Option<PathBuf>,
    /// PEM file with extra root certificates for HTTPS.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Limit on each request, such as "30s" or "500ms".
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

/// Runs a `keyward client` command. Setup errors are printed and exit with code 2.
pub async fn run(command: ClientCommand) -> anyhow::Result<ExitCode> {
    match execute(command).await {
        Ok(code) => Ok(code),
        Err(err) => {
            eprintln!("error: {}", super::describe_error(&err));
            Ok(ExitCode::from(EXIT_NO_ANSWER))
        }
    }
}

async fn execute(command: ClientCommand) -> anyhow::Result<ExitCode> {
    match command {
        ClientCommand::Activate {
            connection,
            license,
            computer_name,
        } => {
            let client = connection.build(None).await?;
            let result = client
                .activate(&license.key, &license.computer_id, &computer_name)
                .await;
            Ok(match result {
                Ok(activation) => {
                    let result = if activation.already_active {
                        "ALREADY_ACTIVATED"
                    } else {
                        "ACTIVATED"
                    };
                    print_json(&json!({
                        "result": result,
                        "computer_key": activation.computer_key,
                        "license": activation.license,
                    }));
                    ExitCode::SUCCESS
                }
                Err(err) => report_error(&err),
            })
        }
        ClientCommand::Validate {
            connection,
            license,
            computer_key,
            offline_fallback,
            max_days_offline,
        } => {
            let client = connection.build(Some(max_days_offline)).await?;
            let result = match (&computer_key, offline_fallback) {
                (Some(computer_key), true) => {
                    client
                        .validate_or_offline(&license.key, &license.computer_id, computer_key)
                        .await
                }
                _ => {
                    client
                        .validate(&license.key, &license.computer_id, computer_key.as_deref())
                        .await
                }
            };
            Ok(match result {
                Ok(validation) => {
                    print_json(&validation);
                    if validation.is_valid() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(EXIT_NOT_VALID)
                    }
                }
                Err(err) => report_error(&err),
            })
        }
        ClientCommand::Release {
            connection,
            license,
        } => {
            let client = connection.build(None).await?;
            Ok(
                match client.release(&license.key, &license.computer_id).await {
                    Ok(license) => {
                        print_json(&json!({"result": "RELEASED", "license": license}));
                        ExitCode::SUCCESS
                    }
                    Err(err) => report_error(&err),
                },
            )
        }
    }
}

impl ConnectionArgs {
    async fn build(&self, max_days_offline: Option<u32>) -> anyhow::Result<Client> {
        let mut builder = Client::builder().timeout(self.timeout);
        if let Some(server) = &self.server {
            builder = builder.server_url(server);
        }
        if let Some(redirector) = &self.redirector {
            builder = builder.enable_dr_site(true).redirector_url(redirector);
        }
        if let Some(path) = &self.state_file {
            builder = builder.state_file(path);
        }
        if let Some(path) = &self.ca_file {
            builder = builder.ca_file(path);
        }
        if let Some(days) = max_days_offline {
            builder = builder.max_days_offline(days);
        }

        for pair in &self.public_keys {
            let (kid, key) = pair.split_once('=').with_context(|| {
                format!("--public-key {pair:?} is not KID=BASE64; copy kid and public_key from `keyward keys`")
            })?;
            builder = builder.trusted_key(kid, key);
        }
        if self.fetch_keys {
            for (kid, key) in self.fetch_keys().await? {
                builder = builder.trusted_key(&kid, &key);
            }
        }
        Ok(builder.build()?)
    }

    /// Fetches the server's published keys and warns that they are trusted unverified.
    async fn fetch_keys(&self) -> anyhow::Result<Vec<(String, String)>> {
        let server = self
            .server
            .as_deref()
            .context("--fetch-keys needs --server")?;
        let url = Url::parse(server).with_context(|| format!("invalid --server {server:?}"))?;
        let keys = crate::client::fetch_public_keys(&url, self.timeout, self.ca_file.as_deref())
            .await
            .with_context(|| format!("while fetching the public keys of {url}"))?;

        let pairs: Vec<(String, String)> = keys
            .into_iter()
            .map(|key| (key.kid, key.public_key))
            .collect();
        let pins: Vec<String> = pairs
            .iter()
            .map(|(kid, key)| format!("--public-key {kid}={key}"))
            .collect();
        eprintln!(
            "warning: trusting the public keys that {url} sent, without verification (trust on \
             first use). Pin them instead of --fetch-keys: {}",
            pins.join(" ")
        );
        Ok(pairs)
    }
}

/// Prints `err` as JSON on stdout and as text on stderr, and returns the exit code for it.
fn report_error(err: &ClientError) -> ExitCode {
    let mut body = json!({"error": err.code(), "message": err.to_string()});
    if let ClientError::Rejected {
        active_url: Some(url),
        ..
    } = err
    {
        body["active_url"] = json!(url);
    }
    print_json(&body);
    eprintln!("error: {err}");

    let license_not_usable = matches!(
        err,
        ClientError::Rejected { .. }
            | ClientError::OfflineTooLong { .. }
            | ClientError::ClockBehindLastContact { .. }
    );
    if license_not_usable {
        ExitCode::from(EXIT_NOT_VALID)
    } else {
        ExitCode::from(EXIT_NO_ANSWER)
    }
}

fn print_json(value: &impl serde::Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(err) => eprintln!("error: failed to format the result as JSON: {err}"),
    }
}
