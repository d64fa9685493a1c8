//! The snapshots directory: listing, numbering and retention.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::manifest::Manifest;
use super::take::{StoredSnapshot, manifest_path};

/// Lists complete snapshots (those with a readable manifest), oldest first.
pub fn list(dir: &Path) -> Vec<StoredSnapshot> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut snapshots: Vec<StoredSnapshot> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| is_snapshot_file(path))
        .filter_map(|path| {
            let bytes = std::fs::read(manifest_path(&path)).ok()?;
            let manifest = Manifest::parse(&bytes).ok()?;
            Some(StoredSnapshot { path, manifest })
        })
        .collect();
    snapshots.sort_by_key(|snapshot| snapshot.manifest.sequence);
    snapshots
}

fn is_snapshot_file(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.starts_with("snap-") && name.ends_with(".db")
}

/// Removes snapshot files that have no manifest (a crash between the rename and the manifest).
pub fn remove_incomplete(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for path in entries.flatten().map(|entry| entry.path()) {
        if is_snapshot_file(&path) && !manifest_path(&path).exists() {
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    tracing::info!(path = %path.display(), "removed a snapshot without a manifest")
                }
                Err(err) => {
                    tracing::warn!(error = %err, path = %path.display(), "removing an incomplete snapshot failed")
                }
            }
        }
    }
}

/// Returns the next snapshot sequence number and records it in `dir/sequence`, so numbers are
/// never reused even after every snapshot was deleted or the database was restored.
pub fn next_sequence(dir: &Path) -> std::io::Result<u64> {
    let counter = dir.join("sequence");
    let stored = std::fs::read_to_string(&counter)
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let listed = list(dir).last().map(|s| s.manifest.sequence).unwrap_or(0);
    let next = stored.max(listed) + 1;
    crate::fsutil::write_atomically(&counter, next.to_string().as_bytes())?;
    Ok(next)
}

/// Deletes snapshots beyond the newest `keep_last` (0 = no count limit) or older than `max_age`,
/// never the newest one and never `protected` (a snapshot being shipped). Returns the deleted paths.
pub fn apply_retention(
    dir: &Path,
    keep_last: usize,
    max_age: Option<Duration>,
    protected: Option<u64>,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<PathBuf> {
    let snapshots = list(dir);
    let Some(newest) = snapshots.last().map(|s| s.manifest.sequence) else {
        return Vec::new();
    };
    let count = snapshots.len();
    let mut deleted = Vec::new();
    for (index, snapshot) in snapshots.iter().enumerate() {
        let sequence = snapshot.manifest.sequence;
        if sequence == newest || Some(sequence) == protected {
            continue;
        }
        let beyond_count = keep_last > 0 && index + keep_last < count;
        let too_old = max_age.is_some_and(|age| {
            crate::time::parse(&snapshot.manifest.created_at)
                .map(|created| (now - created).to_std().unwrap_or_default() > age)
                .unwrap_or(false)
        });
        if beyond_count || too_old {
            let manifest = manifest_path(&snapshot.path);
            // The manifest goes first: a file without one is no longer listed as a snapshot.
            let result =
                std::fs::remove_file(&manifest).and_then(|()| std::fs::remove_file(&snapshot.path));
            match result {
                Ok(()) => deleted.push(snapshot.path.clone()),
                Err(err) => {
                    tracing::warn!(error = %err, path = %snapshot.path.display(), "deleting an old snapshot failed")
                }
            }
        }
    }
    deleted
}
