use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use url::Url;

use super::parse::validate_url;
use super::{FileError, MAX_REDIRECT_FILE_BYTES, RedirectError, RedirectFile, UrlElement, parse};

/// Permission bits for a redirect file created from scratch. Clients download the file, so it
/// contains nothing secret.
#[cfg(unix)]
const NEW_FILE_MODE: u32 = 0o644;

/// Reads a redirect file, reading at most one byte more than [`MAX_REDIRECT_FILE_BYTES`] so
/// that a huge file is rejected without loading it.
pub fn read_file(path: &Path) -> Result<Vec<u8>, FileError> {
    let read_error = |source| FileError::Read {
        path: path.to_path_buf(),
        source,
    };

    let file = File::open(path).map_err(read_error)?;
    let size_on_disk = file.metadata().map(|metadata| metadata.len()).unwrap_or(0);
    let limit = MAX_REDIRECT_FILE_BYTES as u64 + 1;
    let mut bytes = Vec::new();
    file.take(limit)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;

    if bytes.len() > MAX_REDIRECT_FILE_BYTES {
        let size = usize::try_from(size_on_disk)
            .unwrap_or(usize::MAX)
            .max(bytes.len());
        return Err(FileError::Invalid {
            path: path.to_path_buf(),
            source: RedirectError::TooLarge {
                size,
                max: MAX_REDIRECT_FILE_BYTES,
            },
        });
    }
    Ok(bytes)
}

/// Replaces the file at `path` with `file` so that readers see either the old or the new
/// content, never a partial write.
///
/// Writes a temporary file in the same directory, flushes it to disk, renames it over `path`
/// and then flushes the directory so the rename survives a crash. An existing file keeps its
/// permission bits, and a new one gets mode 0644. When `path` is a symbolic link, the file it
/// points to is replaced and the link stays.
pub fn write_atomically(path: &Path, file: &RedirectFile) -> io::Result<()> {
    let target = resolve_symlink(path)?;
    let directory = parent_directory(&target);
    let existing_permissions = match fs::metadata(&target) {
        Ok(metadata) => Some(metadata.permissions()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => None,
        Err(err) => return Err(err),
    };

    let mut temp = tempfile::Builder::new()
        .prefix(".qlmredirect-")
        .suffix(".tmp")
        .tempfile_in(directory)?;
    temp.write_all(file.to_xml().as_bytes())?;

    match existing_permissions {
        Some(permissions) => temp.as_file().set_permissions(permissions)?,
        None => set_new_file_mode(temp.as_file())?,
    }
    temp.as_file().sync_all()?;
    temp.persist(&target).map_err(|err| err.error)?;

    sync_directory(directory)
}

/// Makes `url` the active URL of the redirect file at `path` and writes the file back
/// atomically. Returns the file as written.
///
/// When `url` is the current `drUrl`, the active and DR entries swap (see
/// [`RedirectFile::switch_active`]). When `url` already is the active URL, nothing is written.
///
/// NOTE: the file is rewritten from the parsed values, so comments and unknown elements in
/// the old file are lost.
pub fn set_active(path: &Path, url: &Url) -> Result<RedirectFile, FileError> {
    let invalid = |source| FileError::Invalid {
        path: path.to_path_buf(),
        source,
    };

    validate_url(UrlElement::Active, url).map_err(invalid)?;
    let bytes = read_file(path)?;
    let (mut file, _warnings) = parse(&bytes).map_err(invalid)?;
    if super::same_site(&file.active_url, url) {
        return Ok(file);
    }

    file.switch_active(url.clone());

    // Check the new content the way the redirector will read it before replacing the file.
    let (written, _warnings) = parse(file.to_xml().as_bytes()).map_err(invalid)?;
    write_atomically(path, &written).map_err(|source| FileError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(written)
}

fn resolve_symlink(path: &Path) -> io::Result<PathBuf> {
    match fs::symlink_metadata(path) {
        Ok(metadata) if metadata.file_type().is_symlink() => fs::canonicalize(path),
        Ok(_) => Ok(path.to_path_buf()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(path.to_path_buf()),
        Err(err) => Err(err),
    }
}

/// Returns the directory that contains `path`, which is `.` for a bare file name.
pub(crate) fn parent_directory(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

#[cfg(unix)]
fn set_new_file_mode(file: &File) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;

    file.set_permissions(fs::Permissions::from_mode(NEW_FILE_MODE))
}

#[cfg(not(unix))]
fn set_new_file_mode(_file: &File) -> io::Result<()> {
    Ok(())
}

#[cfg(unix)]
fn sync_directory(directory: &Path) -> io::Result<()> {
    File::open(directory)?.sync_all()
}

// NOTE: Windows cannot open a directory as a file, so the rename is not flushed there.
#[cfg(not(unix))]
fn sync_directory(_directory: &Path) -> io::Result<()> {
    Ok(())
}
