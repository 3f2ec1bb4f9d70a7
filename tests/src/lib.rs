//! The dockfw-nft Docker lab: a docker host network namespace running a
//! private `dockerd`, plus "internet" and "LAN" client namespaces wired to
//! its eth0 and eth1, and probes that report whether a client can reach a
//! published port. Used by the end-to-end tests and `cargo xtask lab`.
//!
//! ```no_run
//! use dockfw_e2e::{Client, Lab, LabConfig, ProbeResult, Proto, addr};
//! # fn main() -> dockfw_e2e::Result<()> {
//! let lab = Lab::up_with(LabConfig::new("dfwdoc")?)?;
//! lab.run_echo("web", &["8081:8000"], &[(Proto::Tcp, 8000)])?;
//! let seen = lab.probe(Client::Internet, addr::INET_SOURCES[0].into(), addr::HOST_INET_A.into(), 8081, Proto::Tcp)?;
//! assert_eq!(seen, ProbeResult::Open);
//! lab.teardown()?;
//! # Ok(()) }
//! ```
//!
//! Everything is named after a prefix (default `dfw`, env
//! `DOCKFW_LAB_PREFIX`): namespaces `{prefix}-host|inet|lan`, directories
//! `/run/dockfw-lab/{prefix}` and `/var/lib/dockfw-lab/{prefix}`, cgroup
//! parent `dockfw-lab-{prefix}`. Teardown finds leftovers from these names,
//! so it also works after a crash.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod cleanup;
mod cmd;
mod dockerd;
mod error;
mod image;
pub mod netns;
pub mod oci;
mod private;
mod probe;
mod procs;
mod topology;
mod traffic;

pub use cleanup::LabProcess;
pub use error::{LabError, Result};
pub use image::IMAGE_REPO;
pub use private::{Held, PrivatePaths, Stand};
pub use probe::{Probe, ProbeResult, Proto};
pub use topology::{Ns, Ns as Client, addr};
pub use traffic::{EchoServer, HeldConnection, ProbeLoop, Tally};

use error::io_err;
use std::ffi::OsStr;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The lab image as a tarball for `docker import` (or `podman import`) and
/// its tag: busybox-static and `/bin/lab-echo`, which serves what
/// [`Lab::run_echo`] passes it (`tcp:8000`) and prints `lab-echo: ready`.
pub fn image_tarball() -> Result<(Vec<u8>, String)> {
    image::tarball()
}

/// Where `ip netns` keeps named namespaces.
pub(crate) fn netns_file(name: &str) -> PathBuf {
    Path::new("/run/netns").join(name)
}

/// How to build a lab.
#[derive(Debug, Clone)]
pub struct LabConfig {
    /// Name prefix for everything the lab creates (1-12 of `[a-z0-9-]`).
    pub prefix: String,
    /// Remove the whole lab when the [`Lab`] is dropped (tests want this;
    /// `cargo xtask lab up` does not).
    pub teardown_on_drop: bool,
    /// Remove any lab left with this prefix before building (tests want a
    /// clean start; `up` is otherwise idempotent and reuses what exists).
    pub fresh: bool,
    /// Start dockerd with IPv6 and (experimental) ip6tables support.
    pub ipv6: bool,
    /// Start dockerd as part of `up` (default). Without it the namespaces
    /// exist but Docker does not run until [`Lab::start_dockerd`], e.g. to
    /// install a firewall before Docker's first rule.
    pub dockerd: bool,
    /// Extra dockerd arguments.
    pub extra_dockerd_args: Vec<String>,
    /// Make this lab's dockerd write its rules with iptables-legacy (into
    /// xtables, outside nf_tables), as on a host where `update-alternatives
    /// --set iptables /usr/sbin/iptables-legacy` was run: dockerd finds
    /// `iptables` and `ip6tables` first in a directory of the lab's own
    /// linking to the `-legacy` programs. The machine's alternatives are
    /// never changed.
    pub iptables_legacy: bool,
    /// Extra environment of dockerd, e.g. `DBUS_SYSTEM_BUS_ADDRESS` to have
    /// it meet a firewalld of the lab's own instead of the machine's.
    pub dockerd_env: Vec<(String, String)>,
    /// How long to wait for dockerd's socket.
    pub ready_timeout: Duration,
    /// How long a probe waits for an answer.
    pub probe_timeout: Duration,
}

impl LabConfig {
    /// A configuration with the given prefix and defaults otherwise.
    pub fn new(prefix: &str) -> Result<Self> {
        let ok = (1..=12).contains(&prefix.len())
            && prefix.starts_with(|c: char| c.is_ascii_lowercase())
            && prefix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !ok {
            return Err(LabError::BadPrefix(prefix.into()));
        }
        Ok(Self {
            prefix: prefix.into(),
            teardown_on_drop: false,
            fresh: false,
            ipv6: true,
            dockerd: true,
            extra_dockerd_args: Vec::new(),
            iptables_legacy: false,
            dockerd_env: Vec::new(),
            ready_timeout: ready_timeout_from_env(),
            probe_timeout: Duration::from_millis(300),
        })
    }

    /// Prefix from env `DOCKFW_LAB_PREFIX`, else `dfw`.
    pub fn from_env() -> Result<Self> {
        Self::new(&std::env::var("DOCKFW_LAB_PREFIX").unwrap_or_else(|_| "dfw".into()))
    }

    /// For a test: its own prefix, a fresh start, removed again when the
    /// lab is dropped (also on panic).
    pub fn for_test(prefix: &str) -> Result<Self> {
        Ok(Self {
            teardown_on_drop: true,
            fresh: true,
            ..Self::new(prefix)?
        })
    }
}

/// How long to wait for dockerd: `DOCKFW_LAB_READY_TIMEOUT` (seconds;
/// `cargo xtask vm-test` raises it, emulation being slow), else 60 s.
fn ready_timeout_from_env() -> Duration {
    std::env::var("DOCKFW_LAB_READY_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(Duration::from_secs(60), Duration::from_secs)
}

/// Every path and name the lab uses, derived from the prefix.
#[derive(Debug, Clone)]
pub(crate) struct Paths {
    prefix: String,
    run_dir: PathBuf,
    data_dir: PathBuf,
    data_root: PathBuf,
    exec_root: PathBuf,
    socket: PathBuf,
    pidfile: PathBuf,
    log: PathBuf,
    daemon_json: PathBuf,
    cli_config: PathBuf,
    host_netns: PathBuf,
    cgroup: String,
}

impl Paths {
    fn new(prefix: &str) -> Self {
        let run_dir = Path::new("/run/dockfw-lab").join(prefix);
        let data_dir = Path::new("/var/lib/dockfw-lab").join(prefix);
        Self {
            prefix: prefix.into(),
            data_root: data_dir.join("docker"),
            exec_root: run_dir.join("exec"),
            socket: run_dir.join("docker.sock"),
            pidfile: run_dir.join("dockerd.pid"),
            log: run_dir.join("dockerd.log"),
            daemon_json: run_dir.join("daemon.json"),
            cli_config: run_dir.join("cli"),
            host_netns: netns_file(&topology::ns_name(prefix, Ns::DockerHost)),
            cgroup: format!("dockfw-lab-{prefix}"),
            run_dir,
            data_dir,
        }
    }

    fn all_netns(&self) -> Vec<PathBuf> {
        Ns::ALL
            .iter()
            .map(|&ns| netns_file(&topology::ns_name(&self.prefix, ns)))
            .collect()
    }
}

/// Checks that the lab can run here: root, and the programs it needs.
pub fn preflight() -> Result<()> {
    let uid = nix::unistd::geteuid();
    if !uid.is_root() {
        return Err(LabError::NotRoot(uid.as_raw()));
    }
    let docker_hint = "apt-get install docker.io";
    let needs: [(String, &'static str); 10] = [
        (dockerd::dockerd_program(), docker_hint),
        (dockerd::docker_program(), docker_hint),
        ("containerd".into(), docker_hint),
        ("runc".into(), docker_hint),
        ("iptables".into(), "apt-get install iptables"),
        (dockerd::IPTABLES_LEGACY.into(), "apt-get install iptables"),
        (image::BUSYBOX.into(), "apt-get install busybox-static"),
        ("ip".into(), "apt-get install iproute2"),
        ("nsenter".into(), "apt-get install util-linux"),
        ("nft".into(), "apt-get install nftables"),
    ];
    for (program, hint) in needs {
        if cmd::which(&program).is_none() {
            return Err(LabError::MissingProgram { program, hint });
        }
    }
    Ok(())
}

/// For tests: brings a lab up, or panics saying why it cannot (not root,
/// Docker missing, or the lab failed to come up). Tests that use the lab are
/// marked `#[ignore = "needs root and the Docker lab"]`, so a plain
/// `cargo test` skips them and reports them as ignored; when one is run
/// anyway (`cargo xtask test`, `--include-ignored`) it never passes without
/// running.
pub fn up_for_test(config: LabConfig) -> Lab {
    if let Err(e) = preflight() {
        panic!(
            "this test needs the Docker lab, which cannot run here: {e}. \
             Run the privileged tests as root with docker.io installed (`cargo xtask test`)"
        );
    }
    match Lab::up_with(config) {
        Ok(lab) => lab,
        Err(e) => panic!("cannot bring the Docker lab up: {e}"),
    }
}

/// A running lab.
#[derive(Debug)]
pub struct Lab {
    config: LabConfig,
    paths: Paths,
    /// dockerd when this process started it (so it can be reaped).
    dockerd: Mutex<Option<Child>>,
    image: String,
}

impl Lab {
    /// Brings the lab up with [`LabConfig::from_env`].
    pub fn up() -> Result<Lab> {
        Self::up_with(LabConfig::from_env()?)
    }

    /// Brings the lab up, reusing whatever already exists (idempotent).
    pub fn up_with(config: LabConfig) -> Result<Lab> {
        preflight()?;
        let paths = Paths::new(&config.prefix);
        if !config.iptables_legacy {
            check_iptables_backend()?;
        }
        if config.fresh {
            cleanup::down(&paths)?;
        }
        for dir in [&paths.run_dir, &paths.data_dir, &paths.cli_config] {
            std::fs::create_dir_all(dir).map_err(io_err(format!("create {}", dir.display())))?;
        }
        // Construct early so that a failure below tears down what was made
        // when the caller asked for teardown_on_drop.
        let mut lab = Lab {
            config,
            paths,
            dockerd: Mutex::new(None),
            image: String::new(),
        };
        topology::build(&lab.config.prefix)?;
        // Docker enables forwarding too, but only for the families it
        // manages; set both so IPv6 works with ipv6 = false as well.
        // No DAD: docker0 gets its IPv6 address only when the first container
        // attaches, and while that address is tentative (1-2 s) containers
        // cannot resolve their gateway, so early IPv6 probes would time out.
        cmd::run(cmd::nsenter(&lab.paths.host_netns, "sysctl").args([
            "-qw",
            "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1",
            "net.ipv6.conf.all.accept_dad=0",
            "net.ipv6.conf.default.accept_dad=0",
        ]))?;
        // nft `log` in a non-initial namespace is silent unless this is set.
        let _ = std::fs::write("/proc/sys/net/netfilter/nf_log_all_netns", "1");
        lab.wait_connected(Duration::from_secs(10))?;
        lab.image = image::tarball()?.1;
        if lab.config.dockerd {
            lab.start_dockerd()?;
        }
        Ok(lab)
    }

    /// Attaches to an existing lab without changing anything.
    pub fn attach(config: LabConfig) -> Result<Lab> {
        let paths = Paths::new(&config.prefix);
        let image = image::tarball()?.1;
        Ok(Lab {
            config,
            paths,
            dockerd: Mutex::new(None),
            image,
        })
    }

    /// Waits until both clients reach the host over both families (any
    /// answer from a port nothing listens on will do): neighbour discovery
    /// and the links are ready, so a test's first probe cannot time out
    /// for reasons of the lab's own.
    fn wait_connected(&self, timeout: Duration) -> Result<()> {
        let unused_port = 9;
        let paths: Vec<Probe> = [
            (
                Ns::Internet,
                addr::INET_SOURCES[0].into(),
                addr::HOST_INET_A.into(),
            ),
            (
                Ns::Internet,
                addr::INET6_SOURCES[0].into(),
                addr::HOST_INET6_A.into(),
            ),
            (Ns::Lan, addr::LAN_SOURCES[0].into(), addr::HOST_LAN.into()),
            (Ns::Lan, addr::LAN6_SOURCES[0].into(), addr::HOST_LAN6.into()),
        ]
        .into_iter()
        .map(|(from, src, dst)| Probe {
            from,
            src,
            dst,
            port: unused_port,
            proto: Proto::Tcp,
        })
        .collect();
        let start = Instant::now();
        loop {
            let outcomes = self.probe_all(&paths)?;
            let silent: Vec<String> = paths
                .iter()
                .zip(&outcomes)
                .filter(|(_, o)| **o == ProbeResult::TimedOut)
                .map(|(p, _)| p.to_string())
                .collect();
            if silent.is_empty() {
                return Ok(());
            }
            if start.elapsed() >= timeout {
                return Err(LabError::NotConnected {
                    timeout,
                    paths: silent.join(", "),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Imports the lab image unless dockerd already has it.
    fn ensure_image(&self) -> Result<()> {
        let tag = &self.image;
        let present = cmd::output(
            &mut self.docker_cmd(["image", "inspect", "--format", "{{.Id}}", tag]),
            None,
        )?
        .status
        .success();
        if !present {
            let (tar, _) = image::tarball()?;
            cmd::run_with_stdin(
                &mut self.docker_cmd(["import", "--change", r#"CMD ["/bin/sh"]"#, "-", tag]),
                Some(&tar),
            )?;
        }
        Ok(())
    }

    /// The lab's configuration.
    pub fn config(&self) -> &LabConfig {
        &self.config
    }

    /// The name prefix.
    pub fn prefix(&self) -> &str {
        &self.config.prefix
    }

    /// Path of the docker-host network namespace (`/run/netns/{prefix}-host`):
    /// apply the firewall there.
    pub fn netns_path(&self) -> &Path {
        &self.paths.host_netns
    }

    /// Name of a lab namespace (for `ip -n NAME` / `ip netns exec`).
    pub fn netns_name(&self, ns: Ns) -> String {
        topology::ns_name(&self.config.prefix, ns)
    }

    /// Path of a lab namespace.
    pub fn ns_path(&self, ns: Ns) -> PathBuf {
        netns_file(&self.netns_name(ns))
    }

    /// The dockerd API socket.
    pub fn docker_socket(&self) -> &Path {
        &self.paths.socket
    }

    /// `DOCKER_HOST` value for the lab's daemon.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.paths.socket.display())
    }

    /// dockerd's log file.
    pub fn dockerd_log(&self) -> &Path {
        &self.paths.log
    }

    /// The imported busybox image (`dockfw-lab/busybox:<hash>`); it has
    /// /bin/busybox with its applets, /bin/lab-echo and /www/index.html.
    pub fn image(&self) -> &str {
        &self.image
    }

    /// A docker CLI command aimed at the lab's daemon.
    pub fn docker_cmd<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        docker_command(&self.paths, args)
    }

    /// Runs `docker <args>` against the lab's daemon; returns trimmed stdout.
    pub fn docker(&self, args: &[&str]) -> Result<String> {
        cmd::run(&mut self.docker_cmd(args))
    }

    /// Runs `lab-echo` in a detached container named `name`, publishing
    /// `publish` (docker `-p` syntax) and listening on `listen`, and waits
    /// until it listens. Returns the container id.
    pub fn run_echo(&self, name: &str, publish: &[&str], listen: &[(Proto, u16)]) -> Result<String> {
        let run_args: Vec<&str> = publish.iter().flat_map(|p| ["-p", p]).collect();
        self.run_echo_with(name, &run_args, listen)
    }

    /// Like [`Lab::run_echo`] with arbitrary extra `docker run` arguments
    /// (`-p …`, `--restart always`, `--network …`).
    pub fn run_echo_with(&self, name: &str, run_args: &[&str], listen: &[(Proto, u16)]) -> Result<String> {
        // --init: lab-echo as PID 1 would ignore SIGTERM, making every stop
        // wait for dockerd's timeout.
        let mut args: Vec<String> = ["run", "-d", "--init", "--name", name].map(String::from).into();
        args.extend(run_args.iter().map(|a| a.to_string()));
        args.push(self.image.clone());
        args.push("/bin/lab-echo".into());
        args.extend(listen.iter().map(|(proto, port)| format!("{proto}:{port}")));
        let id = cmd::run(&mut self.docker_cmd(&args))?;
        self.wait_container_log(name, "lab-echo: ready", Duration::from_secs(10))?;
        Ok(id)
    }

    /// Waits until `docker logs name` contains `needle`.
    pub fn wait_container_log(&self, name: &str, needle: &str, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            let out = cmd::output(&mut self.docker_cmd(["logs", name]), None)?;
            let log = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if log.contains(needle) {
                return Ok(());
            }
            if start.elapsed() >= timeout {
                return Err(LabError::ContainerNotReady {
                    name: name.into(),
                    timeout,
                    log,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A command that runs `program` inside a lab namespace.
    pub fn ns_cmd(&self, ns: Ns, program: impl AsRef<OsStr>) -> Command {
        cmd::nsenter(&self.ns_path(ns), program)
    }

    /// A command that runs `program` inside one of the lab dockerd's own
    /// network namespaces, `netns/NAME` of its exec root: `ingress_sbox`
    /// (a Swarm's ingress sandbox) or a container's sandbox.
    pub fn dockerd_ns_cmd(&self, name: &str, program: impl AsRef<OsStr>) -> Command {
        cmd::nsenter(&self.paths.exec_root.join("netns").join(name), program)
    }

    /// Runs `program args…` inside a lab namespace; returns trimmed stdout.
    pub fn exec(&self, ns: Ns, program: &str, args: &[&str]) -> Result<String> {
        cmd::run(self.ns_cmd(ns, program).args(args))
    }

    /// Feeds `script` to `nft -f -` inside the docker-host namespace (test
    /// scaffolding; never the machine's own ruleset).
    pub fn nft(&self, script: &str) -> Result<String> {
        cmd::run_with_stdin(
            self.ns_cmd(Ns::DockerHost, "nft").args(["-f", "-"]),
            Some(script.as_bytes()),
        )
    }

    /// One probe from `from` (bound to `src`) to `dst:port`.
    pub fn probe(
        &self,
        from: Client,
        src: IpAddr,
        dst: IpAddr,
        port: u16,
        proto: Proto,
    ) -> Result<ProbeResult> {
        let p = Probe {
            from,
            src,
            dst,
            port,
            proto,
        };
        let timeout = self.config.probe_timeout;
        netns::in_netns(&self.ns_path(from), move || probe::probe_here(&p, timeout))?
    }

    /// Runs many probes concurrently (one thread each); results in order.
    pub fn probe_all(&self, probes: &[Probe]) -> Result<Vec<ProbeResult>> {
        let timeout = self.config.probe_timeout;
        let mut threads = Vec::with_capacity(probes.len());
        for p in probes.iter().copied() {
            threads.push(netns::spawn_in_netns(&self.ns_path(p.from), move || {
                probe::probe_here(&p, timeout)
            })?);
        }
        threads.into_iter().map(|t| t.join()?).collect()
    }

    /// Runs the probes of `cases` concurrently and describes each outcome
    /// that differs from the one wanted, as "PROBE: want W, got G" (empty:
    /// all as wanted).
    pub fn wrong_outcomes(&self, cases: &[(Probe, ProbeResult)]) -> Result<Vec<String>> {
        let probes: Vec<Probe> = cases.iter().map(|(p, _)| *p).collect();
        let got = self.probe_all(&probes)?;
        Ok(cases
            .iter()
            .zip(&got)
            .filter(|((_, want), got)| want != *got)
            .map(|((p, want), got)| format!("{p}: want {want}, got {got}"))
            .collect())
    }

    /// Repeats a probe until it gives `want` or `timeout` passes; returns the
    /// last outcome (useful right after a ruleset or container change).
    pub fn probe_until(&self, p: Probe, want: ProbeResult, timeout: Duration) -> Result<ProbeResult> {
        let start = Instant::now();
        loop {
            let got = self.probe(p.from, p.src, p.dst, p.port, p.proto)?;
            if got == want || start.elapsed() >= timeout {
                return Ok(got);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Opens a TCP connection like `p` and keeps it open (see
    /// [`HeldConnection::exchange`]); fails with [`LabError::NotOpen`] when
    /// the connection is refused or times out.
    pub fn hold(&self, p: Probe) -> Result<HeldConnection> {
        HeldConnection::open(&self.ns_path(p.from), p, self.config.probe_timeout)
    }

    /// Repeats each probe in the background (its own thread, `pause`
    /// between repetitions) until [`ProbeLoop::stop`].
    pub fn probe_loop(&self, probes: &[Probe], pause: Duration) -> Result<ProbeLoop> {
        ProbeLoop::start(probes, |p| self.ns_path(p.from), self.config.probe_timeout, pause)
    }

    /// System paths replaced by private stand-ins for programs run in the
    /// lab (ufw, firewalld, a D-Bus system bus), kept under the lab's data
    /// directory as `name` and removed with the lab (see [`PrivatePaths`]).
    pub fn private_paths(&self, name: &str, paths: &[(&str, Stand)]) -> Result<PrivatePaths> {
        PrivatePaths::new(&self.paths.data_dir.join("private").join(name), paths)
    }

    /// Runs an echo server at `addr` inside namespace `ns` (addr must be
    /// one of its addresses) until the returned value is dropped.
    pub fn serve_echo(&self, ns: Ns, addr: SocketAddr, proto: Proto) -> Result<EchoServer> {
        EchoServer::start(&self.ns_path(ns), addr, proto)
    }

    /// The container's addresses on its networks (IPv4, then global IPv6).
    pub fn container_addrs(&self, name: &str) -> Result<Vec<IpAddr>> {
        let format = "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}\
                      {{range .NetworkSettings.Networks}}{{.GlobalIPv6Address}} {{end}}";
        let out = self.docker(&["inspect", "--format", format, name])?;
        out.split_whitespace()
            .map(|a| {
                a.parse().map_err(|_| LabError::Unexpected {
                    cmd: format!("docker inspect {name}"),
                    output: out.clone(),
                })
            })
            .collect()
    }

    /// Has container `name` open a connection to `dst` (`lab-echo ask`,
    /// which expects an echo) and reports what it saw: the outbound path.
    pub fn ask_from_container(&self, name: &str, proto: Proto, dst: SocketAddr) -> Result<ProbeResult> {
        let mut command = self.docker_cmd(["exec", name, "/bin/lab-echo", "ask"]);
        command.arg(proto.to_string()).arg(dst.to_string());
        let out = cmd::output(&mut command, None)?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        match stdout.trim() {
            "open" => Ok(ProbeResult::Open),
            "refused" => Ok(ProbeResult::Refused),
            "timed out" => Ok(ProbeResult::TimedOut),
            _ => Err(LabError::Unexpected {
                cmd: cmd::describe(&command),
                output: format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)),
            }),
        }
    }

    /// Whether the lab's dockerd runs.
    pub fn dockerd_pid(&self) -> Option<i32> {
        dockerd::running_pid(&self.paths)
    }

    /// Stops dockerd (SIGTERM; it stops containers that lack a restart
    /// policy for good). Namespaces and data stay.
    pub fn stop_dockerd(&self) -> Result<()> {
        let child = self.dockerd.lock().expect("not poisoned").take();
        dockerd::stop(&self.paths, child, Duration::from_secs(30));
        Ok(())
    }

    /// Starts dockerd (no-op if it runs), waits for it and makes sure it
    /// has the lab image.
    pub fn start_dockerd(&self) -> Result<()> {
        let child = dockerd::start(&self.config, &self.paths)?;
        if child.is_some() {
            *self.dockerd.lock().expect("not poisoned") = child;
        }
        self.ensure_image()
    }

    /// Stops and starts dockerd (containers with `--restart` come back).
    pub fn restart_dockerd(&self) -> Result<()> {
        self.stop_dockerd()?;
        self.start_dockerd()
    }

    /// Removes the whole lab now.
    pub fn teardown(mut self) -> Result<()> {
        // Done here, so Drop has nothing left to do.
        self.config.teardown_on_drop = false;
        self.remove()
    }

    fn remove(&mut self) -> Result<()> {
        let r = cleanup::down(&self.paths);
        // cleanup::down stopped dockerd through its pid file; reap it if it
        // is our child so that it does not stay a zombie.
        if let Some(mut child) = self.dockerd.get_mut().ok().and_then(Option::take) {
            if !matches!(child.try_wait(), Ok(Some(_))) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        r
    }

    /// Removes the lab named by `config` (running or left over).
    pub fn down(config: &LabConfig) -> Result<()> {
        cleanup::down(&Paths::new(&config.prefix))
    }

    /// What exists of the lab named by `config`.
    pub fn status(config: &LabConfig) -> LabStatus {
        let paths = Paths::new(&config.prefix);
        let netns = Ns::ALL
            .iter()
            .map(|&ns| {
                let name = topology::ns_name(&config.prefix, ns);
                let exists = netns_file(&name).exists();
                (name, exists)
            })
            .collect();
        let dockerd_pid = dockerd::running_pid(&paths);
        let answering = dockerd::ping(&paths);
        let containers = if answering {
            let ps = ["ps", "-a", "--format", "{{.Names}}\t{{.Status}}\t{{.Ports}}"];
            cmd::run(&mut docker_command(&paths, ps))
                .map(|s| s.lines().map(String::from).collect())
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        LabStatus {
            prefix: config.prefix.clone(),
            netns,
            dockerd_pid,
            answering,
            socket: paths.socket.clone(),
            containers,
            processes: cleanup::lab_processes(&paths),
            mounts: cleanup::lab_mounts(&paths),
            cgroups: cleanup::lab_cgroups(&paths),
            dirs: [&paths.run_dir, &paths.data_dir]
                .into_iter()
                .filter(|d| d.exists())
                .cloned()
                .collect(),
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.config.teardown_on_drop {
            if let Err(e) = self.remove() {
                eprintln!("dockfw lab {}: {e}", self.config.prefix);
            }
        }
    }
}

fn docker_command<I, S>(paths: &Paths, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut c = Command::new(dockerd::docker_program());
    // DOCKER_CONFIG: keep the CLI away from the user's ~/.docker.
    c.arg("--host")
        .arg(format!("unix://{}", paths.socket.display()))
        .args(args)
        .env("DOCKER_CONFIG", &paths.cli_config);
    c
}

/// Docker must program nftables (through iptables-nft) so that its rules
/// and dockfw's table meet in the same hooks.
fn check_iptables_backend() -> Result<()> {
    let v = cmd::run(Command::new("iptables").arg("-V"))?;
    if v.contains("nf_tables") {
        Ok(())
    } else {
        Err(LabError::Command {
            cmd: "iptables -V".into(),
            status: "legacy backend".into(),
            stderr: format!(
                "{v}: the lab needs iptables-nft (update-alternatives --set iptables /usr/sbin/iptables-nft)"
            ),
        })
    }
}

/// What exists of a lab, from [`Lab::status`].
#[derive(Debug, Clone)]
pub struct LabStatus {
    /// The lab prefix.
    pub prefix: String,
    /// Each namespace name and whether it exists.
    pub netns: Vec<(String, bool)>,
    /// dockerd's pid when it runs.
    pub dockerd_pid: Option<i32>,
    /// Whether the socket answers /_ping.
    pub answering: bool,
    /// The API socket path.
    pub socket: PathBuf,
    /// `docker ps -a` lines: name, status, ports.
    pub containers: Vec<String>,
    /// Processes that belong to the lab.
    pub processes: Vec<LabProcess>,
    /// Mounts below the lab's directories.
    pub mounts: Vec<PathBuf>,
    /// The lab's cgroup directories.
    pub cgroups: Vec<PathBuf>,
    /// The lab's directories that exist.
    pub dirs: Vec<PathBuf>,
}

impl LabStatus {
    /// Whether nothing of the lab exists.
    pub fn is_empty(&self) -> bool {
        self.netns.iter().all(|(_, e)| !e)
            && self.dockerd_pid.is_none()
            && self.processes.is_empty()
            && self.mounts.is_empty()
            && self.cgroups.is_empty()
            && self.dirs.is_empty()
    }
}

impl fmt::Display for LabStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "lab {}:", self.prefix)?;
        for (name, exists) in &self.netns {
            writeln!(
                f,
                "  netns {name}: {}",
                if *exists { "present" } else { "absent" }
            )?;
        }
        match self.dockerd_pid {
            Some(pid) => writeln!(
                f,
                "  dockerd: pid {pid}, {} (DOCKER_HOST=unix://{})",
                if self.answering {
                    "answering"
                } else {
                    "NOT answering"
                },
                self.socket.display()
            )?,
            None => writeln!(f, "  dockerd: not running")?,
        }
        for c in &self.containers {
            writeln!(f, "  container {c}")?;
        }
        writeln!(f, "  processes: {}", self.processes.len())?;
        for p in &self.processes {
            writeln!(f, "    {} [{}] {}", p.pid, p.reason, p.cmdline)?;
        }
        writeln!(
            f,
            "  mounts: {}, cgroups: {}",
            self.mounts.len(),
            self.cgroups.len()
        )?;
        for d in &self.dirs {
            writeln!(f, "  dir {}", d.display())?;
        }
        if self.is_empty() {
            writeln!(f, "  (nothing exists)")?;
        }
        Ok(())
    }
}
