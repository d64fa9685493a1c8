//! The manifest that describes a snapshot file, stored beside it as JSON and sent with it.

use serde::{Deserialize, Serialize};

use crate::role::Position;

/// Version of the manifest format.
pub const MANIFEST_FORMAT: u32 = 1;

/// Largest manifest accepted, in bytes of JSON.
pub const MAX_MANIFEST_BYTES: usize = 256 * 1024;

/// Describes one snapshot file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    /// Site that took the snapshot.
    pub source_site_id: String,
    /// Sequence number of the snapshot at its source site, increasing by one per snapshot and
    /// never reused, even across restores.
    pub sequence: u64,
    pub created_at: String,
    /// File size in bytes.
    pub size: u64,
    pub page_size: u32,
    pub page_count: u64,
    /// Lowercase hex SHA-256 of the file.
    pub sha256: String,
    pub schema_version: i32,
    pub keyward_version: String,
    /// The database id, write sequence and epoch history inside the file.
    pub position: Position,
}

/// Failure to read a manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is larger than {MAX_MANIFEST_BYTES} bytes")]
    TooLarge,
    #[error("manifest is not valid JSON for this keyward version: {0}")]
    Invalid(String),
    #[error("manifest format {0} is not supported (expected {MANIFEST_FORMAT}); upgrade keyward")]
    Format(u32),
}

impl Manifest {
    /// Parses and sanity-checks a manifest.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge);
        }
        let manifest: Manifest =
            serde_json::from_slice(bytes).map_err(|err| ManifestError::Invalid(err.to_string()))?;
        if manifest.format != MANIFEST_FORMAT {
            return Err(ManifestError::Format(manifest.format));
        }
        let sha_ok = manifest.sha256.len() == 64
            && manifest
                .sha256
                .chars()
                .all(|ch| ch.is_ascii_hexdigit() && !ch.is_ascii_uppercase());
        if !sha_ok {
            return Err(ManifestError::Invalid(
                "sha256 must be 64 lowercase hex digits".into(),
            ));
        }
        if !(512..=65536).contains(&manifest.page_size) || !manifest.page_size.is_power_of_two() {
            return Err(ManifestError::Invalid(format!(
                "page_size {} is not a power of two from 512 to 65536",
                manifest.page_size
            )));
        }
        if manifest.size
            != manifest
                .page_count
                .saturating_mul(u64::from(manifest.page_size))
        {
            return Err(ManifestError::Invalid(
                "size is not page_size times page_count".into(),
            ));
        }
        Ok(manifest)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("manifest serializes")
    }
}
