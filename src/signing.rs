//! Ed25519 signing keys, response signatures and computer keys.
//!
//! The key pairs live in the database (`signing_keys`), so a DR site restored from a snapshot
//! signs with the same keys as the primary. The newest key that is not retired signs; every key
//! that is not retired is published, so older signatures keep verifying after a rotation.
//!
//! A response signature covers the exact body bytes and travels in the `Keyward-Signature`
//! header as `kid=<key id>;sig=<base64 signature>`.
//!
//! A computer key is a token `kw1.<payload>.<signature>`: the payload is base64url JSON
//! ([`ComputerKeyClaims`]) and the signature (base64url) covers the text `kw1.<payload>`.
//!
//! A signed document (a license file or an offline activation response, see [`SignedDocument`])
//! carries its payload as a JSON string, so the signed bytes survive any reformatting of the
//! outer JSON, with a detached signature and the id of the key that made it.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use crate::db::DbError;

/// Name of the HTTP header carrying a response signature.
pub const SIGNATURE_HEADER: &str = "keyward-signature";

const COMPUTER_KEY_PREFIX: &str = "kw1.";

/// A published verification key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PublicKeyInfo {
    pub kid: String,
    /// Base64 (standard alphabet) of the 32-byte Ed25519 public key.
    pub public_key: String,
    pub created_at: String,
}

/// The signing key in use and the public keys that verify.
#[derive(Clone)]
pub struct Keyring {
    kid: String,
    signing: SigningKey,
    published: Vec<PublicKeyInfo>,
    /// Time from which a published key that does not sign yet takes over, if any.
    next_activation: Option<String>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// Claims inside a computer key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComputerKeyClaims {
    pub kid: String,
    pub license_key: String,
    pub computer_id: String,
    pub product: String,
    pub features: Vec<String>,
    pub expires_at: Option<String>,
    pub maintenance_expires_at: Option<String>,
    pub issued_at: String,
}

/// A payload with a detached Ed25519 signature over its exact UTF-8 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedDocument {
    /// The signed JSON text.
    pub payload: String,
    /// Id of the signing key.
    pub kid: String,
    /// Base64 (standard alphabet) of the 64-byte signature.
    pub signature: String,
}

/// Reason a signature or computer key did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("signature header is missing")]
    MissingSignature,
    #[error("signature header is malformed: {0}")]
    Malformed(String),
    #[error("signed with key {0:?}, which is not trusted")]
    UnknownKey(String),
    #[error("signature does not match the signed bytes")]
    BadSignature,
    #[error("invalid public key {0}; copy the key from `keyward keys` on the server")]
    InvalidPublicKey(String),
}

impl Keyring {
    /// Creates the first signing key if the database has none. Runs before serving.
    pub fn ensure_key(conn: &Connection) -> Result<(), DbError> {
        let count: i64 = conn.query_row(
            "SELECT count(*) FROM signing_keys WHERE retired_at IS NULL",
            [],
            |row| row.get(0),
        )?;
        if count == 0 {
            Self::add_key(conn)?;
        }
        Ok(())
    }

    /// Adds a new signing key, which becomes the one in use. Returns its id.
    pub fn add_key(conn: &Connection) -> Result<String, DbError> {
        Self::add_key_at(conn, &crate::time::format(chrono::Utc::now()))
    }

    /// Adds a new signing key created at `created_at`. It becomes the one in use only if no
    /// other unretired key has a later `created_at`, because [`Keyring::load`] signs with the
    /// newest.
    pub fn add_key_at(conn: &Connection, created_at: &str) -> Result<String, DbError> {
        let seed: [u8; 32] = crate::ids::random_bytes(32).try_into().expect("32 bytes");
        let signing = SigningKey::from_bytes(&seed);
        let kid = format!("k{}", crate::ids::random_hex(4));
        conn.execute(
            "INSERT INTO signing_keys (kid, secret_key, public_key, created_at) VALUES (?1, ?2, ?3, ?4)",
            (
                &kid,
                signing.to_bytes().as_slice(),
                signing.verifying_key().to_bytes().as_slice(),
                created_at,
            ),
        )?;
        Ok(kid)
    }

    /// Loads the keyring from the database as of the system clock.
    pub fn load(conn: &Connection) -> Result<Keyring, DbError> {
        Self::load_at(conn, &crate::time::format(chrono::Utc::now()))
    }

    /// Loads the keyring as of `now`: every key that is not retired is published, and the
    /// newest whose `created_at` is not after `now` signs. A key scheduled for later is
    /// published but does not sign until then.
    pub fn load_at(conn: &Connection, now: &str) -> Result<Keyring, DbError> {
        let mut stmt = conn.prepare(
            "SELECT kid, secret_key, public_key, created_at FROM signing_keys \
             WHERE retired_at IS NULL ORDER BY created_at, rowid",
        )?;
        let rows = stmt.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, Vec<u8>>(1)?,
                row.get::<_, Vec<u8>>(2)?,
                row.get::<_, String>(3)?,
            ))
        })?;
        let mut newest = None;
        let mut earliest = None;
        let mut next_activation = None;
        let mut published = Vec::new();
        for row in rows {
            let (kid, secret, public, created_at) = row?;
            let secret: [u8; 32] = secret
                .try_into()
                .map_err(|_| DbError::Sqlite(format!("signing key {kid} is corrupt")))?;
            let key = (kid.clone(), SigningKey::from_bytes(&secret));
            earliest.get_or_insert_with(|| key.clone());
            if created_at.as_str() > now {
                next_activation.get_or_insert_with(|| created_at.clone());
            } else {
                newest = Some(key);
            }
            published.push(PublicKeyInfo {
                kid,
                public_key: STANDARD.encode(&public),
                created_at,
            });
        }
        // Every key starting after `now` means the clock went back past a switch that already
        // happened: the earliest key is the one that took over, and it keeps signing.
        if newest.is_none() {
            newest = earliest;
            next_activation = None;
        }
        let (kid, signing) = newest.ok_or_else(|| {
            DbError::Sqlite("the database has no signing key; run `keyward keys rotate`".into())
        })?;
        Ok(Keyring {
            kid,
            signing,
            published,
            next_activation,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Returns the time from which a scheduled key signs, if one is waiting.
    pub fn next_activation(&self) -> Option<&str> {
        self.next_activation.as_deref()
    }

    pub fn public_keys(&self) -> &[PublicKeyInfo] {
        &self.published
    }

    /// Returns the `Keyward-Signature` header value for `body`.
    pub fn sign_header(&self, body: &[u8]) -> String {
        let signature = self.signing.sign(body);
        format!(
            "kid={};sig={}",
            self.kid,
            STANDARD.encode(signature.to_bytes())
        )
    }

    /// Signs the exact bytes of `payload` and wraps them in a [`SignedDocument`]. A payload
    /// should name [`Keyring::kid`] inside too, so that the key id is covered by the signature.
    pub fn sign_document(&self, payload: String) -> SignedDocument {
        let signature = self.signing.sign(payload.as_bytes());
        SignedDocument {
            payload,
            kid: self.kid.clone(),
            signature: STANDARD.encode(signature.to_bytes()),
        }
    }

    /// Issues a computer key for the given claims (their `kid` is set to the signing key's).
    pub fn issue_computer_key(&self, mut claims: ComputerKeyClaims) -> String {
        claims.kid = self.kid.clone();
        let payload = serde_json::to_vec(&claims).expect("claims serialize");
        let signed = format!("{COMPUTER_KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(payload));
        let signature = self.signing.sign(signed.as_bytes());
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }
}

/// Set of public keys a client trusts.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    keys: Vec<(String, VerifyingKey)>,
}

impl TrustedKeys {
    /// Builds the set from published key records.
    pub fn from_published(keys: &[PublicKeyInfo]) -> Result<TrustedKeys, VerifyError> {
        let mut trusted = TrustedKeys::default();
        for key in keys {
            trusted.add(&key.kid, &key.public_key)?;
        }
        Ok(trusted)
    }

    /// Adds a key given as base64 of its 32 bytes.
    pub fn add(&mut self, kid: &str, public_key_base64: &str) -> Result<(), VerifyError> {
        let bytes = STANDARD
            .decode(public_key_base64.trim())
            .map_err(|err| VerifyError::InvalidPublicKey(format!("{kid} ({err})")))?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|bytes: Vec<u8>| {
            VerifyError::InvalidPublicKey(format!("{kid} ({} bytes, expected 32)", bytes.len()))
        })?;
        let key = VerifyingKey::from_bytes(&bytes)
            .map_err(|err| VerifyError::InvalidPublicKey(format!("{kid} ({err})")))?;
        self.keys.retain(|(existing, _)| existing != kid);
        self.keys.push((kid.to_string(), key));
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn get(&self, kid: &str) -> Result<&VerifyingKey, VerifyError> {
        self.keys
            .iter()
            .find(|(id, _)| id == kid)
            .map(|(_, key)| key)
            .ok_or_else(|| VerifyError::UnknownKey(kid.to_string()))
    }

    /// Verifies a `Keyward-Signature` header value against the exact body bytes.
    pub fn verify_header(&self, header: Option<&str>, body: &[u8]) -> Result<(), VerifyError> {
        let header = header.ok_or(VerifyError::MissingSignature)?;
        let mut kid = None;
        let mut sig = None;
        for part in header.split(';') {
            match part.trim().split_once('=') {
                Some(("kid", value)) => kid = Some(value),
                Some(("sig", value)) => sig = Some(value),
                _ => return Err(VerifyError::Malformed(format!("unexpected part {part:?}"))),
            }
        }
        let kid = kid.ok_or_else(|| VerifyError::Malformed("no kid".into()))?;
        let sig = sig.ok_or_else(|| VerifyError::Malformed("no sig".into()))?;
        let signature = decode_signature(&STANDARD.decode(sig).unwrap_or_default())?;
        self.get(kid)?
            .verify(body, &signature)
            .map_err(|_| VerifyError::BadSignature)
    }

    /// Verifies the detached signature of a signed document over its payload bytes.
    pub fn verify_document(&self, document: &SignedDocument) -> Result<(), VerifyError> {
        let bytes = STANDARD
            .decode(document.signature.trim())
            .map_err(|err| VerifyError::Malformed(format!("document signature: {err}")))?;
        let signature = decode_signature(&bytes)?;
        self.get(&document.kid)?
            .verify(document.payload.as_bytes(), &signature)
            .map_err(|_| VerifyError::BadSignature)
    }

    /// Verifies a computer key and returns its claims.
    pub fn verify_computer_key(&self, token: &str) -> Result<ComputerKeyClaims, VerifyError> {
        let (signed, signature) = token
            .rsplit_once('.')
            .ok_or_else(|| VerifyError::Malformed("computer key has no signature part".into()))?;
        let payload = signed.strip_prefix(COMPUTER_KEY_PREFIX).ok_or_else(|| {
            VerifyError::Malformed("computer key does not start with kw1.".into())
        })?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|err| VerifyError::Malformed(format!("computer key payload: {err}")))?;
        let claims: ComputerKeyClaims = serde_json::from_slice(&payload)
            .map_err(|err| VerifyError::Malformed(format!("computer key payload: {err}")))?;
        let signature = decode_signature(&URL_SAFE_NO_PAD.decode(signature).unwrap_or_default())?;
        self.get(&claims.kid)?
            .verify(signed.as_bytes(), &signature)
            .map_err(|_| VerifyError::BadSignature)?;
        Ok(claims)
    }
}

fn decode_signature(bytes: &[u8]) -> Result<Signature, VerifyError> {
    let bytes: [u8; 64] = bytes
        .try_into()
        .map_err(|_| VerifyError::Malformed("signature is not 64 bytes of base64".into()))?;
    Ok(Signature::from_bytes(&bytes))
}
