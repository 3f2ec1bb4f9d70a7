//! `dockfw-nft log` with real packets: a probe a logged rule drops shows up
//! decoded (rule, source, dialled port, container), in the three-namespace
//! lab of the dockfw-nft tests (client → router → server; the router is the
//! guarded host and DNATs port 8080 to the server's port 80, the server
//! standing for a container a stand-in Docker lists). The host's own
//! ruleset is never touched. Needs root: `#[ignore]`d, run by `cargo xtask
//! test` as root.

mod common;
#[path = "../../dockfw-nft/tests/common/lab.rs"]
mod lab;

use common::fake_docker::{FakeDocker, publishing_json};
use common::{dockfw, tempdir};
use lab::{Lab, ProbeResult, V4, V6};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The lab's router guards `ext0`; one client is dropped, and logged.
const POLICY: &str = r#"
[guard]
interfaces = ["ext0"]
default = "accept"
log_group = 4242

[[rule]]
name = "no bad clients"
from = ["10.1.0.3", "fd00:1::3"]
action = "drop"
log = true
"#;

/// `dockfw-nft log --json` running in the router's namespace; its lines
/// arrive on a channel. Stopped with SIGINT.
struct Follower {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Follower {
    fn start(lab: &Lab, dir: &std::path::Path, docker: &FakeDocker, extra: &[&str]) -> Self {
        let mut child = Command::new(assert_cmd::cargo::cargo_bin("dockfw-nft"))
            .env_remove("DOCKFW_CONFIG")
            .current_dir(dir)
            .args(["--netns", lab.router.name(), "--docker-host", &docker.host()])
            .args(["log", "-c", "policy.toml"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (send, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    fn next(&self) -> Option<String> {
        self.lines.recv_timeout(Duration::from_secs(5)).ok()
    }

    /// SIGINT; the exit status and what it wrote to standard error. A
    /// follower still running a minute later is killed and the test fails
    /// (a test never hangs: a vm-test run once waited here for ever).
    fn interrupt(mut self) -> (Option<i32>, String) {
        let sent = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        // None when the test took it to read as it came.
        let stderr = self.child.stderr.take();
        let said = std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut stderr) = stderr {
                let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
            }
            text
        });
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > Duration::from_secs(60) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "dockfw-nft log did not end within a minute of SIGINT:\n{}",
                    said.join().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        (status.code(), said.join().unwrap())
    }
}

/// Waits until the follower has bound its group: its note on standard error
/// comes after the bind; a line of it is not needed, so probe until the
/// first event arrives (a few probes at most).
fn probe_until_logged(lab: &Lab, follower: &Follower, source: &str, router: &str) -> serde_json::Value {
    for _ in 0..10 {
        assert_eq!(lab.probe(source, router, 8080).0, ProbeResult::TimedOut);
        if let Some(line) = follower.next() {
            return serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        }
    }
    panic!("no event logged for {source}");
}

#[test]
#[ignore = "needs root"]
fn log_shows_a_blocked_probe_with_its_rule_source_and_dialled_port() {
    let lab = Lab::new();
    let dir = tempdir("log-packets");
    std::fs::write(dir.join("policy.toml"), POLICY).unwrap();
    let docker = FakeDocker::with_containers(
        &dir.join("docker.sock"),
        &[publishing_json(
            "web",
            &[],
            &[V4.server, V6.server],
            &[(8080, 80)],
        )],
    );
    dockfw(&lab.router, &dir, &["apply", "-c", "policy.toml"], 0);
    let nft = lab
        .router
        .exec("nft", ["list", "chain", "inet", "dockfw", "rule-1"]);
    assert!(
        nft.contains("log prefix \"dockfw rule-1 drop no bad clients: \" group 4242"),
        "{nft}"
    );

    let follower = Follower::start(&lab, &dir, &docker, &["--json"]);
    for family in [V4, V6] {
        let event = probe_until_logged(&lab, &follower, family.denied, family.router);
        assert_eq!(event["rule"], "no bad clients", "{event}");
        assert_eq!(event["chain"], "rule-1", "{event}");
        assert_eq!(event["action"], "drop", "{event}");
        assert_eq!(event["admitted"], false, "{event}");
        assert_eq!(event["direction"], "inbound", "{event}");
        assert_eq!(event["protocol"], "tcp", "{event}");
        assert_eq!(event["source"], family.denied, "{event}");
        assert_eq!(event["dialled_port"], 8080, "{event}");
        assert_eq!(event["destination"], family.server, "{event}");
        assert_eq!(event["destination_port"], 80, "{event}");
        assert_eq!(event["container"], "web", "{event}");
        assert_eq!(event["in_interface"], "ext0", "{event}");
        // The connection's original tuple where the kernel adds it
        // (CONFIG_NETFILTER_NETLINK_GLUE_CT), else the port web publishes.
        match event["dialled_from"].as_str().unwrap() {
            "conntrack" => assert_eq!(event["dialled"], family.router, "{event}"),
            "docker" => assert!(event["dialled"].is_null(), "{event}"),
            other => panic!("dialled from {other}: {event}"),
        }
        // SYN retransmissions may follow within the rate limit; drain them.
        while let Ok(line) = follower.lines.recv_timeout(Duration::from_millis(300)) {
            assert!(line.contains("\"source\":\""), "{line}");
        }
    }
    // The allowed client is not logged.
    assert_eq!(lab.probe(V4.allowed, V4.router, 8080).0, ProbeResult::Served);
    assert_eq!(follower.lines.recv_timeout(Duration::from_millis(500)).ok(), None);

    // A second follower of the same group is refused: only one may bind it.
    let second = dockfw(&lab.router, &dir, &["log", "-c", "policy.toml"], 3);
    assert!(
        second
            .stderr
            .contains("NFLOG group 4242 is already followed by another process"),
        "{}",
        second.stderr
    );

    // SIGINT ends it cleanly.
    let (code, stderr) = follower.interrupt();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("error"), "{stderr}");

    // Text, without Docker: the rule and the packet's own addresses.
    let follower = {
        let mut child = Command::new(assert_cmd::cargo::cargo_bin("dockfw-nft"))
            .env_remove("DOCKFW_CONFIG")
            .current_dir(&dir)
            .args([
                "--netns",
                lab.router.name(),
                "--no-docker",
                "log",
                "-c",
                "policy.toml",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (send, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = send.send(line);
            }
        });
        Follower { child, lines }
    };
    let line = (0..10)
        .find_map(|_| {
            assert_eq!(lab.probe(V4.denied, V4.router, 8080).0, ProbeResult::TimedOut);
            follower.next()
        })
        .expect("a text line");
    // Dialled: the original tuple where the kernel adds it, else (no
    // Docker to ask) the packet's own destination, the server.
    assert!(
        line.contains(" drop \"no bad clients\" tcp 10.1.0.3:")
            && line.contains(" in ext0")
            && (line.contains(" -> 10.1.0.1:8080 (to 10.2.0.2:80)") || line.contains(" -> 10.2.0.2:80 ")),
        "{line}"
    );
    let (code, _) = follower.interrupt();
    assert_eq!(code, Some(0));
    docker.stop();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The exit code of `child` once it ends; a panic if it runs on past a
/// generous bound (a hang, not slowness).
fn exit_code_of(child: &mut Child) -> Option<i32> {
    for _ in 0..300 {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    panic!("dockfw-nft log still runs after its reader went away");
}

/// `dockfw-nft log | head -1`: once the reader closes the pipe, log ends
/// (exit 0) and releases the NFLOG group, whether or not another event came.
#[test]
#[ignore = "needs root"]
fn log_ends_when_its_reader_closes_the_pipe() {
    let lab = Lab::new();
    let dir = tempdir("log-pipe");
    std::fs::write(dir.join("policy.toml"), POLICY).unwrap();
    let docker = FakeDocker::with_containers(&dir.join("docker.sock"), &[]);
    dockfw(&lab.router, &dir, &["apply", "-c", "policy.toml"], 0);

    // head -1: one line read, then the pipe closed.
    let first = Follower::start(&lab, &dir, &docker, &[]);
    let line = (0..10)
        .find_map(|_| {
            assert_eq!(lab.probe(V4.denied, V4.router, 8080).0, ProbeResult::TimedOut);
            first.next()
        })
        .expect("a line");
    assert!(line.contains("\"no bad clients\""), "{line}");
    // Dropping the channel ends the reading thread, which drops the pipe.
    let Follower { mut child, lines } = first;
    drop(lines);
    // The thread only notices at its next line: one more event at most.
    assert_eq!(lab.probe(V4.denied, V4.router, 8080).0, ProbeResult::TimedOut);
    assert_eq!(exit_code_of(&mut child), Some(0));

    // The reader gone before any event: log ends all the same.
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("dockfw-nft"))
        .env_remove("DOCKFW_CONFIG")
        .current_dir(&dir)
        .args([
            "--netns",
            lab.router.name(),
            "--no-docker",
            "log",
            "-c",
            "policy.toml",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    assert_eq!(exit_code_of(&mut child), Some(0));

    // The group is free again: a new follower gets the next event.
    let follower = Follower::start(&lab, &dir, &docker, &["--json"]);
    let event = probe_until_logged(&lab, &follower, V4.denied, V4.router);
    assert_eq!(event["rule"], "no bad clients", "{event}");
    let (code, stderr) = follower.interrupt();
    assert_eq!(code, Some(0), "{stderr}");
    docker.stop();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Someone else's table logging to dockfw's group: a prefix of dockfw's
/// format for a rule the policy does not have, and none at all.
const FOREIGN: &str = "table inet evil {
  chain input {
    type filter hook input priority 0; policy accept;
    tcp dport 9999 log prefix \"dockfw rule-99 drop ghost: \" group 4242
    tcp dport 9998 log group 4242
  }
}
";

/// What others log to the group is counted and skipped (never shown as a
/// dockfw decision) unless --all, which marks it foreign; following a
/// group the policy does not log to is warned about.
#[test]
#[ignore = "needs root"]
fn log_skips_what_others_log_to_the_group_unless_all() {
    let lab = Lab::new();
    let dir = tempdir("log-foreign");
    std::fs::write(dir.join("policy.toml"), POLICY).unwrap();
    std::fs::write(dir.join("evil.nft"), FOREIGN).unwrap();
    let docker = FakeDocker::with_containers(&dir.join("docker.sock"), &[]);
    dockfw(&lab.router, &dir, &["apply", "-c", "policy.toml"], 0);
    let evil = dir.join("evil.nft");
    lab.router.exec("nft", ["-f", evil.to_str().unwrap()]);
    // Until 300 ms pass without a line (at most a minute: lines that never
    // stop would be a failure, not a wait).
    let drain = |follower: &Follower| {
        let started = std::time::Instant::now();
        while follower.lines.recv_timeout(Duration::from_millis(300)).is_ok() {
            assert!(started.elapsed() < Duration::from_secs(60), "lines never stopped");
        }
    };

    // Text (its notes on standard error are not written with --json).
    let follower = Follower::start(&lab, &dir, &docker, &[]);
    let denied = |follower: &Follower| {
        (0..10)
            .find_map(|_| {
                assert_eq!(lab.probe(V4.denied, V4.router, 8080).0, ProbeResult::TimedOut);
                follower.next()
            })
            .expect("a line")
    };
    denied(&follower);
    drain(&follower);
    for port in [9999, 9998] {
        lab.probe(V4.allowed, V4.router, port);
    }
    // The next line shown is dockfw's own again.
    let line = denied(&follower);
    assert!(line.contains(" drop \"no bad clients\" tcp "), "{line}");
    drain(&follower);
    let (code, stderr) = follower.interrupt();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("skipping packets others log to group 4242"),
        "{stderr}"
    );
    assert!(
        stderr.contains("logged to group 4242 by others (--all shows them)"),
        "{stderr}"
    );

    // --all: shown, marked foreign, attributed to no rule.
    let follower = Follower::start(&lab, &dir, &docker, &["--json", "--all"]);
    probe_until_logged(&lab, &follower, V4.denied, V4.router);
    drain(&follower);
    for (port, prefix) in [(9999, "dockfw rule-99 drop ghost: "), (9998, "")] {
        let event = (0..10)
            .find_map(|_| {
                lab.probe(V4.allowed, V4.router, port);
                follower.next()
            })
            .expect("a foreign line");
        let event: serde_json::Value = serde_json::from_str(&event).unwrap();
        assert_eq!(event["foreign"], true, "{event}");
        assert_eq!(event["action"], "foreign", "{event}");
        assert_eq!(event["rule"], "", "{event}");
        assert!(event["admitted"].is_null(), "{event}");
        assert_eq!(event["prefix"], prefix, "{event}");
        drain(&follower);
    }
    let (code, stderr) = follower.interrupt();
    assert_eq!(code, Some(0), "{stderr}");

    // A group the policy does not log to: said at once.
    let follower = Follower::start(&lab, &dir, &docker, &["--group", "4243"]);
    std::thread::sleep(Duration::from_millis(500));
    let (code, stderr) = follower.interrupt();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("policy.toml logs to NFLOG group 4242, not to group 4243 followed here"),
        "{stderr}"
    );

    // The policy changed to another group while log runs: said once it
    // reads the policy again (every 5 s).
    let follower = Follower::start(&lab, &dir, &docker, &[]);
    std::thread::sleep(Duration::from_millis(500));
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, POLICY.replace("log_group = 4242", "log_group = 4243")).unwrap();
    std::thread::sleep(Duration::from_secs(12));
    let (code, stderr) = follower.interrupt();
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stderr
            .matches("policy.toml logs to NFLOG group 4243, not to group 4242 followed here")
            .count(),
        1,
        "{stderr}"
    );
    docker.stop();
    std::fs::remove_dir_all(&dir).unwrap();
}
