//! Commands for snapshots, shipping, restore, roles, status and diff.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use base64::Engine;
use clap::Args;
use reqwest::Method;

use super::ConfigArgs;
use super::admin::{ServerArgs, request};

/// `keyward snapshot`: on a running server (default) or on a data directory.
#[derive(Debug, Args)]
pub struct SnapshotArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Take the snapshot directly from this data directory instead of asking a server.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Snapshot file to restore (a `.json` manifest beside it is checked when present).
    pub file: PathBuf,
    /// Skip the fencing and divergence rules (integrity checks still run). The current
    /// database is kept in pre-restore/ either way.
    #[arg(long)]
    pub force: bool,
    /// Configuration of the stopped site to restore into (with --data-dir).
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Restore through a running server's admin API at this URL.
    #[arg(long, env = "KEYWARD_URL")]
    pub url: Option<String>,
    #[arg(long, env = "KEYWARD_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Exit with status 2 when the newest snapshot (taken on an active site, applied on a
    /// standby one) is older than this, e.g. 1h.
    #[arg(long)]
    pub max_snapshot_age: Option<String>,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    pub a: PathBuf,
    pub b: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

fn print(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("json prints")
    );
}

pub async fn snapshot(args: SnapshotArgs) -> anyhow::Result<ExitCode> {
    if let Some(data_dir) = args.data_dir {
        let db_path = data_dir.join(crate::snapshot::swap::LIVE_NAME);
        anyhow::ensure!(
            db_path.exists(),
            "no database at {}; check --data-dir",
            db_path.display()
        );
        let site_id = crate::role::load_site_id(&data_dir)?;
        let dir = data_dir.join("snapshots");
        let snapshot = tokio::task::spawn_blocking(move || {
            crate::fsutil::create_private_dir(&dir)?;
            let sequence = crate::snapshot::store::next_sequence(&dir)?;
            anyhow::Ok(crate::snapshot::take::take(
                &db_path, &dir, &site_id, sequence,
            )?)
        })
        .await??;
        println!("{}", snapshot.path.display());
        print(&serde_json::to_value(&snapshot.manifest)?);
        return Ok(ExitCode::SUCCESS);
    }
    print(&request(&args.server, Method::POST, "/v1/admin/snapshots", None).await?);
    Ok(ExitCode::SUCCESS)
}

pub async fn simple_post(server: ServerArgs, path: &str) -> anyhow::Result<ExitCode> {
    print(&request(&server, Method::POST, path, None).await?);
    Ok(ExitCode::SUCCESS)
}

pub async fn restore(args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let manifest_path = crate::snapshot::take::manifest_path(&args.file);
    let manifest = match std::fs::read(&manifest_path) {
        Ok(bytes) => Some(
            crate::snapshot::manifest::Manifest::parse(&bytes).with_context(|| {
                format!(
                    "invalid manifest {}; remove it to restore the file without one",
                    manifest_path.display()
                )
            })?,
        ),
        Err(_) => None,
    };
    if let Some(url) = args.url.clone() {
        return restore_remote(&args, &url, manifest).await;
    }
    let config = args.config.load()?;
    let outcome =
        crate::snapshot::offline::restore(&config, &args.file, manifest, args.force).await?;
    print(&serde_json::to_value(&outcome)?);
    Ok(ExitCode::SUCCESS)
}

async fn restore_remote(
    args: &RestoreArgs,
    url: &str,
    manifest: Option<crate::snapshot::manifest::Manifest>,
) -> anyhow::Result<ExitCode> {
    let token = args
        .token
        .as_deref()
        .context("no admin token: set KEYWARD_ADMIN_TOKEN or pass --token")?;
    let file = tokio::fs::File::open(&args.file)
        .await
        .with_context(|| format!("cannot open {}", args.file.display()))?;
    let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
    let target = format!(
        "{}/v1/admin/restore?force={}",
        url.trim_end_matches('/'),
        args.force
    );
    let mut builder = reqwest::Client::new()
        .post(&target)
        .bearer_auth(token)
        .body(body);
    if let Some(manifest) = manifest {
        let encoded =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&manifest)?);
        builder = builder.header(crate::snapshot::receive::MANIFEST_HEADER, encoded);
    }
    let response = builder
        .send()
        .await
        .with_context(|| format!("while uploading to {target}"))?;
    let status = response.status();
    let value: serde_json::Value = response.json().await.unwrap_or_default();
    if !status.is_success() {
        anyhow::bail!(
            "restore rejected ({status}): {} {}",
            value["code"].as_str().unwrap_or(""),
            value["message"].as_str().unwrap_or("")
        );
    }
    print(&value);
    Ok(ExitCode::SUCCESS)
}

pub async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    // Checked before the request, so that a bad argument prints no status for scripts to read.
    let limit = args
        .max_snapshot_age
        .map(|limit| {
            humantime::parse_duration(&limit).with_context(|| {
                format!("invalid --max-snapshot-age {limit:?}; use a duration like 1h")
            })
        })
        .transpose()?;
    let value = request(&args.server, Method::GET, "/v1/admin/status", None).await?;
    print(&value);
    eprintln!("{}", describe_peer(&value["peer"]));
    let Some(limit) = limit else {
        return Ok(ExitCode::SUCCESS);
    };
    let replication = &value["replication"];
    let newest = if value["role"]["role"] == "active" {
        replication["last_snapshot"]["created_at"].as_str()
    } else {
        replication["last_applied"]["at"].as_str()
    };
    let age = newest
        .and_then(|text| crate::time::parse(text).ok())
        .map(|at| (chrono::Utc::now() - at).to_std().unwrap_or_default());
    match age {
        Some(age) if age <= limit => Ok(ExitCode::SUCCESS),
        Some(age) => {
            eprintln!(
                "snapshot age {}s exceeds --max-snapshot-age {}s",
                age.as_secs(),
                limit.as_secs()
            );
            Ok(ExitCode::from(2))
        }
        None => {
            eprintln!("no snapshot yet, so its age cannot be within --max-snapshot-age");
            Ok(ExitCode::from(2))
        }
    }
}

/// Summarizes the server's peer check for the terminal; the JSON on stdout has the details.
fn describe_peer(peer: &serde_json::Value) -> String {
    let Some(url) = peer["url"].as_str() else {
        return "peer: none configured (peer.url is empty)".to_string();
    };
    if peer["reachable"].as_bool() == Some(true) {
        format!(
            "peer {url}: reachable (HTTP {}, {} ms)",
            peer["http_status"], peer["elapsed_ms"]
        )
    } else {
        format!(
            "peer {url}: unreachable: {}",
            peer["error"].as_str().unwrap_or("no response")
        )
    }
}

pub fn diff(args: DiffArgs) -> anyhow::Result<ExitCode> {
    for path in [&args.a, &args.b] {
        anyhow::ensure!(path.exists(), "{} not found", path.display());
    }
    let differences = crate::diff::diff_files(&args.a, &args.b)?;
    if args.json {
        print(&serde_json::to_value(&differences)?);
    } else if differences.is_empty() {
        println!("no differences");
    } else {
        for difference in &differences {
            println!(
                "{} {} {}",
                difference.change, difference.kind, difference.id
            );
            for field in &difference.fields {
                println!("    {field}");
            }
        }
    }
    Ok(if differences.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
