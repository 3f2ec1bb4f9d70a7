//! The lab's private dockerd: started inside the docker-host namespace with
//! its own data root, exec root, pid file, socket and cgroup parent, so it
//! shares nothing with a system Docker and never touches the machine's own
//! netfilter ruleset.

use crate::cmd;
use crate::error::{LabError, Result, io_err};
use crate::procs;
use crate::topology::addr;
use crate::{LabConfig, Paths};
use nix::sys::signal::Signal;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// The dockerd program (env `DOCKFW_LAB_DOCKERD` overrides).
pub(crate) fn dockerd_program() -> String {
    std::env::var("DOCKFW_LAB_DOCKERD").unwrap_or_else(|_| "dockerd".into())
}

/// The docker CLI (env `DOCKFW_LAB_DOCKER` overrides). Debian's own client
/// is preferred: it matches the daemon's API version.
pub(crate) fn docker_program() -> String {
    if let Ok(p) = std::env::var("DOCKFW_LAB_DOCKER") {
        return p;
    }
    if std::path::Path::new("/usr/bin/docker").is_file() {
        "/usr/bin/docker".into()
    } else {
        "docker".into()
    }
}

/// The legacy (xtables) iptables of Debian's iptables package.
pub(crate) const IPTABLES_LEGACY: &str = "/usr/sbin/iptables-legacy";

/// Programs dockerd runs by these names, and the legacy ones they become
/// for a lab with [`LabConfig::iptables_legacy`].
const LEGACY_PROGRAMS: [(&str, &str); 6] = [
    ("iptables", "/usr/sbin/iptables-legacy"),
    ("iptables-save", "/usr/sbin/iptables-legacy-save"),
    ("iptables-restore", "/usr/sbin/iptables-legacy-restore"),
    ("ip6tables", "/usr/sbin/ip6tables-legacy"),
    ("ip6tables-save", "/usr/sbin/ip6tables-legacy-save"),
    ("ip6tables-restore", "/usr/sbin/ip6tables-legacy-restore"),
];

/// A directory of symlinks named `iptables`, `ip6tables`, … pointing at the
/// legacy programs, first on dockerd's PATH: dockerd looks `iptables` up on
/// PATH, so it writes xtables rules while the machine's alternatives stay
/// as they are. Returns the PATH to give dockerd.
fn legacy_path(paths: &Paths) -> Result<std::ffi::OsString> {
    let dir = paths.run_dir.join("iptables-legacy");
    fs::create_dir_all(&dir).map_err(io_err(format!("create {}", dir.display())))?;
    for (name, target) in LEGACY_PROGRAMS {
        let link = dir.join(name);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(target, &link).map_err(io_err(format!("link {}", link.display())))?;
    }
    let mut path = dir.into_os_string();
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into()));
    Ok(path)
}

/// dockerd's arguments. Notes on the choices:
/// - `--config-file` points at an empty file so /etc/docker/daemon.json of
///   the machine cannot change the lab.
/// - `--iptables` (default true) writes through `iptables`, which Debian 12
///   points at iptables-nft (or the lab's legacy links, see
///   [`LabConfig::iptables_legacy`]); the rules land in the docker-host
///   netns only.
/// - IPv6 port publishing via ip6tables is experimental in Docker 20.10:
///   it needs `--experimental --ipv6 --fixed-cidr-v6 --ip6tables`.
/// - `--bip`/`--default-address-pool` keep container addresses out of the
///   private ranges.
pub(crate) fn args(cfg: &LabConfig, paths: &Paths) -> Vec<String> {
    let mut a: Vec<String> = vec![
        format!("--data-root={}", paths.data_root.display()),
        format!("--exec-root={}", paths.exec_root.display()),
        format!("--pidfile={}", paths.pidfile.display()),
        format!("--host=unix://{}", paths.socket.display()),
        format!("--config-file={}", paths.daemon_json.display()),
        format!("--cgroup-parent=/{}", paths.cgroup),
        format!("--bip={}", addr::DOCKER_BIP),
        format!("--default-address-pool={}", addr::DOCKER_POOL),
        // dockerd waits this long for containers to stop on shutdown (10 s
        // by default): keeps restart_dockerd and teardown quick.
        "--shutdown-timeout=2".into(),
        "--iptables=true".into(),
        "--ip-forward=true".into(),
    ];
    if cfg.ipv6 {
        a.extend(
            [
                "--experimental",
                "--ipv6",
                &format!("--fixed-cidr-v6={}", addr::DOCKER_V6),
                "--ip6tables",
            ]
            .map(String::from),
        );
    }
    a.extend(cfg.extra_dockerd_args.iter().cloned());
    a
}

/// The pid of the lab's dockerd if it is running (pid file + live process
/// whose command line names this lab's data root, so a reused pid is not
/// mistaken for it).
pub(crate) fn running_pid(paths: &Paths) -> Option<i32> {
    let pid = procs::read_pidfile(&paths.pidfile)?;
    let marker = paths.data_root.to_string_lossy().into_owned();
    (procs::alive(pid) && procs::cmdline(pid).contains(&marker)).then_some(pid)
}

/// Asks the daemon's /_ping endpoint; true on "OK".
pub(crate) fn ping(paths: &Paths) -> bool {
    let attempt = || -> std::io::Result<bool> {
        let mut s = UnixStream::connect(&paths.socket)?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.set_write_timeout(Some(Duration::from_secs(2)))?;
        s.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")?;
        let mut resp = String::new();
        s.read_to_string(&mut resp)?;
        Ok(resp.starts_with("HTTP/1.") && resp.contains(" 200 ") && resp.trim_end().ends_with("OK"))
    };
    attempt().unwrap_or(false)
}

/// Starts dockerd (unless it already runs) and waits for its socket.
pub(crate) fn start(cfg: &LabConfig, paths: &Paths) -> Result<Option<Child>> {
    if running_pid(paths).is_some() {
        wait_ready(cfg, paths, None)?;
        return Ok(None);
    }
    fs::create_dir_all(&paths.run_dir).map_err(io_err("create lab run dir"))?;
    fs::create_dir_all(&paths.data_root).map_err(io_err("create dockerd data root"))?;
    if !paths.daemon_json.exists() {
        fs::write(&paths.daemon_json, "{}\n").map_err(io_err("write daemon.json"))?;
    }
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&paths.log)
        .map_err(io_err(format!("open {}", paths.log.display())))?;
    let log2 = log.try_clone().map_err(io_err("dup log"))?;
    let mut command = cmd::nsenter(&paths.host_netns, dockerd_program());
    command
        .args(args(cfg, paths))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    // Own process group: a Ctrl-C aimed at `cargo xtask lab up` or a test
    // run must not take the daemon down with it.
    command.process_group(0);
    if cfg.iptables_legacy {
        command.env("PATH", legacy_path(paths)?);
    }
    command.envs(cfg.dockerd_env.iter().map(|(k, v)| (k, v)));
    let text = cmd::describe(&command);
    let started = Instant::now();
    loop {
        let mut child = command.spawn().map_err(|source| LabError::Spawn {
            cmd: text.clone(),
            source,
        })?;
        match wait_ready(cfg, paths, Some(&mut child)) {
            Ok(()) => return Ok(Some(child)),
            // dockerd gives the containerd it starts 15 s (not configurable),
            // which a slow machine (a VM under emulation, several labs at
            // once) can exceed; containerd then comes up anyway, and the
            // next dockerd finds it by its pid file.
            Err(LabError::DockerdNotReady {
                ref reason, ref tail, ..
            }) if reason.starts_with("dockerd exited")
                && tail.contains("timeout waiting for containerd to start")
                && started.elapsed() < cfg.ready_timeout =>
            {
                let _ = child.wait();
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        }
    }
}

fn wait_ready(cfg: &LabConfig, paths: &Paths, mut child: Option<&mut Child>) -> Result<()> {
    let start = Instant::now();
    loop {
        if ping(paths) {
            return Ok(());
        }
        let exited = match child.as_deref_mut() {
            Some(c) => c
                .try_wait()
                .ok()
                .flatten()
                .map(|s| format!("dockerd exited: {s}")),
            None => running_pid(paths)
                .is_none()
                .then(|| "dockerd is not running".to_string()),
        };
        if exited.is_some() || start.elapsed() >= cfg.ready_timeout {
            return Err(LabError::DockerdNotReady {
                timeout: cfg.ready_timeout,
                reason: exited.unwrap_or_else(|| "no answer on the socket".into()),
                log: paths.log.clone(),
                tail: log_tail(paths, 40),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The last `n` lines of dockerd's log.
pub(crate) fn log_tail(paths: &Paths, n: usize) -> String {
    let text = fs::read_to_string(&paths.log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Stops dockerd: SIGTERM (dockerd then stops its containers), SIGKILL if it
/// is still there after `grace`. Returns whether it had to be killed.
pub(crate) fn stop(paths: &Paths, child: Option<Child>, grace: Duration) -> bool {
    let pid = running_pid(paths).or_else(|| child.as_ref().map(|c| c.id() as i32));
    let mut killed = false;
    if let Some(pid) = pid {
        procs::signal(pid, Signal::SIGTERM);
        if !procs::wait_gone(&[pid], grace).is_empty() {
            procs::signal(pid, Signal::SIGKILL);
            procs::wait_gone(&[pid], Duration::from_secs(5));
            killed = true;
        }
    }
    if let Some(mut c) = child {
        // Reap our own child so it does not linger as a zombie.
        let _ = c.try_wait();
        if procs::wait_gone(&[c.id() as i32], Duration::from_millis(10)).is_empty() {
            let _ = c.wait();
        }
    }
    killed
}
