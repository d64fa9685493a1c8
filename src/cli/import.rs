//! `keyward license import` and `export`: CSV through the admin API, with upload progress.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use futures_util::StreamExt;

use super::admin::ServerArgs;

fn token(server: &ServerArgs) -> anyhow::Result<&str> {
    server.token.as_deref().context(
        "no admin token: set KEYWARD_ADMIN_TOKEN or pass --token (printed at the server's first start)",
    )
}

/// Uploads the CSV, printing progress to stderr when it is a terminal, then the result.
pub async fn import(
    server: &ServerArgs,
    file: &Path,
    create_products: bool,
) -> anyhow::Result<ExitCode> {
    let data = tokio::fs::read(file)
        .await
        .with_context(|| format!("cannot read {}", file.display()))?;
    let total = data.len() as u64;
    let rows = data
        .iter()
        .filter(|byte| **byte == b'\n')
        .count()
        .saturating_sub(1);
    let sent = Arc::new(AtomicU64::new(0));
    let show_progress = std::io::stderr().is_terminal();

    let counter = sent.clone();
    let chunks: Vec<bytes::Bytes> = data
        .chunks(64 * 1024)
        .map(bytes::Bytes::copy_from_slice)
        .collect();
    let stream = futures_util::stream::iter(chunks).map(move |chunk| {
        let done = counter.fetch_add(chunk.len() as u64, Ordering::Relaxed) + chunk.len() as u64;
        if show_progress {
            eprint!(
                "\rimporting {rows} rows: uploaded {}%",
                done * 100 / total.max(1)
            );
        }
        Ok::<_, std::io::Error>(chunk)
    });
    let url = format!(
        "{}/v1/admin/licenses/import?create_products={create_products}",
        server.url.trim_end_matches('/')
    );
    let response = reqwest::Client::new()
        .post(&url)
        .bearer_auth(token(server)?)
        .header(reqwest::header::CONTENT_TYPE, "text/csv")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .with_context(|| format!("while uploading {} to {url}", file.display()))?;
    if show_progress {
        eprintln!("\rimporting {rows} rows: uploaded 100%, waiting for the server to commit");
    }
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    if status.is_success() {
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "import failed ({status}): {}",
        body["message"].as_str().unwrap_or("no message")
    );
    for error in body["errors"].as_array().into_iter().flatten() {
        eprintln!(
            "  line {}: {}",
            error["line"],
            error["message"].as_str().unwrap_or("")
        );
    }
    Ok(ExitCode::FAILURE)
}

/// Downloads every license as CSV.
pub async fn export(server: &ServerArgs, out: Option<&Path>) -> anyhow::Result<ExitCode> {
    let url = format!(
        "{}/v1/admin/licenses/export",
        server.url.trim_end_matches('/')
    );
    let response = reqwest::Client::new()
        .get(&url)
        .bearer_auth(token(server)?)
        .send()
        .await
        .with_context(|| format!("while fetching {url}"))?;
    let status = response.status();
    let bytes = response.bytes().await?;
    if !status.is_success() {
        anyhow::bail!(
            "export failed ({status}): {}",
            String::from_utf8_lossy(&bytes)
        );
    }
    match out {
        Some(path) => crate::fsutil::write_atomically(path, &bytes)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => {
            use std::io::Write;
            std::io::stdout().write_all(&bytes)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
