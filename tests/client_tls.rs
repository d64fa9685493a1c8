//! HTTPS with an extra root CA (`ca_file`). The keyward server speaks plain HTTP, so a small
//! TLS front on loopback forwards to it, using a CA and a server certificate that the
//! `openssl` command creates in a temp directory.

mod client_support;
mod common;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use client_support::{builder_for, sample_public_key};
use common::{InProcess, seed_license, test_config};
use keyward::client::{Client, ClientError, ValidationCode};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

/// Upper bound on the header block of one HTTP message passed through the TLS front.
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Runs `openssl` with `args` in `dir`, failing the test when it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command is needed to create test certificates");
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Creates `ca.pem`, and `server.pem` with `server.key` for the IP address 127.0.0.1, signed
/// by that CA.
fn create_certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        dir,
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=keyward test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign",
            ],
        ]
        .concat(),
    );
    openssl(
        dir,
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
}

/// Starts a TLS front on 127.0.0.1 that forwards each HTTP/1.1 message to `upstream`.
/// Returns its `https://` URL. The listener threads end with the test process.
fn start_tls_front(dir: &Path, upstream: SocketAddr) -> String {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certificates: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(dir.join("server.pem"))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let config = Arc::new(
        ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certificates, key)
            .unwrap(),
    );

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let config = config.clone();
            std::thread::spawn(move || {
                // A failed handshake is what the test without the CA expects, so errors of
                // single connections are ignored.
                let _ = forward_connection(config, stream, upstream);
            });
        }
    });
    url
}

fn forward_connection(
    config: Arc<ServerConfig>,
    client: TcpStream,
    upstream: SocketAddr,
) -> io::Result<()> {
    let connection = ServerConnection::new(config).map_err(io::Error::other)?;
    let mut tls = StreamOwned::new(connection, client);
    let mut server = TcpStream::connect(upstream)?;
    while let Some(request) = read_message(&mut tls)? {
        server.write_all(&request)?;
        let response = read_message(&mut server)?
            .ok_or_else(|| io::Error::other("upstream closed the connection"))?;
        tls.write_all(&response)?;
        tls.flush()?;
    }
    Ok(())
}

/// Reads one HTTP/1.1 message whose body length is given by `Content-Length` (or is empty).
/// Returns `None` when the peer closed the connection before a new message.
fn read_message(stream: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut message = Vec::new();
    let mut byte = [0u8; 1];
    while !message.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(0) if message.is_empty() => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => message.push(byte[0]),
            Err(err) if message.is_empty() && err.kind() == io::ErrorKind::UnexpectedEof => {
                return Ok(None);
            }
            Err(err) => return Err(err),
        }
        if message.len() > MAX_HEADER_BYTES {
            return Err(io::Error::other("header block too large"));
        }
    }

    let headers = String::from_utf8_lossy(&message).to_ascii_lowercase();
    let length = headers
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .map(|value| value.trim().parse::<usize>().unwrap_or(0))
        .unwrap_or(0);
    let start = message.len();
    message.resize(start + length, 0);
    stream.read_exact(&mut message[start..])?;
    Ok(Some(message))
}

fn socket_address(url: &str) -> SocketAddr {
    url.trim_start_matches("http://").parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn https_with_ca_file_validates() {
    let dir = tempfile::tempdir().unwrap();
    let certs = tempfile::tempdir().unwrap();
    create_certificates(certs.path());
    let server = InProcess::start(test_config(dir.path())).await;
    let key = seed_license(&server.url, 1).await;
    let https_url = start_tls_front(certs.path(), socket_address(&server.url));
    let client = builder_for(&server)
        .server_url(&https_url)
        .ca_file(certs.path().join("ca.pem"))
        .build()
        .unwrap();

    let activation = client.activate(&key, "pc-1", "").await.unwrap();
    let validation = client.validate(&key, "pc-1", None).await.unwrap();

    assert!(!activation.already_active);
    assert_eq!(validation.code, ValidationCode::Valid);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn https_without_ca_file_fails() {
    let dir = tempfile::tempdir().unwrap();
    let certs = tempfile::tempdir().unwrap();
    create_certificates(certs.path());
    let server = InProcess::start(test_config(dir.path())).await;
    let key = seed_license(&server.url, 1).await;
    let https_url = start_tls_front(certs.path(), socket_address(&server.url));
    let client = builder_for(&server).server_url(&https_url).build().unwrap();

    let result = client.validate(&key, "pc-1", None).await;

    let Err(ClientError::Unreachable { source, .. }) = &result else {
        panic!("expected an unreachable server, got {result:?}");
    };
    // The Debug output of reqwest 0.13 includes the rustls error kind.
    assert!(
        format!("{source:?}").contains("InvalidCertificate"),
        "{source:?}"
    );
    server.stop().await;
}

#[test]
fn unusable_ca_file_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("not-pem.txt");
    std::fs::write(&not_pem, "this is not a certificate\n").unwrap();
    let cases = [
        ("missing file", dir.path().join("missing.pem")),
        ("no certificate", not_pem),
    ];

    for (name, path) in cases {
        let result = Client::builder()
            .server_url("https://127.0.0.1:1/")
            .trusted_key("k1", &sample_public_key())
            .ca_file(path)
            .build();
        assert!(
            matches!(result, Err(ClientError::Config(_))),
            "{name}: {result:?}"
        );
    }
}
