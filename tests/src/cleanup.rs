//! Teardown and inspection that work from names alone, so a lab left behind
//! by a crashed test or an interrupted `xtask lab up` can still be removed.

use crate::Paths;
use crate::dockerd;
use crate::error::{LabError, Result};
use crate::procs;
use crate::topology::Ns;
use nix::sys::signal::Signal;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Programs the lab's dockerd starts; a process running one of them whose
/// command line names the lab's directories belongs to the lab.
const DOCKER_PROGRAMS: [&str; 8] = [
    "dockerd",
    "containerd",
    "containerd-shim",
    "containerd-shim-runc-v2",
    "docker-proxy",
    "runc",
    "docker-init",
    "nsenter",
];

/// A process that belongs to the lab, and why we think so.
#[derive(Debug, Clone)]
pub struct LabProcess {
    /// Process id.
    pub pid: i32,
    /// Its command line.
    pub cmdline: String,
    /// Which rule matched: "netns", "cgroup" or "cmdline".
    pub reason: &'static str,
}

/// Finds every live process that belongs to the lab: inside one of its
/// network namespaces, inside its cgroup parent (container processes, which
/// have namespaces of their own), or a Docker program naming its directories.
pub(crate) fn lab_processes(paths: &Paths) -> Vec<LabProcess> {
    let me = std::process::id() as i32;
    let ns_inodes: Vec<u64> = paths
        .all_netns()
        .iter()
        .filter_map(|p| procs::ns_inode(p))
        .collect();
    let cgroup_marker = format!("/{}", paths.cgroup);
    let dir_markers = [
        format!("{}/", paths.run_dir.display()),
        format!("{}/", paths.data_dir.display()),
    ];
    let mut found = Vec::new();
    for pid in procs::all_pids() {
        if pid <= 1 || pid == me || !procs::alive(pid) {
            continue;
        }
        let in_ns = procs::ns_inode(Path::new(&format!("/proc/{pid}/ns/net")))
            .is_some_and(|ino| ns_inodes.contains(&ino));
        let in_cgroup = fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|c| {
            c.lines().any(|l| {
                let path = l.splitn(3, ':').nth(2).unwrap_or("");
                path == cgroup_marker || path.starts_with(&format!("{cgroup_marker}/"))
            })
        });
        let cmdline = procs::cmdline(pid);
        let program = cmdline
            .split(' ')
            .next()
            .unwrap_or("")
            .rsplit('/')
            .next()
            .unwrap_or("");
        let by_cmdline =
            DOCKER_PROGRAMS.contains(&program) && dir_markers.iter().any(|m| cmdline.contains(m.as_str()));
        let reason = if in_ns {
            "netns"
        } else if in_cgroup {
            "cgroup"
        } else if by_cmdline {
            "cmdline"
        } else {
            continue;
        };
        found.push(LabProcess { pid, cmdline, reason });
    }
    found
}

/// Mount points below the lab's directories, deepest first.
pub(crate) fn lab_mounts(paths: &Paths) -> Vec<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounts: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mount)
        .filter(|m| m.starts_with(&paths.run_dir) || m.starts_with(&paths.data_dir))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.as_os_str().len()));
    mounts.dedup();
    mounts
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape_mount(s: &str) -> PathBuf {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// The lab's cgroup directories in every mounted hierarchy (v1 and v2).
pub(crate) fn lab_cgroups(paths: &Paths) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut dirs = Vec::new();
    let direct = root.join(&paths.cgroup);
    if direct.is_dir() {
        dirs.push(direct);
    }
    if let Ok(entries) = fs::read_dir(root) {
        for e in entries.flatten() {
            let d = e.path().join(&paths.cgroup);
            if d.is_dir() {
                dirs.push(d);
            }
        }
    }
    dirs
}

/// Removes everything the lab made. Safe to run any number of times.
pub(crate) fn down(paths: &Paths) -> Result<()> {
    // Graceful first: dockerd unmounts container layers and netns files.
    // Killing the containers beforehand spares its stop timeout.
    if dockerd::ping(paths) {
        let ids = crate::cmd::run(&mut crate::docker_command(paths, ["ps", "-aq"])).unwrap_or_default();
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let _ = crate::cmd::run(crate::docker_command(paths, ["rm", "-f"]).args(&ids));
        }
    }
    dockerd::stop(paths, None, Duration::from_secs(20));
    let container_ids = container_ids(paths);

    for _round in 0..3 {
        let left = lab_processes(paths);
        if left.is_empty() {
            break;
        }
        let pids: Vec<i32> = left.iter().map(|p| p.pid).collect();
        for &pid in &pids {
            procs::signal(pid, Signal::SIGKILL);
        }
        procs::wait_gone(&pids, Duration::from_secs(5));
    }

    for _round in 0..5 {
        let mounts = lab_mounts(paths);
        if mounts.is_empty() {
            break;
        }
        for m in mounts {
            // Lazy: a busy mount is detached now and freed when unused.
            let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
        }
    }

    remove_shim_sockets(paths, &container_ids);

    let mut problems = Vec::new();
    for ns in Ns::ALL {
        let name = crate::topology::ns_name(&paths.prefix, ns);
        if crate::netns_file(&name).exists() {
            if let Err(e) = crate::cmd::ip(["netns", "delete", &name]) {
                problems.push(e.to_string());
            }
        }
    }

    for dir in lab_cgroups(paths) {
        remove_cgroup_tree(&dir, &mut problems);
    }

    let left = lab_processes(paths);
    if !left.is_empty() {
        problems.push(format!("processes still alive: {left:?}"));
    }
    let mounts = lab_mounts(paths);
    if mounts.is_empty() {
        // Only with no mounts left: never recurse into a mounted file system.
        for dir in [&paths.run_dir, &paths.data_dir] {
            if let Err(e) = fs::remove_dir_all(dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    problems.push(format!("cannot remove {}: {e}", dir.display()));
                }
            }
            if let Some(parent) = dir.parent() {
                // Shared parent (/run/dockfw-lab): only if no other lab uses it.
                let _ = fs::remove_dir(parent);
            }
        }
    } else {
        problems.push(format!("mounts left, directories kept: {mounts:?}"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(LabError::Teardown(problems.join("; ")))
    }
}

/// cgroup directories are removed with rmdir, children first.
fn remove_cgroup_tree(dir: &Path, problems: &mut Vec<String>) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&e.path(), problems);
            }
        }
    }
    if let Err(e) = fs::remove_dir(dir) {
        problems.push(format!("cannot remove cgroup {}: {e}", dir.display()));
    }
}

/// Ids of the lab's containers: from the data root and from live shims.
fn container_ids(paths: &Paths) -> Vec<String> {
    let mut ids: Vec<String> = fs::read_dir(paths.data_root.join("containers"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    for p in lab_processes(paths) {
        let mut words = p.cmdline.split(' ');
        while let Some(w) = words.next() {
            if w == "-id" {
                ids.extend(words.next().map(String::from));
            }
        }
    }
    ids.sort();
    ids.dedup();
    ids
}

/// containerd 1.6 puts each shim's socket at /run/containerd/s/<sha256 of
/// "<containerd socket>/<namespace>/<id>">, outside the lab's directories.
/// A shim removes it when it exits normally; after a crash (SIGKILL) it
/// stays, so remove the ones that belong to the lab's containers.
fn remove_shim_sockets(paths: &Paths, ids: &[String]) {
    use sha2::{Digest, Sha256};
    let address = paths.exec_root.join("containerd").join("containerd.sock");
    let dir = Path::new("/run/containerd/s");
    for id in ids {
        let digest = Sha256::digest(format!("{}/moby/{id}", address.display()).as_bytes());
        let name: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        let _ = fs::remove_file(dir.join(name));
    }
    // Only when empty, so a system containerd's state is left alone.
    if fs::remove_dir(dir).is_ok() {
        let _ = fs::remove_dir("/run/containerd");
    }
}
