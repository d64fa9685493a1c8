//! Taking a snapshot: one `sqlite3_backup_step(-1)` on a dedicated connection into a scratch
//! file, then one pass that copies the scratch file into the snapshot's temp file while hashing
//! it, fsync, rename and a manifest beside it.
//!
//! A single step copies the whole database inside one read transaction, so concurrent writers
//! never restart it (a backup in small steps restarts from page 1 whenever another connection
//! writes). In WAL mode writers keep committing while it runs.
//!
//! The second pass writes with `O_DIRECT` where the filesystem allows it. SQLite can only write
//! through the page cache, and flushing a whole database of dirty pages at once delays every
//! other thread on a small VM. On the two-core test machine, validation p99 rose about threefold
//! while a buffered 1 GiB file was flushed, and barely moved during direct writes of the same
//! size (BENCHMARKS.md). A database smaller than the kernel's background writeback threshold (a
//! tenth of the available memory by default) has its scratch file deleted before any flush.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use sha2::{Digest, Sha256};

use super::SnapshotError;
use super::header::DatabaseHeader;
use super::manifest::{MANIFEST_FORMAT, Manifest};

/// A snapshot on disk: the database file and its manifest.
#[derive(Debug, Clone)]
pub struct StoredSnapshot {
    pub path: PathBuf,
    pub manifest: Manifest,
}

/// Copies the live database at `db_path` into `dir` as snapshot number `sequence`.
pub fn take(
    db_path: &Path,
    dir: &Path,
    site_id: &str,
    sequence: u64,
) -> Result<StoredSnapshot, SnapshotError> {
    crate::fsutil::create_private_dir(dir).map_err(|err| SnapshotError::io("create", dir, err))?;
    // Both names start with ".tmp-", which start-up recovery deletes.
    let name = format!(".tmp-snap-{}", crate::ids::random_hex(6));
    let scratch = dir.join(format!("{name}.backup"));
    let temp = dir.join(format!("{name}.db"));
    let result = take_into(db_path, &scratch, &temp, dir, site_id, sequence);
    let _ = std::fs::remove_file(&scratch);
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

fn take_into(
    db_path: &Path,
    scratch: &Path,
    temp: &Path,
    dir: &Path,
    site_id: &str,
    sequence: u64,
) -> Result<StoredSnapshot, SnapshotError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(scratch)
        .map_err(|err| SnapshotError::io("create", scratch, err))?;
    copy_with_backup(db_path, scratch)?;
    crate::failpoint::hit("snapshot.after_copy");

    let position = {
        let conn = super::verify::open_immutable(scratch)?;
        crate::role::read_position(&conn)?
    };
    let (size, sha256) = copy_hashed(scratch, temp, true)?;
    std::fs::remove_file(scratch).map_err(|err| SnapshotError::io("remove", scratch, err))?;
    let header = DatabaseHeader::read(temp)?;

    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        source_site_id: site_id.to_string(),
        sequence,
        created_at: crate::time::format(chrono::Utc::now()),
        size,
        page_size: header.page_size,
        page_count: header.page_count,
        sha256,
        schema_version: header.user_version,
        keyward_version: env!("CARGO_PKG_VERSION").to_string(),
        position,
    };
    let path = dir.join(file_name(sequence));
    std::fs::rename(temp, &path).map_err(|err| SnapshotError::io("rename", temp, err))?;
    crate::failpoint::hit("snapshot.before_manifest");
    // The manifest is written last: a snapshot without one is incomplete and removed at start.
    if let Err(err) = crate::fsutil::write_atomically(&manifest_path(&path), &manifest.to_json()) {
        let _ = std::fs::remove_file(&path);
        return Err(SnapshotError::io("write", &manifest_path(&path), err));
    }
    Ok(StoredSnapshot { path, manifest })
}

/// Name of snapshot number `sequence`.
pub fn file_name(sequence: u64) -> String {
    format!("snap-{sequence:010}.db")
}

/// Path of the manifest beside a snapshot file.
pub fn manifest_path(snapshot: &Path) -> PathBuf {
    snapshot.with_extension("json")
}

fn copy_with_backup(db_path: &Path, temp: &Path) -> Result<(), SnapshotError> {
    let source = crate::db::open_connection(db_path)?;
    let mut target = rusqlite::Connection::open(temp)?;
    // The copy is fsynced once when complete, and a temp file left by a crash is deleted at
    // start, so the copy needs neither SQLite's own syncs nor a journal.
    target.pragma_update(None, "synchronous", "OFF")?;
    target.pragma_update(None, "journal_mode", "OFF")?;
    {
        let backup = Backup::new(&source, &mut target)?;
        let mut busy_retries = 0;
        loop {
            match backup.step(-1)? {
                StepResult::Done => break,
                StepResult::More => continue,
                StepResult::Busy | StepResult::Locked => {
                    // Temporary: another connection holds a lock. Retry for up to 10 s.
                    busy_retries += 1;
                    if busy_retries > 1000 {
                        return Err(SnapshotError::Busy);
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                _ => return Err(SnapshotError::Busy),
            }
        }
    }
    // The copy keeps the source's WAL mode. Switching it to a rollback journal makes the
    // snapshot one self-contained file that opens without -wal and -shm companions.
    target.pragma_update(None, "journal_mode", "DELETE")?;
    target
        .close()
        .map_err(|(_, err)| SnapshotError::from(err))?;
    Ok(())
}

/// Size of the blocks that `copy_hashed` reads, hashes and writes.
const COPY_BLOCK: usize = 4 << 20;

/// Alignment of buffer, offset and length that `O_DIRECT` writes need: the device's logical
/// block size, which is 512 or 4096 bytes on common disks.
const DIRECT_ALIGN: usize = 4096;

/// Copies `from` into a new file `to`, fsyncs it and returns its size and lowercase hex SHA-256,
/// hashed from the same buffers that were written. With `direct`, writes bypass the page cache
/// where the filesystem allows it. The calling thread reads and hashes one block while a second
/// thread writes the one before. Each copied block of `from` is released at once (a hole is
/// punched), so the two files together take little more disk space than one.
fn copy_hashed(from: &Path, to: &Path, direct: bool) -> Result<(u64, String), SnapshotError> {
    let mut source = OpenOptions::new()
        .read(true)
        .write(true)
        .open(from)
        .map_err(|err| SnapshotError::io("open", from, err))?;
    let (target, direct) = create_for_copy(to, direct)?;
    let (full_sender, full) = std::sync::mpsc::sync_channel::<(Block, u64)>(2);
    let (empty_sender, empty) = std::sync::mpsc::sync_channel::<Block>(2);
    for _ in 0..2 {
        empty_sender
            .send(Block::new())
            .expect("the channel has room");
    }
    let (read, written) = std::thread::scope(|scope| {
        let writer = scope.spawn(|| write_blocks(&target, to, direct, full, empty_sender));
        let read = read_blocks(&mut source, from, empty, full_sender);
        (
            read,
            writer.join().expect("snapshot writer thread panicked"),
        )
    });
    // A write error also cuts the read short, so it is the one to report when both failed.
    written?;
    let (size, sha256) = read?;
    target
        .sync_all()
        .map_err(|err| SnapshotError::io("fsync", to, err))?;
    Ok((size, sha256))
}

/// Fills the blocks received on `empty` from `source`, hashes them, punches each one out of
/// `source` and sends it on `full` with its offset. Returns the size and hex SHA-256 read.
fn read_blocks(
    source: &mut File,
    path: &Path,
    empty: std::sync::mpsc::Receiver<Block>,
    full: std::sync::mpsc::SyncSender<(Block, u64)>,
) -> Result<(u64, String), SnapshotError> {
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    // A closed channel means the writer stopped on an error, which its join returns.
    while let Ok(mut block) = empty.recv() {
        block.filled =
            read_full(source, block.space()).map_err(|err| SnapshotError::io("read", path, err))?;
        if block.filled == 0 {
            break;
        }
        hasher.update(block.data());
        // A failure only means the scratch file keeps its space until it is deleted.
        let _ = rustix::fs::fallocate(
            &*source,
            rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE,
            size,
            block.filled as u64,
        );
        let filled = block.filled as u64;
        if full.send((block, size)).is_err() {
            break;
        }
        size += filled;
    }
    Ok((size, hex::encode(hasher.finalize())))
}

/// A buffer of `COPY_BLOCK` bytes aligned for `O_DIRECT`, and the count of bytes it holds.
struct Block {
    storage: Vec<u8>,
    start: usize,
    filled: usize,
}

impl Block {
    fn new() -> Block {
        let storage = vec![0u8; COPY_BLOCK + DIRECT_ALIGN];
        let start = (DIRECT_ALIGN - storage.as_ptr() as usize % DIRECT_ALIGN) % DIRECT_ALIGN;
        Block {
            storage,
            start,
            filled: 0,
        }
    }

    fn space(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + COPY_BLOCK]
    }

    fn data(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.filled]
    }
}

/// Writes each block received on `full` at its offset in `target` and hands the buffer back on
/// `empty`. Leaves `O_DIRECT` for the rest of the file when a block is short (only the last one
/// can be) or the device rejects the alignment.
fn write_blocks(
    target: &File,
    path: &Path,
    mut direct: bool,
    full: std::sync::mpsc::Receiver<(Block, u64)>,
    empty: std::sync::mpsc::SyncSender<Block>,
) -> Result<(), SnapshotError> {
    for (block, offset) in full {
        if direct && block.filled % DIRECT_ALIGN != 0 {
            direct = false;
            clear_direct(target).map_err(|err| SnapshotError::io("fcntl", path, err))?;
        }
        match target.write_all_at(block.data(), offset) {
            Err(err)
                if direct
                    && err.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) =>
            {
                direct = false;
                clear_direct(target).map_err(|err| SnapshotError::io("fcntl", path, err))?;
                target.write_all_at(block.data(), offset)
            }
            other => other,
        }
        .map_err(|err| SnapshotError::io("write", path, err))?;
        if empty.send(block).is_err() {
            break;
        }
    }
    Ok(())
}

/// Creates `path` for `copy_hashed` and returns whether it was opened with `O_DIRECT`.
/// Filesystems without direct I/O reject the flag with EINVAL, and the file is then opened
/// without it.
fn create_for_copy(path: &Path, direct: bool) -> Result<(File, bool), SnapshotError> {
    let open = |flags: rustix::fs::OFlags| {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(flags.bits() as i32)
            .open(path)
    };
    if direct {
        match open(rustix::fs::OFlags::DIRECT) {
            Ok(file) => return Ok((file, true)),
            Err(err) if err.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
                tracing::debug!(path = %path.display(), "direct I/O not supported here; writing the snapshot through the page cache");
            }
            Err(err) => return Err(SnapshotError::io("create", path, err)),
        }
    }
    let file =
        open(rustix::fs::OFlags::empty()).map_err(|err| SnapshotError::io("create", path, err))?;
    Ok((file, false))
}

fn clear_direct(file: &File) -> std::io::Result<()> {
    let mut flags = rustix::fs::fcntl_getfl(file)?;
    flags.remove(rustix::fs::OFlags::DIRECT);
    rustix::fs::fcntl_setfl(file, flags)?;
    Ok(())
}

/// Reads into `buffer` until it is full or the file ends and returns the count read.
fn read_full(file: &mut File, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(count) => filled += count,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

/// Returns the size and lowercase hex SHA-256 of a file, read in 1 MiB blocks.
pub fn hash_file(path: &Path) -> Result<(u64, String), SnapshotError> {
    let mut file = File::open(path).map_err(|err| SnapshotError::io("open", path, err))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let count = file
            .read(&mut buffer)
            .map_err(|err| SnapshotError::io("read", path, err))?;
        if count == 0 {
            break;
        }
        hasher.update(&buffer[..count]);
        size += count as u64;
    }
    Ok((size, hex::encode(hasher.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_copy_reports_write_failure() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("from");
        std::fs::write(&from, vec![7u8; 3 * COPY_BLOCK]).unwrap();
        // Every write to /dev/full fails with ENOSPC.
        let err = copy_hashed(&from, Path::new("/dev/full"), true).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("/dev/full"), "{message}");
        assert!(message.contains("write"), "{message}");
    }

    #[test]
    fn hashed_copy_matches_source_in_both_modes() {
        use std::os::unix::fs::PermissionsExt;

        let dir = tempfile::tempdir().unwrap();
        // Two whole blocks and a short tail that is not a multiple of DIRECT_ALIGN.
        let bytes: Vec<u8> = (0..2 * COPY_BLOCK + 1000)
            .map(|i| (i % 251) as u8)
            .collect();
        for direct in [true, false] {
            let from = dir.path().join(format!("from-{direct}"));
            let to = dir.path().join(format!("to-{direct}"));
            std::fs::write(&from, &bytes).unwrap();
            let expected = hash_file(&from).unwrap();

            let (size, sha256) = copy_hashed(&from, &to, direct).unwrap();
            assert_eq!((size, sha256), expected, "direct {direct}");
            assert!(
                std::fs::read(&to).unwrap() == bytes,
                "direct {direct}: copy differs"
            );
            let mode = std::fs::metadata(&to).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "direct {direct}");
        }
    }

    #[test]
    fn snapshot_is_one_self_contained_file_that_matches_its_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("keyward.db");
        let db = crate::db::Db::open(&live, |conn| {
            conn.execute_batch(
                "INSERT INTO audit_log (at, actor, action, object, detail) \
                 VALUES ('2026-12-04T00:00:00Z', 'test', 'filler', 'x', '\"y\"')",
            )?;
            Ok(())
        })
        .unwrap();
        let out = dir.path().join("snapshots");
        let snapshot = take(&live, &out, "site-a", 7).unwrap();
        drop(db);

        let bytes = std::fs::read(&snapshot.path).unwrap();
        // Bytes 18 and 19 of the header are 1 for a rollback journal, 2 for WAL.
        assert_eq!((bytes[18], bytes[19]), (1, 1));
        let mut names: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["snap-0000000007.db", "snap-0000000007.json"]);
        let (size, sha256) = hash_file(&snapshot.path).unwrap();
        assert_eq!(size, snapshot.manifest.size);
        assert_eq!(sha256, snapshot.manifest.sha256);
        assert_eq!(size, bytes.len() as u64);
        let conn = rusqlite::Connection::open(&snapshot.path).unwrap();
        let count: i64 = conn
            .query_row(
                "SELECT count(*) FROM audit_log WHERE action = 'filler'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(count, 1);
    }
}
