//! Compilation: layout, sets, containers, determinism, normalisation.

use dockfw_core::eval::Packet;
use dockfw_core::interval::Interval;
use dockfw_core::layout::{
    CHAIN_DEFAULT, CHAIN_FORWARD, CHAIN_INPUT, CHAIN_LABEL, CHAIN_PROXY, CHAIN_RULES, CHAIN_UNTRACKED,
};
use dockfw_core::ruleset::{
    Chain, CtState, Family, Hook, IfName, Match, PortMatch, RejectWith, SetElements, Statement, Verdict,
};
use dockfw_core::testing::internals::{CHAIN_GUARDED, simulate_packet};
use dockfw_core::{
    Action, Connection, Container, Decision, Proto, PublishedPort, Ruleset, Via, compile, parse, render,
};
use std::net::{Ipv4Addr, Ipv6Addr};

fn compiled(text: &str, containers: &[Container]) -> Ruleset {
    compile(&parse("p.toml", text).expect("valid policy").policy, containers)
}

const GUARD: &str = "[guard]\ninterfaces = [\"eth0\", \"wg*\"]\n";

fn policy_rules(ruleset: &Ruleset, comment: &str) -> Vec<Vec<Match>> {
    let chain = ruleset.chain(CHAIN_RULES).unwrap();
    chain
        .rules
        .iter()
        .filter(|r| r.comment == comment)
        .map(|r| r.matches.clone())
        .collect()
}

#[test]
fn layout_hooks_before_docker_and_judges_only_new_published_traffic() {
    let ruleset = compiled(
        &format!("{GUARD}default = \"reject\"\nlog = true\npriority = -7\ntable = \"fw\"\n"),
        &[],
    );
    assert_eq!(ruleset.table, "fw");
    let forward = ruleset.chain(CHAIN_FORWARD).unwrap();
    let hook = forward.hook.unwrap();
    assert_eq!((hook.hook, hook.priority), (Hook::Forward, -7));
    // First, per guarded interface, established connections no dockfw
    // rules chain judged (no label), client to server: judged now.
    for (rule, interface) in forward.rules[..2]
        .iter()
        .zip([IfName::Exact("eth0".into()), IfName::Prefix("wg".into())])
    {
        assert_eq!(
            rule.matches,
            vec![
                Match::CtState(CtState::Established),
                Match::CtDirectionOriginal,
                Match::CtUnlabelled,
                Match::IifName(interface),
            ]
        );
        assert_eq!(rule.verdict, Some(Verdict::Goto(CHAIN_GUARDED.into())));
    }
    let forward_unjudged = forward.rules[0].matches[..3].to_vec();
    let forward = &forward.rules[2..];
    // Only established and related: untracked packets are judged below.
    assert_eq!(
        forward[0].matches,
        vec![Match::CtState(CtState::EstablishedOrRelated)]
    );
    assert_eq!(forward[0].verdict, Some(Verdict::Accept));
    assert_eq!(
        forward[1].matches,
        vec![Match::IifName(IfName::Exact("eth0".into()))]
    );
    assert_eq!(
        forward[2].matches,
        vec![Match::IifName(IfName::Prefix("wg".into()))]
    );
    assert!(
        forward[1..]
            .iter()
            .all(|r| r.verdict == Some(Verdict::Goto(CHAIN_GUARDED.into())))
    );
    let guarded = ruleset.chain(CHAIN_GUARDED).unwrap();
    // Published by Docker first (the common path; an untracked packet has no
    // `ct status`, so it never matches).
    assert_eq!(guarded.rules[0].matches, vec![Match::CtStatusDnat]);
    assert_eq!(guarded.rules[0].verdict, Some(Verdict::Goto(CHAIN_RULES.into())));
    // Untracked packets routed to a Docker bridge cannot be judged: dropped.
    for (rule, bridge) in guarded.rules[1..3]
        .iter()
        .zip([IfName::Exact("docker0".into()), IfName::Prefix("br-".into())])
    {
        assert_eq!(
            rule.matches,
            vec![Match::CtState(CtState::Untracked), Match::OifName(bridge)]
        );
        assert_eq!(rule.verdict, Some(Verdict::Goto(CHAIN_UNTRACKED.into())));
    }
    let untracked = ruleset.chain(CHAIN_UNTRACKED).unwrap();
    assert_eq!(untracked.rules.len(), 1);
    assert_eq!(untracked.rules[0].matches, vec![]);
    assert_eq!(untracked.rules[0].verdict, Some(Verdict::Drop));
    let guarded = &guarded.rules[3..];
    assert_eq!(
        guarded[0].matches,
        vec![Match::OifName(IfName::Exact("docker0".into()))]
    );
    assert_eq!(
        guarded[1].matches,
        vec![Match::OifName(IfName::Prefix("br-".into()))]
    );
    // The input chain (docker-proxy) hooks in at the same priority, and
    // sends the same guarded interfaces on to the docker-proxy chain.
    let input = ruleset.chain(CHAIN_INPUT).unwrap();
    let hook = input.hook.unwrap();
    assert_eq!((hook.hook, hook.priority), (Hook::Input, -7));
    // The same late judging first, to the docker-proxy chain.
    for rule in &input.rules[..2] {
        assert_eq!(rule.matches[..3], forward_unjudged[..]);
        assert_eq!(rule.verdict, Some(Verdict::Goto(CHAIN_PROXY.into())));
    }
    let input = Chain {
        rules: input.rules[2..].to_vec(),
        ..input.clone()
    };
    assert_eq!(
        input.rules[0].matches,
        vec![Match::CtState(CtState::EstablishedOrRelated)]
    );
    assert_eq!(input.rules[0].verdict, Some(Verdict::Accept));
    assert_eq!(
        input.rules[1..].iter().map(|r| &r.matches).collect::<Vec<_>>(),
        [
            &vec![Match::IifName(IfName::Exact("eth0".into()))],
            &vec![Match::IifName(IfName::Prefix("wg".into()))]
        ]
    );
    assert!(
        input.rules[1..]
            .iter()
            .all(|r| r.verdict == Some(Verdict::Goto(CHAIN_PROXY.into())))
    );
    // With no container known, no port is docker-proxy's: the input chain judges nothing.
    assert!(ruleset.chain(CHAIN_PROXY).unwrap().rules.is_empty());
    assert_eq!(ruleset.chains.iter().filter(|c| c.hook.is_some()).count(), 2);
    // Default fate: counted, logged (rate-limited), rejected (reset for TCP, ICMP otherwise).
    let default = ruleset.chain(CHAIN_DEFAULT).unwrap();
    assert_eq!(default.rules.len(), 4);
    assert_eq!(
        default.rules[1].statements,
        vec![Statement::Log {
            prefix: "dockfw default-fate reject: ".into(),
            group: Some(dockfw_core::policy::DEFAULT_LOG_GROUP),
        }]
    );
    assert!(matches!(default.rules[1].matches[..], [Match::Limit { .. }]));
    assert_eq!(default.rules[2].matches, vec![Match::L4Proto(Proto::Tcp)]);
    assert_eq!(
        default.rules[2].verdict,
        Some(Verdict::Reject(RejectWith::TcpReset))
    );
    assert_eq!(
        default.rules[3].verdict,
        Some(Verdict::Reject(RejectWith::IcmpxAdminProhibited))
    );
}

#[test]
fn each_alternative_is_one_rule_and_families_are_split() {
    let ruleset = compiled(
        &format!(
            "{GUARD}[sets]\nadmins = [\"203.0.113.10\", \"2001:db8::10\"]\n\
             [[rule]]\nname = \"admin\"\ninterfaces = [\"eth0\", \"wg*\"]\nfrom = \"@admins\"\nports = [\"22\", \"8000-8100\", \"60000/udp\", \"61000/udp\"]\n"
        ),
        &[],
    );
    let rules = policy_rules(&ruleset, "admin");
    // 2 interfaces × 2 families × 2 protocols.
    assert_eq!(rules.len(), 8);
    assert_eq!(
        rules[0],
        vec![
            Match::IifName(IfName::Exact("eth0".into())),
            Match::NfProto(Family::Ipv4),
            Match::SourceIn {
                family: Family::Ipv4,
                set: "set-admins-v4".into()
            },
            Match::L4Proto(Proto::Tcp),
            Match::DialledPort(PortMatch::Set("rule-1-tcp".into())),
        ]
    );
    assert!(
        rules
            .iter()
            .any(|m| m.contains(&Match::DialledPort(PortMatch::Set("rule-1-udp".into()))))
    );
    assert_eq!(
        ruleset.set("set-admins-v6").unwrap().elements,
        SetElements::Ipv6Addrs(vec![Interval::single("2001:db8::10".parse().unwrap())])
    );
    assert_eq!(
        ruleset.set("rule-1-tcp").unwrap().elements,
        SetElements::Port(vec![Interval::single(22), Interval::new(8000, 8100).unwrap()])
    );
    // Every alternative jumps to the rule's own chain, which counts and
    // decides: a plain allow's first rule counts and labels the connection
    // (one counter per decision), the second accepts.
    let chain = ruleset.chain("rule-1").unwrap();
    assert_eq!(chain.rules.len(), 2);
    assert_eq!(chain.rules.first().unwrap().matches, vec![]);
    assert_eq!(
        chain.rules.first().unwrap().verdict,
        Some(Verdict::Jump(CHAIN_LABEL.into()))
    );
    assert_eq!(chain.rules.last().unwrap().verdict, Some(Verdict::Accept));
}

#[test]
fn single_ports_and_ranges_are_inline_and_named_sets_are_shared() {
    let ruleset = compiled(
        &format!(
            "{GUARD}[sets]\nlan = [\"10.0.0.0/8\"]\n\
             [[rule]]\nfrom = \"@lan\"\nports = 80\n[[rule]]\nfrom = \"@lan\"\nports = \"1000-2000/udp\"\n"
        ),
        &[],
    );
    assert_eq!(
        policy_rules(&ruleset, "rule 1")[0].last(),
        Some(&Match::DialledPort(PortMatch::Single(80)))
    );
    assert_eq!(
        policy_rules(&ruleset, "rule 2")[0].last(),
        Some(&Match::DialledPort(PortMatch::Range(1000, 2000)))
    );
    let lan_sets = ruleset
        .sets
        .iter()
        .filter(|s| s.name.starts_with("set-lan"))
        .count();
    assert_eq!(
        lan_sets, 1,
        "one kernel set for a named set used twice, and only its IPv4 half"
    );
}

#[test]
fn address_lists_are_normalised_per_family() {
    let ruleset = compiled(
        &format!(
            "{GUARD}[[rule]]\nfrom = [\"10.0.0.0/24\", \"10.0.1.0/24\", \"10.0.0.5\", \"10.0.3.0-10.0.3.9\", \"10.0.3.10\", \
             \"2001:db8::/64\", \"2001:db8:0:1::/64\", \"2001:db8::7\"]\n"
        ),
        &[],
    );
    let v4 = &ruleset.set("rule-1-from-v4").unwrap().elements;
    let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
    assert_eq!(
        *v4,
        SetElements::Ipv4(vec![
            Interval::new(ip("10.0.0.0"), ip("10.0.1.255")).unwrap(),
            Interval::new(ip("10.0.3.0"), ip("10.0.3.10")).unwrap(),
        ])
    );
    let ip6 = |s: &str| s.parse::<Ipv6Addr>().unwrap();
    assert_eq!(
        ruleset.set("rule-1-from-v6").unwrap().elements,
        SetElements::Ipv6(vec![
            Interval::new(ip6("2001:db8::"), ip6("2001:db8:0:1:ffff:ffff:ffff:ffff")).unwrap()
        ])
    );
}

#[test]
fn a_family_the_rule_cannot_match_is_left_out() {
    let ruleset = compiled(
        &format!(
            "{GUARD}[[rule]]\nfrom = [\"10.0.0.0/8\"]\nto = [\"2001:db8::1\"]\n[[rule]]\nfrom = [\"10.0.0.0/8\"]\n"
        ),
        &[],
    );
    assert!(
        policy_rules(&ruleset, "rule 1").is_empty(),
        "IPv4 sources never dial an IPv6 address"
    );
    assert_eq!(policy_rules(&ruleset, "rule 2").len(), 1);
    assert!(ruleset.set("rule-2-from-v6").is_none());
}

fn django() -> Container {
    Container {
        name: "django".into(),
        labels: Default::default(),
        addresses: vec![],
        published: vec![
            PublishedPort {
                host_addr: None,
                host_port: 8081,
                container_port: 8000,
                proto: Proto::Tcp,
            },
            PublishedPort {
                host_addr: Some("0.0.0.0".parse().unwrap()),
                host_port: 8443,
                container_port: 443,
                proto: Proto::Tcp,
            },
            PublishedPort {
                host_addr: Some("203.0.113.6".parse().unwrap()),
                host_port: 5353,
                container_port: 53,
                proto: Proto::Udp,
            },
        ],
    }
}

#[test]
fn container_rules_match_the_published_host_ports() {
    let text = format!("{GUARD}[[rule]]\nname = \"app\"\ncontainer = \"django\"\naction = \"reject\"\n");
    // Not running: the rule matches nothing, but its chain (and counter) exist.
    let absent = compiled(&text, &[]);
    assert!(policy_rules(&absent, "app").is_empty());
    assert!(absent.chain("rule-1").is_some());

    let present = compiled(&text, &[django()]);
    let rules = policy_rules(&present, "app");
    assert_eq!(rules.len(), 3, "{rules:#?}");
    assert_eq!(
        rules[0],
        vec![
            Match::L4Proto(Proto::Tcp),
            Match::DialledPort(PortMatch::Single(8081))
        ]
    );
    assert_eq!(
        rules[1][..2],
        [
            Match::NfProto(Family::Ipv4),
            Match::DialledAddrIn {
                family: Family::Ipv4,
                set: "rule-1-to-2-v4".into()
            }
        ]
    );
    assert_eq!(rules[1][3], Match::DialledPort(PortMatch::Single(8443)));
    assert_eq!(rules[2][3], Match::DialledPort(PortMatch::Single(5353)));
    // The container port (8000) never appears: clients dial 8081.
    assert!(!render(&present).contains("8000"));

    // `ports` narrows the container's ports.
    let narrowed = compiled(
        &format!("{GUARD}[[rule]]\nname = \"app\"\ncontainer = \"django\"\nports = [8081, 9999]\n"),
        &[django()],
    );
    assert_eq!(
        policy_rules(&narrowed, "app"),
        vec![vec![
            Match::L4Proto(Proto::Tcp),
            Match::DialledPort(PortMatch::Single(8081))
        ]]
    );
}

#[test]
fn limits_get_per_family_meters_in_the_rules_chain() {
    let ruleset = compiled(
        &format!(
            "{GUARD}[[rule]]\nname = \"web\"\nports = 80\nlimit = {{ rate = \"10/minute\" }}\nmax_connections = 20\n"
        ),
        &[],
    );
    let chain = ruleset.chain("rule-1").unwrap();
    let over: Vec<&Match> = chain
        .rules
        .iter()
        .filter(|r| r.verdict == Some(Verdict::Drop))
        .map(|r| r.matches.last().unwrap())
        .collect();
    assert_eq!(over.len(), 4, "rate and connections, for IPv4 and IPv6");
    assert!(matches!(
        over[0],
        Match::SourceRateOver {
            family: Family::Ipv4,
            burst: 10,
            ..
        }
    ));
    assert!(matches!(
        over[1],
        Match::SourceConnectionsOver {
            family: Family::Ipv4,
            count: 20,
            ..
        }
    ));
    assert!(
        matches!(ruleset.set("rule-1-rate-v4").unwrap().elements, SetElements::Meter(m) if m.timeout_secs == Some(60))
    );
    assert!(
        matches!(ruleset.set("rule-1-conns-v6").unwrap().elements, SetElements::Meter(m) if m.timeout_secs.is_none())
    );
}

/// A connection created before dockfw's table existed can never be
/// labelled, so each of its packets is judged again: the rate meter must see
/// only new connections, or it would drop a long-lived allowed one.
#[test]
fn the_rate_limit_meters_only_new_connections() {
    let ruleset = compiled(
        &format!(
            "{GUARD}[[rule]]\nname = \"web\"\nports = 80\nlimit = {{ rate = \"1/second\", burst = 1 }}\n"
        ),
        &[],
    );
    let chain = ruleset.chain("rule-1").unwrap();
    let rate_rules: Vec<_> = chain
        .rules
        .iter()
        .filter(|r| {
            r.matches
                .iter()
                .any(|m| matches!(m, Match::SourceRateOver { .. }))
        })
        .collect();
    assert_eq!(rate_rules.len(), 2, "one per family");
    for rule in &rate_rules {
        assert_eq!(rule.matches[1], Match::CtState(CtState::New), "{rule:?}");
        assert_eq!(rule.verdict, Some(Verdict::Drop));
    }
    assert!(
        render(&ruleset).contains("ct state new update @rule-1-rate-v4"),
        "{}",
        render(&ruleset)
    );

    let connection = Connection {
        interface: "eth0".into(),
        source: "198.51.100.7".parse().unwrap(),
        dialled: Some("203.0.113.1".parse().unwrap()),
        port: 80,
        proto: Proto::Tcp,
    };
    let hook = Via::Published.hook();
    let new_over = Packet {
        over_rate: true,
        ..Packet::via(&connection, Via::Published)
    };
    let outcome = simulate_packet(&ruleset, hook, &new_over);
    assert_eq!(
        outcome.verdict,
        Verdict::Drop,
        "a new connection over the rate is dropped"
    );
    assert_eq!(outcome.chain.as_deref(), Some("rule-1"));
    let late_over = Packet {
        over_rate: true,
        ..Packet::established(&connection, Via::Published, false)
    };
    let outcome = simulate_packet(&ruleset, hook, &late_over);
    assert_eq!(
        outcome.verdict,
        Verdict::Accept,
        "a late-judged packet skips the meter"
    );
    assert_eq!(
        outcome.decision(),
        Decision::Rule {
            name: "web".into(),
            action: Action::Allow
        }
    );
}

#[test]
fn compilation_is_deterministic() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/full.toml")).unwrap();
    let first = compiled(&text, &[django()]);
    for _ in 0..3 {
        let again = compiled(&text, &[django()]);
        assert_eq!(again, first);
        assert_eq!(render(&again), render(&first));
        assert_eq!(
            serde_json::to_string(&again).unwrap(),
            serde_json::to_string(&first).unwrap()
        );
    }
}

#[test]
fn a_hundred_thousand_entries_normalise_into_one_set() {
    // 100,000 /32 entries: every other address of 10.0.0.0/12, plus overlapping /24s.
    let mut entries: Vec<String> = (0..100_000u32)
        .map(|i| format!("\"{}\"", Ipv4Addr::from(0x0a00_0000 + 2 * i)))
        .collect();
    entries.push("\"10.0.0.0/24\"".into());
    let text = format!("{GUARD}[[rule]]\nfrom = [{}]\n", entries.join(","));
    let ruleset = compiled(&text, &[]);
    let SetElements::Ipv4Addrs(set) = &ruleset.set("rule-1-from-v4").unwrap().elements else {
        panic!("a hash of IPv4 addresses: nearly all entries are single addresses")
    };
    // The /24 swallows the first 128 entries, and 10.0.1.0 touches it: one
    // interval of 257 addresses, each an element of the hash.
    assert_eq!(set.len(), 100_000 - 129 + 257);
    assert!(
        set.windows(2).all(|w| w[0].last < w[1].first),
        "sorted and disjoint"
    );
}

fn published(host_addr: Option<&str>, host_port: u16, container_port: u16, proto: Proto) -> PublishedPort {
    PublishedPort {
        host_addr: host_addr.map(|a| a.parse().unwrap()),
        host_port,
        container_port,
        proto,
    }
}

fn container(
    name: &str,
    labels: &[(&str, &str)],
    published: Vec<PublishedPort>,
    addresses: &[&str],
) -> Container {
    Container {
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        published,
        addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
    }
}

/// The dialled ports of a rule's alternatives, as (proto, port match).
fn dialled_ports(rules: &[Vec<Match>]) -> Vec<PortMatch> {
    rules
        .iter()
        .flat_map(|m| m.iter())
        .filter_map(|m| match m {
            Match::DialledPort(p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn labels_select_every_container_carrying_all_of_them() {
    let containers = [
        container(
            "pg",
            &[("tier", "db"), ("env", "prod")],
            vec![published(None, 5432, 5432, Proto::Tcp)],
            &[],
        ),
        container(
            "pg-test",
            &[("tier", "db")],
            vec![published(None, 5433, 5432, Proto::Tcp)],
            &[],
        ),
        container(
            "web",
            &[("tier", "web"), ("env", "prod")],
            vec![published(None, 80, 8080, Proto::Tcp)],
            &[],
        ),
    ];
    let ports_of = |selector: &str| {
        let ruleset = compiled(
            &format!("{GUARD}[[rule]]\nname = \"r\"\n{selector}\n"),
            &containers,
        );
        dialled_ports(&policy_rules(&ruleset, "r"))
    };
    assert_eq!(
        ports_of("labels = { tier = \"db\" }"),
        vec![PortMatch::Range(5432, 5433)]
    );
    assert_eq!(
        ports_of("labels = { tier = \"db\", env = \"prod\" }"),
        vec![PortMatch::Single(5432)]
    );
    assert_eq!(
        ports_of("labels = { env = \"prod\" }"),
        vec![PortMatch::Set("rule-1-tcp".into())]
    );
    // With `container`, a container must satisfy both.
    assert_eq!(
        ports_of("labels = { tier = \"db\" }\ncontainer = \"pg-test\""),
        vec![PortMatch::Single(5433)]
    );
    assert_eq!(
        ports_of("labels = { tier = \"db\" }\ncontainer = \"web\""),
        vec![]
    );
    assert_eq!(ports_of("labels = { tier = \"cache\" }"), vec![]);
    // `ports` narrows by host port, as for `container`.
    assert_eq!(
        ports_of("labels = { tier = \"db\" }\nports = [5433, 80]"),
        vec![PortMatch::Single(5433)]
    );
}

#[test]
fn the_docker_proxy_chain_judges_only_published_host_ports() {
    let containers = [
        container(
            "web",
            &[],
            vec![
                published(None, 8081, 8000, Proto::Tcp),
                published(None, 8443, 443, Proto::Tcp),
                published(Some("0.0.0.0"), 9000, 9000, Proto::Tcp),
                published(Some("::"), 9001, 9000, Proto::Udp),
                published(Some("203.0.113.6"), 5353, 53, Proto::Udp),
                // Loopback never arrives from outside.
                published(Some("127.0.0.1"), 6379, 6379, Proto::Tcp),
            ],
            &[],
        ),
        container("db", &[], vec![published(None, 5432, 5432, Proto::Tcp)], &[]),
    ];
    let ruleset = compiled(GUARD, &containers);
    let proxy = ruleset.chain(CHAIN_PROXY).unwrap();
    // Each rule has an untracked twin, after all of them, matching the
    // packet's own destination (untracked packets have no original tuple).
    let (tracked, untracked) = proxy.rules.split_at(proxy.rules.len() / 2);
    for (rule, twin) in tracked.iter().zip(untracked) {
        let own: Vec<Match> = rule
            .matches
            .iter()
            .map(|m| match m {
                Match::DialledAddrIn { family, set } => Match::DestAddrIn {
                    family: *family,
                    set: set.clone(),
                },
                Match::DialledPort(ports) => Match::DestPort(ports.clone()),
                other => other.clone(),
            })
            .collect();
        assert_eq!(twin.matches[0], Match::CtState(CtState::Untracked));
        assert_eq!(twin.matches[1..], own[..]);
        assert_eq!(twin.verdict, Some(Verdict::Goto(CHAIN_UNTRACKED.into())));
    }
    let rules: Vec<&Vec<Match>> = tracked.iter().map(|r| &r.matches).collect();
    let port_set = |name: &str| Match::DialledPort(PortMatch::Set(name.into()));
    assert_eq!(
        rules,
        [
            &vec![Match::L4Proto(Proto::Tcp), port_set("proxy-tcp")],
            &vec![
                Match::NfProto(Family::Ipv4),
                Match::L4Proto(Proto::Tcp),
                port_set("proxy-v4-tcp")
            ],
            &vec![
                Match::NfProto(Family::Ipv6),
                Match::L4Proto(Proto::Udp),
                port_set("proxy-v6-udp")
            ],
            &vec![
                Match::NfProto(Family::Ipv4),
                Match::DialledAddrIn {
                    family: Family::Ipv4,
                    set: "proxy-addr-1-v4".into()
                },
                Match::L4Proto(Proto::Udp),
                port_set("proxy-addr-1-udp")
            ],
        ]
    );
    assert!(
        tracked
            .iter()
            .all(|r| r.verdict == Some(Verdict::Goto(CHAIN_RULES.into())))
    );
    assert_eq!(
        ruleset.set("proxy-tcp").unwrap().elements,
        SetElements::Port(vec![
            Interval::single(5432),
            Interval::single(8081),
            Interval::single(8443)
        ])
    );
    assert_eq!(
        ruleset.set("proxy-addr-1-v4").unwrap().elements,
        SetElements::Ipv4Addrs(vec![Interval::single("203.0.113.6".parse().unwrap())])
    );
    assert!(!render(&ruleset).contains("6379"));
}

#[test]
fn container_rules_admit_routed_access_at_container_ports() {
    let django = container(
        "django",
        &[],
        vec![
            published(None, 8081, 8000, Proto::Tcp),
            published(Some("203.0.113.6"), 5353, 53, Proto::Udp),
        ],
        &["172.17.0.2", "fd00::2"],
    );
    let other = container("other", &[], vec![], &["172.18.0.9"]);
    let containers = [django, other];
    let ruleset = compiled(
        &format!("{GUARD}[[rule]]\nname = \"app\"\ncontainer = \"django\"\n"),
        &containers,
    );
    let rules = policy_rules(&ruleset, "app");
    let addr_in = |family, set: &str| Match::DialledAddrIn {
        family,
        set: set.into(),
    };
    assert_eq!(
        rules,
        vec![
            // Published on every address: any address but a container's
            // (those are routed, and must not match by host port).
            vec![
                Match::NfProto(Family::Ipv4),
                addr_in(Family::Ipv4, "not-containers-v4"),
                Match::L4Proto(Proto::Tcp),
                Match::DialledPort(PortMatch::Single(8081))
            ],
            vec![
                Match::NfProto(Family::Ipv6),
                addr_in(Family::Ipv6, "not-containers-v6"),
                Match::L4Proto(Proto::Tcp),
                Match::DialledPort(PortMatch::Single(8081))
            ],
            vec![
                Match::NfProto(Family::Ipv4),
                addr_in(Family::Ipv4, "rule-1-to-2-v4"),
                Match::L4Proto(Proto::Udp),
                Match::DialledPort(PortMatch::Single(5353))
            ],
            // Routed to the container's own addresses: its container ports.
            vec![
                Match::NfProto(Family::Ipv4),
                addr_in(Family::Ipv4, "rule-1-routed-1-v4"),
                Match::L4Proto(Proto::Tcp),
                Match::DialledPort(PortMatch::Single(8000))
            ],
            vec![
                Match::NfProto(Family::Ipv4),
                addr_in(Family::Ipv4, "rule-1-routed-1-v4"),
                Match::L4Proto(Proto::Udp),
                Match::DialledPort(PortMatch::Single(53))
            ],
            vec![
                Match::NfProto(Family::Ipv6),
                addr_in(Family::Ipv6, "rule-1-routed-1-v6"),
                Match::L4Proto(Proto::Tcp),
                Match::DialledPort(PortMatch::Single(8000))
            ],
            vec![
                Match::NfProto(Family::Ipv6),
                addr_in(Family::Ipv6, "rule-1-routed-1-v6"),
                Match::L4Proto(Proto::Udp),
                Match::DialledPort(PortMatch::Single(53))
            ],
        ]
    );
    let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
    assert_eq!(
        ruleset.set("not-containers-v4").unwrap().elements,
        SetElements::Ipv4(vec![
            Interval::new(ip("0.0.0.0"), ip("172.17.0.1")).unwrap(),
            Interval::new(ip("172.17.0.3"), ip("172.18.0.8")).unwrap(),
            Interval::new(ip("172.18.0.10"), ip("255.255.255.255")).unwrap(),
        ])
    );
    assert_eq!(
        ruleset.set("rule-1-routed-1-v4").unwrap().elements,
        SetElements::Ipv4Addrs(vec![Interval::single(ip("172.17.0.2"))])
    );

    // `ports` picks the published ports by host port, on both paths; `to`
    // limits the dialled address on both: here only the routed address.
    let narrowed = compiled(
        &format!(
            "{GUARD}[[rule]]\nname = \"app\"\ncontainer = \"django\"\nports = 8081\nto = [\"172.17.0.0/16\"]\n"
        ),
        &containers,
    );
    let rules = policy_rules(&narrowed, "app");
    assert_eq!(
        dialled_ports(&rules),
        vec![PortMatch::Single(8081), PortMatch::Single(8000)]
    );
    assert_eq!(
        narrowed.set("rule-1-to-1-v4").unwrap().elements,
        SetElements::Ipv4(vec![
            Interval::new(ip("172.17.0.0"), ip("172.17.0.1")).unwrap(),
            Interval::new(ip("172.17.0.3"), ip("172.17.255.255")).unwrap(),
        ])
    );
    assert_eq!(
        narrowed.set("rule-1-routed-1-v4").unwrap().elements,
        SetElements::Ipv4Addrs(vec![Interval::single(ip("172.17.0.2"))])
    );
    assert!(narrowed.set("rule-1-routed-1-v6").is_none());
}

#[test]
fn containers_with_the_same_container_ports_share_a_routed_alternative() {
    let replica = |name: &str, host_port: u16, addr: &str| {
        container(
            name,
            &[("app", "api")],
            vec![published(None, host_port, 8000, Proto::Tcp)],
            &[addr],
        )
    };
    let ruleset = compiled(
        &format!("{GUARD}[[rule]]\nname = \"api\"\nlabels = {{ app = \"api\" }}\n"),
        &[
            replica("api-1", 8001, "172.17.0.2"),
            replica("api-2", 8002, "172.17.0.3"),
        ],
    );
    let rules = policy_rules(&ruleset, "api");
    // Published: IPv4 (not to a container's address) and IPv6; then routed, once.
    assert_eq!(
        dialled_ports(&rules),
        vec![
            PortMatch::Range(8001, 8002),
            PortMatch::Range(8001, 8002),
            PortMatch::Single(8000)
        ]
    );
    assert_eq!(rules[1][0], Match::NfProto(Family::Ipv6));
    assert_eq!(rules[1].len(), 3, "no IPv6 container address to exclude");
    assert_eq!(
        ruleset.set("rule-1-routed-1-v4").unwrap().elements,
        SetElements::Ipv4Addrs(vec![
            Interval::single("172.17.0.2".parse().unwrap()),
            Interval::single("172.17.0.3".parse().unwrap())
        ])
    );
}

/// Untracked packets (a `notrack` anywhere) the guard would judge are dropped
/// in the `untracked` chain, whichever rule would allow them; others pass.
#[test]
fn untracked_packets_the_guard_would_judge_are_dropped() {
    use dockfw_core::eval::Packet;
    use dockfw_core::testing::internals::simulate_packet;
    use dockfw_core::{Connection, Via};
    let containers = [container(
        "web",
        &[],
        vec![
            published(None, 8080, 80, Proto::Tcp),
            published(Some("203.0.113.6"), 5353, 53, Proto::Udp),
        ],
        &["172.17.0.2"],
    )];
    let ruleset = compiled(
        &format!("{GUARD}default = \"accept\"\n[[rule]]\nports = [8080, \"5353/udp\"]\n"),
        &containers,
    );
    let connection = |port, proto, dialled: &str| Connection {
        interface: "eth0".into(),
        source: "198.51.100.7".parse().unwrap(),
        dialled: Some(dialled.parse().unwrap()),
        port,
        proto,
    };
    let fate = |connection: &Connection, path, hook| {
        let outcome = simulate_packet(&ruleset, hook, &Packet::untracked(connection, path));
        (outcome.verdict, outcome.chain)
    };
    let dropped = (Verdict::Drop, Some(CHAIN_UNTRACKED.to_string()));
    let untouched = (Verdict::Accept, None);
    // A published port: never DNATed when untracked, so for docker-proxy.
    let web = connection(8080, Proto::Tcp, "192.0.2.1");
    assert_eq!(fate(&web, Via::Published, Hook::Input), dropped);
    let bound = connection(5353, Proto::Udp, "203.0.113.6");
    assert_eq!(fate(&bound, Via::Proxied, Hook::Input), dropped);
    // Routed to the container's own address.
    let routed = connection(80, Proto::Tcp, "172.17.0.2");
    assert_eq!(fate(&routed, Via::Routed, Hook::Forward), dropped);
    // Not judged: another host port, the bound port on another address.
    let ssh = connection(22, Proto::Tcp, "192.0.2.1");
    assert_eq!(fate(&ssh, Via::Proxied, Hook::Input), untouched);
    let elsewhere = connection(5353, Proto::Udp, "192.0.2.1");
    assert_eq!(fate(&elsewhere, Via::Proxied, Hook::Input), untouched);
}

/// Bridges Docker was told to name are known as Docker's wherever
/// `docker0` and `br-*` are: routed and untracked traffic onto them, and
/// their containers' own connections (here with an outbound rule).
#[test]
fn named_bridges_are_judged_where_dockers_own_are() {
    let text = format!(
        "{GUARD}\n[[outbound]]\nname = \"dns\"\ncontainer = \"web\"\nto = [\"192.0.2.53\"]\nports = [\"53/udp\"]\n"
    );
    let policy = parse("p.toml", &text).expect("valid policy").policy;
    let plain = compile(&policy, &[]);
    assert_eq!(dockfw_core::compile_with_bridges(&policy, &[], &[]), plain);
    // Names Docker's own patterns cover, and repeats, add nothing.
    let named = ["dmz0", "docker0", "br-0123456789ab", "dmz0", "lab0"].map(String::from);
    let ruleset = dockfw_core::compile_with_bridges(&policy, &[], &named);
    let matching = |chain: &str, wanted: &Match| {
        ruleset
            .chain(chain)
            .unwrap()
            .rules
            .iter()
            .filter(|rule| rule.matches.contains(wanted))
            .count()
    };
    for bridge in ["dmz0", "lab0"] {
        let out = Match::OifName(IfName::Exact(bridge.into()));
        let into = Match::IifName(IfName::Exact(bridge.into()));
        // Untracked and routed onto it.
        assert_eq!(matching(CHAIN_GUARDED, &out), 2, "{bridge}");
        // Its containers' new and invalid connections.
        assert_eq!(matching(CHAIN_FORWARD, &into), 2, "{bridge}");
        // Onto it from a container: between containers.
        assert_eq!(
            matching(dockfw_core::layout::CHAIN_FROM_CONTAINERS, &out),
            1,
            "{bridge}"
        );
    }
    let count = |ruleset: &Ruleset| ruleset.chains.iter().map(|c| c.rules.len()).sum::<usize>();
    // Six rules each: those above, and from-containers-invalid's.
    assert_eq!(count(&ruleset), count(&plain) + 2 * 6);
}

/// A bridge Docker was told to name `star*` (Docker and Linux accept it) is
/// matched exactly in the kernel; the plan's text must say the same, not
/// `oifname "star*"`, which nft reads as every name starting with `star`.
#[test]
fn a_named_bridge_ending_in_a_star_is_rendered_exact() {
    let policy = parse("p.toml", GUARD).expect("valid policy").policy;
    let ruleset = dockfw_core::compile_with_bridges(&policy, &[], &["star*".to_string()]);
    let text = dockfw_core::render(&ruleset);
    assert!(text.contains(r#"oifname "star\*" goto rules"#), "{text}");
    assert!(!text.contains(r#"oifname "star*""#), "{text}");
    // Docker's own pattern is still a wildcard.
    assert!(text.contains(r#"oifname "br-*" goto rules"#), "{text}");
}

/// A bridge the policy guards stays a guarded interface only.
#[test]
fn a_guarded_bridge_is_not_taken_as_dockers() {
    let policy = parse("p.toml", "[guard]\ninterfaces = [\"eth0\", \"lan*\"]\n")
        .expect("valid policy")
        .policy;
    let named = ["lan0", "dmz0"].map(String::from);
    let ruleset = dockfw_core::compile_with_bridges(&policy, &[], &named);
    let guarded = ruleset.chain(CHAIN_GUARDED).unwrap();
    let onto = |bridge: &str| {
        guarded.rules.iter().any(|rule| {
            rule.matches
                .contains(&Match::OifName(IfName::Exact(bridge.into())))
        })
    };
    assert!(onto("dmz0") && !onto("lan0"));
}
