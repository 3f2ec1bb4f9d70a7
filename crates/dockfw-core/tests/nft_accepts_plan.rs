//! The rendered plan is a valid nft script: `nft -c -f` accepts it, and
//! loading it twice (the second load replaces the first) works. Runs the real
//! `nft` binary in a private network namespace, never the host's ruleset.

use dockfw_core::{Container, Proto, PublishedPort, compile, parse, render};
use std::io::Write;
use std::process::{Command, Stdio};

/// Panics unless this test can run here: root, and the `nft` binary. These
/// tests are `#[ignore]`d so that `cargo test` without privilege skips them;
/// run by hand without what they need, they fail rather than pass.
fn require_root_and_nft() {
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
    assert!(
        root && nft,
        "this test needs root (have: {root}) and the nft binary (have: {nft}); \
         run the privileged tests as root: `cargo xtask test`, or `cargo test -- --include-ignored`"
    );
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
#[ignore = "needs root and the nft binary"]
fn nft_accepts_the_plan_of_a_policy_using_every_field() {
    require_root_and_nft();
    let plan = full_plan();
    let (ok, output) = in_netns("nft -c -f -", &plan);
    assert!(ok, "nft -c rejected the plan:\n{output}\n{plan}");
}

#[test]
#[ignore = "needs root and the nft binary"]
fn the_plan_loads_and_replaces_itself() {
    require_root_and_nft();
    let plan = full_plan();
    let (ok, output) = in_netns(
        "cat > /tmp/plan.$$ && nft -f /tmp/plan.$$ && nft -f /tmp/plan.$$; s=$?; rm -f /tmp/plan.$$; [ $s = 0 ] && nft list table inet dockfw",
        &plan,
    );
    assert!(ok, "nft could not load the plan:\n{output}");
    for expected in [
        "hook forward priority filter - 5; policy accept;",
        "hook input priority filter - 5; policy accept;",
        "iifname \"wg*\" goto docker-proxy",
        "meta l4proto tcp ct original proto-dst @proxy-tcp goto rules",
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
        // Connection labels for revoke, one bit per interface pattern, readable.
        "iifname \"eth0\" ct label set 127 comment \"label for revoke\"",
        "iifname \"wg*\" ct label set 125 comment \"label for revoke\"",
    ] {
        assert!(
            output.contains(expected),
            "{expected:?} missing from the loaded table:\n{output}"
        );
    }
    // Counters on the rules that decide only (one per decision).
    assert!(
        output.contains("counter packets 0 bytes 0"),
        "no counter at all:\n{output}"
    );
    // Loaded once, not twice: the second load replaced the first.
    assert_eq!(output.matches("chain forward {").count(), 1);
    assert_eq!(output.matches("chain input {").count(), 1);
}

/// A TOML string literal holding `text` exactly.
fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

/// A policy named and labelled with the given names: every set is used by a
/// logging rule, so each name reaches a set, a comment and a log prefix.
fn named_policy(table: &str, interfaces: &[String], sets: &[String], rules: &[String]) -> String {
    let list = |items: &[String]| {
        let quoted: Vec<String> = items.iter().map(|i| toml_string(i)).collect();
        format!("[{}]", quoted.join(", "))
    };
    let mut text = format!(
        "[guard]\ninterfaces = {}\ntable = {}\nlog = true\n[sets]\n",
        list(interfaces),
        toml_string(table)
    );
    for (i, set) in sets.iter().enumerate() {
        text += &format!(
            "{} = [\"198.51.100.{}/32\", \"2001:db8::{:x}\"]\n",
            toml_string(set),
            i % 250,
            i + 1
        );
    }
    for (i, name) in rules.iter().enumerate() {
        let set = &sets[i % sets.len()];
        text += &format!(
            "[[rule]]\nname = {}\nfrom = [{}]\nports = [\"{}/tcp\"]\nlog = true\naction = \"{}\"\n",
            toml_string(name),
            toml_string(&format!("@{set}")),
            1000 + i,
            ["allow", "drop", "reject"][i % 3]
        );
    }
    text
}

fn plan_of(text: &str) -> String {
    match parse("names.toml", text) {
        Ok(parsed) => render(&compile(&parsed.policy, &[])),
        Err(error) => panic!("a valid policy was refused: {error:?}\n{text}"),
    }
}

/// Every nftables keyword is refused as a table name, but as a set name (the
/// kernel set is `set-KW-v4`), a rule name and an interface it loads.
#[test]
#[ignore = "needs root and the nft binary"]
fn keywords_load_as_set_rule_and_interface_names() {
    require_root_and_nft();
    let keywords: Vec<String> = dockfw_core::names::nft_keywords()
        .iter()
        .map(|k| k.to_string())
        .collect();
    let interfaces: Vec<String> = keywords.iter().filter(|k| k.len() <= 15).cloned().collect();
    // A policy names at most MAX_CT_LABELLED_PATTERNS interfaces (one connection
    // label bit each): the keywords go in as interfaces in groups of that size.
    for group in interfaces.chunks(dockfw_core::testing::internals::MAX_CT_LABELLED_PATTERNS) {
        let plan = plan_of(&named_policy("dockfw", group, &keywords, &keywords));
        let (ok, output) = in_netns("nft -c -f -", &plan);
        assert!(ok, "nft -c rejected the plan:\n{output}");
    }
}

mod random_names {
    use super::*;
    use dockfw_core::names::check_table_name;
    use dockfw_core::testing::internals::check_rule_name;
    use proptest::prelude::*;

    fn table() -> impl Strategy<Value = String> {
        "[a-zA-Z][a-zA-Z0-9_-]{0,63}".prop_filter("a valid table name", |n| check_table_name(n).is_ok())
    }

    fn set() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z0-9][a-zA-Z0-9_-]{0,31}",
            proptest::sample::select(dockfw_core::names::nft_keywords()).prop_map(String::from),
        ]
    }

    fn rule_name() -> impl Strategy<Value = String> {
        // Printable ASCII, punctuation nft gives meaning to, and non-ASCII.
        "[ -~éß€中#;{}@*'`]{1,40}".prop_filter("a valid rule name", |n| check_rule_name(n).is_ok())
    }

    fn interface() -> impl Strategy<Value = String> {
        prop_oneof!["[a-zA-Z0-9._:;{}@#'-]{1,15}", "[a-zA-Z0-9._:;{}@#'-]{1,14}\\*"]
    }

    /// Several random policies in one nft script (one process per case).
    fn policies() -> impl Strategy<Value = Vec<String>> {
        prop::collection::vec(
            (
                table(),
                prop::collection::btree_set(interface(), 1..4),
                prop::collection::btree_set(set(), 1..4),
                prop::collection::btree_set(rule_name(), 1..5),
            )
                .prop_map(|(table, interfaces, sets, rules)| {
                    let vec = |s: std::collections::BTreeSet<String>| s.into_iter().collect::<Vec<_>>();
                    named_policy(&table, &vec(interfaces), &vec(sets), &vec(rules))
                }),
            1..6,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        #[test]
        #[ignore = "needs root and the nft binary"]
        fn plans_with_random_valid_names_load(texts in policies()) {
            require_root_and_nft();
            let script: String = texts.iter().map(|text| plan_of(text)).collect();
            let (ok, output) = in_netns("nft -c -f -", &script);
            prop_assert!(ok, "nft -c rejected the plan:\n{}\n{}", output, script);
        }
    }
}
