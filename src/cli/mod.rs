//! The `keyward` command line.

mod admin;
mod client;
mod import;
mod licensing;
mod redirect;
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
    /// Run the disaster-recovery drill on loopback: primary, DR, redirector, failover, failback.
    Demo {
        /// A smaller drill (1,000 licenses, fewer activations), as CI runs it.
        #[arg(long)]
        fast: bool,
    },
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
    /// Print role, position, counts, replication state and whether the peer is reachable; optionally
    /// fail on an old snapshot.
    Status(replication::StatusArgs),
    /// List licenses, activations and audit entries that differ between two database files.
    Diff(replication::DiffArgs),
    /// Activate, validate or release a license as a client application would.
    #[command(subcommand)]
    Client(client::ClientCommand),
    /// Edit or show a QLM redirect file (qlmredirect.xml).
    #[command(subcommand)]
    Redirect(redirect::RedirectCommand),
    /// Serve a QLM redirect file to license clients over HTTP.
    Redirector(redirect::RedirectorArgs),
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
    // The drill prints its own report; its components log only warnings unless RUST_LOG says otherwise.
    if matches!(cli.command, Command::Demo { .. }) && std::env::var_os("RUST_LOG").is_none() {
        init_logging_with(&log_format(&cli), "warn");
    } else {
        init_logging(&log_format(&cli));
    }
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
            eprintln!("error: {}", describe_error(&err));
            ExitCode::FAILURE
        }
    }
}

/// Joins an error and its causes with `: `, leaving out a cause whose text the message before it
/// already contains (many errors print their source inside their own message).
pub(crate) fn describe_error(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

/// Returns the log format. Commands that load a configuration take `log_format` from it (the
/// file, then `KEYWARD_LOG_FORMAT`). Other commands, and an invalid configuration, fall back to
/// `KEYWARD_LOG_FORMAT` alone, and the command then reports the invalid value itself.
fn log_format(cli: &Cli) -> String {
    let config_args = match &cli.command {
        Command::Serve(args) => Some(&args.config),
        Command::Config(ConfigCommand::Show(args)) => Some(args),
        Command::Restore(args) if args.url.is_none() => Some(&args.config),
        _ => None,
    };
    let from_config = config_args
        .and_then(|args| Config::load(args.config.as_deref()).ok())
        .map(|(config, _warnings)| config.log_format);
    from_config
        .or_else(|| std::env::var("KEYWARD_LOG_FORMAT").ok())
        .unwrap_or_default()
}

/// Sets up tracing on stderr: text by default, JSON lines when `format` is `json`.
pub fn init_logging(format: &str) {
    init_logging_with(format, "info");
}

/// Sets up tracing on stderr with `default_filter` unless `RUST_LOG` is set.
fn init_logging_with(format: &str, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
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
        Command::Demo { fast } => {
            let size = if fast {
                crate::demo::DemoSize::fast()
            } else {
                crate::demo::DemoSize::full()
            };
            let failed = crate::demo::run(size).await?;
            if failed == 0 {
                println!("every check held");
                Ok(ExitCode::SUCCESS)
            } else {
                println!("{failed} checks failed");
                Ok(ExitCode::FAILURE)
            }
        }
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
        Command::Client(command) => client::run(command).await,
        Command::Redirect(command) => redirect::run(command).await,
        Command::Redirector(args) => redirect::run_redirector(args).await,
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut config = args.config.load()?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    config.check()?;
    let addr = config.listen_addr()?;
    crate::tls::check_plain_http(
        addr,
        !config.tls_cert.is_empty(),
        config.allow_plain_http,
        "allow_plain_http = true (KEYWARD_ALLOW_PLAIN_HTTP=true)",
    )?;
    let config_tls_empty = config.tls_cert.is_empty();
    let clock: crate::time::SharedClock = Arc::new(crate::time::SystemClock);
    let server = crate::server::Server::open(config, clock).await?;
    let shutdown = crate::server::shutdown_signal();
    if let Some(token) = &server.bootstrap_token {
        println!("Admin token (shown once, store it now): {token}");
    }
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("while binding {addr}; is another keyward running? use --listen")
    })?;
    if let Ok(local) = listener.local_addr() {
        let scheme = if config_tls_empty { "http" } else { "https" };
        println!("keyward listening on {scheme}://{local}");
    }
    server.serve(listener, shutdown).await?;
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
