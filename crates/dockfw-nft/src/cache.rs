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
use std::path::{Path, PathBuf};

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

/// [`Saved`] borrowing what it writes (postcard lays a `&str` out as a
/// `String`, a slice as a `Vec`): saving 100,000 elements copies none.
#[derive(Serialize)]
struct SavedRef<'a> {
    boot_id: &'a str,
    netns_cookie: u64,
    generation: u32,
    sets: Vec<(&'a SetSpec, &'a [(ffi::Key, u32)])>,
}

/// The first fields of [`Saved`], as postcard lays them out.
#[derive(Debug, Deserialize)]
struct Header {
    boot_id: String,
    netns_cookie: u64,
}

/// Where the images of tables are kept.
#[derive(Debug)]
pub(crate) struct DiskImages {
    dir: PathBuf,
    /// The last [`DiskImages::save`], if it may still be writing.
    writing: Option<std::thread::JoinHandle<()>>,
}

impl Drop for DiskImages {
    fn drop(&mut self) {
        self.settle();
    }
}

/// Numbers the temporary files of saves within this process.
static SAVES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl DiskImages {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self { dir, writing: None }
    }

    /// Waits for the save still writing, if any.
    fn settle(&mut self) {
        if let Some(writing) = self.writing.take() {
            let _ = writing.join();
        }
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
    pub(crate) fn load(&mut self, netns: NetnsId, cookie: u64, table: &str) -> Option<(u32, TableDump)> {
        self.settle();
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

    /// Saves the sets of `dump`, what `table` holds in `generation`, on a
    /// thread of its own: the caller goes on (a one-shot command asks
    /// conntrack what to revoke meanwhile) and the file is written by the
    /// time this is used again or dropped. Written whole or not at all (a
    /// new file renamed over the old). Best effort: a thread that cannot be
    /// started writes nothing, and the next process reads the table. A
    /// save that lands after another process's newer one is harmless: its
    /// generation is older than the kernel's, so it is not believed.
    pub(crate) fn save(
        &mut self,
        netns: NetnsId,
        cookie: u64,
        table: &str,
        generation: u32,
        dump: &TableDump,
    ) {
        self.settle();
        let Some(path) = self.path(netns, table) else {
            return;
        };
        // The elements are shared, not copied.
        let sets = dump.sets.clone();
        let dir = self.dir.clone();
        self.writing = std::thread::Builder::new()
            .name("dockfw-image".into())
            .spawn(move || {
                let _ = write(&dir, &path, cookie, generation, &sets);
            })
            .ok();
    }

    /// Deletes the saved image of `table` (it was removed).
    pub(crate) fn forget(&mut self, netns: NetnsId, table: &str) {
        self.settle();
        if let Some(path) = self.path(netns, table) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Writes the image file `path` in `dir`.
fn write(
    dir: &Path,
    path: &Path,
    cookie: u64,
    generation: u32,
    sets: &[(SetSpec, ffi::Elems)],
) -> io::Result<()> {
    let boot_id = boot_id().ok_or_else(|| io::Error::other("no boot id"))?;
    let saved = SavedRef {
        boot_id: &boot_id,
        netns_cookie: cookie,
        generation,
        sets: sets.iter().map(|(spec, elems)| (spec, &elems[..])).collect(),
    };
    let bytes = postcard::to_stdvec(&saved).map_err(io::Error::other)?;
    prepare_directory(dir)?;
    let save = SAVES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let temporary = path.with_extension(format!("image.{}.{save}", std::process::id()));
    let _ = std::fs::remove_file(&temporary);
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&temporary)
        .and_then(|mut file| file.write_all(&bytes))
        .and_then(|()| std::fs::rename(&temporary, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    prune(dir);
    written
}

/// Deletes all but the [`MAX_FILES`] most recently written images, and the
/// temporary files of writers that were killed between writing and
/// renaming (`kill -9`, a crash): nothing else ever removes those, and on a
/// tmpfs each holds as much memory as an image (about 40 MiB at 1,000,000
/// intervals).
fn prune(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let entries: Vec<_> = entries.flatten().collect();
    for entry in &entries {
        if is_temporary(&entry.file_name())
            && let Ok(modified) = entry.metadata().and_then(|m| m.modified())
            && modified.elapsed().is_ok_and(|age| age > ABANDONED_AFTER)
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let mut images: Vec<_> = entries
        .iter()
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

/// A temporary file is written and renamed within milliseconds: one this
/// old was left by a writer that died. (Age, not whether its pid lives: a
/// writer in another pid namespace has a pid this process cannot see.)
const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// Whether `name` is a save's temporary file, `<file>.image.<pid>.<n>` (or
/// `<file>.image.<pid>`, as earlier versions named it).
fn is_temporary(name: &std::ffi::OsStr) -> bool {
    name.to_str()
        .and_then(|name| name.rsplit_once(".image."))
        .is_some_and(|(stem, suffix)| {
            !stem.is_empty()
                && suffix.split('.').count() <= 2
                && suffix
                    .split('.')
                    .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
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

    /// `kill -9` between writing a temporary file and renaming it leaves
    /// the file behind (reproduced with `strace -e
    /// inject=rename:signal=KILL dockfw-nft apply`: one full-size file per
    /// kill, never removed): the next save removes those a minute old, and
    /// leaves alone what is not a temporary file or is still being written.
    #[test]
    fn temporary_files_of_killed_writers_are_removed_by_the_next_save() {
        let dir = std::env::temp_dir().join(format!("dockfw-cache-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let touch = |name: &str, age_secs: u64| {
            let file = std::fs::File::create(dir.join(name)).unwrap();
            let when = std::time::SystemTime::now() - std::time::Duration::from_secs(age_secs);
            file.set_modified(when).unwrap();
        };
        let abandoned = [
            "netns-4-4026532392-dockfw.image.28751.0",
            "netns-4-4026532392-dockfw.image.28751.17",
            "netns-4-4026532392-other.image.4242",
        ];
        let kept = [
            // Being written now.
            "netns-4-4026532392-dockfw.image.31625.3",
            // Not temporary files of saves.
            "netns-4-4026532392-dockfw.image",
            "netns-4-4026532392.lock",
            "notes.image.x.1",
            "netns-4-4026532392-dockfw.image.1.2.3",
        ];
        for name in abandoned {
            touch(name, 3600);
        }
        touch(kept[0], 0);
        for name in &kept[1..] {
            touch(name, 3600);
        }
        prune(&dir);
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let mut want: Vec<String> = kept.iter().map(|n| n.to_string()).collect();
        want.sort();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(left, want);
    }

    #[test]
    fn what_is_written_borrowed_reads_back_owned() {
        let spec = SetSpec {
            table: "dockfw".into(),
            name: "set-clients-v4".into(),
            handle: 3,
            id: 1,
            flags: 0,
            key_type: 7,
            key_len: 4,
            size: Some(131_072),
            timeout_ms: None,
            userdata: vec![1, 2, 3],
            extra: vec![],
        };
        let elems: Vec<(ffi::Key, u32)> = (0..1000u32)
            .map(|i| (ffi::Key::from_slice(&i.to_be_bytes()), i % 2))
            .collect();
        let bytes = postcard::to_stdvec(&SavedRef {
            boot_id: "boot",
            netns_cookie: 42,
            generation: 7,
            sets: vec![(&spec, &elems[..])],
        })
        .unwrap();
        let saved: Saved = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(
            (saved.boot_id.as_str(), saved.netns_cookie, saved.generation),
            ("boot", 42, 7)
        );
        assert_eq!(saved.sets, vec![(spec, elems)]);
    }
}
