//! The lock that makes dockfw writers of one network namespace take turns.
//!
//! Every method of [`Nft`](crate::Nft) that changes nf_tables (`apply`,
//! `replace`, `remove`) holds it for its whole run, so two dockfw processes
//! (or two embedders, or `watch` and a one-shot `apply`) never interleave
//! their transactions: a multi-step update is never planned from, or undone
//! over, another dockfw writer's half-finished work. Readers take no lock.
//!
//! The lock is an `flock(2)` on `/run/dockfw-nft/netns-DEV-INODE.lock`,
//! where DEV and INODE identify the network namespace (its nsfs file), so
//! every way of naming one namespace (`/run/netns/NAME`, `/proc/PID/ns/net`,
//! `ip netns exec`) shares one lock. The kernel drops an `flock` when its
//! holder's file is closed, however the process ends (`kill -9` included):
//! a lock can never outlive its holder. The holder writes its pid into the
//! file so a writer that gives up can say who held it. Processes that see a
//! different `/run` (another mount namespace) do not share the lock.

use crate::{Error, Result};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where the lock files live.
pub(crate) const LOCK_DIR: &str = "/run/dockfw-nft";

/// How long a writer waits for the lock by default before giving up with
/// [`Error::Locked`]. An apply takes milliseconds to a few seconds (very
/// large sets); this leaves room for a queue of them.
pub(crate) const DEFAULT_WAIT: Duration = Duration::from_secs(30);

/// The identity of a network namespace: device and inode of its nsfs file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NetnsId {
    dev: u64,
    ino: u64,
}

impl NetnsId {
    /// The namespace at `path` (`/proc/thread-self/ns/net` for the calling
    /// thread's own).
    pub(crate) fn of(path: &Path) -> io::Result<Self> {
        let meta = std::fs::metadata(path)?;
        Ok(Self {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    /// The calling thread's network namespace (the one [`crate::Nft::open`]
    /// connects to).
    pub(crate) fn current() -> io::Result<Self> {
        Self::of(Path::new("/proc/thread-self/ns/net"))
    }

    /// `netns-DEV-INODE`: how files of this namespace are named.
    pub(crate) fn file_stem(&self) -> String {
        format!("netns-{}-{}", self.dev, self.ino)
    }

    /// The lock file of this namespace in `dir`.
    fn lock_path(&self, dir: &Path) -> PathBuf {
        dir.join(format!("{}.lock", self.file_stem()))
    }
}

/// A held writer lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub(crate) struct WriterLock {
    file: Flock<File>,
}

impl WriterLock {
    /// Takes the lock of namespace `netns`, waiting up to `wait` for another
    /// holder to finish.
    pub(crate) fn acquire(netns: NetnsId, wait: Duration) -> Result<Self> {
        Self::acquire_in(Path::new(LOCK_DIR), netns, wait)
    }

    /// [`WriterLock::acquire`] with the lock files in `dir` (created, 0755,
    /// if missing; refused unless a directory owned by root or by us that
    /// only its owner can write to).
    fn acquire_in(dir: &Path, netns: NetnsId, wait: Duration) -> Result<Self> {
        Self::acquire_file(dir, netns.lock_path(dir), wait)
    }

    /// The claim of one guard (`watch`) on `table` in namespace `netns`,
    /// held while it lives: a second guard of the same table would fight the
    /// first over every change. [`Error::Guarded`] if another holds it.
    pub(crate) fn claim_guard(netns: NetnsId, table: &str) -> Result<Self> {
        let dir = Path::new(LOCK_DIR);
        let path = guard_path(dir, netns, table);
        // A moment's wait: `guard_of` holds a shared lock for an instant to
        // see whether a guard runs, which must not refuse a guard starting then.
        match Self::acquire_file(dir, path, GUARD_CLAIM_WAIT) {
            Err(Error::Locked { holder, .. }) => Err(Error::Guarded {
                table: table.to_string(),
                holder,
            }),
            other => other,
        }
    }

    /// Whether a guard holds the claim on `table` in `netns`: `Some` with
    /// what it wrote in the claim file if so. Creates nothing: no claim
    /// file, no guard ever ran.
    pub(crate) fn guard_of(netns: NetnsId, table: &str) -> Result<Option<GuardHolder>> {
        let dir = Path::new(LOCK_DIR);
        let path = guard_path(dir, netns, table);
        if std::fs::symlink_metadata(&path).is_err() {
            return Ok(None);
        }
        let read = |path: &Path| {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let mut lines = text.lines();
            GuardHolder {
                pid: lines.next().and_then(|line| line.trim().parse().ok()),
                note: lines.next().map(str::to_string).filter(|note| !note.is_empty()),
            }
        };
        let failed = |source: io::Error| Error::LockFile {
            path: path.clone(),
            source,
        };
        // A shared lock, taken and dropped: a guard's exclusive claim makes
        // it fail, while any number of writers asking at once never see
        // each other as a guard (an exclusive probe would).
        let mut file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(&path)
            .map_err(failed)?;
        loop {
            file = match Flock::lock(file, FlockArg::LockSharedNonblock) {
                Ok(_free) => return Ok(None),
                Err((_, Errno::EWOULDBLOCK)) => return Ok(Some(read(&path))),
                Err((unlocked, Errno::EINTR)) => unlocked,
                Err((_, errno)) => return Err(failed(errno.into())),
            };
        }
    }

    /// Writes `note` into the lock file, after the pid, for [`Self::guard_of`].
    pub(crate) fn note(&mut self, note: &str) -> io::Result<()> {
        let file = &mut *self.file;
        file.set_len(0)?;
        file.rewind()?;
        write!(file, "{}\n{}\n", std::process::id(), note.replace('\n', " "))
    }

    fn acquire_file(dir: &Path, path: PathBuf, wait: Duration) -> Result<Self> {
        let failed = |source: io::Error| Error::LockFile {
            path: path.clone(),
            source,
        };
        prepare_directory(dir).map_err(failed)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            // Never through a symlink; a FIFO or device planted there must
            // not block us or become our terminal.
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(&path)
            .map_err(failed)?;
        // We truncate and write the file: only a regular file that is not
        // also another file (a hard link) is ours to write.
        let meta = file.metadata().map_err(failed)?;
        if !meta.is_file() {
            return Err(failed(io::Error::other("it is not a regular file")));
        }
        if meta.nlink() != 1 {
            return Err(failed(io::Error::other(format!(
                "it has {} hard links; remove it",
                meta.nlink()
            ))));
        }
        let started = Instant::now();
        let mut pause = Duration::from_millis(2);
        let mut file = loop {
            file = match try_flock(file).map_err(failed)? {
                Ok(locked) => break locked,
                Err(unlocked) => unlocked,
            };
            let waited = started.elapsed();
            if waited >= wait || wait.is_zero() {
                return Err(Error::Locked {
                    holder: holder(&mut file),
                    path,
                    waited,
                });
            }
            // flock has no timed wait: poll, backing off to 50 ms.
            std::thread::sleep(pause.min(wait - waited));
            pause = (pause * 2).min(Duration::from_millis(50));
        };
        // Who holds it, for a writer that gives up waiting. A failure here
        // costs only that hint, not the lock.
        let _ = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()));
        Ok(Self { file })
    }
}

/// The file whose `flock` is the claim of the guard of `table`.
fn guard_path(dir: &Path, netns: NetnsId, table: &str) -> PathBuf {
    dir.join(format!("{}-{table}.guard", netns.file_stem()))
}

/// How long a guard waits for its claim before [`Error::Guarded`]: long
/// enough to outlast a [`WriterLock::guard_of`] look, short enough to say
/// at once that another guard runs.
const GUARD_CLAIM_WAIT: Duration = Duration::from_secs(1);

/// Creates `dir` (0755) if missing, and refuses it unless it is a directory
/// owned by root or by us that only its owner can write to.
pub(crate) fn prepare_directory(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o755).create(dir)?;
    check_directory(dir)
}

/// Refuses a lock directory another user could have planted or can write
/// to: whoever can write there can swap the lock file between our check and
/// our use, or hold the lock of every dockfw writer.
fn check_directory(dir: &Path) -> io::Result<()> {
    // Not followed: a symlink could point anywhere and change at any time.
    let meta = std::fs::symlink_metadata(dir)?;
    let shown = dir.display();
    if !meta.is_dir() {
        return Err(io::Error::other(format!("{shown} is not a directory")));
    }
    let euid = nix::unistd::geteuid().as_raw();
    if meta.uid() != 0 && meta.uid() != euid {
        return Err(io::Error::other(format!(
            "{shown} is owned by uid {}, not by root or us (uid {euid}); remove it",
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(io::Error::other(format!(
            "{shown} can be written by group or others (mode {:o}); make it 0755 or remove it",
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}

/// Takes an exclusive `flock` on `file` without blocking: `Err(file)` back
/// if another open file (another writer) holds it. (std's `File::try_lock`
/// would need Rust 1.89.)
fn try_flock(mut file: File) -> io::Result<std::result::Result<Flock<File>, File>> {
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => return Ok(Ok(locked)),
            Err((unlocked, Errno::EWOULDBLOCK)) => return Ok(Err(unlocked)),
            Err((unlocked, Errno::EINTR)) => file = unlocked,
            Err((_, errno)) => return Err(errno.into()),
        }
    }
}

/// The pid the lock's holder wrote (its first line), if it did already.
fn holder(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    text.lines().next()?.trim().parse().ok()
}

/// The holder of a guard's claim ([`crate::Nft::guard_of`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardHolder {
    /// Its pid, if it wrote it yet (as its PID namespace numbers it).
    pub pid: Option<u32>,
    /// What it wrote about itself ([`crate::GuardClaim::note`]), if anything.
    pub note: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dockfw-lock-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn the_directory_is_created_and_a_second_writer_waits_then_gives_up() {
        let root = scratch("wait");
        let dir = root.join("run/dockfw-nft");
        let netns = NetnsId::current().unwrap();
        let held = WriterLock::acquire_in(&dir, netns, Duration::ZERO).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        // Another open file description (another writer) is refused after
        // the wait, naming the holder.
        let err = WriterLock::acquire_in(&dir, netns, Duration::from_millis(50)).unwrap_err();
        let Error::Locked { holder, waited, .. } = &err else {
            panic!("expected Locked, got {err:?}")
        };
        assert_eq!(*holder, Some(std::process::id()));
        assert!(*waited >= Duration::from_millis(50));
        let text = err.to_string();
        assert!(
            text.contains(&format!(
                "another dockfw writer (pid {}) holds the lock",
                std::process::id()
            )),
            "{text}"
        );
        assert!(text.contains("nothing was changed"), "{text}");
        // Released on drop; a waiting writer gets it.
        let waiter = std::thread::spawn({
            let dir = dir.clone();
            move || WriterLock::acquire_in(&dir, netns, Duration::from_secs(10)).map(drop)
        });
        std::thread::sleep(Duration::from_millis(20));
        drop(held);
        waiter.join().unwrap().unwrap();
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_lock_file_that_is_not_ours_alone_is_refused_untouched() {
        let root = scratch("links");
        std::fs::create_dir_all(&root).unwrap();
        let netns = NetnsId::current().unwrap();
        let lock = netns.lock_path(&root);
        // A hard link to another file: taking the lock would truncate it.
        let victim = root.join("victim");
        std::fs::write(&victim, "precious\n").unwrap();
        std::fs::hard_link(&victim, &lock).unwrap();
        let err = WriterLock::acquire_in(&root, netns, Duration::ZERO).unwrap_err();
        assert!(matches!(err, Error::LockFile { .. }), "{err:?}");
        assert!(err.to_string().contains("hard link"), "{err}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
        // Not a regular file (a FIFO).
        std::fs::remove_file(&lock).unwrap();
        nix::unistd::mkfifo(&lock, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let err = WriterLock::acquire_in(&root, netns, Duration::ZERO).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_lock_directory_others_can_write_or_a_symlink_is_refused() {
        let root = scratch("dir");
        std::fs::create_dir_all(&root).unwrap();
        let netns = NetnsId::current().unwrap();
        let lock = netns.lock_path(&root);
        for mode in [0o777, 0o775, 0o1777] {
            std::fs::set_permissions(&root, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = WriterLock::acquire_in(&root, netns, Duration::ZERO).unwrap_err();
            assert!(matches!(err, Error::LockFile { .. }), "{err:?}");
            assert!(
                err.to_string().contains("can be written by group or others"),
                "{err}"
            );
            assert!(!lock.exists(), "{mode:o}: the lock file was created");
        }
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        // A symlink to a good directory is refused too.
        let link = scratch("dirlink");
        std::os::unix::fs::symlink(&root, &link).unwrap();
        let err = WriterLock::acquire_in(&link, netns, Duration::ZERO).unwrap_err();
        assert!(err.to_string().contains("is not a directory"), "{err}");
        std::fs::remove_file(&link).unwrap();
        WriterLock::acquire_in(&root, netns, Duration::ZERO).unwrap();
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// Only root can give a directory away, so this needs root.
    #[test]
    #[ignore = "needs root"]
    fn a_lock_directory_another_user_owns_is_refused() {
        require_root();
        let root = scratch("owner");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        let netns = NetnsId::current().unwrap();
        std::os::unix::fs::chown(&root, Some(4242), None).unwrap();
        let err = WriterLock::acquire_in(&root, netns, Duration::ZERO).unwrap_err();
        assert!(err.to_string().contains("owned by uid 4242"), "{err}");
        std::os::unix::fs::chown(&root, Some(0), None).unwrap();
        WriterLock::acquire_in(&root, netns, Duration::ZERO).unwrap();
        std::fs::remove_dir_all(&root).unwrap();
    }

    fn require_root() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test needs root; run it with `cargo xtask test` or as root with --include-ignored"
        );
    }

    #[test]
    fn namespaces_have_locks_of_their_own() {
        let root = scratch("own");
        let here = NetnsId::current().unwrap();
        let elsewhere = NetnsId {
            dev: here.dev,
            ino: here.ino + 1,
        };
        assert_ne!(here.lock_path(&root), elsewhere.lock_path(&root));
        let a = WriterLock::acquire_in(&root, here, Duration::ZERO).unwrap();
        let b = WriterLock::acquire_in(&root, elsewhere, Duration::ZERO).unwrap();
        drop((a, b));
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// Writers asking whether a guard runs never see each other as one;
    /// a held claim is seen. Uses /run/dockfw-nft, so this needs root.
    #[test]
    #[ignore = "needs root"]
    fn looking_for_a_guard_takes_no_claim() {
        require_root();
        let here = NetnsId::current().unwrap();
        // A namespace no one has: no other test or guard uses its files.
        let netns = NetnsId {
            dev: here.dev,
            ino: u64::MAX - u64::from(std::process::id()),
        };
        let table = "guard-look-test";
        assert_eq!(
            WriterLock::guard_of(netns, table).unwrap(),
            None,
            "no file, no guard"
        );
        let claim = WriterLock::claim_guard(netns, table).unwrap();
        let seen = WriterLock::guard_of(netns, table).unwrap().unwrap();
        assert_eq!(seen.pid, Some(std::process::id()));
        drop(claim);
        // Many looking at once: each sees no guard.
        let looks: Vec<_> = (0..8)
            .map(|_| {
                std::thread::spawn(move || {
                    (0..200).all(|_| WriterLock::guard_of(netns, table).unwrap().is_none())
                })
            })
            .collect();
        for look in looks {
            assert!(look.join().unwrap(), "a look saw another look as a guard");
        }
        let _ = std::fs::remove_file(guard_path(Path::new(LOCK_DIR), netns, table));
    }
}
