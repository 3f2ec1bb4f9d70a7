//! Docker 29 with `--firewall-backend=nftables`, reproduced: Docker's own
//! tables `ip docker-bridges` and `ip6 docker-bridges` (written after moby's
//! documentation and source, see `fixtures/docker29-nftables.nft`) loaded in
//! a namespace standing for the Docker host, a container namespace behind
//! the bridge `docker0` serving the published port (8080 -> 80), and an
//! outside namespace with an allowed and a denied client address of each
//! family. Docker itself is a stand-in listing that container; dockfw runs
//! as the binary, with `--netns`. The host's own ruleset is never touched.
//! Needs root: `#[ignore]`d, run by `cargo xtask test` as root.

mod common;

use assert_cmd::Command;
use common::fake_docker::{FakeDocker, publishing_json};
use common::packets::{Probe, ip, nft_counter, prepare, probe_from, serve, veth};
use common::tempdir;
use dockfw_nft::testing::TestNetns;
use std::path::PathBuf;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/docker29-nftables.nft"
);

/// The container's addresses and the outside clients.
const WEB: (&str, &str) = ("172.17.0.2", "fd00:17::2");
const ALLOWED: (&str, &str) = ("10.9.0.2", "fd00:9::2");
const DENIED: (&str, &str) = ("10.9.0.3", "fd00:9::3");
/// The host's address on the outside link.
const HOST: (&str, &str) = ("10.9.0.1", "fd00:9::1");

struct Lab {
    host: TestNetns,
    outside: TestNetns,
    _web: TestNetns,
    dir: PathBuf,
    docker: FakeDocker,
}

impl Lab {
    fn new(name: &str) -> Self {
        let host = TestNetns::new().unwrap();
        let outside = TestNetns::new().unwrap();
        let web = TestNetns::new().unwrap();
        for ns in [&host, &outside, &web] {
            prepare(ns);
        }
        // Docker's nftables backend does not enable forwarding itself.
        host.exec("sysctl", ["-qw", "net.ipv4.ip_forward=1"]);
        host.exec("sysctl", ["-qw", "net.ipv6.conf.all.forwarding=1"]);
        host.exec("sysctl", ["-qw", "net.bridge.bridge-nf-call-iptables=1"]);
        host.exec("sysctl", ["-qw", "net.bridge.bridge-nf-call-ip6tables=1"]);
        ip(&host, &["link", "add", "docker0", "type", "bridge"]);
        ip(&host, &["addr", "add", "172.17.0.1/16", "dev", "docker0"]);
        ip(
            &host,
            &["addr", "add", "fd00:17::1/64", "dev", "docker0", "nodad"],
        );
        ip(&host, &["link", "set", "docker0", "up"]);
        veth(
            &host,
            "veth0",
            &[],
            &web,
            "eth0",
            &["172.17.0.2/16", "fd00:17::2/64"],
        );
        ip(&host, &["link", "set", "veth0", "master", "docker0"]);
        ip(&web, &["route", "add", "default", "via", "172.17.0.1"]);
        ip(&web, &["-6", "route", "add", "default", "via", "fd00:17::1"]);
        veth(
            &host,
            "ext0",
            &["10.9.0.1/24", "fd00:9::1/64"],
            &outside,
            "eth0",
            &["10.9.0.2/24", "10.9.0.3/24", "fd00:9::2/64", "fd00:9::3/64"],
        );
        // The outside can route to the containers' subnet (a neighbour
        // on the same link could): Docker's raw-PREROUTING drop meets it.
        ip(&outside, &["route", "add", "172.17.0.0/16", "via", HOST.0]);
        ip(&outside, &["-6", "route", "add", "fd00:17::/64", "via", HOST.1]);
        // The container's port 80 (published as 8080) and 81 (not published).
        serve(&web, &[WEB.0, WEB.1], 80);
        serve(&web, &[WEB.0, WEB.1], 81);
        host.exec("nft", ["-f", FIXTURE]);

        let dir = tempdir(name);
        let docker = FakeDocker::with_containers(
            &dir.join("docker.sock"),
            &[publishing_json("web", &[], &[WEB.0, WEB.1], &[(8080, 80)])],
        );
        Self {
            host,
            outside,
            _web: web,
            dir,
            docker,
        }
    }

    fn dockfw(&self, args: &[&str], code: i32) -> (String, String) {
        let output = Command::cargo_bin("dockfw-nft")
            .unwrap()
            .env_remove("DOCKFW_CONFIG")
            .env_remove("CLICOLOR_FORCE")
            .env("DOCKFW_CACHE_DIR", self.dir.join("cache"))
            .current_dir(&self.dir)
            .args(["--netns", self.host.name(), "--docker-host", &self.docker.host()])
            .args(["-c", "policy.toml"])
            .args(args)
            .assert()
            .code(code)
            .get_output()
            .clone();
        (
            String::from_utf8(output.stdout).unwrap(),
            String::from_utf8(output.stderr).unwrap(),
        )
    }

    /// What a client at `from` meets dialling `to:port`.
    fn probe(&self, from: &str, to: &str, port: u16) -> Probe {
        probe_from(&self.outside, Some(from), to, port)
    }

    /// Docker's counter of the rule commented `comment` in `chain` of both
    /// its tables.
    fn docker_counter(&self, chain: &str, comment: &str) -> u64 {
        ["ip docker-bridges", "ip6 docker-bridges"]
            .iter()
            .map(|table| nft_counter(&self.host, table, chain, comment))
            .sum()
    }
}

const POLICY: &str = r#"
[guard]
interfaces = ["ext0"]
default = "drop"

[[rule]]
name = "web for the office"
container = "web"
from = ["10.9.0.2", "fd00:9::2"]
"#;

/// Packets counted by the status row called `name`.
fn packets(status: &serde_json::Value, name: &str) -> u64 {
    let rows = status["rules"]
        .as_array()
        .unwrap()
        .iter()
        .chain(status["default"].as_object().map(|_| &status["default"]));
    rows.into_iter()
        .find(|row| row["name"] == name)
        .unwrap_or_else(|| panic!("no row {name}: {status:#}"))["packets"]
        .as_u64()
        .unwrap()
}

#[test]
#[ignore = "needs root"]
fn docker29_nftables_backend_our_verdicts_decide_and_dockers_drops_still_apply() {
    let lab = Lab::new("compat-docker-nft");
    let families = [
        (4, HOST.0, ALLOWED.0, DENIED.0, WEB.0),
        (6, HOST.1, ALLOWED.1, DENIED.1, WEB.1),
    ];

    // Docker alone publishes to everyone, and drops direct access to the
    // container's address in raw-PREROUTING (before any forward chain).
    for (family, host, allowed, denied, web) in families {
        assert_eq!(
            lab.probe(allowed, host, 8080),
            Probe::Served,
            "IPv{family}: Docker alone, allowed"
        );
        assert_eq!(
            lab.probe(denied, host, 8080),
            Probe::Served,
            "IPv{family}: Docker alone, denied"
        );
        assert_eq!(
            lab.probe(allowed, web, 80),
            Probe::TimedOut,
            "IPv{family}: direct access"
        );
    }
    assert_eq!(lab.docker_counter("raw-PREROUTING", "SUBNET DROP EXTERNAL"), 2);

    std::fs::write(lab.dir.join("policy.toml"), POLICY).unwrap();
    let (out, err) = lab.dockfw(&["apply"], 0);
    assert!(out.contains("applied"), "{out}");
    // Docker's chains hook at filter (0), dstnat, srcnat and raw: none at ours (-5).
    assert_eq!(err, "", "no warning beside Docker's nftables tables");

    for (family, host, allowed, denied, web) in families {
        assert_eq!(
            lab.probe(allowed, host, 8080),
            Probe::Served,
            "IPv{family}: allowed source"
        );
        assert_eq!(
            lab.probe(denied, host, 8080),
            Probe::TimedOut,
            "IPv{family}: denied source, though Docker's filter-FORWARD accepts it"
        );
        // Our rule admits the allowed source to web's container port at its
        // own address too (the routed path), but our allow is not final:
        // Docker's raw-PREROUTING drop runs first and still applies.
        assert_eq!(
            lab.probe(allowed, web, 80),
            Probe::TimedOut,
            "IPv{family}: direct access, allowed source"
        );
        // An unpublished port: dropped there as well.
        assert_eq!(
            lab.probe(allowed, web, 81),
            Probe::TimedOut,
            "IPv{family}: unpublished port"
        );
    }
    assert_eq!(
        lab.docker_counter("raw-PREROUTING", "SUBNET DROP EXTERNAL"),
        2 + 4
    );
    let (out, _) = lab.dockfw(&["status", "--json"], 0);
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["matches_policy"], true, "{status:#}");
    // Two connections served; the two denied SYNs dropped by the default
    // (no retransmission within the probe's timeout); the direct probes never
    // reached our forward chain.
    assert_eq!(packets(&status, "web for the office"), 2, "{status:#}");
    assert_eq!(packets(&status, "default"), 2, "{status:#}");

    // `--bridge-accept-fwmark=0x1/0x3`: a table of the admin's marks every
    // packet from outside before Docker's chains, as a DOCKER-USER accept
    // migrated to nftables would. Docker then accepts on the mark, but our
    // drop came first and is final; and a mark set on the forward hook
    // comes too late for Docker's raw drop.
    lab.host.exec(
        "nft",
        ["add table inet admin-marks; \
             add chain inet admin-marks forward { type filter hook forward priority filter - 10; }; \
             add rule inet admin-marks forward iifname \"ext0\" meta mark set 0x1"],
    );
    let marked_before = lab.docker_counter("filter-forward-in__docker0", "ALLOW FW MARK");
    for (family, host, allowed, denied, web) in families {
        assert_eq!(
            lab.probe(allowed, host, 8080),
            Probe::Served,
            "IPv{family}: marked, allowed"
        );
        assert_eq!(
            lab.probe(denied, host, 8080),
            Probe::TimedOut,
            "IPv{family}: marked, denied"
        );
        assert_eq!(
            lab.probe(allowed, web, 81),
            Probe::TimedOut,
            "IPv{family}: marked, direct"
        );
    }
    // Only the allowed connections' first packets reached Docker's mark rule.
    assert_eq!(
        lab.docker_counter("filter-forward-in__docker0", "ALLOW FW MARK"),
        marked_before + 2
    );

    // Without our table, Docker's rules alone decide again.
    let (_, _) = lab.dockfw(&["remove"], 0);
    for (family, host, _, denied, _) in families {
        assert_eq!(
            lab.probe(denied, host, 8080),
            Probe::Served,
            "IPv{family}: removed, denied"
        );
    }
}
