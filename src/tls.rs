//! Serving an axum router over HTTPS with rustls, from PEM certificate and key files.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

/// Serves `app` over HTTPS on `listener` until `shutdown` resolves; in-flight requests then get
/// up to 30 s to finish.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    cert: &str,
    key: &str,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
        .await
        .with_context(|| {
            format!("while loading the TLS certificate {cert} and key {key} (PEM files expected)")
        })?;
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopper.graceful_shutdown(Some(Duration::from_secs(30)));
    });
    let listener = listener
        .into_std()
        .context("while preparing the TLS listener")?;
    axum_server::from_tcp_rustls(listener, tls)
        .context("while starting the TLS server")?
        .handle(handle)
        .serve(app.into_make_service_with_connect_info::<SocketAddr>())
        .await
        .context("while serving HTTPS")
}

/// Rejects plain HTTP on a non-loopback address unless `allow_plain` is set, and warns when it
/// is. `flag` names the setting that allows it, for the error message.
pub fn check_plain_http(
    addr: SocketAddr,
    tls: bool,
    allow_plain: bool,
    flag: &str,
) -> anyhow::Result<()> {
    if tls || addr.ip().is_loopback() {
        return Ok(());
    }
    if !allow_plain {
        anyhow::bail!(
            "refusing plain HTTP on non-loopback address {addr}: configure a TLS certificate and key, \
             or set {flag} behind a TLS proxy"
        );
    }
    tracing::warn!(listen = %addr, "serving plain HTTP on a non-loopback address; put a TLS proxy in front");
    Ok(())
}
