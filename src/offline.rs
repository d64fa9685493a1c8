//! Signed files for computers without a network connection to the license server: offline
//! activation requests and responses, and license files. Everything here runs on the client
//! side without the network, with the server's published keys in a [`TrustedKeys`].
//!
//! Offline activation:
//!
//! 1. The application writes a request file ([`OfflineRequest::new`], [`write_request`]) with a
//!    fresh random nonce and keeps it.
//! 2. The user carries the file to the vendor, who runs
//!    `keyward license offline-activate REQUEST.json --out RESPONSE.json`. The server activates
//!    with the same rules as an online activation and signs the response.
//! 3. The application checks the response against its request and installs it
//!    ([`install_response`]): the signature must verify, and the nonce, license key and computer
//!    id must match the request.
//!
//! A license file (`POST /v1/license-file`) is a signed statement of one activation, checked
//! with [`verify_license_file`].
//!
//! Both documents are a [`SignedDocument`]: the payload JSON as a string and a detached Ed25519
//! signature over its exact bytes. The payload names its `type` and the `kid` that signed it, so
//! that one kind of document cannot pass as the other.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::api::client::ClientLicense;
use crate::signing::{SignedDocument, TrustedKeys, VerifyError};

/// `type` of an offline activation response payload.
pub const OFFLINE_ACTIVATION_TYPE: &str = "keyward-offline-activation";

/// `type` of a license file payload.
pub const LICENSE_FILE_TYPE: &str = "keyward-license-file";

/// Bytes of randomness in a request nonce (128 bits).
const NONCE_BYTES: usize = 16;

/// An offline activation request, written by the application and read by the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfflineRequest {
    pub key: String,
    pub computer_id: String,
    #[serde(default)]
    pub computer_name: String,
    /// Random text that the signed response must repeat, so that a response made for another
    /// request cannot be installed.
    pub nonce: String,
    /// When the request was made (RFC 3339).
    pub created_at: String,
}

impl OfflineRequest {
    /// Makes a request with a fresh random nonce, created now.
    pub fn new(key: &str, computer_id: &str, computer_name: &str) -> OfflineRequest {
        OfflineRequest {
            key: key.to_string(),
            computer_id: computer_id.to_string(),
            computer_name: computer_name.to_string(),
            nonce: crate::ids::random_hex(NONCE_BYTES),
            created_at: crate::time::format(chrono::Utc::now()),
        }
    }
}

/// The signed payload of an offline activation response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfflineActivation {
    /// Always [`OFFLINE_ACTIVATION_TYPE`].
    #[serde(rename = "type")]
    pub kind: String,
    /// Id of the key that signed this payload.
    pub kid: String,
    /// `ACTIVATED`, or `ALREADY_ACTIVATED` when the computer held an activation already.
    pub result: String,
    pub key: String,
    pub computer_id: String,
    pub computer_name: String,
    /// The request's nonce.
    pub nonce: String,
    /// The computer key, as an online activation returns it.
    pub computer_key: String,
    pub license: ClientLicense,
    pub issued_at: String,
}

/// The signed payload of a license file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LicenseFile {
    /// Always [`LICENSE_FILE_TYPE`].
    #[serde(rename = "type")]
    pub kind: String,
    /// Id of the key that signed this payload.
    pub kid: String,
    pub key: String,
    pub computer_id: String,
    pub product: String,
    pub features: Vec<String>,
    /// When the license expires, if it does.
    pub expires_at: Option<String>,
    pub maintenance_expires_at: Option<String>,
    pub issued_at: String,
    /// The nonce of the request that fetched the file, if it had one.
    pub nonce: Option<String>,
}

impl LicenseFile {
    /// Returns whether the license has expired at `now`. An expiry that does not parse counts as
    /// expired.
    pub fn is_expired(&self, now: chrono::DateTime<chrono::Utc>) -> bool {
        match &self.expires_at {
            None => false,
            Some(text) => crate::time::parse(text).map_or(true, |at| at <= now),
        }
    }
}

/// Reasons an offline file is rejected.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid {document}: {message}")]
    Format {
        document: &'static str,
        message: String,
    },
    #[error("signature does not verify: {0}")]
    Signature(#[from] VerifyError),
    #[error("payload is a {found:?} document, expected {expected:?}")]
    WrongType {
        expected: &'static str,
        found: String,
    },
    #[error("payload names key {inner:?} but the signature was made with key {outer:?}")]
    KidMismatch { inner: String, outer: String },
    #[error("response nonce does not match the request; it was made for another request")]
    NonceMismatch,
    #[error("{field} in the signed payload is {found:?}, expected {expected:?}")]
    Mismatch {
        field: &'static str,
        expected: String,
        found: String,
    },
    #[error("computer key in the response does not verify: {0}")]
    ComputerKey(String),
}

/// Writes a request file as pretty JSON through a temp file, with mode 0600.
pub fn write_request(path: &Path, request: &OfflineRequest) -> Result<(), OfflineError> {
    let mut bytes = serde_json::to_vec_pretty(request).expect("request serializes");
    bytes.push(b'\n');
    crate::fsutil::write_atomically(path, &bytes).map_err(|source| OfflineError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a request file.
pub fn read_request(path: &Path) -> Result<OfflineRequest, OfflineError> {
    let bytes = read(path)?;
    serde_json::from_slice(&bytes).map_err(|err| OfflineError::Format {
        document: "request file",
        message: err.to_string(),
    })
}

/// Verifies an offline activation response against the request it answers and returns its
/// payload. The signature must verify with `trusted`, the payload must be an offline
/// activation signed by the key it names, its nonce, license key and computer id must match
/// `request`, and its computer key must verify and name the same license and computer.
pub fn verify_response(
    request: &OfflineRequest,
    response: &[u8],
    trusted: &TrustedKeys,
) -> Result<OfflineActivation, OfflineError> {
    let activation: OfflineActivation =
        open_document(response, trusted, OFFLINE_ACTIVATION_TYPE, "response file")?;
    if activation.nonce != request.nonce {
        return Err(OfflineError::NonceMismatch);
    }
    expect_equal("computer_id", &request.computer_id, &activation.computer_id)?;
    expect_same_key(&request.key, &activation.key)?;

    let claims = trusted
        .verify_computer_key(&activation.computer_key)
        .map_err(|err| OfflineError::ComputerKey(err.to_string()))?;
    expect_equal(
        "computer key's computer_id",
        &activation.computer_id,
        &claims.computer_id,
    )?;
    expect_equal(
        "computer key's license_key",
        &activation.license.key,
        &claims.license_key,
    )?;
    Ok(activation)
}

/// Verifies the response file at `response_path` against the request file at `request_path`
/// (see [`verify_response`]) and, only if it passes, copies the response's exact bytes to
/// `install_path` through a temp file. Returns the verified payload.
pub fn install_response(
    request_path: &Path,
    response_path: &Path,
    install_path: &Path,
    trusted: &TrustedKeys,
) -> Result<OfflineActivation, OfflineError> {
    let request = read_request(request_path)?;
    let response = read(response_path)?;
    let activation = verify_response(&request, &response, trusted)?;
    crate::fsutil::write_atomically(install_path, &response).map_err(|source| {
        OfflineError::Write {
            path: install_path.to_path_buf(),
            source,
        }
    })?;
    Ok(activation)
}

/// Verifies a license file and returns its payload. The signature must verify with `trusted`,
/// the payload must be a license file signed by the key it names, and it must be for
/// `computer_id`. Whether it has expired is left to the caller ([`LicenseFile::is_expired`]).
pub fn verify_license_file(
    bytes: &[u8],
    trusted: &TrustedKeys,
    computer_id: &str,
) -> Result<LicenseFile, OfflineError> {
    let file: LicenseFile = open_document(bytes, trusted, LICENSE_FILE_TYPE, "license file")?;
    expect_equal("computer_id", computer_id, &file.computer_id)?;
    Ok(file)
}

fn read(path: &Path) -> Result<Vec<u8>, OfflineError> {
    std::fs::read(path).map_err(|source| OfflineError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Parses a signed document, verifies its signature, then parses the payload as `T` and checks
/// its `type` and `kid`. The payload is parsed only after the signature verifies.
fn open_document<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    trusted: &TrustedKeys,
    expected_type: &'static str,
    document_name: &'static str,
) -> Result<T, OfflineError> {
    let document: SignedDocument =
        serde_json::from_slice(bytes).map_err(|err| OfflineError::Format {
            document: document_name,
            message: err.to_string(),
        })?;
    trusted.verify_document(&document)?;

    let header: PayloadHeader =
        serde_json::from_str(&document.payload).map_err(|err| OfflineError::Format {
            document: document_name,
            message: format!("payload: {err}"),
        })?;
    if header.kind != expected_type {
        return Err(OfflineError::WrongType {
            expected: expected_type,
            found: header.kind,
        });
    }
    if header.kid != document.kid {
        return Err(OfflineError::KidMismatch {
            inner: header.kid,
            outer: document.kid,
        });
    }
    serde_json::from_str(&document.payload).map_err(|err| OfflineError::Format {
        document: document_name,
        message: format!("payload: {err}"),
    })
}

/// The fields every signed payload starts with.
#[derive(Deserialize)]
struct PayloadHeader {
    #[serde(rename = "type")]
    kind: String,
    kid: String,
}

fn expect_equal(field: &'static str, expected: &str, found: &str) -> Result<(), OfflineError> {
    if expected != found {
        return Err(OfflineError::Mismatch {
            field,
            expected: expected.to_string(),
            found: found.to_string(),
        });
    }
    Ok(())
}

/// Compares license keys in their canonical form, because the request may spell the key in any
/// accepted form and the server returns it grouped.
fn expect_same_key(requested: &str, found: &str) -> Result<(), OfflineError> {
    let canonical = |text: &str| {
        crate::keys::LicenseKey::parse(text)
            .map(|key| key.as_str().to_string())
            .unwrap_or_else(|_| text.to_string())
    };
    if canonical(requested) != canonical(found) {
        return Err(OfflineError::Mismatch {
            field: "key",
            expected: requested.to_string(),
            found: found.to_string(),
        });
    }
    Ok(())
}
