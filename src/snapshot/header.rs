//! The 100-byte SQLite database header, read before SQLite opens a file.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::SnapshotError;
use super::verify::Rejection;

const MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Fields of the header that snapshot checks use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseHeader {
    pub page_size: u32,
    /// Page count from offset 28, valid only when `counter_valid` is true.
    pub page_count: u64,
    /// True when the change counter (offset 24) equals the version-valid-for number (offset 92).
    pub counter_valid: bool,
    pub user_version: i32,
    pub application_id: i32,
}

impl DatabaseHeader {
    /// Reads and decodes the header of `path`.
    pub fn read(path: &Path) -> Result<DatabaseHeader, SnapshotError> {
        let mut bytes = [0u8; 100];
        let mut file = File::open(path).map_err(|err| SnapshotError::io("open", path, err))?;
        file.read_exact(&mut bytes).map_err(|_| {
            SnapshotError::Rejected(Rejection::not_sqlite("shorter than 100 bytes"))
        })?;
        Self::decode(&bytes).map_err(SnapshotError::Rejected)
    }

    /// Decodes a header from its first 100 bytes.
    pub fn decode(bytes: &[u8; 100]) -> Result<DatabaseHeader, Rejection> {
        if &bytes[..16] != MAGIC {
            return Err(Rejection::not_sqlite("the SQLite header magic is missing"));
        }
        let be_u32 = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let raw_page_size = u16::from_be_bytes([bytes[16], bytes[17]]);
        let page_size = if raw_page_size == 1 {
            65536
        } else {
            u32::from(raw_page_size)
        };
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return Err(Rejection::not_sqlite(&format!(
                "page size {page_size} is invalid"
            )));
        }
        Ok(DatabaseHeader {
            page_size,
            page_count: u64::from(be_u32(28)),
            counter_valid: be_u32(24) == be_u32(92),
            user_version: be_u32(60) as i32,
            application_id: be_u32(68) as i32,
        })
    }
}
