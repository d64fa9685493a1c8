//! The `keyward` command line.

mod admin;
mod licensing;
mod replication;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::config::Config;

#[derive(Debug, Parser)]
#[command(
    name = "keyward",
    version,
    about = "Self-hosted license server with disaster-recovery snapshot shipping"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the license server.
    Serve(ServeArgs),
    /// Print configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage products on a running server.
    #[command(subcommand)]
    Product(admin::ProductCommand),
    /// Manage licenses on a running server.
    #[command(subcommand)]
    License(admin::LicenseCommand),
    /// Manage admin tokens on a running server.
    #[command(subcommand)]
    Token(admin::TokenCommand),
    /// Print the public keys that verify signed responses, or manage signing keys.
    Keys(admin::KeysArgs),
    /// Block, unblock and list computer IDs on a running server.
    #[command(subcommand)]
    Computer(licensing::ComputerCommand),
    /// Take a snapshot now (on a running server, or on --data-dir).
    Snapshot(replication::SnapshotArgs),
    /// Ship the newest snapshot to the peer now.
    Ship(admin::ServerArgs),
    /// Restore a snapshot file (through --url, or into a stopped --data-dir).
    Restore(replication::RestoreArgs),
    /// Make this site active (when no redirect file decides the role).
    Promote(admin::ServerArgs),
    /// Make this site standby (when no redirect file decides the role).
    Demote(admin::ServerArgs),
    /// Print role, position, counts and replication state; optionally fail on an old snapshot.
    Status(replication::StatusArgs),
    /// List licenses, activations and audit entries that differ between two database files.
    Diff(replication::DiffArgs),
}

/// Options shared by commands that load the configuration.
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// TOML configuration file.
    #[arg(long, short = 'c', env = "KEYWARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (overrides data_dir).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

impl ConfigArgs {
    /// Loads the configuration layers and applies the flags.
    pub fn load(&self) -> anyhow::Result<Config> {
        let (mut config, warnings) = Config::load(self.config.as_deref())?;
        for warning in warnings {
            tracing::warn!("{warning}");
        }
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
        }
        Ok(config)
    }
}

#[derive(Debug, Args)]
struct ServeArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Address to listen on, ADDRESS:PORT (overrides listen).
    #[arg(long)]
    listen: Option<String>,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the built-in default configuration, with comments.
    Default,
    /// Print the configuration in effect after the file, environment and flags (secrets masked).
    Show(ConfigArgs),
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_format = std::env::var("KEYWARD_LOG_FORMAT").unwrap_or_default();
    init_logging(&log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Sets up tracing on stderr: text by default, JSON with `KEYWARD_LOG_FORMAT=json`.
pub fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Config(ConfigCommand::Default) => {
            print!("{}", crate::config::DEFAULT_CONFIG);
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCommand::Show(args)) => {
            let config = args.load()?;
            println!("{config:#?}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Product(command) => admin::product(command).await,
        Command::License(command) => admin::license(command).await,
        Command::Token(command) => admin::token(command).await,
        Command::Keys(args) => admin::keys(args).await,
        Command::Computer(command) => licensing::computer(command).await,
        Command::Snapshot(args) => replication::snapshot(args).await,
        Command::Ship(server) => replication::simple_post(server, "/v1/admin/ship").await,
        Command::Restore(args) => replication::restore(args).await,
        Command::Promote(server) => replication::simple_post(server, "/v1/admin/promote").await,
        Command::Demote(server) => replication::simple_post(server, "/v1/admin/demote").await,
        Command::Status(args) => replication::status(args).await,
        Command::Diff(args) => replication::diff(args),
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut config = args.config.load()?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    config.check()?;
    let addr = config.listen_addr()?;
    if !addr.ip().is_loopback() && config.tls_cert.is_empty() && !config.allow_plain_http {
        anyhow::bail!(
            "refusing plain HTTP on non-loopback address {addr}: set tls_cert and tls_key, \
             or allow_plain_http = true (KEYWARD_ALLOW_PLAIN_HTTP=true) behind a TLS proxy"
        );
    }
    let config_tls_empty = config.tls_cert.is_empty();
    let config_plain_allowed = config.allow_plain_http;
    let clock: crate::time::SharedClock = Arc::new(crate::time::SystemClock);
    let server = crate::server::Server::open(config, clock).await?;
    if let Some(token) = &server.bootstrap_token {
        println!("Admin token (shown once, store it now): {token}");
    }
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("while binding {addr}; is another keyward running? use --listen")
    })?;
    if !addr.ip().is_loopback() && config_tls_empty && config_plain_allowed {
        tracing::warn!(listen = %addr, "serving plain HTTP on a non-loopback address (allow_plain_http = true); put a TLS proxy in front");
    }
    if let Ok(local) = listener.local_addr() {
        let scheme = if config_tls_empty { "http" } else { "https" };
        println!("keyward listening on {scheme}://{local}");
    }
    server
        .serve(listener, crate::server::shutdown_signal())
        .await?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn command_line_definition_is_valid() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
