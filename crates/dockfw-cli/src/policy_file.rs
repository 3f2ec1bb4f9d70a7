//! Reading the policy file and the list files its sets name: the one place
//! the CLI reads a policy from disk.
//!
//! Only a regular file of at most [`MAX_POLICY_BYTES`] is read, so that
//! `--config /dev/zero` (endless), a FIFO without a writer (blocks forever)
//! or a huge file fail at once with a clear error instead of eating memory or
//! hanging. Decoding (UTF-8, located errors) is `dockfw_core::parse_bytes`'s.

use std::fmt;
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// The largest policy read: far above any real policy (500,000 rules take
/// about 10 MB) yet small enough to read and parse in a few seconds.
pub const MAX_POLICY_BYTES: u64 = 64 << 20;

/// Why the policy file could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// Opening or reading failed (missing, permission denied, …).
    Io(io::Error),
    /// A device, FIFO, socket or directory.
    NotRegular(&'static str),
    /// Larger than [`MAX_POLICY_BYTES`]; what it is ("policy", "set file").
    TooLarge(&'static str),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(error) => write!(f, "{error}"),
            Self::NotRegular(kind) => write!(f, "it is a {kind}, not a regular file"),
            Self::TooLarge(what) => write!(
                f,
                "it is larger than {} MiB, the largest {what} dockfw-nft reads",
                MAX_POLICY_BYTES >> 20
            ),
        }
    }
}

impl std::error::Error for ReadError {}

/// Which policy file `path` is, as a one-line note a guard leaves in its
/// claim (`policy DEV:INODE/NAME`): its directory's device and inode and its
/// name, so that an editor replacing the file (a new inode) keeps it the
/// same file, a path naming it through a symlink or a bind mount (a
/// container's `-v /etc/dockfw:/etc/dockfw`) is the same too, and the same
/// path in another mount namespace (a Swarm config) is not. `None` when it
/// cannot be resolved.
pub fn identity(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt as _;
    let path = std::fs::canonicalize(path).ok()?;
    let directory = std::fs::metadata(path.parent()?).ok()?;
    let name = path.file_name()?.to_string_lossy();
    Some(format!("policy {}:{}/{name}", directory.dev(), directory.ino()))
}

/// Reads the policy file's bytes.
pub fn read(path: &Path) -> Result<Vec<u8>, ReadError> {
    read_capped(path, "policy")
}

/// Reads a set's list file (`file = "..."`), under the same rules as the
/// policy: a 100,000-line list is about 2 MB.
pub fn read_list(path: &Path) -> Result<Vec<u8>, ReadError> {
    read_capped(path, "set file")
}

fn read_capped(path: &Path, what: &'static str) -> Result<Vec<u8>, ReadError> {
    // Look before opening: opening some devices has effects of its own.
    check(&std::fs::metadata(path).map_err(ReadError::Io)?, what)?;
    // O_NONBLOCK: should the path have become a FIFO since, opening it still
    // returns at once (and the check below refuses it).
    let mut file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(ReadError::Io)?;
    let metadata = file.metadata().map_err(ReadError::Io)?;
    check(&metadata, what)?;
    // The length may change under us: read one byte past the limit to know.
    let mut bytes = Vec::with_capacity(metadata.len().min(MAX_POLICY_BYTES) as usize);
    (&mut file)
        .take(MAX_POLICY_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > MAX_POLICY_BYTES {
        return Err(ReadError::TooLarge(what));
    }
    Ok(bytes)
}

fn check(metadata: &Metadata, what: &'static str) -> Result<(), ReadError> {
    let kind = metadata.file_type();
    let not_regular = if kind.is_file() {
        None
    } else if kind.is_dir() {
        Some("directory")
    } else if kind.is_fifo() {
        Some("FIFO")
    } else if kind.is_char_device() {
        Some("character device")
    } else if kind.is_block_device() {
        Some("block device")
    } else if kind.is_socket() {
        Some("socket")
    } else {
        Some("special file")
    };
    if let Some(kind) = not_regular {
        return Err(ReadError::NotRegular(kind));
    }
    if metadata.len() > MAX_POLICY_BYTES {
        return Err(ReadError::TooLarge(what));
    }
    Ok(())
}
