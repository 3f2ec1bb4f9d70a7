//! Podman (rootful) with netavark on a host of its own, without Docker: the
//! lab's namespaces with no dockerd, Debian's podman and netavark run in the
//! host namespace with private storage and network configuration, in a
//! mount namespace of the test's where /run and /var/lib are empty
//! directories of its own (netavark keeps its address allocations in
//! /run/containers/networks, Podman a cache in /var/lib/containers, runc
//! its state in /run/runc: the machine's are never touched), and `podman
//! system service` answering Docker's API on a socket of its own, which
//! dockfw is pointed at with `--docker-host`. Needs root and podman: `#[ignore]`d,
//! run by `cargo xtask test` as root.

use dockfw_e2e::{Client, Held, Lab, LabConfig, Ns, Probe, ProbeResult, Proto, Stand, addr};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What runc needs here (root lacks CAP_SYS_RESOURCE, so Podman's default
/// rlimits fail: "error setting rlimit type 7: operation not permitted"),
/// and netavark's network configuration kept in the test's directory.
fn containers_conf(dir: &Path) -> String {
    format!(
        "[containers]\ndefault_ulimits = []\n\n\
         [engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\
         events_logfile_path = \"{0}/events.log\"\n\n\
         [network]\nnetwork_backend = \"netavark\"\nnetwork_config_dir = \"{0}/networks\"\n",
        dir.display()
    )
}

const POLICY: &str = r#"
[guard]
interfaces = ["eth0", "eth1"]
default = "drop"

[[rule]]
name = "web for one source"
container = "web"
from = ["198.51.100.10"]

[[rule]]
name = "late for one source"
container = "late"
from = ["198.51.100.10"]
"#;

struct Podman<'a> {
    lab: &'a Lab,
    dir: PathBuf,
    service: Option<Child>,
    /// The mount namespace every podman command runs in (dropped last).
    held: Held,
}

impl Podman<'_> {
    /// `podman` in the lab's host namespace with the private state.
    fn command(&self) -> Command {
        let mut command = self.held.command("podman");
        command
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("runroot"))
            .arg("--tmpdir")
            .arg(self.dir.join("tmp"))
            .args(["--storage-driver", "vfs"]);
        command
    }

    fn run(&self, args: &[&str], stdin: Option<Vec<u8>>) -> String {
        let mut command = self.command();
        command
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("run podman");
        if let Some(data) = stdin {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(&data).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "podman {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("podman.sock")
    }

    fn docker_host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// Runs the binary in the lab's host namespace against Podman's socket.
    fn dockfw(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(assert_cmd::cargo::cargo_bin("dockfw-nft"))
            .env_remove("DOCKFW_CONFIG")
            .env("DOCKFW_CACHE_DIR", self.dir.join("cache"))
            .current_dir(&self.dir)
            .arg("--netns")
            .arg(self.lab.netns_path())
            .args(["--docker-host", &self.docker_host(), "-c", "policy.toml"])
            // A daemon slow to answer (under emulation, Podman's service at
            // its first request) is still there: these tests are not about
            // unreachable daemons.
            .args(["--docker-timeout", "60s"])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    }
}

impl Drop for Podman<'_> {
    fn drop(&mut self) {
        let _ = self.command().args(["rm", "-f", "-a"]).output();
        if let Some(mut service) = self.service.take() {
            let _ = service.kill();
            let _ = service.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Kills `dockfw-nft watch` when the test ends, whatever happens.
struct Watcher(Child);

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn probe(src: IpAddr, port: u16) -> Probe {
    Probe {
        from: Client::Internet,
        src,
        dst: IpAddr::V4(addr::HOST_INET_A),
        port,
        proto: Proto::Tcp,
    }
}

#[test]
#[ignore = "needs root and podman"]
fn podman_with_netavark_published_ports_and_container_rules() {
    let ran = Command::new("podman").arg("--version").output();
    assert!(
        ran.is_ok_and(|o| o.status.success()),
        "this test needs podman: apt-get install podman netavark (listed in .ci/packages)"
    );
    let lab = dockfw_e2e::up_for_test(LabConfig {
        dockerd: false,
        ..LabConfig::for_test("dfwt-podman").unwrap()
    });
    let dir = std::env::temp_dir().join(format!("dfwt-podman-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for sub in ["networks", "tmp", "cache"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    std::fs::write(dir.join("containers.conf"), containers_conf(&dir)).unwrap();
    std::fs::write(dir.join("policy.toml"), POLICY).unwrap();
    let private = lab
        .private_paths("podman", &[("/run", Stand::Empty), ("/var/lib", Stand::Empty)])
        .unwrap();
    let held = private.hold(lab.netns_path()).unwrap();
    let mut podman = Podman {
        lab: &lab,
        dir,
        service: None,
        held,
    };

    let (tarball, tag) = dockfw_e2e::image_tarball().unwrap();
    let tag = tag.replace("dockfw-lab/", "localhost/dockfw-lab-");
    podman.run(&["import", "-", &tag], Some(tarball));
    podman.run(
        &[
            "run",
            "-d",
            "--name",
            "web",
            "-p",
            "8081:8000",
            &tag,
            "/bin/lab-echo",
            "tcp:8000",
        ],
        None,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !podman.run(&["logs", "web"], None).contains("lab-echo: ready") {
        assert!(Instant::now() < deadline, "the container did not start listening");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Podman's Docker-compatible API, for `container`/`labels` rules.
    let mut service = podman.command();
    service
        .args(["system", "service", "--time=0"])
        .arg(podman.docker_host())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    podman.service = Some(service.spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    while !podman.socket().exists() {
        assert!(Instant::now() < deadline, "podman system service did not listen");
        std::thread::sleep(Duration::from_millis(100));
    }

    // netavark wrote its NAT and filter chains (bookworm's iptables driver:
    // `NETAVARK-*` chains in `ip nat`/`ip filter`; its nftables driver: table
    // `inet netavark`), in this namespace only; its bridge is podman0.
    let ruleset = lab.exec(Ns::DockerHost, "nft", &["list", "ruleset"]).unwrap();
    assert!(
        ruleset.to_lowercase().contains("netavark") && ruleset.contains("dport 8081"),
        "{ruleset}"
    );
    let allowed = probe(IpAddr::V4(addr::INET_SOURCES[0]), 8081);
    let denied = probe(IpAddr::V4(addr::INET_SOURCES[1]), 8081);
    let expect = |cases: &[(Probe, ProbeResult)], what: &str| {
        let wrong = lab.wrong_outcomes(cases).unwrap();
        assert!(wrong.is_empty(), "{what}:\n{}", wrong.join("\n"));
    };
    // netavark alone: the published port is open to everyone.
    expect(
        &[(allowed, ProbeResult::Open), (denied, ProbeResult::Open)],
        "netavark alone",
    );

    let (code, out, err) = podman.dockfw(&["apply"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("applied"), "{out}");
    expect(
        &[(allowed, ProbeResult::Open), (denied, ProbeResult::TimedOut)],
        "with dockfw, web's rule through Podman's API",
    );
    let (code, out, err) = podman.dockfw(&["status", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["matches_policy"], true, "{status:#}");
    let row = |name: &str| {
        status["rules"]
            .as_array()
            .unwrap()
            .iter()
            .chain([&status["default"]])
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("no row {name}: {status:#}"))["packets"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(row("web for one source"), 1, "{status:#}");
    assert_eq!(row("default"), 1, "{status:#}");
    // `late` runs nowhere yet: its rule matches nothing.
    assert_eq!(row("late for one source"), 0, "{status:#}");
    assert_eq!(err, "", "apply and status said nothing more");
    // Apply, status and check warn of what dockfw does not judge there.
    for command in [&["check"][..], &["apply"], &["status"]] {
        let (code, out, err) = podman.dockfw(command);
        assert_eq!(code, 0, "{out}{err}");
        assert!(
            err.contains("interface podman0 looks like a Podman network's bridge")
                && err.contains("not connections routed to their own addresses"),
            "{command:?}: {err}"
        );
    }
    // That limit with packets: a client routing to web's own address is
    // judged by nobody (dockfw sees no Docker bridge, netavark's FORWARD
    // rules accept new connections there), whatever the policy says.
    let web = podman.run(
        &["inspect", "--format", "{{.NetworkSettings.IPAddress}}", "web"],
        None,
    );
    let web: IpAddr = web.trim().parse().unwrap();
    lab.exec(
        Ns::Internet,
        "ip",
        &[
            "route",
            "add",
            "10.88.0.0/16",
            "via",
            &addr::HOST_INET_A.to_string(),
        ],
    )
    .unwrap();
    let routed = Probe {
        dst: web,
        port: 8000,
        ..denied
    };
    expect(
        &[(routed, ProbeResult::Open)],
        "routed to a Podman container (not judged)",
    );

    // `watch` follows Podman's events: a container started after it gets
    // its rule without another apply (until then the default drops it).
    let log = std::fs::File::create(podman.dir.join("watch.log")).unwrap();
    let watcher = Command::new(assert_cmd::cargo::cargo_bin("dockfw-nft"))
        .env_remove("DOCKFW_CONFIG")
        .env("DOCKFW_CACHE_DIR", podman.dir.join("cache"))
        .current_dir(&podman.dir)
        .arg("--netns")
        .arg(lab.netns_path())
        .args([
            "--docker-host",
            &podman.docker_host(),
            "-c",
            "policy.toml",
            "-v",
            "watch",
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let watcher = Watcher(watcher);
    let deadline = Instant::now() + Duration::from_secs(20);
    // At start the table already matches (`up to date`), then watch warns
    // of Podman's bridge as apply does.
    while !std::fs::read_to_string(podman.dir.join("watch.log"))
        .unwrap()
        .contains("interface podman0 looks like a Podman network's bridge")
    {
        assert!(
            Instant::now() < deadline,
            "watch did not apply at start:\n{}",
            std::fs::read_to_string(podman.dir.join("watch.log")).unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    podman.run(
        &[
            "run",
            "-d",
            "--name",
            "late",
            "-p",
            "8082:8000",
            &tag,
            "/bin/lab-echo",
            "tcp:8000",
        ],
        None,
    );
    let late_allowed = probe(IpAddr::V4(addr::INET_SOURCES[0]), 8082);
    let late_denied = probe(IpAddr::V4(addr::INET_SOURCES[1]), 8082);
    let got = lab
        .probe_until(late_allowed, ProbeResult::Open, Duration::from_secs(20))
        .unwrap();
    let log = std::fs::read_to_string(podman.dir.join("watch.log")).unwrap();
    assert_eq!(
        got,
        ProbeResult::Open,
        "watch did not follow Podman's start of late:\n{log}"
    );
    expect(&[(late_denied, ProbeResult::TimedOut)], "late, denied source");
    drop(watcher);

    // Without our table netavark's rules alone decide again.
    let (code, out, err) = podman.dockfw(&["remove"]);
    assert_eq!(code, 0, "{out}{err}");
    expect(
        &[(denied, ProbeResult::Open), (late_denied, ProbeResult::Open)],
        "removed",
    );
    drop(podman);
}
