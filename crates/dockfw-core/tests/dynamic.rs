//! Dynamic sets (`dynamic = true`): compiled into run-time kernel sets that
//! rules match, never filled by the policy; evaluated as "known only at run
//! time" unless the caller read them; never a reason for "can never match".

use dockfw_core::layout::{CHAIN_RULES, runtime_set_name, runtime_sets};
use dockfw_core::revoke::{Tracked, ct_label_map, judge};
use dockfw_core::ruleset::{Family, Match, RuntimeSet, SetElements};
use dockfw_core::values::AddrSet;
use dockfw_core::{Action, Connection, Decision, Proto, compile, explain, parse, render};
use std::net::IpAddr;

const POLICY: &str = r#"
[guard]
interfaces = ["eth0"]
default = "accept"

[sets]
banned = { dynamic = true, timeout = "1h" }
knocked = { dynamic = true }
admins = ["203.0.113.10"]

[[rule]]
name = "bans"
from = ["@banned", "192.0.2.66"]
action = "drop"

[[rule]]
name = "admin"
from = ["@admins", "@knocked"]
ports = [22]

[[rule]]
name = "no ssh"
ports = [22]
action = "reject"
"#;

fn addr(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn connection(source: &str, port: u16) -> Connection {
    Connection {
        interface: "eth0".into(),
        source: addr(source),
        dialled: None,
        port,
        proto: Proto::Tcp,
    }
}

#[test]
fn dynamic_sets_compile_first_as_runtime_sets_of_both_families() {
    let parsed = parse("p.toml", POLICY).unwrap();
    let ruleset = compile(&parsed.policy, &[]);
    let runtime: Vec<(&str, SetElements)> = ruleset
        .sets
        .iter()
        .take_while(|set| set.is_runtime())
        .map(|set| (set.name.as_str(), set.elements.clone()))
        .collect();
    let set = |family, timeout_ms| SetElements::Runtime(RuntimeSet { family, timeout_ms });
    assert_eq!(
        runtime,
        [
            ("set-banned-v4", set(Family::Ipv4, Some(3_600_000))),
            ("set-banned-v6", set(Family::Ipv6, Some(3_600_000))),
            ("set-knocked-v4", set(Family::Ipv4, None)),
            ("set-knocked-v6", set(Family::Ipv6, None)),
        ]
    );
    assert!(ruleset.has_runtime_sets_first());
    assert!(!ruleset.sets[4..].iter().any(|set| set.is_runtime()));
    assert_eq!(ruleset.element_count(), 2, "192.0.2.66 and 203.0.113.10 only");
    let names: Vec<String> = runtime_sets(&parsed.policy)
        .into_iter()
        .map(|n| n.kernel)
        .collect();
    assert_eq!(
        names,
        [
            "set-banned-v4",
            "set-banned-v6",
            "set-knocked-v4",
            "set-knocked-v6"
        ]
    );
    assert_eq!(runtime_set_name("banned", Family::Ipv6), "set-banned-v6");

    // "bans": the written address, then the dynamic set in each family.
    let rules = ruleset.chain(CHAIN_RULES).unwrap();
    let sources = |comment: &str| -> Vec<String> {
        rules
            .rules
            .iter()
            .filter(|rule| rule.comment == comment)
            .flat_map(|rule| &rule.matches)
            .filter_map(|m| match m {
                Match::SourceIn { set, .. } => Some(set.clone()),
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        sources("bans"),
        ["rule-1-from-v4", "set-banned-v4", "set-banned-v6"]
    );
    assert_eq!(
        sources("admin"),
        ["rule-2-from-v4", "set-knocked-v4", "set-knocked-v6"]
    );
}

#[test]
fn a_dynamic_set_alone_in_from_matches_both_families_and_an_unused_one_is_still_created() {
    let text = r#"
[guard]
interfaces = ["eth0"]
[sets]
banned = { dynamic = true }
spare = { dynamic = true, timeout = "90s" }
[[rule]]
from = "@banned"
ports = [443]
action = "drop"
"#;
    let parsed = parse("p.toml", text).unwrap();
    // An unused set is worth a warning, as any; never "can never match".
    let warnings: Vec<String> = parsed.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(warnings[0].contains("set \"spare\" is defined but no rule uses it"));
    let ruleset = compile(&parsed.policy, &[]);
    let names: Vec<&str> = ruleset.sets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["set-banned-v4", "set-banned-v6", "set-spare-v4", "set-spare-v6"]
    );
    let rules = &ruleset.chain(CHAIN_RULES).unwrap().rules;
    assert_eq!(rules.len(), 3, "v4, v6, and the default's goto");
    assert_eq!(
        rules[0].matches[..2],
        [
            Match::NfProto(Family::Ipv4),
            Match::SourceIn {
                family: Family::Ipv4,
                set: "set-banned-v4".into()
            }
        ]
    );
    let script = render(&ruleset);
    assert!(
        script.contains(
            "\tset set-spare-v6 {\n\t\ttype ipv6_addr\n\t\tflags timeout\n\t\ttimeout 90s\n\t\t# elements: added at run time"
        ),
        "{script}"
    );
    assert!(script.contains("\tset set-banned-v4 {\n\t\ttype ipv4_addr\n\t\tflags timeout\n\t\t# elements"));
}

#[test]
fn a_dynamic_set_in_to_is_an_error() {
    let text = r#"
[guard]
interfaces = ["eth0"]
[sets]
banned = { dynamic = true }
[[rule]]
to = "@banned"
"#;
    let error = parse("p.toml", text).expect_err("to with a dynamic set");
    let errors: Vec<String> = error.errors().map(ToString::to_string).collect();
    assert_eq!(
        errors,
        [
            "p.toml:7:6: error: rule \"rule 1\": to: set \"@banned\" is dynamic: dynamic sets hold clients' addresses and can only be used in from\n  hint: use \"@banned\" in from, like from = [\"@banned\"], or give to a set written in the policy or a file"
        ]
    );
}

#[test]
fn rules_using_or_following_dynamic_sets_are_never_called_unmatchable() {
    let text = r#"
[guard]
interfaces = ["eth0"]
[sets]
banned = { dynamic = true }
[[rule]]
name = "banned"
from = "@banned"
action = "drop"
[[rule]]
name = "banned again"
from = "@banned"
ports = [22]
[[rule]]
name = "everyone"
"#;
    let parsed = parse("p.toml", text).unwrap();
    assert!(parsed.warnings.is_empty(), "{:#?}", parsed.warnings);

    // Whatever a dynamic set holds, a rule above deciding every address
    // hides the rule using it: bans below an allow for everyone never drop.
    let text = r#"
[guard]
interfaces = ["eth0"]
[sets]
banned = { dynamic = true }
[[rule]]
name = "web"
ports = [443]
[[rule]]
name = "bans"
from = "@banned"
ports = [443]
action = "drop"
"#;
    let warnings: Vec<String> = parse("p.toml", text)
        .unwrap()
        .warnings
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        warnings,
        [
            "p.toml:9:1: warning: rule \"bans\": this rule can never match: rule \"web\" (line 6) above it already decides every connection it would match\n  hint: move it above \"web\", narrow \"web\", or remove it"
        ]
    );
}

#[test]
fn explain_says_when_it_does_not_know_a_dynamic_set_and_knows_it_once_filled() {
    let mut policy = parse("p.toml", POLICY).unwrap().policy;
    let explanation = explain(&policy, &[], &connection("198.51.100.7", 22));
    assert_eq!(
        explanation.decision,
        Decision::Rule {
            name: "no ssh".into(),
            action: Action::Reject
        }
    );
    assert_eq!(explanation.unknown_sets, ["banned", "knocked"]);
    assert_eq!(
        explanation.misses[0].reason,
        "source 198.51.100.7 is not in from = [@banned, 192.0.2.66], unless it is in @banned: \
         dynamic, filled at run time, not read (assumed not to hold it)"
    );
    // A written address decides without the dynamic set.
    let written = explain(&policy, &[], &connection("192.0.2.66", 22));
    assert_eq!(written.decision.action(), Action::Drop);
    assert!(written.unknown_sets.is_empty());

    // Read from the kernel: exact.
    policy
        .sets
        .get_mut("banned")
        .unwrap()
        .fill_runtime(AddrSet::from_addrs([addr("198.51.100.7")]));
    policy
        .sets
        .get_mut("knocked")
        .unwrap()
        .fill_runtime(AddrSet::from_addrs([addr("2001:db8::7")]));
    let banned = explain(&policy, &[], &connection("198.51.100.7", 443));
    assert_eq!(
        banned.decision,
        Decision::Rule {
            name: "bans".into(),
            action: Action::Drop
        }
    );
    assert!(banned.unknown_sets.is_empty());
    let knocked = explain(&policy, &[], &connection("2001:db8::7", 22));
    assert_eq!(knocked.decision.action(), Action::Allow);
    let other = explain(&policy, &[], &connection("198.51.100.8", 22));
    assert_eq!(other.decision.action(), Action::Reject);
    assert_eq!(
        other.misses[0].reason,
        "source 198.51.100.8 is not in from = [@banned, 192.0.2.66]"
    );
}

#[test]
fn revoke_never_cuts_on_a_guess_about_a_dynamic_set() {
    let mut policy = parse("p.toml", POLICY).unwrap().policy;
    let ruleset = compile(&policy, &[]);
    let labels = ct_label_map(&ruleset);
    let bit = labels[0].1;
    // An admin-port connection from someone not written anywhere: "no ssh"
    // rejects it, unless its source is in @knocked, which is not known.
    let tracked = Tracked {
        source: addr("198.51.100.9"),
        dialled: addr("203.0.113.1"),
        port: 22,
        proto: Proto::Tcp,
        dnat: true,
        label_bits: vec![bit],
    };
    assert!(judge(&policy, &[], &labels, &tracked).is_none());
    // Known not to be in either: cut.
    for name in ["banned", "knocked"] {
        policy
            .sets
            .get_mut(name)
            .unwrap()
            .fill_runtime(AddrSet::default());
    }
    let cut = judge(&policy, &[], &labels, &tracked).expect("denied now");
    assert_eq!(cut.decision.action(), Action::Reject);
    // Knocked: kept.
    policy
        .sets
        .get_mut("knocked")
        .unwrap()
        .fill_runtime(AddrSet::from_addrs([addr("198.51.100.9")]));
    assert!(judge(&policy, &[], &labels, &tracked).is_none());
}
