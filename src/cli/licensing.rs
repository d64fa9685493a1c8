//! Commands for signing keys, blocked computers and offline activation, acting on a running
//! server through the admin API.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use super::admin::{ServerArgs, print, request, request_text, url_escape};

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List every signing key, retired ones included, and mark the current one.
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Add a signing key that becomes current. Older keys keep verifying. With --activate-at
    /// the key is published now and signs from that time, so clients can fetch it first.
    Rotate {
        #[command(flatten)]
        server: ServerArgs,
        /// When the new key starts signing (RFC 3339 or YYYY-MM-DD, in the future).
        #[arg(long)]
        activate_at: Option<String>,
    },
    /// Stop publishing and trusting an old signing key. What it signed stops verifying.
    Retire {
        #[command(flatten)]
        server: ServerArgs,
        /// Id of the key to retire, as `keyward keys list` shows it.
        kid: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ComputerCommand {
    /// Block a computer ID from activating, validating and checking out leases.
    Block {
        #[command(flatten)]
        server: ServerArgs,
        computer_id: String,
        /// Reason for the block, kept for the record.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Unblock a computer ID.
    Unblock {
        #[command(flatten)]
        server: ServerArgs,
        computer_id: String,
    },
    /// List blocked computer IDs.
    Blocked {
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub async fn keys(command: KeysCommand) -> anyhow::Result<ExitCode> {
    let value = match command {
        KeysCommand::List { server } => {
            request(&server, Method::GET, "/v1/admin/keys", None).await?
        }
        KeysCommand::Rotate {
            server,
            activate_at,
        } => {
            let path = match activate_at {
                Some(at) => format!("/v1/admin/keys/rotate?activate_at={}", url_escape(&at)),
                None => "/v1/admin/keys/rotate".to_string(),
            };
            request(&server, Method::POST, &path, None).await?
        }
        KeysCommand::Retire { server, kid } => {
            let path = format!("/v1/admin/keys/{}/retire", url_escape(&kid));
            request(&server, Method::POST, &path, None).await?
        }
    };
    Ok(print(&value))
}

pub async fn computer(command: ComputerCommand) -> anyhow::Result<ExitCode> {
    let value = match command {
        ComputerCommand::Block {
            server,
            computer_id,
            reason,
        } => {
            let body = json!({"computer_id": computer_id, "reason": reason});
            request(
                &server,
                Method::POST,
                "/v1/admin/blocked-computers",
                Some(body),
            )
            .await?
        }
        ComputerCommand::Unblock {
            server,
            computer_id,
        } => {
            let path = format!("/v1/admin/blocked-computers/{}", url_escape(&computer_id));
            request(&server, Method::DELETE, &path, None).await?
        }
        ComputerCommand::Blocked { server } => {
            request(&server, Method::GET, "/v1/admin/blocked-computers", None).await?
        }
    };
    Ok(print(&value))
}

/// Sends the request file to the server and writes the signed response exactly as it arrived,
/// because its signature covers those bytes.
pub async fn offline_activate(
    server: &ServerArgs,
    request_path: &Path,
    out: &Path,
) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(request_path)
        .with_context(|| format!("while reading request file {}", request_path.display()))?;
    let body: Value = serde_json::from_str(&text).with_context(|| {
        format!(
            "request file {} is not JSON; the application writes it",
            request_path.display()
        )
    })?;
    let response = request_text(
        server,
        Method::POST,
        "/v1/admin/offline-activations",
        Some(body),
    )
    .await?;
    crate::fsutil::write_atomically(out, response.as_bytes())
        .with_context(|| format!("while writing response file {}", out.display()))?;

    let document: crate::signing::SignedDocument = serde_json::from_str(&response)
        .context("the server returned a response that is not a signed document")?;
    let payload: Value = serde_json::from_str(&document.payload)
        .context("the signed response carries a payload that is not JSON")?;
    println!(
        "{} {} on computer {}; response written to {}",
        payload["result"].as_str().unwrap_or("?"),
        payload["key"].as_str().unwrap_or("?"),
        payload["computer_id"].as_str().unwrap_or("?"),
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}
