//! Outbound and between rules and audit mode as the command shows them,
//! without privilege: `explain --from-container/--to-container`, `check`'s
//! warnings about containers, `plan`; Docker is a stand-in on a unix
//! socket listing a few containers with their addresses.

mod common;

use assert_cmd::Command;
use common::fake_docker::{FakeDocker, container_json, publishing_json};
use common::tempdir;

const POLICY: &str = r#"
[guard]
interfaces = ["eth0"]
default = "drop"
outbound = "drop"
between = "drop"

[sets]
partners = ["203.0.113.0/24", "2001:db8:99::/48"]

[[outbound]]
name = "web calls the API"
container = "web"
to = ["203.0.113.99", "2001:db8:99::99"]
ports = [443]

[[outbound]]
name = "partners"
to = "@partners"
action = "reject"

[[between]]
name = "only the proxy reaches the app"
from = { container = "proxy" }
to = { container = "app" }
ports = [8000]
"#;

/// The stand-in's containers: web (IPv4 and IPv6), proxy, app (publishing
/// its port 8000 as 8082) and other on one network.
fn containers() -> Vec<String> {
    vec![
        container_json("web", &[], &["172.17.0.2", "fd00:d0c::2"]),
        container_json("proxy", &[("tier", "proxy")], &["172.18.0.2", "fd00:18::2"]),
        publishing_json("app", &[], &["172.18.0.3", "fd00:18::3"], &[(8082, 8000)]),
        container_json("other", &[], &["172.18.0.4"]),
    ]
}

struct Setup {
    dir: std::path::PathBuf,
    docker: FakeDocker,
}

fn setup(name: &str, policy: &str) -> Setup {
    let dir = tempdir(name);
    std::fs::write(dir.join("policy.toml"), policy).unwrap();
    let docker = FakeDocker::with_containers(&dir.join("docker.sock"), &containers());
    Setup { dir, docker }
}

fn dockfw(setup: &Setup, args: &[&str], code: i32) -> (String, String) {
    let output = Command::cargo_bin("dockfw-nft")
        .unwrap()
        .env_remove("DOCKFW_CONFIG")
        .env_remove("CLICOLOR_FORCE")
        .env("DOCKFW_CACHE_DIR", setup.dir.join("cache"))
        .current_dir(&setup.dir)
        .args(["--docker-host", &setup.docker.host(), "-c", "policy.toml"])
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

fn explain(setup: &Setup, args: &[&str]) -> String {
    let (out, err) = dockfw(setup, &[&["explain"], args].concat(), 0);
    assert_eq!(err, "", "{args:?}");
    out
}

#[test]
fn explain_says_which_rule_decides_a_containers_connection() {
    let s = setup("directions-explain", POLICY);
    let cases: [&[&str]; 9] = [
        &["--from-container", "web", "--to", "203.0.113.99", "--port", "443"],
        &[
            "--from-container",
            "web",
            "--to",
            "2001:db8:99::99",
            "--port",
            "443",
        ],
        &["--from-container", "web", "--to", "198.51.100.1", "--port", "443"],
        &["--from-container", "other", "--to", "203.0.113.7", "--port", "80"],
        &[
            "--from-container",
            "proxy",
            "--to-container",
            "app",
            "--port",
            "8000",
        ],
        &[
            "--from-container",
            "other",
            "--to-container",
            "app",
            "--port",
            "8000",
        ],
        &[
            "--from",
            "172.18.0.9",
            "--to-container",
            "app",
            "--direction",
            "between",
            "--port",
            "8000/udp",
        ],
        &[
            "--from-container",
            "proxy",
            "--to",
            "172.18.0.1",
            "--port",
            "8082",
            "--via",
            "proxied",
        ],
        &[
            "--from-container",
            "other",
            "--to",
            "203.0.113.1",
            "--port",
            "8082",
            "--via",
            "proxied",
        ],
    ];
    let mut all = String::new();
    for args in cases {
        all.push_str(&format!(
            "$ dockfw-nft explain {}\n{}\n",
            args.join(" "),
            explain(&s, args)
        ));
    }
    insta::assert_snapshot!("explain-containers", all);

    // JSON carries the direction and the containers.
    let out = explain(
        &s,
        &[
            "--from-container",
            "proxy",
            "--to-container",
            "app",
            "--port",
            "8000",
            "--json",
        ],
    );
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["direction"], "between");
    assert_eq!(json["from_container"], "proxy");
    assert_eq!(json["container_connection"]["destination"], "172.18.0.3");
    assert_eq!(json["explanation"]["decision"]["decided_by"], "rule");
    // An address of a running container is a connection between containers.
    let out = explain(
        &s,
        &[
            "--from-container",
            "proxy",
            "--to",
            "172.18.0.3",
            "--port",
            "8000",
        ],
    );
    assert!(
        out.contains(", between: allow by rule \"only the proxy reaches the app\""),
        "{out}"
    );
}

#[test]
fn explain_refuses_what_it_cannot_tell() {
    let s = setup("directions-explain-errors", POLICY);
    let (_, err) = dockfw(
        &s,
        &[
            "explain",
            "--from-container",
            "wbe",
            "--to",
            "1.2.3.4",
            "--port",
            "443",
        ],
        2,
    );
    assert!(
        err.contains("container \"wbe\" is not running; did you mean \"web\"?"),
        "{err}"
    );
    let (_, err) = dockfw(&s, &["explain", "--from-container", "web", "--port", "443"], 2);
    assert!(
        err.contains("say where the connection goes: --to ADDR or --to-container NAME"),
        "{err}"
    );
    let (_, err) = dockfw(
        &s,
        &[
            "explain",
            "--from-container",
            "web",
            "--to",
            "1.2.3.4",
            "--in",
            "eth0",
            "--port",
            "443",
        ],
        2,
    );
    assert!(err.contains("--in is for connections from outside"), "{err}");
    let (_, err) = dockfw(
        &s,
        &[
            "explain",
            "--from-container",
            "web",
            "--to",
            "1.2.3.4",
            "--via",
            "routed",
            "--port",
            "443",
        ],
        2,
    );
    assert!(err.contains("--via proxied"), "{err}");
    let (_, err) = dockfw(
        &s,
        &[
            "explain",
            "--from-container",
            "other",
            "--to",
            "2001:db8::1",
            "--port",
            "443",
        ],
        2,
    );
    assert!(err.contains("container \"other\" has no IPv6 address"), "{err}");
    // Usage errors (clap): both --from and --from-container, no source at all.
    dockfw(
        &s,
        &[
            "explain",
            "--from",
            "1.2.3.4",
            "--from-container",
            "web",
            "--port",
            "1",
        ],
        2,
    );
    dockfw(&s, &["explain", "--port", "1"], 2);
    // Without Docker a container has no known address.
    let (_, err) = dockfw(
        &s,
        &[
            "--no-docker",
            "explain",
            "--from-container",
            "web",
            "--to",
            "1.2.3.4",
            "--port",
            "443",
        ],
        2,
    );
    assert!(err.contains("Docker is not known"), "{err}");
}

#[test]
fn explain_asks_about_a_containers_connection_by_address_and_refuses_what_is_no_such_connection() {
    let s = setup("directions-explain-address", POLICY);
    // Without Docker, the hint's way works: the address and the direction.
    let out = explain(
        &s,
        &[
            "--from",
            "172.17.0.2",
            "--to",
            "203.0.113.50",
            "--direction",
            "outbound",
            "--port",
            "443",
        ],
    );
    assert!(out.contains("outbound"), "{out}");
    assert!(out.contains("partners"), "{out}");
    let (out, _) = dockfw(
        &s,
        &[
            "--no-docker",
            "explain",
            "--from",
            "172.17.0.2",
            "--to",
            "198.51.100.1",
            "--direction",
            "outbound",
            "--port",
            "443",
        ],
        0,
    );
    assert!(out.contains("outbound") && out.contains("drop"), "{out}");
    // An outside client is no container: its way to a container is inbound.
    let (_, err) = dockfw(
        &s,
        &[
            "explain",
            "--from",
            "198.51.100.10",
            "--to-container",
            "app",
            "--port",
            "8000",
        ],
        2,
    );
    assert!(err.contains("is no running container's address"), "{err}");
    // A container's connection to itself never leaves it.
    let out = explain(
        &s,
        &[
            "--from-container",
            "app",
            "--to-container",
            "app",
            "--port",
            "8000",
        ],
    );
    assert!(out.contains("stays inside it"), "{out}");
    // Outbound to a running container's address is between containers.
    let (_, err) = dockfw(
        &s,
        &[
            "explain",
            "--from-container",
            "proxy",
            "--to",
            "172.18.0.3",
            "--direction",
            "outbound",
            "--port",
            "8000",
        ],
        2,
    );
    assert!(err.contains("is container \"app\"'s address"), "{err}");
    let (_, err) = dockfw(
        &s,
        &[
            "explain",
            "--from-container",
            "web",
            "--to",
            "1.2.3.4",
            "--direction",
            "inbound",
            "--port",
            "443",
        ],
        2,
    );
    assert!(
        err.contains("--direction inbound is a connection from outside"),
        "{err}"
    );
    // Loopback (Docker's DNS at 127.0.0.11) never leaves the container.
    let out = explain(
        &s,
        &[
            "--from-container",
            "web",
            "--to",
            "127.0.0.11",
            "--port",
            "53/udp",
        ],
    );
    assert!(
        out.contains("not judged") && out.contains("inside the container"),
        "{out}"
    );
    // An IPv4-mapped IPv6 address is the IPv4 address on the wire.
    let mapped = explain(
        &s,
        &[
            "--from-container",
            "web",
            "--to",
            "::ffff:203.0.113.99",
            "--port",
            "443",
        ],
    );
    let plain = explain(
        &s,
        &["--from-container", "web", "--to", "203.0.113.99", "--port", "443"],
    );
    assert_eq!(mapped, plain);
    // Link-local addresses name no container: dropped between containers
    // whatever the rules say (Docker reports none, so no rule could match).
    let out = explain(
        &s,
        &[
            "--from",
            "fe80::42:acff:fe12:4",
            "--to-container",
            "app",
            "--direction",
            "between",
            "--port",
            "8000",
        ],
    );
    assert!(out.contains(": drop (IPv6 link-local"), "{out}");
    // Without --direction: a link-local or broadcast destination stays on
    // the bridge, between containers.
    let out = explain(
        &s,
        &["--from-container", "proxy", "--to", "fe80::1", "--port", "8000"],
    );
    assert!(out.contains(": drop (IPv6 link-local"), "{out}");
    let out = explain(
        &s,
        &[
            "--from-container",
            "web",
            "--to",
            "255.255.255.255",
            "--port",
            "67/udp",
        ],
    );
    assert!(out.contains(": drop (a broadcast or multicast"), "{out}");
}

#[test]
fn explain_in_audit_mode_says_nothing_is_denied() {
    let s = setup(
        "directions-audit",
        &POLICY.replace("[guard]", "[guard]\nmode = \"audit\""),
    );
    let out = explain(
        &s,
        &[
            "--from-container",
            "other",
            "--to-container",
            "app",
            "--port",
            "8000",
        ],
    );
    assert!(
        out.starts_with(
            "other (172.18.0.4) → app (172.18.0.3) port 8000/tcp, between: drop by default (no rule matched) (audit mode: only logged and counted; the connection goes on)"
        ),
        "{out}"
    );
    let (out, _) = dockfw(&s, &["check"], 0);
    assert!(
        out.contains("note: audit mode: every drop and reject is only logged"),
        "{out}"
    );
    let (plan, _) = dockfw(&s, &["plan"], 0);
    assert!(
        plan.contains("log prefix \"dockfw between-default would-drop: \" group 23"),
        "{plan}"
    );
    assert!(
        !plan.contains(" drop comment"),
        "nothing drops in audit mode: {plan}"
    );
    assert!(
        !plan.contains(" reject with "),
        "nothing rejects in audit mode: {plan}"
    );
}

#[test]
fn check_points_at_containers_that_do_not_run() {
    let policy = format!(
        "{POLICY}\n[[outbound]]\nname = \"typo\"\ncontainer = \"wbe\"\n\n[[between]]\nname = \"typo too\"\nto = {{ container = \"ap\" }}\n"
    );
    let s = setup("directions-check", &policy);
    let (out, err) = dockfw(&s, &["check"], 0);
    assert!(
        out.contains("ok: 0 rules, 3 outbound rules, 2 between rules, 1 set, 2 warnings"),
        "{out}"
    );
    assert!(
        err.contains(
            "policy.toml:30:13: warning: rule \"typo\": container \"wbe\" is not running\n  hint: did you mean \"web\"?"
        ),
        "{err}"
    );
    assert!(
        err.contains("policy.toml:34:20: warning: rule \"typo too\": to: container \"ap\" is not running\n  hint: did you mean \"app\"?"),
        "{err}"
    );
    // Between containers there is no NAT: the published host port is no
    // port one container dials another at.
    let host_port = format!(
        "{POLICY}\n[[between]]\nname = \"host port\"\nfrom = {{ container = \"proxy\" }}\nto = {{ container = \"app\" }}\nports = [8082]\n"
    );
    let h = setup("directions-check-host-port", &host_port);
    let (_, err) = dockfw(&h, &["check"], 0);
    assert!(
        err.contains(
            "warning: rule \"host port\": 8082/tcp is the host port app publishes; its container port is 8000\n  \
             hint: between containers there is no NAT: a container dials the other's container port; write 8000"
        ),
        "{err}"
    );
    // The plan holds the running containers' addresses.
    let (plan, _) = dockfw(&s, &["plan"], 0);
    for needle in [
        "ip saddr @between-1-from-v4 ip daddr @between-1-to-v4 meta l4proto tcp th dport 8000 goto between-1",
        "elements = { 172.18.0.2 }",
        "elements = { fd00:d0c::2 }",
    ] {
        assert!(plan.contains(needle), "{needle}: {plan}");
    }
}
