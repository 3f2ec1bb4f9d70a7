//! Outbound (`[[outbound]]`, containers to the outside) and between
//! (`[[between]]`, container to container) rules, and audit mode: parsing,
//! errors with their places, warnings, and what Docker's containers add.

use dockfw_core::policy::{Destination, Direction, Mode, Selector};
use dockfw_core::{Action, Container, Severity, parse};
use std::collections::BTreeMap;

const GUARD: &str = "[guard]\ninterfaces = [\"eth0\"]\n";

fn errors(text: &str) -> Vec<String> {
    let error = parse("policy.toml", text).expect_err("policy should be rejected");
    error.errors().map(ToString::to_string).collect()
}

/// Asserts exactly one error, containing each of `needles`.
fn one_error(text: &str, needles: &[&str]) {
    let errors = errors(text);
    assert_eq!(errors.len(), 1, "expected one error, got {errors:#?}");
    for needle in needles {
        assert!(errors[0].contains(needle), "{needle:?} not in {:?}", errors[0]);
    }
}

fn warnings(text: &str) -> Vec<String> {
    parse("policy.toml", text)
        .unwrap_or_else(|e| panic!("{e}"))
        .warnings
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn container(name: &str, labels: &[(&str, &str)], addresses: &[&str]) -> Container {
    Container {
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        published: vec![],
        addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
    }
}

#[test]
fn every_field_of_the_new_directions_parses() {
    let text = format!(
        r#"{GUARD}outbound = "drop"
between = "reject"
mode = "audit"

[sets]
partners = ["203.0.113.0/24", "2001:db8:99::/48"]
feeds = {{ dynamic = true }}

[[outbound]]
name = "web calls the API"
container = "web"
to = ["203.0.113.99", "@partners", "@feeds", "198.51.100.1-198.51.100.9"]
ports = ["9000/tcp", 443]
action = "allow"
log = true

[[outbound]]
labels = {{ "com.example.tier" = "db" }}
action = "reject"

[[between]]
name = "only the proxy reaches the app"
from = {{ container = "proxy" }}
to = {{ container = "app", labels = {{ tier = "app" }} }}
ports = [8000]

[[between]]
to = {{ container = "app" }}
action = "drop"
"#
    );
    let parsed = parse("policy.toml", &text).unwrap_or_else(|e| panic!("{e}"));
    let policy = parsed.policy;
    assert_eq!(policy.guard.outbound, Action::Drop);
    assert_eq!(policy.guard.between, Action::Reject);
    assert_eq!(policy.guard.mode, Mode::Audit);
    assert_eq!(policy.outbound.len(), 2);
    let api = &policy.outbound[0];
    assert_eq!(api.direction, Direction::Outbound);
    assert_eq!(
        api.from,
        Some(Selector {
            container: Some("web".into()),
            labels: None
        })
    );
    let Some(Destination::Addresses(to)) = &api.to else {
        panic!("{:?}", api.to)
    };
    assert!(
        to.addrs.contains("203.0.113.7".parse().unwrap()),
        "from @partners"
    );
    assert!(to.addrs.contains("2001:db8:99::1".parse().unwrap()));
    assert!(to.addrs.contains("198.51.100.5".parse().unwrap()));
    assert_eq!(to.dynamic, vec!["feeds".to_string()]);
    assert!(
        api.ports
            .as_ref()
            .unwrap()
            .contains(dockfw_core::Proto::Tcp, 9000)
    );
    assert!(api.log);
    assert_eq!(policy.outbound[1].name, "outbound 2", "default name");
    assert_eq!(policy.outbound[1].action, Action::Reject);
    assert_eq!(policy.outbound[1].to, None);

    let proxy = &policy.between[0];
    assert_eq!(proxy.direction, Direction::Between);
    assert_eq!(proxy.from.as_ref().unwrap().container.as_deref(), Some("proxy"));
    let Some(Destination::Containers(app)) = &proxy.to else {
        panic!("{:?}", proxy.to)
    };
    assert_eq!(app.container.as_deref(), Some("app"));
    assert_eq!(
        app.labels,
        Some(BTreeMap::from([("tier".to_string(), "app".to_string())]))
    );
    assert_eq!(proxy.action, Action::Allow, "allow by default");
    assert_eq!(proxy.field_locations["from.container"].line, 25);
    assert_eq!(policy.between[1].name, "between 2");
    assert_eq!(policy.between[1].from, None, "any container");
    // No warning: both sets used, no rule hidden.
    assert!(parsed.warnings.is_empty(), "{:#?}", parsed.warnings);
}

#[test]
fn the_defaults_keep_todays_behaviour() {
    let policy = parse("p.toml", GUARD).unwrap().policy;
    assert_eq!(policy.guard.outbound, Action::Allow);
    assert_eq!(policy.guard.between, Action::Allow);
    assert_eq!(policy.guard.mode, Mode::Enforce);
    assert!(!policy.judges(Direction::Outbound));
    assert!(!policy.judges(Direction::Between));
    // "accept" is the word for defaults, as for guard.default.
    let accept = parse(
        "p.toml",
        &format!("{GUARD}outbound = \"accept\"\nbetween = \"drop\"\n"),
    )
    .unwrap()
    .policy;
    assert!(!accept.judges(Direction::Outbound));
    assert!(accept.judges(Direction::Between));
}

#[test]
fn errors_have_their_place_and_a_fix() {
    one_error(
        &format!("{GUARD}mode = \"dry-run\"\n"),
        &["policy.toml:3:8: error: unknown mode \"dry-run\"", "\"audit\""],
    );
    one_error(
        &format!("{GUARD}outbound = \"deny\"\n"),
        &[
            "policy.toml:3:12: error: unknown outbound \"deny\"",
            "write \"drop\"",
        ],
    );
    one_error(
        &format!("{GUARD}[[outbound]]\nname = \"x\"\nfrom = [\"10.0.0.1\"]\n"),
        &[
            "policy.toml:5:8: error: rule \"x\": an [[outbound]] rule has no \"from\"",
            "container = \"web\"",
        ],
    );
    one_error(
        &format!("{GUARD}[[outbound]]\nname = \"x\"\nto = [\"10.0.0.1/8\"]\n"),
        &["policy.toml:5:7: error: rule \"x\": to: \"10.0.0.1/8\" has host bits set"],
    );
    one_error(
        &format!("{GUARD}[[outbound]]\nname = \"x\"\nto = [\"@nope\"]\n"),
        &["rule \"x\": to: set \"@nope\" is not defined"],
    );
    one_error(
        &format!("{GUARD}[[outbound]]\nname = \"x\"\ncontainer = \"\"\n"),
        &["policy.toml:5:13: error: rule \"x\": \"container\" is empty"],
    );
    one_error(
        &format!("{GUARD}[[outbound]]\nname = \"x\"\nports = [\"99999\"]\n"),
        &["policy.toml:5:10: error: rule \"x\": ports:"],
    );
    one_error(
        &format!("{GUARD}[[outbound]]\nname = \"x\"\naction = \"deny\"\n"),
        &["policy.toml:5:10: error: rule \"x\": unknown action \"deny\""],
    );
    one_error(
        &format!("{GUARD}[[outbound]]\nname = \"x\"\ninterfaces = [\"eth0\"]\n"),
        &["policy.toml:5:1: error: rule \"x\": unknown key \"interfaces\" in [[outbound]]"],
    );
    one_error(
        &format!("{GUARD}[[between]]\nname = \"x\"\nfrom = \"proxy\"\n"),
        &[
            "policy.toml:5:8: error: rule \"x\": \"from\" must be a table naming containers, not string",
            "from = { container = \"proxy\" }",
        ],
    );
    one_error(
        &format!("{GUARD}[[between]]\nname = \"x\"\nto = {{ }}\n"),
        &["policy.toml:5:6: error: rule \"x\": \"to\" names no containers"],
    );
    one_error(
        &format!("{GUARD}[[between]]\nname = \"x\"\nto = {{ contianer = \"app\" }}\n"),
        &[
            "policy.toml:5:8: error: rule \"x\": unknown key \"contianer\" in to of a [[between]] rule",
            "did you mean \"container\"?",
        ],
    );
    one_error(
        &format!("{GUARD}[[between]]\nname = \"x\"\nfrom = {{ labels = {{ tier = 1 }} }}\n"),
        &["rule \"x\": labels: \"tier\" must be a string"],
    );
    one_error(
        &format!("{GUARD}[[between]]\nname = \"x\"\ncontainer = \"app\"\n"),
        &["unknown key \"container\" in [[between]]"],
    );
    one_error(
        &format!("{GUARD}[outbound]\nname = \"x\"\n"),
        &["\"outbound\" must be an array of tables", "[[outbound]]"],
    );
    // One name space for every direction.
    one_error(
        &format!("{GUARD}[[rule]]\nname = \"x\"\n[[between]]\nname = \"x\"\n"),
        &["policy.toml:6:8: error: rule \"x\": the name \"x\" is already used by the rule on line 4"],
    );
    // A dynamic set is fine in an outbound rule's `to` (it is not in an inbound rule's).
    parse(
        "p.toml",
        &format!("{GUARD}[sets]\nd = {{ dynamic = true }}\n[[outbound]]\nto = \"@d\"\n"),
    )
    .unwrap();
}

#[test]
fn every_error_is_reported_at_once() {
    let text = format!(
        "{GUARD}[[rule]]\nports = [\"x\"]\n[[outbound]]\nname = \"a\"\nto = [\"nope\"]\n[[between]]\nname = \"b\"\nports = [0]\n"
    );
    assert_eq!(errors(&text).len(), 3, "{:#?}", errors(&text));
}

#[test]
fn rules_that_can_never_match_are_pointed_out_per_direction() {
    let text = format!(
        r#"{GUARD}
[[outbound]]
name = "web anywhere"
container = "web"

[[outbound]]
name = "web to the API"
container = "web"
to = ["203.0.113.99"]
ports = [443]
action = "drop"

[[outbound]]
name = "db"
labels = {{ tier = "db" }}
to = ["0.0.0.0/0", "::/0"]

[[outbound]]
name = "db and web"
container = "web"
labels = {{ tier = "db" }}
ports = [80]

[[between]]
name = "to app"
to = {{ container = "app" }}

[[between]]
name = "proxy to app"
from = {{ container = "proxy" }}
to = {{ container = "app" }}
ports = [8000]

[[between]]
name = "proxy to anything"
from = {{ container = "proxy" }}
"#
    );
    assert_eq!(
        warnings(&text),
        vec![
            "policy.toml:8:1: warning: rule \"web to the API\": this rule can never match: outbound rule \"web anywhere\" (line 4) above it already decides every connection it would match\n  hint: move it above \"web anywhere\", narrow \"web anywhere\", or remove it".to_string(),
            "policy.toml:20:1: warning: rule \"db and web\": this rule can never match: outbound rule \"web anywhere\" (line 4) above it already decides every connection it would match\n  hint: move it above \"web anywhere\", narrow \"web anywhere\", or remove it".to_string(),
            "policy.toml:30:1: warning: rule \"proxy to app\": this rule can never match: between rule \"to app\" (line 26) above it already decides every connection it would match\n  hint: move it above \"to app\", narrow \"to app\", or remove it".to_string(),
        ]
    );
    // Rules of different directions never hide each other; a set used only
    // by an outbound rule is used.
    let text = format!(
        "{GUARD}[sets]\napi = [\"203.0.113.99\"]\n[[rule]]\nname = \"all\"\n[[outbound]]\nname = \"o\"\nto = \"@api\"\n[[between]]\nname = \"b\"\n"
    );
    assert!(warnings(&text).is_empty(), "{:#?}", warnings(&text));
    // A dynamic set could hold anything: only a rule deciding every
    // address above it hides the rule.
    let text = format!(
        "{GUARD}[sets]\nd = {{ dynamic = true }}\n[[outbound]]\nname = \"some\"\nto = \"203.0.113.0/24\"\n[[outbound]]\nname = \"dyn\"\nto = \"@d\"\naction = \"drop\"\n"
    );
    assert!(warnings(&text).is_empty(), "{:#?}", warnings(&text));
}

#[test]
fn containers_that_do_not_run_are_pointed_out_with_did_you_mean() {
    let text = format!(
        r#"{GUARD}
[[outbound]]
name = "web"
container = "wbe"

[[outbound]]
name = "tier"
labels = {{ tier = "dbb" }}

[[between]]
name = "proxy"
from = {{ container = "proxy" }}
to = {{ container = "ap" }}
"#
    );
    let policy = parse("policy.toml", &text).unwrap().policy;
    let running = [
        container("web", &[("tier", "db")], &["172.17.0.2"]),
        container("proxy", &[], &["172.18.0.2"]),
        container("app", &[], &["172.18.0.3"]),
    ];
    let warnings: Vec<String> = dockfw_core::containers::diagnose(&policy, &running)
        .iter()
        .map(|d| {
            assert_eq!(d.severity, Severity::Warning);
            d.to_string()
        })
        .collect();
    assert_eq!(
        warnings,
        vec![
            "policy.toml:6:13: warning: rule \"web\": container \"wbe\" is not running\n  hint: did you mean \"web\"?".to_string(),
            "policy.toml:10:10: warning: rule \"tier\": no running container carries the label tier=\"dbb\"\n  hint: a container must carry all of them; running: tier=\"db\" on web".to_string(),
            "policy.toml:15:20: warning: rule \"proxy\": to: container \"ap\" is not running\n  hint: did you mean \"app\"?".to_string(),
        ]
    );
}

mod compiled {
    use super::container;
    use dockfw_core::eval::Packet;
    use dockfw_core::layout::{self, CT_LABEL_FROM_CONTAINER};
    use dockfw_core::render::render_rule;
    use dockfw_core::ruleset::{Hook, Verdict};
    use dockfw_core::testing::internals::simulate_packet;
    use dockfw_core::{
        Action, Container, ContainerConnection, Decision, Direction, Proto, compile, evaluate_container,
        evaluate_ruleset_container, parse,
    };

    const POLICY: &str = r#"
[guard]
interfaces = ["eth0"]
default = "drop"
outbound = "drop"
between = "drop"

[sets]
partners = ["203.0.113.0/24", "2001:db8:99::/48"]

[[rule]]
name = "web"
ports = [80]

[[outbound]]
name = "web calls the API"
container = "web"
to = ["203.0.113.99", "2001:db8:99::99"]
ports = [443, 9000]

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

    fn running() -> Vec<Container> {
        vec![
            container("web", &[], &["172.17.0.2", "fd00:d0c::2"]),
            container("proxy", &[], &["172.18.0.2", "fd00:18::2"]),
            container("app", &[], &["172.18.0.3", "fd00:18::3"]),
            container("other", &[], &["172.18.0.4", "fd00:18::4"]),
        ]
    }

    fn rendered(ruleset: &dockfw_core::Ruleset, chain: &str) -> Vec<String> {
        ruleset
            .chain(chain)
            .unwrap_or_else(|| panic!("no chain {chain}"))
            .rules
            .iter()
            .map(render_rule)
            .collect()
    }

    fn conn(source: &str, destination: &str, port: u16) -> ContainerConnection {
        ContainerConnection {
            source: source.parse().unwrap(),
            destination: destination.parse().unwrap(),
            port,
            proto: Proto::Tcp,
            proxied: false,
        }
    }

    #[test]
    fn without_outbound_or_between_the_table_is_what_it_was() {
        let plain = "[guard]\ninterfaces = [\"eth0\"]\n[[rule]]\nports = [80]\n";
        let explicit = plain.replace(
            "[[rule]]",
            "outbound = \"accept\"\nbetween = \"allow\"\nmode = \"enforce\"\n[[rule]]",
        );
        let a = compile(&parse("p.toml", plain).unwrap().policy, &running());
        let b = compile(&parse("p.toml", &explicit).unwrap().policy, &running());
        assert_eq!(a, b);
        for chain in [
            "from-containers",
            "outbound",
            "between",
            "outbound-default",
            "between-default",
        ] {
            assert!(a.chain(chain).is_none(), "{chain}");
        }
        assert!(!rendered(&a, "forward").iter().any(|r| r.contains("docker0")));
        assert!(layout::direction_rules(&a, Direction::Outbound).is_empty());
        assert!(layout::direction_default(&a, Direction::Between).is_none());
    }

    #[test]
    fn new_connections_from_a_bridge_are_sent_by_where_they_leave() {
        let ruleset = compile(&parse("p.toml", POLICY).unwrap().policy, &running());
        let forward = rendered(&ruleset, "forward");
        assert_eq!(
            forward[3..],
            [
                "iifname \"docker0\" ct state new goto from-containers comment \"new connection from a container\"",
                "iifname \"br-*\" ct state new goto from-containers comment \"new connection from a container\"",
                "iifname \"docker0\" ct state invalid goto from-containers-invalid comment \"invalid packet from a container\"",
                "iifname \"br-*\" ct state invalid goto from-containers-invalid comment \"invalid packet from a container\"",
            ]
        );
        assert_eq!(
            rendered(&ruleset, "from-containers-invalid"),
            [
                "oifname \"docker0\" goto unattributed comment \"to a container\"",
                "oifname \"br-*\" goto unattributed comment \"to a container\"",
                "goto unattributed comment \"to the outside\"",
            ]
        );
        assert_eq!(
            rendered(&ruleset, "unattributed"),
            ["counter drop comment \"from a container, judged by no rule\""]
        );
        assert_eq!(
            rendered(&ruleset, "from-containers"),
            [
                "oifname \"docker0\" goto between comment \"to a container\"",
                "oifname \"br-*\" goto between comment \"to a container\"",
                "goto outbound comment \"to the outside\"",
            ]
        );
        assert_eq!(
            rendered(&ruleset, "outbound"),
            [
                "meta nfproto ipv4 ip saddr @outbound-1-from-v4 ip daddr @outbound-1-to-v4 meta l4proto tcp th dport @outbound-1-tcp goto outbound-1 comment \"web calls the API\"",
                "meta nfproto ipv6 ip6 saddr @outbound-1-from-v6 ip6 daddr @outbound-1-to-v6 meta l4proto tcp th dport @outbound-1-tcp goto outbound-1 comment \"web calls the API\"",
                "meta nfproto ipv4 ip daddr @set-partners-v4 goto outbound-2 comment \"partners\"",
                "meta nfproto ipv6 ip6 daddr @set-partners-v6 goto outbound-2 comment \"partners\"",
                "goto outbound-default comment \"outbound default\"",
            ]
        );
        assert_eq!(
            rendered(&ruleset, "between"),
            [
                "meta pkttype broadcast goto unattributed comment \"broadcast or multicast: names no container\"",
                "meta pkttype multicast goto unattributed comment \"broadcast or multicast: names no container\"",
                "meta nfproto ipv6 ip6 saddr @link-local-v6 goto unattributed comment \"IPv6 link-local: names no container\"",
                "meta nfproto ipv6 ip6 daddr @link-local-v6 goto unattributed comment \"IPv6 link-local: names no container\"",
                "meta nfproto ipv4 ip saddr @between-1-from-v4 ip daddr @between-1-to-v4 meta l4proto tcp th dport 8000 goto between-1 comment \"only the proxy reaches the app\"",
                "meta nfproto ipv6 ip6 saddr @between-1-from-v6 ip6 daddr @between-1-to-v6 meta l4proto tcp th dport 8000 goto between-1 comment \"only the proxy reaches the app\"",
                "goto between-default comment \"between default\"",
            ]
        );
        // An allow marks the connection for revoke and accepts, in one rule
        // that also counts; a drop is one rule.
        assert_eq!(
            rendered(&ruleset, "between-1"),
            [format!(
                "ct label set {CT_LABEL_FROM_CONTAINER} counter accept comment \"only the proxy reaches the app\""
            )]
        );
        assert_eq!(
            rendered(&ruleset, "outbound-default"),
            ["counter drop comment \"outbound default\""]
        );
        let set = |name: &str| format!("{:?}", ruleset.set(name).unwrap().elements);
        assert!(
            set("outbound-1-from-v4").contains("172.17.0.2"),
            "{}",
            set("outbound-1-from-v4")
        );
        assert!(set("between-1-from-v6").contains("fd00:18::2"));
        assert!(set("between-1-to-v4").contains("172.18.0.3"));
        assert!(!set("between-1-to-v4").contains("172.18.0.4"));
        // Status finds every decision and its counter.
        let names = |d: Direction| -> Vec<(String, Option<Action>)> {
            layout::direction_rules(&ruleset, d)
                .into_iter()
                .map(|decider| (decider.name, decider.action))
                .collect()
        };
        assert_eq!(
            names(Direction::Outbound),
            [
                ("web calls the API".to_string(), Some(Action::Allow)),
                ("partners".to_string(), Some(Action::Reject)),
            ]
        );
        assert_eq!(
            names(Direction::Between),
            [("only the proxy reaches the app".to_string(), Some(Action::Allow))]
        );
        let default = layout::direction_default(&ruleset, Direction::Outbound).unwrap();
        assert_eq!(
            (default.name.as_str(), default.action, default.audit),
            ("outbound default", Some(Action::Drop), false)
        );
        assert_eq!(
            default.counter,
            layout::direction_default_counter(Direction::Outbound)
        );
        assert_eq!(layout::policy_rules(&ruleset).len(), 1, "inbound rules are apart");
    }

    #[test]
    fn the_ruleset_decides_as_the_policy_says() {
        let policy = parse("p.toml", POLICY).unwrap().policy;
        let containers = running();
        let ruleset = compile(&policy, &containers);
        let allow = |name: &str| Decision::Rule {
            name: name.into(),
            action: Action::Allow,
        };
        let cases = [
            (
                conn("172.17.0.2", "203.0.113.99", 443),
                Direction::Outbound,
                allow("web calls the API"),
            ),
            (
                conn("fd00:d0c::2", "2001:db8:99::99", 9000),
                Direction::Outbound,
                allow("web calls the API"),
            ),
            (
                conn("172.17.0.2", "203.0.113.98", 443),
                Direction::Outbound,
                Decision::Rule {
                    name: "partners".into(),
                    action: Action::Reject,
                },
            ),
            (
                conn("172.17.0.2", "198.51.100.1", 443),
                Direction::Outbound,
                Decision::Default { action: Action::Drop },
            ),
            (
                conn("172.18.0.4", "203.0.113.99", 443),
                Direction::Outbound,
                Decision::Rule {
                    name: "partners".into(),
                    action: Action::Reject,
                },
            ),
            (
                conn("172.18.0.2", "172.18.0.3", 8000),
                Direction::Between,
                allow("only the proxy reaches the app"),
            ),
            (
                conn("fd00:18::2", "fd00:18::3", 8000),
                Direction::Between,
                allow("only the proxy reaches the app"),
            ),
            (
                conn("172.18.0.4", "172.18.0.3", 8000),
                Direction::Between,
                Decision::Default { action: Action::Drop },
            ),
            (
                conn("172.18.0.2", "172.18.0.3", 8001),
                Direction::Between,
                Decision::Default { action: Action::Drop },
            ),
        ];
        for (connection, direction, expected) in cases {
            assert_eq!(
                evaluate_container(&policy, &containers, &connection, direction),
                expected,
                "{connection:?}"
            );
            assert_eq!(
                evaluate_ruleset_container(&ruleset, &connection, direction),
                expected,
                "{connection:?}"
            );
        }
        // Later packets are never judged again.
        let later = Packet {
            ct_new: false,
            ..Packet::from_container(&conn("172.18.0.4", "172.18.0.3", 8000), Direction::Between)
        };
        assert_eq!(
            simulate_packet(&ruleset, Hook::Forward, &later).decision(),
            Decision::NotJudged
        );
    }

    #[test]
    fn audit_mode_counts_and_logs_every_denial_and_denies_nothing() {
        let text = POLICY.replace("[guard]", "[guard]\nmode = \"audit\"");
        let policy = parse("p.toml", &text).unwrap().policy;
        let containers = running();
        let ruleset = compile(&policy, &containers);
        assert!(layout::is_audit(&ruleset));
        assert_eq!(
            rendered(&ruleset, "outbound-2"),
            [
                "counter comment \"partners\"",
                "limit rate 5/second burst 10 packets log prefix \"dockfw outbound-2 would-reject partners: \" group 23 comment \"partners\"",
                &format!("ct label set {CT_LABEL_FROM_CONTAINER} accept comment \"partners\""),
            ]
        );
        assert_eq!(
            rendered(&ruleset, "default-fate"),
            [
                "counter comment \"default\"",
                "limit rate 5/second burst 10 packets log prefix \"dockfw default-fate would-drop: \" group 23 comment \"default\"",
                "jump label comment \"default\"",
                "accept comment \"default\"",
            ]
        );
        let untracked = rendered(&ruleset, "untracked");
        assert_eq!(
            untracked.last().unwrap(),
            "accept comment \"untracked (notrack): cannot be judged\""
        );
        // Status reads what each would have done.
        let default = layout::direction_default(&ruleset, Direction::Between).unwrap();
        assert_eq!((default.action, default.audit), (Some(Action::Drop), true));
        let allow = &layout::direction_rules(&ruleset, Direction::Outbound)[0];
        assert_eq!((allow.action, allow.audit), (Some(Action::Allow), false));
        assert!(layout::untracked_drop(&ruleset).unwrap().audit);
        // The packet goes on; the decision is the denial it would have been.
        let denied = conn("172.18.0.4", "172.18.0.3", 8000);
        let outcome = simulate_packet(
            &ruleset,
            Hook::Forward,
            &Packet::from_container(&denied, Direction::Between),
        );
        assert_eq!(outcome.verdict, Verdict::Accept);
        assert_eq!(outcome.decision(), Decision::Default { action: Action::Drop });
        let explained = dockfw_core::explain_container(&policy, &containers, &denied, Direction::Between);
        assert!(explained.audit);
        assert!(
            explained.to_string().starts_with("drop by default (no rule matched) (audit mode: only logged and counted; the connection goes on)"),
            "{explained}"
        );
        // Per-source limits are logged, not enforced.
        let limited = parse(
            "p.toml",
            "[guard]\ninterfaces = [\"eth0\"]\nmode = \"audit\"\n[[rule]]\nname = \"r\"\nlimit = { rate = \"5/second\" }\nmax_connections = 3\n",
        )
        .unwrap()
        .policy;
        let ruleset = compile(&limited, &[]);
        for rule in &ruleset.chain("rule-1").unwrap().rules {
            assert_ne!(rule.verdict, Some(Verdict::Drop), "{}", render_rule(rule));
        }
        assert!(
            rendered(&ruleset, "rule-1")[1].ends_with("limit rate 5/second burst 10 packets log prefix \"dockfw rule-1 over-limit r: \" group 23 counter comment \"r\""),
            "{:#?}",
            rendered(&ruleset, "rule-1")
        );
    }

    #[test]
    fn one_direction_judged_leaves_the_other_alone() {
        let only_between = "[guard]\ninterfaces = [\"eth0\"]\n[[between]]\nto = { container = \"app\" }\naction = \"drop\"\n";
        let ruleset = compile(&parse("p.toml", only_between).unwrap().policy, &running());
        assert_eq!(
            rendered(&ruleset, "from-containers"),
            [
                "oifname \"docker0\" goto between comment \"to a container\"",
                "oifname \"br-*\" goto between comment \"to a container\"",
            ]
        );
        assert!(ruleset.chain("outbound").is_none());
        let only_outbound = "[guard]\ninterfaces = [\"eth0\"]\noutbound = \"reject\"\n";
        let ruleset = compile(&parse("p.toml", only_outbound).unwrap().policy, &running());
        assert_eq!(
            rendered(&ruleset, "from-containers"),
            [
                "oifname \"docker0\" return comment \"to a container\"",
                "oifname \"br-*\" return comment \"to a container\"",
                "goto outbound comment \"to the outside\"",
            ]
        );
        let policy = parse("p.toml", only_outbound).unwrap().policy;
        let between = conn("172.18.0.2", "172.18.0.3", 80);
        assert_eq!(
            evaluate_ruleset_container(&ruleset, &between, Direction::Between),
            Decision::NotJudged
        );
        assert_eq!(
            evaluate_container(&policy, &running(), &between, Direction::Between),
            Decision::NotJudged
        );
        let outside = conn("172.18.0.2", "198.51.100.1", 80);
        assert_eq!(
            evaluate_ruleset_container(&ruleset, &outside, Direction::Outbound),
            Decision::Default {
                action: Action::Reject
            }
        );
        // A selector whose containers do not run matches nothing.
        let gone =
            "[guard]\ninterfaces = [\"eth0\"]\n[[outbound]]\ncontainer = \"gone\"\naction = \"drop\"\n";
        let ruleset = compile(&parse("p.toml", gone).unwrap().policy, &running());
        assert_eq!(
            rendered(&ruleset, "outbound"),
            ["goto outbound-default comment \"outbound default\""]
        );
        assert_eq!(
            layout::direction_rules(&ruleset, Direction::Outbound).len(),
            1,
            "counted still"
        );
    }
}

mod revoked {
    use super::container;
    use dockfw_core::revoke::{TrackedFromContainer, judge_from_container};
    use dockfw_core::{Action, Decision, Direction, Proto, parse};

    fn tracked(source: &str, destination: &str, port: u16) -> TrackedFromContainer {
        TrackedFromContainer {
            source: source.parse().unwrap(),
            destination: destination.parse().unwrap(),
            port,
            proto: Proto::Tcp,
            proxied: false,
        }
    }

    #[test]
    fn containers_connections_the_new_policy_denies_are_cut() {
        let policy = parse(
            "p.toml",
            r#"
[guard]
interfaces = ["eth0"]
outbound = "drop"
between = "reject"
[[outbound]]
name = "api"
container = "web"
to = "203.0.113.99"
[[between]]
name = "proxy to app"
from = { container = "proxy" }
to = { container = "app" }
"#,
        )
        .unwrap()
        .policy;
        let running = [
            container("web", &[], &["172.17.0.2"]),
            container("proxy", &[], &["172.18.0.2"]),
            container("app", &[], &["172.18.0.3"]),
        ];
        assert_eq!(
            judge_from_container(&policy, &running, &tracked("172.17.0.2", "203.0.113.99", 443)),
            None
        );
        let cut =
            judge_from_container(&policy, &running, &tracked("172.18.0.2", "203.0.113.99", 443)).unwrap();
        assert_eq!(cut.direction, Direction::Outbound);
        assert_eq!(cut.decision, Decision::Default { action: Action::Drop });
        assert_eq!(
            judge_from_container(&policy, &running, &tracked("172.18.0.2", "172.18.0.3", 8000)),
            None
        );
        let cut =
            judge_from_container(&policy, &running, &tracked("172.17.0.2", "172.18.0.3", 8000)).unwrap();
        assert_eq!(cut.direction, Direction::Between);
        assert_eq!(
            cut.decision,
            Decision::Default {
                action: Action::Reject
            }
        );
        // Unknown dynamic set contents: never cut on a guess.
        let feeds = parse(
            "p.toml",
            "[guard]\ninterfaces = [\"eth0\"]\noutbound = \"drop\"\n[sets]\nfeeds = { dynamic = true }\n[[outbound]]\nto = \"@feeds\"\n",
        )
        .unwrap()
        .policy;
        assert_eq!(
            judge_from_container(&feeds, &running, &tracked("172.18.0.2", "198.51.100.1", 443)),
            None
        );
        // A direction the new policy does not judge keeps its connections.
        let open = parse("p.toml", "[guard]\ninterfaces = [\"eth0\"]\n")
            .unwrap()
            .policy;
        assert_eq!(
            judge_from_container(&open, &running, &tracked("172.18.0.2", "203.0.113.99", 443)),
            None
        );
    }
}

mod through_docker_proxy {
    use super::container;
    use dockfw_core::render::render_rule;
    use dockfw_core::{
        Action, Container, ContainerConnection, Decision, Direction, Proto, PublishedPort, compile,
        evaluate_container, evaluate_ruleset_container, explain_container, parse,
    };

    fn published(
        mut container: Container,
        host_addr: Option<&str>,
        host_port: u16,
        container_port: u16,
    ) -> Container {
        container.published.push(PublishedPort {
            host_addr: host_addr.map(|a| a.parse().unwrap()),
            host_port,
            container_port,
            proto: Proto::Tcp,
        });
        container
    }

    fn dial(source: &str, host: &str, port: u16) -> ContainerConnection {
        ContainerConnection {
            source: source.parse().unwrap(),
            destination: host.parse().unwrap(),
            port,
            proto: Proto::Tcp,
            proxied: true,
        }
    }

    #[test]
    fn a_container_dialling_a_published_port_is_judged_between() {
        let policy = parse(
            "p.toml",
            r#"
[guard]
interfaces = ["eth0"]
between = "drop"
[[between]]
name = "only the proxy reaches the app"
from = { container = "proxy" }
to = { container = "app" }
ports = [8000]
"#,
        )
        .unwrap()
        .policy;
        let containers = [
            container("proxy", &[], &["172.18.0.2"]),
            published(
                container("app", &[], &["172.18.0.3", "fd00:18::3"]),
                None,
                8082,
                8000,
            ),
            published(
                container("other", &[], &["172.18.0.4"]),
                Some("203.0.113.5"),
                9000,
                9000,
            ),
        ];
        let ruleset = compile(&policy, &containers);
        let rendered: Vec<String> = ruleset
            .chain("between-proxied")
            .unwrap()
            .rules
            .iter()
            .map(render_rule)
            .collect();
        assert_eq!(
            rendered,
            [
                "meta nfproto ipv6 ip6 saddr @unattributed-from-v6 meta l4proto tcp th dport 8082 goto unattributed comment \"IPv6 link-local: names no container\"",
                "meta nfproto ipv4 ip saddr @between-1-from-v4 meta l4proto tcp th dport 8082 ct label set 94 goto between-1 comment \"only the proxy reaches the app\"",
                "meta l4proto tcp th dport 8082 ct label set 94 goto between-default comment \"between default\"",
                "meta nfproto ipv4 ip daddr @between-default-host-2-v4 meta l4proto tcp th dport 9000 ct label set 94 goto between-default comment \"between default\"",
            ]
        );
        let input: Vec<String> = ruleset
            .chain("input")
            .unwrap()
            .rules
            .iter()
            .map(render_rule)
            .collect();
        assert!(
            input.contains(&"iifname \"docker0\" ct state new goto between-proxied comment \"new connection from a container\"".to_string()),
            "{input:#?}"
        );
        let allow = Decision::Rule {
            name: "only the proxy reaches the app".into(),
            action: Action::Allow,
        };
        let drop = Decision::Default { action: Action::Drop };
        for (connection, expected) in [
            (dial("172.18.0.2", "203.0.113.5", 8082), allow.clone()),
            (dial("172.18.0.2", "172.18.0.1", 8082), allow),
            (dial("172.18.0.4", "203.0.113.5", 8082), drop.clone()),
            (dial("172.18.0.2", "203.0.113.5", 9000), drop),
            (dial("172.18.0.2", "203.0.113.6", 9000), Decision::NotJudged),
            (dial("172.18.0.2", "203.0.113.5", 22), Decision::NotJudged),
        ] {
            assert_eq!(
                evaluate_container(&policy, &containers, &connection, Direction::Between),
                expected,
                "{connection:?}"
            );
            assert_eq!(
                evaluate_ruleset_container(&ruleset, &connection, Direction::Between),
                expected,
                "{connection:?}"
            );
        }
        let explained = explain_container(
            &policy,
            &containers,
            &dial("172.18.0.2", "203.0.113.5", 9000),
            Direction::Between,
        );
        assert_eq!(
            explained.misses[0].reason,
            "host port 9000/tcp is published by other (container port 9000), not by a container of container \"app\""
        );
        let explained = explain_container(
            &policy,
            &containers,
            &dial("172.18.0.2", "203.0.113.5", 22),
            Direction::Between,
        );
        assert_eq!(
            explained.not_judged.as_deref(),
            Some("no running container publishes port 22/tcp on that address: it is for the host itself")
        );
    }
}

#[test]
fn the_names_of_status_rows_are_reserved() {
    for name in [
        "default",
        "untracked",
        "unattributed",
        "outbound default",
        "between default",
        "default ",
        "Default",
        "Outbound  Default",
    ] {
        let text = format!("[guard]\ninterfaces = [\"eth0\"]\n\n[[rule]]\nname = \"{name}\"\nports = [80]\n");
        let error = dockfw_core::parse("policy.toml", &text).expect_err(name);
        assert!(
            error
                .to_string()
                .contains(&format!("the name \"{name}\" is reserved")),
            "{error}"
        );
    }
}
