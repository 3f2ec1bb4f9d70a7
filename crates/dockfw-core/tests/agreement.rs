//! The policy evaluator and the ruleset interpreter must agree on every
//! connection, for random policies: the compiled ruleset means what the policy says.

use dockfw_core::{Connection, Container, Proto, PublishedPort, compile, evaluate, evaluate_ruleset, parse};
use proptest::prelude::*;
use proptest::sample::{select, subsequence};

const SOURCES: &[&str] = &[
    "10.0.0.0/8",
    "10.1.0.0/16",
    "10.1.2.3",
    "192.0.2.10-192.0.2.20",
    "0.0.0.0/0",
    "2001:db8::/32",
    "2001:db8::1",
    "2001:db8:1::5-2001:db8:1::9",
    "::/0",
];
const HOSTS: &[&str] = &["203.0.113.5", "203.0.113.6", "203.0.113.0/30", "2001:db8:ff::5"];
const PORTS: &[&str] = &[
    "80",
    "443/tcp",
    "8000-8100",
    "53/udp",
    "1000-2000/udp",
    "22",
    "8081",
    "5432",
];

fn list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("\"{s}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

prop_compose! {
    fn rule_text(index: usize)(
        interfaces in proptest::option::of(subsequence(vec!["eth0", "eth1", "wg*", "wg0"], 1..3)),
        from in proptest::option::of(subsequence([SOURCES, &["@a", "@b", "any"]].concat(), 1..4)),
        to in proptest::option::of(subsequence(HOSTS.to_vec(), 1..3)),
        ports in proptest::option::of(subsequence(PORTS.to_vec(), 1..4)),
        container in proptest::option::of(select(vec!["web", "db", "gone"])),
        action in select(vec!["allow", "drop", "reject"]),
        limited in any::<bool>(),
    ) -> String {
        let mut text = format!("[[rule]]\nname = \"r{index}\"\naction = \"{action}\"\n");
        if let Some(i) = interfaces { text += &format!("interfaces = {}\n", list(&i)); }
        if let Some(f) = from { text += &format!("from = {}\n", list(&f)); }
        if let Some(t) = to { text += &format!("to = {}\n", list(&t)); }
        if let Some(p) = ports { text += &format!("ports = {}\n", list(&p)); }
        if let Some(c) = container { text += &format!("container = \"{c}\"\n"); }
        if limited && action == "allow" { text += "limit = { rate = \"5/second\" }\nmax_connections = 3\n"; }
        text
    }
}

fn policy_text() -> impl Strategy<Value = String> {
    (
        select(vec!["drop", "reject", "accept"]),
        subsequence(SOURCES.to_vec(), 1..3),
        subsequence(SOURCES.to_vec(), 1..3),
        (0..6usize).prop_flat_map(|n| (0..n).map(rule_text).collect::<Vec<_>>()),
    )
        .prop_map(|(default, a, b, rules)| {
            format!(
                "[guard]\ninterfaces = [\"eth0\", \"eth1\", \"wg*\"]\ndefault = \"{default}\"\n[sets]\na = {}\nb = {}\n{}",
                list(&a),
                list(&b),
                rules.concat()
            )
        })
}

fn published(host_addr: Option<&str>, host_port: u16, proto: Proto) -> PublishedPort {
    PublishedPort {
        host_addr: host_addr.map(|a| a.parse().unwrap()),
        host_port,
        container_port: 80,
        proto,
    }
}

fn containers() -> impl Strategy<Value = Vec<Container>> {
    let web = Container {
        name: "web".into(),
        labels: Default::default(),
        addresses: vec![],
        published: vec![
            published(None, 8081, Proto::Tcp),
            published(Some("0.0.0.0"), 443, Proto::Tcp),
            published(Some("203.0.113.6"), 53, Proto::Udp),
        ],
    };
    let db = Container {
        name: "db".into(),
        labels: Default::default(),
        addresses: vec![],
        published: vec![
            published(Some("::"), 5432, Proto::Tcp),
            published(Some("2001:db8:ff::5"), 1500, Proto::Udp),
        ],
    };
    subsequence(vec![web, db], 0..=2)
}

fn connection() -> impl Strategy<Value = Connection> {
    let sources = [
        "10.1.2.3",
        "10.200.0.1",
        "192.0.2.15",
        "192.0.2.21",
        "8.8.8.8",
        "2001:db8::1",
        "2001:db8:1::7",
        "2001:4860::8888",
    ];
    let dialled = [
        "203.0.113.5",
        "203.0.113.6",
        "203.0.113.9",
        "2001:db8:ff::5",
        "2001:db8:ff::6",
    ];
    (
        select(vec!["eth0", "eth1", "wg0", "wg7", "lo", "docker0"]),
        select(sources.to_vec()),
        proptest::option::of(select(dialled.to_vec())),
        select(vec![22u16, 53, 80, 443, 1500, 1999, 5432, 8000, 8050, 8081, 8443]),
        select(vec![Proto::Tcp, Proto::Udp]),
    )
        .prop_map(|(interface, source, dialled, port, proto)| Connection {
            interface: interface.into(),
            source: source.parse().unwrap(),
            dialled: dialled.map(|d| d.parse().unwrap()),
            port,
            proto,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn policy_and_ruleset_agree(text in policy_text(), containers in containers(), connections in proptest::collection::vec(connection(), 20)) {
        let parsed = parse("random.toml", &text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        let ruleset = compile(&parsed.policy, &containers);
        for connection in &connections {
            let by_policy = evaluate(&parsed.policy, &containers, connection);
            let by_ruleset = evaluate_ruleset(&ruleset, connection);
            prop_assert_eq!(&by_policy, &by_ruleset, "connection {:?}\npolicy:\n{}", connection, text);
        }
    }
}
