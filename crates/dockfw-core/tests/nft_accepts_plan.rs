//! The rendered plan is a valid nft script: `nft -c -f` accepts it, and
//! loading it twice (the second load replaces the first) works. Runs the real
//! `nft` binary in a private network namespace, never the host's ruleset.

use dockfw_core::{Container, Proto, PublishedPort, compile, parse, render};
use std::io::Write;
use std::process::{Command, Stdio};

/// Whether this test can run here; under CI it must.
fn can_run() -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    let nft = Command::new("nft")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if root && nft {
        return true;
    }
    let why = format!("needs root (have: {root}) and the nft binary (have: {nft})");
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "cannot run under CI: {why}; .ci/run installs nftables and runs as root"
    );
    eprintln!("skipped: {why}");
    false
}

/// Runs `script` in a fresh network namespace; returns (success, output).
fn in_netns(script: &str, input: &str) -> (bool, String) {
    let mut child = Command::new("unshare")
        .args(["--net", "sh", "-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("unshare runs");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn full_plan() -> String {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/full.toml")).unwrap();
    let policy = parse("full.toml", &text).unwrap().policy;
    let port = |host_addr: Option<&str>, host_port, container_port, proto| PublishedPort {
        host_addr: host_addr.map(|a| a.parse().unwrap()),
        host_port,
        container_port,
        proto,
    };
    let labels = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let django = Container {
        name: "django".into(),
        labels: labels(&[("com.example.tier", "web"), ("com.example.env", "prod")]),
        addresses: vec!["172.17.0.2".parse().unwrap(), "fd00:d0c::2".parse().unwrap()],
        published: vec![
            port(None, 8443, 443, Proto::Tcp),
            port(Some("203.0.113.6"), 8443, 443, Proto::Tcp),
        ],
    };
    let postgres = Container {
        name: "postgres".into(),
        labels: labels(&[("com.example.tier", "db"), ("com.example.env", "prod")]),
        addresses: vec!["172.18.0.2".parse().unwrap()],
        published: vec![
            port(Some("0.0.0.0"), 5432, 5432, Proto::Tcp),
            port(Some("2001:db8::5"), 5353, 53, Proto::Udp),
        ],
    };
    render(&compile(&policy, &[django, postgres]))
}

#[test]
fn nft_accepts_the_plan_of_a_policy_using_every_field() {
    if !can_run() {
        return;
    }
    let plan = full_plan();
    let (ok, output) = in_netns("nft -c -f -", &plan);
    assert!(ok, "nft -c rejected the plan:\n{output}\n{plan}");
}

#[test]
fn the_plan_loads_and_replaces_itself() {
    if !can_run() {
        return;
    }
    let plan = full_plan();
    let (ok, output) = in_netns(
        "cat > /tmp/plan.$$ && nft -f /tmp/plan.$$ && nft -f /tmp/plan.$$; s=$?; rm -f /tmp/plan.$$; [ $s = 0 ] && nft list table inet dockfw",
        &plan,
    );
    assert!(ok, "nft could not load the plan:\n{output}");
    for expected in [
        "hook forward priority filter - 5; policy accept;",
        "hook input priority filter - 5; policy accept;",
        "iifname \"wg*\" counter packets 0 bytes 0 goto docker-proxy",
        "meta l4proto tcp ct original proto-dst @proxy-tcp counter packets 0 bytes 0 goto rules",
        "meta nfproto ipv6 ct original ip6 daddr @proxy-addr-2-v6 meta l4proto udp ct original proto-dst @proxy-addr-2-udp",
        "ct original ip daddr @not-containers-v4",
        "ip6 saddr @rule-2-from-v6 ct original ip6 daddr @rule-2-routed-1-v6 meta l4proto tcp ct original proto-dst 443",
        "ct original ip daddr @rule-1-to-v4",
        "ct original proto-dst @rule-1-tcp",
        "update @rule-1-rate-v4 { ip saddr limit rate over 20/second burst 40 packets }",
        "add @rule-1-conns-v6 { ip6 saddr ct count over 100 }",
        "comment \"admin panel\"",
        "reject with icmpx admin-prohibited",
        "elements = { 80, 443, 8000-8100 }",
    ] {
        assert!(
            output.contains(expected),
            "{expected:?} missing from the loaded table:\n{output}"
        );
    }
    // Loaded once, not twice: the second load replaced the first.
    assert_eq!(output.matches("chain forward {").count(), 1);
    assert_eq!(output.matches("chain input {").count(), 1);
}
