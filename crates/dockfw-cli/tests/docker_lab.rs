//! The command against a real dockerd in the lab (docker.io, a private
//! daemon in network namespaces; the host is never touched): container rules
//! resolve through Docker, `apply` works with Docker stopped, and `watch`
//! follows containers as they start. Needs root: `#[ignore]`d, run by `cargo xtask test` as root.

use assert_cmd::assert::OutputAssertExt;
use dockfw_e2e::{Client, Lab, LabConfig, Ns, Probe, ProbeResult, Proto, addr};
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

fn setup(prefix: &str) -> Setup {
    let lab = dockfw_e2e::up_for_test(LabConfig::for_test(prefix).unwrap());
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("policy.toml"), POLICY).unwrap();
    Setup { lab, dir }
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
            // A daemon slow to answer (under emulation, Podman's service at
            // its first request) is still there: these tests are not about
            // unreachable daemons.
            .args(["--docker-timeout", "60s"])
            .args(args);
        command
    }

    fn expect(&self, cases: &[(Probe, ProbeResult)]) {
        for &(p, want) in cases {
            let got = self.lab.probe_until(p, want, Duration::from_secs(10)).unwrap();
            assert_eq!(got, want, "{p}");
        }
    }

    /// Our table as `nft -s` lists it, or `None`.
    fn table(&self) -> Option<String> {
        let out = self
            .lab
            .ns_cmd(Ns::DockerHost, "nft")
            .args(["-s", "list", "table", "inet", "dockfw"])
            .stderr(Stdio::null())
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8(out.stdout).unwrap())
    }

    /// Waits (at most 5 s: repairs take milliseconds) for our table to be `whole`.
    fn until_table_is(&self, whole: &str) {
        let started = std::time::Instant::now();
        while self.table().as_deref() != Some(whole) {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "not repaired: {:?}",
                self.table()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn done(self) {
        std::fs::remove_dir_all(&self.dir).unwrap();
        self.lab.teardown().unwrap();
    }
}

#[test]
#[ignore = "needs root and the Docker lab"]
fn apply_without_docker_then_again_with_it() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let setup = setup("dfwt-clid");
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
    setup.expect(&[(probe(ALLOWED, 8081), ProbeResult::TimedOut)]);

    setup.dockfw(&["apply"]).assert().code(0);
    setup.expect(&[
        (probe(ALLOWED, 8081), ProbeResult::Open),
        (probe(DENIED, 8081), ProbeResult::TimedOut),
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

/// Kills a child (watch, a resolver) when the test ends, whatever happens.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
#[ignore = "needs root and the Docker lab"]
fn watch_follows_containers_as_they_start_and_go() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let setup = setup("dfwt-cliw");
    let log = std::fs::File::create(setup.dir.join("watch.log")).unwrap();
    let mut command = setup.dockfw(&["-v", "watch", "--settle", "200ms"]);
    let watcher = KillOnDrop(
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
        (probe(ALLOWED, 8081), ProbeResult::Open),
        (probe(DENIED, 8081), ProbeResult::TimedOut),
    ]);
    // Docker committed its own rules for the container meanwhile; watch
    // followed those commits and applied from what it installed, reading
    // back only the structure, no set's elements.
    let log = std::fs::read_to_string(setup.dir.join("watch.log")).unwrap();
    let start = log
        .lines()
        .skip_while(|line| !(line.contains("applying (") && line.contains("late")))
        .find(|line| line.contains("transaction(s)"))
        .unwrap_or_else(|| panic!("no apply for the container start:\n{log}"));
    assert!(start.contains(", 0 with set elements"), "{start}\n{log}");

    // Re-created publishing another port: followed too.
    setup.lab.docker(&["rm", "-f", "late"]).unwrap();
    setup
        .lab
        .run_echo("late", &["9090:8000/tcp"], &[(Proto::Tcp, 8000)])
        .unwrap();
    setup.expect(&[
        (probe(ALLOWED, 9090), ProbeResult::Open),
        (probe(DENIED, 9090), ProbeResult::TimedOut),
    ]);

    // Tampering with real Docker running: repaired at once.
    let whole = setup.table().expect("installed");
    setup.lab.nft("delete table inet dockfw").unwrap();
    let started = std::time::Instant::now();
    setup.until_table_is(&whole);
    println!(
        "table deleted, with Docker running: whole again in {:.1?}",
        started.elapsed()
    );
    wait_for(
        &setup.dir.join("watch.log"),
        "repaired table inet dockfw: table deleted, by nft",
    );

    // A dockerd restart: the watcher guards on while Docker is down (a
    // `flush ruleset` then, as `systemctl reload nftables` does, deletes
    // Docker's tables and ours: ours is repaired), reconnects and keeps
    // following.
    setup.lab.stop_dockerd().unwrap();
    wait_for(&setup.dir.join("watch.log"), "lost Docker");
    setup.lab.nft("flush ruleset").unwrap();
    let started = std::time::Instant::now();
    setup.until_table_is(&whole);
    println!(
        "ruleset flushed, with Docker down: whole again in {:.1?}",
        started.elapsed()
    );
    setup.lab.start_dockerd().unwrap();
    setup.lab.docker(&["rm", "-f", "late"]).unwrap();
    setup
        .lab
        .run_echo("late", &["7070:8000/tcp"], &[(Proto::Tcp, 8000)])
        .unwrap();
    setup.expect(&[(probe(ALLOWED, 7070), ProbeResult::Open)]);
    let log = std::fs::read_to_string(setup.dir.join("watch.log")).unwrap();
    assert!(log.contains("lost Docker"), "{log}");
    drop(watcher);
    setup.done();
}

/// `watch --metrics` scraped during lab traffic: an admitted and a denied
/// client move their decisions' counters, read from the kernel at each
/// scrape (issue 17).
#[test]
#[ignore = "needs root and the Docker lab"]
fn watch_metrics_count_lab_traffic() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let setup = setup("dfwt-clim");
    setup
        .lab
        .run_echo("late", &["8081:8000/tcp"], &[(Proto::Tcp, 8000)])
        .unwrap();
    let log_path = setup.dir.join("watch.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut command = setup.dockfw(&["watch", "--metrics", "127.0.0.1:0"]);
    let watcher = KillOnDrop(
        command
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(&log_path, "serving metrics at http://");
    let text = std::fs::read_to_string(&log_path).unwrap();
    let address = text
        .lines()
        .find_map(|l| {
            l.split("serving metrics at http://")
                .nth(1)?
                .strip_suffix("/metrics")
        })
        .unwrap_or_else(|| panic!("{text}"))
        .to_string();
    let rule = "dockfw_rule_packets_total{table=\"dockfw\",rule=\"late from one address\",\
                action=\"allow\",direction=\"inbound\"}";
    let default = "dockfw_default_packets_total{table=\"dockfw\",action=\"drop\",direction=\"inbound\"}";
    let before = scrape(&address);
    assert_eq!(sample(&before, "dockfw_docker_reachable"), 1.0, "{before}");

    setup.expect(&[
        (probe(ALLOWED, 8081), ProbeResult::Open),
        (probe(DENIED, 8081), ProbeResult::TimedOut),
    ]);
    let after = scrape(&address);
    println!(
        "rule: {} -> {}; default: {} -> {}",
        sample(&before, rule),
        sample(&after, rule),
        sample(&before, default),
        sample(&after, default)
    );
    assert!(sample(&after, rule) >= sample(&before, rule) + 1.0, "{after}");
    assert!(
        sample(&after, default) >= sample(&before, default) + 1.0,
        "{after}"
    );
    let bytes = "dockfw_rule_bytes_total{table=\"dockfw\",rule=\"late from one address\",\
                 action=\"allow\",direction=\"inbound\"}";
    assert!(sample(&after, bytes) > sample(&before, bytes), "{after}");
    drop(watcher);
    setup.done();
}

/// `GET /metrics` from `address` (HTTP/1.0: the body ends with the connection).
fn scrape(address: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    body.to_string()
}

/// The value of the sample `series` (name and labels, as written) in `text`.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
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

fn probe_from(from: Client, src: impl Into<IpAddr>, dst: impl Into<IpAddr>, port: u16) -> Probe {
    Probe {
        from,
        src: src.into(),
        dst: dst.into(),
        port,
        proto: Proto::Tcp,
    }
}

impl Setup {
    fn write_policy(&self, text: &str) {
        std::fs::write(self.dir.join("policy.toml"), text).unwrap();
    }

    /// Every probe at once; all must give what they want.
    fn expect_now(&self, cases: &[(Probe, ProbeResult)]) {
        let wrong = self.lab.wrong_outcomes(cases).unwrap();
        assert!(wrong.is_empty(), "unexpected outcomes:\n{}", wrong.join("\n"));
    }

    fn stderr(&self, args: &[&str], code: i32) -> String {
        let out = self.dockfw(args).assert().code(code).get_output().clone();
        String::from_utf8(out.stderr).unwrap()
    }
}

#[test]
#[ignore = "needs root and the Docker lab"]
fn container_and_labels_rules_admit_exactly_their_published_ports() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let setup = setup("dfwt-clic");
    let lab = &setup.lab;
    lab.run_echo_with(
        "web",
        &["-p", "8081:8000/tcp", "--label", "tier=front"],
        &[(Proto::Tcp, 8000)],
    )
    .unwrap();
    lab.run_echo_with(
        "db",
        &["-p", "5432:5432/tcp", "--label", "tier=db"],
        &[(Proto::Tcp, 5432)],
    )
    .unwrap();
    lab.run_echo("other", &["9000:9000/tcp"], &[(Proto::Tcp, 9000)])
        .unwrap();
    let [stranger, web_client, db_client] = addr::INET_SOURCES;
    setup.write_policy(&format!(
        r#"
[guard]
interfaces = ["eth0"]
default = "drop"

[[rule]]
name = "web"
container = "web"
from = ["{web_client}"]

[[rule]]
name = "databases"
labels = {{ tier = "db" }}
from = ["{db_client}"]
"#
    ));
    setup.dockfw(&["apply"]).assert().code(0);
    use ProbeResult::*;
    let host = addr::HOST_INET_A;
    let p = |src, port| probe_from(Client::Internet, src, host, port);
    setup.expect_now(&[
        (p(web_client, 8081), Open),
        (p(web_client, 5432), TimedOut),
        (p(web_client, 9000), TimedOut),
        (p(db_client, 5432), Open),
        (p(db_client, 8081), TimedOut),
        (p(db_client, 9000), TimedOut),
        (p(stranger, 8081), TimedOut),
        (p(stranger, 5432), TimedOut),
        (p(stranger, 9000), TimedOut),
        // Connections from the host itself are never judged.
        (probe_from(Client::DockerHost, host, host, 8081), Open),
        (probe_from(Client::DockerHost, host, host, 9000), Open),
    ]);

    // status names the containers each rule resolved to.
    let out = setup
        .dockfw(&["status", "--json"])
        .assert()
        .code(0)
        .get_output()
        .clone();
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        status["rules"][0]["containers"],
        serde_json::json!(["web"]),
        "{status:#}"
    );
    assert_eq!(
        status["rules"][1]["containers"],
        serde_json::json!(["db"]),
        "{status:#}"
    );
    let out = setup.dockfw(&["status"]).assert().code(0).get_output().clone();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("CONTAINERS"), "{text}");
    setup.done();
}

#[test]
#[ignore = "needs root and the Docker lab"]
fn check_points_out_a_container_port_written_for_a_published_one() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let setup = setup("dfwt-clih");
    setup
        .lab
        .run_echo("django", &["8081:8000/tcp"], &[(Proto::Tcp, 8000)])
        .unwrap();
    setup.write_policy(
        "[guard]\ninterfaces = [\"eth0\"]\n\n[[rule]]\nname = \"django\"\nports = [\"8000/tcp\"]\n",
    );
    let stderr = setup.stderr(&["check"], 0);
    assert!(
        stderr.contains("policy.toml:6:10: warning:")
            && stderr.contains("8000/tcp is django's container port; clients dial 8081"),
        "{stderr}"
    );
    // Without Docker there is nothing to compare with: no such warning.
    let stderr = setup.stderr(&["check", "--no-docker"], 0);
    assert!(!stderr.contains("container port"), "{stderr}");
    setup.done();
}

/// A network whose bridge Docker was told to name (`-o
/// com.docker.network.bridge.name=…`): connections routed to its containers'
/// own addresses are judged as on Docker's own bridges, from the moment a
/// container runs on it (the table knows the bridge from Docker).
#[test]
#[ignore = "needs root and the Docker lab"]
fn routed_access_to_a_container_on_a_bridge_named_otherwise_is_judged() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let setup = setup("dfwt-clib");
    let lab = &setup.lab;
    named_bridge_network(lab, "dmz", "dfwdmz0", "198.18.100.0/24");
    lab.run_echo_with(
        "web",
        &["--network", "dmz", "-p", "8081:8000/tcp"],
        &[(Proto::Tcp, 8000)],
    )
    .unwrap();
    routed_and_published_web_are_judged_alike(&setup, lab.container_addrs("web").unwrap()[0]);
    let table = setup.table().unwrap();
    assert!(table.contains("oifname \"dfwdmz0\""), "{table}");
    let json = setup.dockfw(&["--json", "check"]).output().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(
        json["docker"]["named_bridges"],
        serde_json::json!(["dfwdmz0"]),
        "{json}"
    );
    // What is installed is what the policy and Docker make.
    setup.dockfw(&["status"]).assert().code(0);
    // Guarding the bridge itself keeps it a guarded interface only, and says so.
    setup.write_policy("[guard]\ninterfaces = [\"eth1\", \"dfwdmz*\"]\n");
    let stderr = setup.stderr(&["check"], 0);
    assert!(
        stderr.contains("warning: dfwdmz0 is a Docker network's bridge and a guarded interface"),
        "{stderr}"
    );
    setup.done();
}

/// A container started on a network with a named bridge after the apply is
/// judged from its first packet, as on `br-*`: the table knows the bridges
/// of every Docker network, not only of those containers run on (before,
/// Docker alone decided routed access to it until the next apply: a denied
/// neighbour was served). `watch` follows networks as they are created and
/// removed, and `status` then says the table matches.
#[test]
#[ignore = "needs root and the Docker lab"]
fn a_container_started_on_a_named_bridge_after_the_apply_is_judged() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let setup = setup("dfwt-clnb");
    let lab = &setup.lab;
    named_bridge_network(lab, "late", "dfwlate0", "198.18.101.0/24");
    setup.write_policy(
        r#"
[guard]
interfaces = ["eth1"]
default = "drop"
"#,
    );
    setup.dockfw(&["apply"]).assert().code(0);
    assert!(setup.table().unwrap().contains("oifname \"dfwlate0\""));
    lab.run_echo_with(
        "web",
        &["--network", "late", "-p", "8081:8000/tcp"],
        &[(Proto::Tcp, 8000)],
    )
    .unwrap();
    let web: IpAddr = lab.container_addrs("web").unwrap()[0];
    let [stranger, _, _] = addr::LAN_SOURCES;
    // Docker alone would serve it (see
    // routed_access_to_a_container_on_a_bridge_named_otherwise_is_judged).
    setup.expect_now(&[(
        probe_from(Client::Lan, stranger, web, 8000),
        ProbeResult::TimedOut,
    )]);

    // watch: networks created and removed are followed; status agrees.
    let log = std::fs::File::create(setup.dir.join("watch.log")).unwrap();
    let mut command = setup.dockfw(&["-v", "watch", "--settle", "200ms"]);
    let watcher = KillOnDrop(
        command
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    wait_for(&setup.dir.join("watch.log"), "applied");
    let settled = |bridge_there: bool| {
        let started = std::time::Instant::now();
        loop {
            let table = setup.table().unwrap();
            let status = setup.dockfw(&["status"]).output().unwrap().status.code();
            if table.contains("oifname \"dfwnew0\"") == bridge_there && status == Some(0) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "status {status:?}: {table}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    settled(false);
    lab.docker(&[
        "network",
        "create",
        "-o",
        "com.docker.network.bridge.name=dfwnew0",
        "new",
    ])
    .unwrap();
    settled(true);
    lab.docker(&["network", "rm", "new"]).unwrap();
    settled(false);
    drop(watcher);
    setup.done();
}

/// With Docker's IPv6 off (the default on most hosts), an IPv6 client of a
/// published port is answered by docker-proxy on the host: the input path.
#[test]
#[ignore = "needs root and the Docker lab"]
fn ipv6_clients_of_an_ipv4_only_docker_are_held_to_the_policy() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = dockfw_e2e::up_for_test(LabConfig {
        ipv6: false,
        ..LabConfig::for_test("dfwt-clip").unwrap()
    });
    let dir = std::env::temp_dir().join(format!("dfwt-clip-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let setup = Setup { lab, dir };
    setup
        .lab
        .run_echo("web", &["8081:8000/tcp"], &[(Proto::Tcp, 8000)])
        .unwrap();
    let [stranger, allowed, rejected] = addr::INET6_SOURCES;
    let host = addr::HOST_INET6_A;
    let p = |src, port| probe_from(Client::Internet, src, host, port);
    use ProbeResult::*;
    // Without dockfw: open to every IPv6 client, through docker-proxy.
    setup.expect_now(&[(p(stranger, 8081), Open), (p(allowed, 8081), Open)]);

    setup.write_policy(&format!(
        r#"
[guard]
interfaces = ["eth0"]
default = "drop"

[[rule]]
name = "allowed"
from = ["{allowed}"]
ports = ["8081/tcp"]

[[rule]]
name = "refused"
from = ["{rejected}"]
action = "reject"
"#
    ));
    setup.dockfw(&["apply"]).assert().code(0);
    setup.expect_now(&[
        (p(allowed, 8081), Open),
        (p(stranger, 8081), TimedOut),
        (p(rejected, 8081), Refused),
    ]);
    let out = setup
        .dockfw(&["status", "--json"])
        .assert()
        .code(0)
        .get_output()
        .clone();
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        status["rules"][0]["packets"].as_u64().unwrap() >= 1,
        "counted: {status:#}"
    );
    assert!(
        status["default"]["packets"].as_u64().unwrap() >= 1,
        "counted: {status:#}"
    );
    setup.done();
}

/// A LAN neighbour routing straight to a container's address (no DNAT):
/// judged too, and a container rule means the same service on that path.
#[test]
#[ignore = "needs root and the Docker lab"]
fn routed_access_to_a_container_address_is_judged() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let setup = setup("dfwt-clir");
    let lab = &setup.lab;
    lab.run_echo("web", &["8081:8000/tcp"], &[(Proto::Tcp, 8000)])
        .unwrap();
    route_lan_to(lab, &addr::DOCKER_BIP.replace(".1/24", ".0/24"));
    routed_and_published_web_are_judged_alike(&setup, lab.container_addrs("web").unwrap()[0]);
    setup.done();
}

/// Routes the lab's LAN to `subnet` (a Docker network) through the host.
fn route_lan_to(lab: &Lab, subnet: &str) {
    lab.exec(
        Ns::Lan,
        "ip",
        &["route", "replace", subnet, "via", &addr::HOST_LAN.to_string()],
    )
    .unwrap();
}

/// A Docker network `name` on `subnet` whose bridge Docker is told to name
/// `bridge`, routed to from the LAN.
fn named_bridge_network(lab: &Lab, name: &str, bridge: &str, subnet: &str) {
    let option = format!("com.docker.network.bridge.name={bridge}");
    lab.docker(&["network", "create", "--subnet", subnet, "-o", &option, name])
        .unwrap();
    route_lan_to(lab, subnet);
}

/// With container `web` (at `web`, publishing 8081 for its port 8000)
/// served to every LAN neighbour by Docker alone, a policy admitting one
/// neighbour holds on the routed path (straight to `web`) and on the
/// published one alike.
fn routed_and_published_web_are_judged_alike(setup: &Setup, web: IpAddr) {
    let [stranger, allowed, _] = addr::LAN_SOURCES;
    let p = |src, port| probe_from(Client::Lan, src, web, port);
    use ProbeResult::*;
    // Docker itself accepts routed traffic to a published container port.
    setup.expect_now(&[(p(stranger, 8000), Open)]);

    setup.write_policy(&format!(
        r#"
[guard]
interfaces = ["eth1"]
default = "drop"

[[rule]]
name = "web from one neighbour"
container = "web"
from = ["{allowed}"]
"#
    ));
    setup.dockfw(&["apply"]).assert().code(0);
    setup.expect_now(&[(p(allowed, 8000), Open), (p(stranger, 8000), TimedOut)]);
    // The same rule on the published path.
    let host = addr::HOST_LAN;
    setup.expect_now(&[
        (probe_from(Client::Lan, allowed, host, 8081), Open),
        (probe_from(Client::Lan, stranger, host, 8081), TimedOut),
    ]);
}

/// Revoke, with real packets: after `apply` of a policy that removes a
/// source, its held connections are cut within a second, while those of a
/// source still allowed live on; with `revoke = false` both live on. IPv4
/// goes through Docker's DNAT; IPv6 through DNAT with Docker's IPv6 on, and
/// through docker-proxy without.
#[test]
#[ignore = "needs root and the Docker lab"]
fn apply_cuts_held_connections_the_new_policy_denies() {
    revoke_lab("dfwt-rvk", true);
}

#[test]
#[ignore = "needs root and the Docker lab"]
fn apply_cuts_held_ipv6_connections_through_docker_proxy() {
    revoke_lab("dfwt-rvkp", false);
}

fn revoke_lab(prefix: &str, ipv6: bool) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = dockfw_e2e::up_for_test(LabConfig {
        ipv6,
        ..LabConfig::for_test(prefix).unwrap()
    });
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let setup = Setup { lab, dir };
    setup
        .lab
        .run_echo("web", &["8081:8000/tcp"], &[(Proto::Tcp, 8000)])
        .unwrap();
    let kept_v4 = IpAddr::V4(addr::INET_SOURCES[1]);
    let cut_v4 = IpAddr::V4(addr::INET_SOURCES[0]);
    let kept_v6 = IpAddr::V6(addr::INET6_SOURCES[1]);
    let cut_v6 = IpAddr::V6(addr::INET6_SOURCES[0]);
    let policy = |sources: &[IpAddr], revoke: bool| {
        let from: Vec<String> = sources.iter().map(|s| format!("\"{s}\"")).collect();
        format!(
            "[guard]\ninterfaces = [\"eth0\"]\ndefault = \"drop\"\nrevoke = {revoke}\n\n[[rule]]\nname = \"clients\"\nports = [8081]\nfrom = [{}]\n",
            from.join(", ")
        )
    };
    let held = |src: IpAddr| {
        let dst = match src {
            IpAddr::V4(_) => HOST,
            IpAddr::V6(_) => IpAddr::V6(addr::HOST_INET6_A),
        };
        let p = Probe {
            from: Client::Internet,
            src,
            dst,
            port: 8081,
            proto: Proto::Tcp,
        };
        setup.lab.hold(p).unwrap_or_else(|e| panic!("{p}: {e}"))
    };
    for revoke in [true, false] {
        std::fs::write(
            setup.dir.join("policy.toml"),
            policy(&[kept_v4, cut_v4, kept_v6, cut_v6], revoke),
        )
        .unwrap();
        setup.dockfw(&["apply"]).assert().code(0);
        let mut connections: Vec<_> = [kept_v4, cut_v4, kept_v6, cut_v6].into_iter().map(held).collect();
        for connection in &mut connections {
            assert_eq!(
                connection.exchange(Duration::from_secs(5)).unwrap(),
                ProbeResult::Open
            );
        }

        std::fs::write(setup.dir.join("policy.toml"), policy(&[kept_v4, kept_v6], revoke)).unwrap();
        let out = setup
            .dockfw(&["apply", "-v"])
            .assert()
            .code(0)
            .get_output()
            .clone();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        for (connection, removed) in connections.iter_mut().zip([false, true, false, true]) {
            let want = if removed && revoke {
                ProbeResult::TimedOut
            } else {
                ProbeResult::Open
            };
            let got = connection.exchange(Duration::from_secs(1)).unwrap();
            assert_eq!(got, want, "{} (revoke = {revoke}):\n{stdout}", connection.probe());
        }
        if revoke {
            assert!(
                stdout.contains("revoked 2 connections the policy no longer admits: 2 drop by default"),
                "{stdout}"
            );
            assert!(stdout.contains(&format!("cut tcp {cut_v4}:")), "{stdout}");
            let v6_path = if ipv6 { "published" } else { "proxied" };
            assert!(
                stdout.contains(&format!("{cut_v4}:")) && stdout.contains("(published, on eth0)"),
                "{stdout}"
            );
            assert!(
                stdout.contains(&format!("[{cut_v6}]:")) && stdout.contains(&format!("({v6_path}, on eth0)")),
                "{stdout}"
            );
        } else {
            assert!(!stdout.contains("revoked"), "{stdout}");
        }
    }
    setup.done();
}

/// Connections dockfw never labelled, with real packets: held open before
/// our table exists (then the first `apply`), or opened while it was
/// deleted (then `apply` again, with `revoke = false`, so that nothing but
/// the data path can cut them). Their next client → container packet is
/// judged: a denied source's connection is cut, an allowed one lives on and
/// is counted once. The host's own connections and a container's outbound
/// one, held all along, are never judged. IPv4 and IPv6 through Docker's
/// DNAT (Docker's IPv6 on), IPv6 through docker-proxy (off).
#[test]
#[ignore = "needs root and the Docker lab"]
fn connections_dockfw_never_labelled_are_judged_by_packets() {
    late_judging_lab("dfwt-late", true);
}

#[test]
#[ignore = "needs root and the Docker lab"]
fn connections_dockfw_never_labelled_are_judged_through_docker_proxy() {
    late_judging_lab("dfwt-latep", false);
}

/// A TCP connection a container opens (busybox `nc` under `docker exec`),
/// held open so that it can exchange data again later; killed when dropped.
struct ContainerConnection {
    nc: Child,
    to_peer: std::process::ChildStdin,
    from_peer: std::sync::mpsc::Receiver<String>,
}

impl ContainerConnection {
    fn open(lab: &Lab, container: &str, dst: std::net::SocketAddr) -> Self {
        let mut nc = lab
            .docker_cmd(["exec", "-i", container, "nc"])
            .arg(dst.ip().to_string())
            .arg(dst.port().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let to_peer = nc.stdin.take().unwrap();
        let stdout = std::io::BufReader::new(nc.stdout.take().unwrap());
        let (lines, from_peer) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in stdout.lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            nc,
            to_peer,
            from_peer,
        }
    }

    /// Sends a line; `Open` when it comes back within `timeout`.
    fn exchange(&mut self, timeout: Duration) -> ProbeResult {
        use std::io::Write;
        let line = "dockfw-lab container connection";
        if writeln!(self.to_peer, "{line}")
            .and_then(|()| self.to_peer.flush())
            .is_err()
        {
            return ProbeResult::Refused;
        }
        match self.from_peer.recv_timeout(timeout) {
            Ok(echoed) if echoed == line => ProbeResult::Open,
            Ok(other) => panic!("the peer sent {other:?} back"),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => ProbeResult::TimedOut,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => ProbeResult::Refused,
        }
    }
}

impl Drop for ContainerConnection {
    fn drop(&mut self) {
        let _ = self.nc.kill();
        let _ = self.nc.wait();
    }
}

fn late_judging_lab(prefix: &str, ipv6: bool) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = dockfw_e2e::up_for_test(LabConfig {
        ipv6,
        ..LabConfig::for_test(prefix).unwrap()
    });
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let setup = Setup { lab, dir };
    let lab = &setup.lab;
    lab.run_echo("web", &["8081:8000/tcp"], &[(Proto::Tcp, 8000)])
        .unwrap();
    let kept_v4 = IpAddr::V4(addr::INET_SOURCES[1]);
    let cut_v4 = IpAddr::V4(addr::INET_SOURCES[0]);
    let kept_v6 = IpAddr::V6(addr::INET6_SOURCES[1]);
    let cut_v6 = IpAddr::V6(addr::INET6_SOURCES[0]);
    let policy = |revoke: bool| {
        format!(
            "[guard]\ninterfaces = [\"eth0\"]\ndefault = \"drop\"\nrevoke = {revoke}\n\n[[rule]]\nname = \"clients\"\nports = [8081]\nfrom = [\"{kept_v4}\", \"{kept_v6}\"]\nlimit = {{ rate = \"1/second\", burst = 1 }}\n"
        )
    };
    let held = |src: IpAddr| {
        let dst = match src {
            IpAddr::V4(_) => HOST,
            IpAddr::V6(_) => IpAddr::V6(addr::HOST_INET6_A),
        };
        let p = probe_from(Client::Internet, src, dst, 8081);
        lab.hold(p).unwrap_or_else(|e| panic!("{p}: {e}"))
    };
    let rule_packets = || {
        let out = setup
            .dockfw(&["status", "--json"])
            .assert()
            .code(0)
            .get_output()
            .clone();
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        status["rules"][0]["packets"].as_u64().unwrap()
    };
    use ProbeResult::*;
    let exchange = |connection: &mut dockfw_e2e::HeldConnection, want: ProbeResult, what: &str| {
        let timeout = Duration::from_secs(if want == Open { 5 } else { 1 });
        let got = connection.exchange(timeout).unwrap();
        assert_eq!(got, want, "{what}: {}", connection.probe());
    };

    // Held open before dockfw's table exists: clients of the published
    // port, the host's own connections (to the published port, to the
    // container's address) and the container's own connection out.
    assert!(setup.table().is_none());
    let mut clients: Vec<_> = [kept_v4, cut_v4, kept_v6, cut_v6].into_iter().map(held).collect();
    let web = lab.container_addrs("web").unwrap()[0];
    let mut host_local = [
        probe_from(Client::DockerHost, HOST, HOST, 8081),
        probe_from(Client::DockerHost, HOST, web, 8000),
    ]
    .map(|p| lab.hold(p).unwrap_or_else(|e| panic!("{p}: {e}")));
    let far_end = std::net::SocketAddr::new(addr::INET_SOURCES[2].into(), 7000);
    let _server = lab.serve_echo(Ns::Internet, far_end, Proto::Tcp).unwrap();
    let mut outbound = ContainerConnection::open(lab, "web", far_end);
    for connection in clients.iter_mut().chain(&mut host_local) {
        exchange(connection, Open, "no table yet");
    }
    assert_eq!(
        outbound.exchange(Duration::from_secs(5)),
        Open,
        "no table yet: web -> {far_end}"
    );

    // The first apply: the denied sources' connections are cut by their
    // next packet, the rest live on.
    setup.write_policy(&policy(true));
    setup.dockfw(&["apply"]).assert().code(0);
    for (connection, denied) in clients.iter_mut().zip([false, true, false, true]) {
        exchange(
            connection,
            if denied { TimedOut } else { Open },
            "after the first apply",
        );
    }
    for connection in &mut host_local {
        exchange(connection, Open, "host-local, after the first apply");
    }
    assert_eq!(
        outbound.exchange(Duration::from_secs(5)),
        Open,
        "after the first apply: web -> {far_end}"
    );
    // Judged by the rule's path: each allowed connection counted there.
    // Not "once" through DNAT: there `ct label set` has no effect on a
    // connection tracked before any `ct label` rule existed (the label rule
    // counts, the late-judging rule still matches), so each of its client
    // packets is judged again. Known issue, not asserted either way.
    let counted = rule_packets();
    assert!(counted >= 2, "each allowed connection judged: {counted}");
    for connection in [0, 2] {
        exchange(&mut clients[connection], Open, "again");
    }
    // Never labelled, so each packet is judged again: the rule's rate limit
    // (1/second, burst 1) meters new connections only and must not drop
    // them. TCP would hide a drop by retransmitting, so its counter tells.
    for round in 0..10 {
        for connection in [0, 2] {
            exchange(&mut clients[connection], Open, &format!("quick exchange {round}"));
        }
    }
    let rule_chain = lab.nft("list chain inet dockfw rule-1").unwrap();
    let rate_drops: Vec<_> = rule_chain
        .lines()
        .filter(|l| l.contains("limit rate over"))
        .collect();
    assert_eq!(rate_drops.len(), 2, "{rule_chain}");
    for line in rate_drops {
        assert!(
            line.contains("counter packets 0 "),
            "a held connection hit the rate limit: {line}"
        );
    }
    clients.retain(|c| ![cut_v4, cut_v6].contains(&c.probe().src));

    // Opened while the table was deleted: from denied sources, they work
    // until the table is back, then are cut by packets, not by revoke.
    lab.nft("delete table inet dockfw").unwrap();
    let mut while_deleted: Vec<_> = [cut_v4, cut_v6].into_iter().map(held).collect();
    for connection in &mut while_deleted {
        exchange(connection, Open, "table deleted");
    }
    setup.write_policy(&policy(false));
    setup.dockfw(&["apply"]).assert().code(0);
    for connection in &mut while_deleted {
        exchange(connection, TimedOut, "after the apply with revoke = false");
    }
    for connection in clients.iter_mut().chain(&mut host_local) {
        exchange(connection, Open, "after the apply with revoke = false");
    }
    assert_eq!(
        outbound.exchange(Duration::from_secs(5)),
        Open,
        "after the second apply: web -> {far_end}"
    );
    setup.done();
}

/// Outbound and between rules against a real dockerd, IPv4 and IPv6: a
/// container reaches its API and no other server, another container
/// reaches neither; the proxy reaches the app and another container on the
/// same network cannot, also through the port the host publishes for it
/// (docker-proxy); audit mode drops none of it and counts what it would
/// have; containers' addresses come from Docker.
#[test]
#[ignore = "needs root and the Docker lab"]
fn outbound_and_between_rules_hold_real_containers() {
    use ProbeResult::*;
    use dockfw_e2e::Ns;
    use std::net::SocketAddr;
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let setup = setup("dfwt-cliw");
    let lab = &setup.lab;
    for name in ["web", "proxy", "intruder"] {
        lab.run_echo(name, &[], &[(Proto::Tcp, 7000)]).unwrap();
    }
    lab.run_echo("app", &["8082:8000/tcp"], &[(Proto::Tcp, 8000)])
        .unwrap();
    let app = lab.container_addrs("app").unwrap();
    assert_eq!(app.len(), 2, "app has an IPv4 and an IPv6 address: {app:?}");
    let at = |addr: IpAddr, port| SocketAddr::new(addr, port);
    let api = [addr::INET_SOURCES[1].into(), addr::INET6_SOURCES[1].into()].map(|a| at(a, 7000));
    let elsewhere = [addr::INET_SOURCES[2].into(), addr::INET6_SOURCES[2].into()].map(|a| at(a, 7000));
    let _servers: Vec<_> = api
        .iter()
        .chain(&elsewhere)
        .map(|&server| lab.serve_echo(Ns::Internet, server, Proto::Tcp).unwrap())
        .collect();
    let ask = |from: &str, to: SocketAddr| lab.ask_from_container(from, Proto::Tcp, to).unwrap();
    // Docker alone: everything goes.
    assert_eq!(ask("intruder", elsewhere[0]), Open);
    assert_eq!(ask("intruder", at(app[0], 8000)), Open);

    let policy = format!(
        r#"
[guard]
interfaces = ["eth0"]
default = "accept"
outbound = "drop"
between = "drop"

[[outbound]]
name = "web calls the API"
container = "web"
to = ["{}", "{}"]
ports = [7000]

[[between]]
name = "only the proxy reaches the app"
from = {{ container = "proxy" }}
to = {{ container = "app" }}
ports = [8000]
"#,
        api[0].ip(),
        api[1].ip()
    );
    setup.write_policy(&policy);
    let out = setup.dockfw(&["apply"]).assert().code(0).get_output().clone();
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "",
        "Docker turns br_netfilter on"
    );
    for family in 0..2 {
        let app = at(app[family], 8000);
        assert_eq!(ask("web", api[family]), Open, "web -> {}", api[family]);
        assert_eq!(
            ask("web", elsewhere[family]),
            TimedOut,
            "web -> {}",
            elsewhere[family]
        );
        assert_eq!(
            ask("intruder", api[family]),
            TimedOut,
            "intruder -> {}",
            api[family]
        );
        assert_eq!(ask("proxy", app), Open, "proxy -> {app}");
        assert_eq!(ask("intruder", app), TimedOut, "intruder -> {app}");
    }
    let status = setup
        .dockfw(&["status", "--json"])
        .assert()
        .code(0)
        .get_output()
        .clone();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let row = |direction: &str, index: usize| status[direction][index].clone();
    assert_eq!(row("outbound", 0)["packets"], 2, "{status:#}");
    assert_eq!(row("outbound", 0)["containers"], serde_json::json!(["web"]));
    assert_eq!(row("between", 0)["packets"], 2, "{status:#}");
    assert_eq!(
        row("between", 0)["containers"],
        serde_json::json!(["proxy → app"])
    );
    assert!(row("outbound", 1)["packets"].as_u64().unwrap() >= 4, "{status:#}");
    assert!(row("between", 1)["packets"].as_u64().unwrap() >= 2, "{status:#}");
    // A container dialling the port the host publishes for the app:
    // docker-proxy answers (Docker does not NAT it), judged as between.
    for host in [
        HOST,
        IpAddr::V4(addr::DOCKER_BIP.split('/').next().unwrap().parse().unwrap()),
    ] {
        assert_eq!(ask("proxy", at(host, 8082)), Open, "proxy -> {host}:8082");
        assert_eq!(
            ask("intruder", at(host, 8082)),
            TimedOut,
            "intruder -> {host}:8082"
        );
    }
    lab.docker(&["network", "create", "othernet"]).unwrap();
    lab.run_echo_with("far", &["--network", "othernet"], &[(Proto::Tcp, 7000)])
        .unwrap();
    assert_eq!(
        ask("far", at(HOST, 8082)),
        TimedOut,
        "far (another network) -> host:8082"
    );
    let status = setup
        .dockfw(&["status", "--json"])
        .assert()
        .code(0)
        .get_output()
        .clone();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(
        status["between"][0]["packets"], 4,
        "two through docker-proxy: {status:#}"
    );
    let explained = setup
        .dockfw(&[
            "explain",
            "--from-container",
            "intruder",
            "--to-container",
            "app",
            "--port",
            "8000",
        ])
        .assert()
        .code(0)
        .get_output()
        .clone();
    let explained = String::from_utf8_lossy(&explained.stdout);
    assert!(
        explained.contains(", between: drop by default (no rule matched)"),
        "{explained}"
    );

    // Audit mode: nothing dropped, each would-be drop counted once.
    setup.write_policy(&policy.replace("[guard]", "[guard]\nmode = \"audit\""));
    setup.dockfw(&["apply"]).assert().code(0);
    for family in 0..2 {
        assert_eq!(
            ask("web", elsewhere[family]),
            Open,
            "audit: web -> {}",
            elsewhere[family]
        );
        assert_eq!(
            ask("intruder", at(app[family], 8000)),
            Open,
            "audit: intruder -> app"
        );
    }
    let status = setup
        .dockfw(&["status", "--json"])
        .assert()
        .code(0)
        .get_output()
        .clone();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["audit"], true);
    assert_eq!(status["outbound"][1]["packets"], 2, "{status:#}");
    assert_eq!(status["outbound"][1]["audit"], true);
    assert_eq!(status["between"][1]["packets"], 2, "{status:#}");
    setup.done();
}

/// Docker's embedded DNS under `outbound = "drop"`: names of containers on a
/// user-defined network are answered inside the container (127.0.0.11) and
/// keep working; names Docker forwards to the configured resolver leave as
/// the container's own outbound connection, dropped until a rule allows the
/// resolver, as README says.
#[test]
#[ignore = "needs root and the Docker lab"]
fn embedded_dns_answers_container_names_and_forwards_only_what_outbound_rules_allow() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let setup = setup("dfwt-clidns");
    let lab = &setup.lab;
    // The resolver outside: dnsmasq in the internet namespace.
    let resolver = addr::INET_SOURCES[2];
    let dnsmasq = lab
        .ns_cmd(Ns::Internet, "dnsmasq")
        .args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--user=root",
            "--address=/lab.example/192.0.2.99",
        ])
        .arg(format!("--listen-address={resolver}"))
        .arg(format!("--pid-file={}", setup.dir.join("dnsmasq.pid").display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dnsmasq (Debian package dnsmasq-base)");
    let _dnsmasq = KillOnDrop(dnsmasq);
    lab.docker(&["network", "create", "dnsnet"]).unwrap();
    let resolver_arg = resolver.to_string();
    lab.run_echo_with(
        "web",
        &["--network", "dnsnet", "--dns", &resolver_arg],
        &[(Proto::Tcp, 7000)],
    )
    .unwrap();
    lab.run_echo_with("db", &["--network", "dnsnet"], &[(Proto::Tcp, 7000)])
        .unwrap();
    let db = lab.container_addrs("db").unwrap()[0].to_string();
    // busybox nslookup through /etc/resolv.conf (127.0.0.11); at most ~10 s
    // when nothing answers.
    let lookup = |name: &str| -> String {
        let out = lab
            .docker_cmd(["exec", "web", "timeout", "10", "nslookup", name])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let until_resolves = |name: &str, address: &str| {
        let started = std::time::Instant::now();
        loop {
            let answer = lookup(name);
            if answer.contains(address) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{name} never resolved to {address}: {answer}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    // Docker alone: both kinds of names resolve.
    until_resolves("lab.example", "192.0.2.99");
    until_resolves("db", &db);

    let policy = r#"
[guard]
interfaces = ["eth0"]
default = "accept"
outbound = "drop"
"#;
    setup.write_policy(policy);
    setup.dockfw(&["apply"]).assert().code(0);
    until_resolves("db", &db);
    let answer = lookup("lab.example");
    assert!(
        !answer.contains("192.0.2.99"),
        "the forwarded query is web's outbound connection, dropped: {answer}"
    );

    setup.write_policy(&format!(
        r#"{policy}
[[outbound]]
name = "resolvers"
to = ["{resolver}"]
ports = ["53/udp", "53/tcp"]
"#
    ));
    setup.dockfw(&["apply"]).assert().code(0);
    until_resolves("lab.example", "192.0.2.99");
    until_resolves("db", &db);
    let status = setup
        .dockfw(&["status", "--json"])
        .assert()
        .code(0)
        .get_output()
        .clone();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(
        status["outbound"][0]["packets"].as_u64().unwrap() >= 1,
        "{status:#}"
    );
    setup.done();
}
