//! HTTPS with a throwaway CA made at test time: the server serves TLS, the shipper trusts the
//! peer through peer.ca_file, and plain HTTP off loopback is refused.

mod common;

use std::path::{Path, PathBuf};

use common::{ADMIN_TOKEN, PEER_SECRET, Process};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

struct TestCa {
    ca_pem: PathBuf,
    cert_pem: PathBuf,
    key_pem: PathBuf,
}

/// Writes a CA certificate and a server certificate for 127.0.0.1 and localhost signed by it.
fn make_ca(dir: &Path) -> TestCa {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "keyward test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::from_params(&ca_params, &ca_key);

    let server_params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();

    let ca = TestCa {
        ca_pem: dir.join("ca.pem"),
        cert_pem: dir.join("server.pem"),
        key_pem: dir.join("server-key.pem"),
    };
    std::fs::write(&ca.ca_pem, ca_cert.pem()).unwrap();
    std::fs::write(&ca.cert_pem, server_cert.pem()).unwrap();
    std::fs::write(&ca.key_pem, server_key.serialize_pem()).unwrap();
    ca
}

fn trusting_client(ca: &Path) -> reqwest::blocking::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pem = std::fs::read(ca).unwrap();
    reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap()
}

#[test]
fn shipping_over_https_with_configured_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = make_ca(dir.path());
    let dr = Process::serve(
        &dir.path().join("dr"),
        &[
            ("KEYWARD_INITIAL_ROLE", "standby"),
            ("KEYWARD_PEER_SECRET", PEER_SECRET),
            ("KEYWARD_TLS_CERT", ca.cert_pem.to_str().unwrap()),
            ("KEYWARD_TLS_KEY", ca.key_pem.to_str().unwrap()),
        ],
    );
    assert!(dr.url.starts_with("https://"), "{}", dr.url);

    // A client that trusts the CA gets through; one that does not is refused.
    let trusted = trusting_client(&ca.ca_pem);
    let health = trusted.get(format!("{}/healthz", dr.url)).send().unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let untrusting = reqwest::blocking::Client::new();
    assert!(
        untrusting
            .get(format!("{}/healthz", dr.url))
            .send()
            .is_err()
    );

    let primary = Process::serve(
        &dir.path().join("primary"),
        &[
            ("KEYWARD_PEER_URL", dr.url.as_str()),
            ("KEYWARD_PEER_SECRET", PEER_SECRET),
            ("KEYWARD_PEER_CA_FILE", ca.ca_pem.to_str().unwrap()),
        ],
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let key = runtime.block_on(common::seed_license(&primary.url, 1));
    let client = reqwest::blocking::Client::new();
    let taken = client
        .post(format!("{}/v1/admin/snapshots", primary.url))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .unwrap();
    assert_eq!(taken.status().as_u16(), 201);
    let shipped = client
        .post(format!("{}/v1/admin/ship", primary.url))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .unwrap();
    let status = shipped.status().as_u16();
    let body: serde_json::Value = shipped.json().unwrap();
    assert_eq!(status, 200, "{body}");

    let validated: serde_json::Value = trusted
        .post(format!("{}/v1/validate", dr.url))
        .json(&serde_json::json!({"key": key, "computer_id": "x"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(validated["code"], "NOT_ACTIVATED", "{validated}");
}

#[test]
fn plain_http_off_loopback_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path().join("site"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("refusing plain HTTP"), "{stderr}");
    assert!(stderr.contains("allow_plain_http"), "{stderr}");
}
