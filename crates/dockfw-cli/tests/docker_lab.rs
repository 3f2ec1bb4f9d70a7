//! The command against a real dockerd in the lab (docker.io, a private
//! daemon in network namespaces; the host is never touched): container rules
//! resolve through Docker, `apply` works with Docker stopped, and `watch`
//! follows containers as they start. Needs root; fails under CI=true without.

use assert_cmd::assert::OutputAssertExt;
use dockfw_e2e::{Client, Lab, LabConfig, Outcome, Probe, Proto, addr};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::process::{Child, Stdio};
use std::sync::Mutex;
use std::time::Duration;

/// One dockerd at a time: the machine has two cores.
static SERIAL: Mutex<()> = Mutex::new(());

const ALLOWED: IpAddr = IpAddr::V4(addr::INET_SOURCES[1]);
const DENIED: IpAddr = IpAddr::V4(addr::INET_SOURCES[0]);
const HOST: IpAddr = IpAddr::V4(addr::HOST_INET_A);

const POLICY: &str = r#"
[guard]
interfaces = ["eth0"]
default = "drop"

[[rule]]
name = "late from one address"
container = "late"
from = ["198.51.100.20"]
"#;

fn probe(src: IpAddr, port: u16) -> Probe {
    Probe {
        from: Client::Internet,
        src,
        dst: HOST,
        port,
        proto: Proto::Tcp,
    }
}

struct Setup {
    lab: Lab,
    dir: PathBuf,
}

fn setup(prefix: &str) -> Option<Setup> {
    let lab = dockfw_e2e::up_or_skip(LabConfig::for_test(prefix).unwrap())?;
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("policy.toml"), POLICY).unwrap();
    Some(Setup { lab, dir })
}

impl Setup {
    fn dockfw(&self, args: &[&str]) -> Command {
        let mut command = Command::new(assert_cmd::cargo::cargo_bin("dockfw-nft"));
        command
            .env_remove("DOCKFW_CONFIG")
            .current_dir(&self.dir)
            .arg("--netns")
            .arg(self.lab.netns_path())
            .args(["--docker-host", &self.lab.docker_host(), "-c", "policy.toml"])
            .args(args);
        command
    }

    fn expect(&self, cases: &[(Probe, Outcome)]) {
        for &(p, want) in cases {
            let got = self.lab.probe_until(p, want, Duration::from_secs(10)).unwrap();
            assert_eq!(got, want, "{p}");
        }
    }

    fn done(self) {
        std::fs::remove_dir_all(&self.dir).unwrap();
        self.lab.teardown().unwrap();
    }
}

#[test]
fn apply_without_docker_then_again_with_it() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(setup) = setup("dfwt-clid") else { return };
    setup.lab.stop_dockerd().unwrap();

    // At boot, before Docker: applies with a warning, exit 0.
    let out = setup.dockfw(&["apply"]).assert().code(0).get_output().clone();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("warning: cannot reach Docker"), "{stderr}");
    assert!(stderr.contains("rules match nothing"), "{stderr}");
    // Where Docker is required: exit 4.
    setup.dockfw(&["apply", "--require-docker"]).assert().code(4);

    setup.lab.start_dockerd().unwrap();
    setup
        .lab
        .run_echo("late", &["8081:8000/tcp"], &[(Proto::Tcp, 8000)])
        .unwrap();
    // Applied before the container existed: its rule matches nothing, so the default (drop) holds.
    setup.expect(&[(probe(ALLOWED, 8081), Outcome::TimedOut)]);

    setup.dockfw(&["apply"]).assert().code(0);
    setup.expect(&[
        (probe(ALLOWED, 8081), Outcome::Open),
        (probe(DENIED, 8081), Outcome::TimedOut),
    ]);
    let out = setup
        .dockfw(&["status", "--json"])
        .assert()
        .code(0)
        .get_output()
        .clone();
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(status["rules"][0]["packets"].as_u64().unwrap() >= 1, "{status:#}");
    assert!(status["default"]["packets"].as_u64().unwrap() >= 1, "{status:#}");
    setup.done();
}

/// Kills the watcher when the test ends, whatever happens.
struct Watcher(Child);

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn watch_follows_containers_as_they_start_and_go() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(setup) = setup("dfwt-cliw") else { return };
    let log = std::fs::File::create(setup.dir.join("watch.log")).unwrap();
    let mut command = setup.dockfw(&["watch", "--settle", "200ms"]);
    let watcher = Watcher(
        command
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(&setup.dir.join("watch.log"), "applied");

    // Started after the watcher: its rule comes into force without a manual apply.
    setup
        .lab
        .run_echo("late", &["8081:8000/tcp"], &[(Proto::Tcp, 8000)])
        .unwrap();
    setup.expect(&[
        (probe(ALLOWED, 8081), Outcome::Open),
        (probe(DENIED, 8081), Outcome::TimedOut),
    ]);

    // Re-created publishing another port: followed too.
    setup.lab.docker(&["rm", "-f", "late"]).unwrap();
    setup
        .lab
        .run_echo("late", &["9090:8000/tcp"], &[(Proto::Tcp, 8000)])
        .unwrap();
    setup.expect(&[
        (probe(ALLOWED, 9090), Outcome::Open),
        (probe(DENIED, 9090), Outcome::TimedOut),
    ]);

    // A dockerd restart: the watcher reconnects and keeps following.
    setup.lab.restart_dockerd().unwrap();
    setup.lab.docker(&["rm", "-f", "late"]).unwrap();
    setup
        .lab
        .run_echo("late", &["7070:8000/tcp"], &[(Proto::Tcp, 8000)])
        .unwrap();
    setup.expect(&[(probe(ALLOWED, 7070), Outcome::Open)]);
    let log = std::fs::read_to_string(setup.dir.join("watch.log")).unwrap();
    assert!(log.contains("lost Docker"), "{log}");
    drop(watcher);
    setup.done();
}

fn wait_for(path: &Path, needle: &str) {
    for _ in 0..100 {
        if std::fs::read_to_string(path).is_ok_and(|t| t.contains(needle)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "{} never said {needle:?}: {:?}",
        path.display(),
        std::fs::read_to_string(path)
    );
}
