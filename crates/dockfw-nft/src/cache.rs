//! Set elements kept on disk between processes, so that a one-shot apply
//! (or `status`) of a table with large sets need not dump every element
//! again: the kernel's set dump costs O(n²/batch), about a second for
//! 100,000 intervals and more than a minute for 1,000,000.
//!
//! What is saved is what an apply left in the table's sets (their full
//! definitions and elements) and the nf_tables generation that holds in,
//! under the boot's id and the network namespace's cookie (unique since
//! boot, never reused). A later process takes the elements from the file
//! only if nf_tables is still at that very generation in that very
//! namespace: nobody can have committed anything since, so the kernel holds
//! exactly those elements. It still reads the table's structure (chains,
//! rules, set definitions: a few small messages), and reuses a set's
//! elements only for a set whose definition, kernel handle included, is
//! the saved one. Anything else — another generation, another boot or
//! namespace, a file that cannot be read or parsed — means a full read, as
//! without the file.

use crate::dump::TableDump;
use crate::ffi::{self, SetSpec};
use crate::lock::{NetnsId, prepare_directory};
use serde::{Deserialize, Serialize};
use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;

/// Larger files are not read (1,000,000 intervals take about 40 MiB).
const MAX_BYTES: u64 = 1 << 30;

/// Image files kept in the directory at most, the most recent ones: the
/// directory is a tmpfs (memory), and namespaces come and go (a test suite
/// makes hundreds) while nothing says when a namespace's file is stale.
const MAX_FILES: usize = 16;

/// What one file holds.
#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    boot_id: String,
    netns_cookie: u64,
    generation: u32,
    sets: Vec<(SetSpec, Vec<(ffi::Key, u32)>)>,
}

/// The first fields of [`Saved`], as postcard lays them out.
#[derive(Debug, Deserialize)]
struct Header {
    boot_id: String,
    netns_cookie: u64,
}

/// Where the images of tables are kept.
#[derive(Debug, Clone)]
pub(crate) struct DiskImages {
    dir: PathBuf,
}

impl DiskImages {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// The file of `table` in `netns`; `None` for a table name that is not
    /// plainly a file name (dockfw's names always are).
    fn path(&self, netns: NetnsId, table: &str) -> Option<PathBuf> {
        let plain = !table.is_empty()
            && table
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !table.starts_with('.');
        plain.then(|| self.dir.join(format!("{}-{table}.image", netns.file_stem())))
    }

    /// The saved sets of `table`, if saved in this boot and namespace, with
    /// the generation they hold in.
    pub(crate) fn load(&self, netns: NetnsId, cookie: u64, table: &str) -> Option<(u32, TableDump)> {
        let path = self.path(netns, table)?;
        let mut file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)
            .ok()?;
        let meta = file.metadata().ok()?;
        let euid = nix::unistd::geteuid().as_raw();
        if !meta.is_file() || (meta.uid() != 0 && meta.uid() != euid) || meta.len() > MAX_BYTES {
            return None;
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        file.read_to_end(&mut bytes).ok()?;
        // The header first: a file of another boot or namespace (a
        // namespace's inode number is reused) is not decoded whole.
        let (header, _): (Header, _) = postcard::take_from_bytes(&bytes).ok()?;
        if header.boot_id != boot_id()? || header.netns_cookie != cookie {
            return None;
        }
        let saved: Saved = postcard::from_bytes(&bytes).ok()?;
        let mut dump = TableDump::empty();
        dump.sets = saved
            .sets
            .into_iter()
            .filter(|(spec, _)| spec.table == table)
            .map(|(spec, elems)| (spec, elems.into()))
            .collect();
        Some((saved.generation, dump))
    }

    /// Saves the sets of `dump`, what `table` holds in `generation`.
    /// Written whole or not at all (a new file renamed over the old).
    pub(crate) fn save(
        &self,
        netns: NetnsId,
        cookie: u64,
        table: &str,
        generation: u32,
        dump: &TableDump,
    ) -> io::Result<()> {
        let path = self
            .path(netns, table)
            .ok_or_else(|| io::Error::other("table name is not a plain file name"))?;
        let saved = Saved {
            boot_id: boot_id().ok_or_else(|| io::Error::other("no boot id"))?,
            netns_cookie: cookie,
            generation,
            sets: dump
                .sets
                .iter()
                .map(|(spec, elems)| (spec.clone(), elems.to_vec()))
                .collect(),
        };
        let bytes = postcard::to_stdvec(&saved).map_err(io::Error::other)?;
        prepare_directory(&self.dir)?;
        let temporary = path.with_extension(format!("image.{}", std::process::id()));
        let _ = std::fs::remove_file(&temporary);
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&temporary)
            .and_then(|mut file| file.write_all(&bytes))
            .and_then(|()| std::fs::rename(&temporary, &path));
        if written.is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
        self.prune();
        written
    }

    /// Deletes all but the [`MAX_FILES`] most recently written images.
    fn prune(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut images: Vec<_> = entries
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "image"))
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        if images.len() <= MAX_FILES {
            return;
        }
        images.sort_unstable_by_key(|(modified, _)| std::cmp::Reverse(*modified));
        for (_, path) in &images[MAX_FILES..] {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Deletes the saved image of `table` (it was removed).
    pub(crate) fn forget(&self, netns: NetnsId, table: &str) {
        if let Some(path) = self.path(netns, table) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`).
fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|id| id.trim().to_string())
        .filter(|id| !id.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_is_read_without_the_sets() {
        let saved = Saved {
            boot_id: "boot".into(),
            netns_cookie: 42,
            generation: 7,
            sets: Vec::new(),
        };
        let mut bytes = postcard::to_stdvec(&saved).unwrap();
        let (header, _): (Header, _) = postcard::take_from_bytes(&bytes).unwrap();
        assert_eq!((header.boot_id.as_str(), header.netns_cookie), ("boot", 42));
        // Whatever follows the header (here: garbage) is not looked at.
        bytes.truncate(bytes.len() - 1);
        bytes.extend([0xff; 8]);
        let (header, _): (Header, _) = postcard::take_from_bytes(&bytes).unwrap();
        assert_eq!(header.netns_cookie, 42);
        assert!(postcard::from_bytes::<Saved>(&bytes).is_err());
    }
}
