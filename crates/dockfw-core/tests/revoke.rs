//! Revoke without a kernel: label bits in the compiled ruleset, and a tracked
//! connection (tuple, status, labels) rebuilt into a Connection and a Via
//! and judged by the evaluator.

use dockfw_core::Via;
use dockfw_core::revoke::{Tracked, ct_label_map, judge};
use dockfw_core::ruleset::IfName;
use dockfw_core::testing::internals::{
    CT_LABEL_COMMENT, MAX_CT_LABELLED_PATTERNS, interface_ct_labels, path_of,
};
use dockfw_core::{Action, Container, Decision, Proto, PublishedPort, compile, parse};

fn policy(text: &str) -> dockfw_core::Policy {
    parse("p.toml", text).expect("valid policy").policy
}

fn django() -> Container {
    Container {
        name: "django".into(),
        labels: Default::default(),
        published: vec![PublishedPort {
            host_addr: None,
            host_port: 8081,
            container_port: 8000,
            proto: Proto::Tcp,
        }],
        addresses: vec!["172.17.0.2".parse().unwrap(), "fd00::2".parse().unwrap()],
    }
}

fn tracked(source: &str, dialled: &str, port: u16, dnat: bool, bits: &[u8]) -> Tracked {
    Tracked {
        source: source.parse().unwrap(),
        dialled: dialled.parse().unwrap(),
        port,
        proto: Proto::Tcp,
        dnat,
        label_bits: bits.to_vec(),
    }
}

const OLD: &str = r#"
[guard]
interfaces = ["eth0", "wg*"]
default = "drop"
[[rule]]
name = "office"
from = ["198.51.100.0/24"]
ports = [8081, 8000]
[[rule]]
name = "vpn"
interfaces = ["wg0"]
ports = [8081]
"#;

#[test]
fn one_bit_per_interface_pattern_from_127_down_and_read_back_from_the_ruleset() {
    let policy = policy(OLD);
    let labels = interface_ct_labels(&policy);
    assert_eq!(
        labels,
        vec![
            (IfName::Exact("eth0".into()), 127),
            (IfName::Prefix("wg".into()), 126),
            (IfName::Exact("wg0".into()), 125),
        ]
    );
    let ruleset = compile(&policy, &[]);
    assert_eq!(ct_label_map(&ruleset), labels);
    // They fill the `label` chain every allow jumps to, have no verdict,
    // and the evaluator runs through them.
    let rules = ruleset.chain("label").unwrap();
    assert!(
        rules.rules[..3]
            .iter()
            .all(|r| r.comment == CT_LABEL_COMMENT && r.verdict.is_none())
    );
}

#[test]
fn path_comes_from_the_tuple() {
    let containers = [django()];
    assert_eq!(
        path_of(
            &tracked("198.51.100.7", "203.0.113.5", 8081, true, &[127]),
            &containers
        ),
        Via::Published
    );
    assert_eq!(
        path_of(
            &tracked("198.51.100.7", "172.17.0.2", 8000, false, &[127]),
            &containers
        ),
        Via::Routed
    );
    assert_eq!(
        path_of(
            &tracked("2001:db8::7", "2001:db8::5", 8081, false, &[127]),
            &containers
        ),
        Via::Proxied
    );
}

#[test]
fn a_source_the_new_policy_removes_is_cut_one_it_still_allows_is_kept() {
    let old = policy(OLD);
    let map = interface_ct_labels(&old);
    let new = policy(&OLD.replace("198.51.100.0/24", "198.51.100.0/28"));
    let containers = [django()];
    // Still allowed (DNAT path, eth0).
    let kept = tracked("198.51.100.7", "203.0.113.5", 8081, true, &[127]);
    assert_eq!(judge(&new, &containers, &map, &kept), None);
    // Removed: on every path.
    for (dialled, port, dnat) in [("203.0.113.5", 8081, true), ("172.17.0.2", 8000, false)] {
        let cut = tracked("198.51.100.77", dialled, port, dnat, &[127]);
        let verdict = judge(&new, &containers, &map, &cut).expect("cut");
        assert_eq!(verdict.decision, Decision::Default { action: Action::Drop });
        assert_eq!(verdict.connection.interface, "eth0");
    }
    let proxied = tracked("2001:db8::99", "2001:db8::5", 8081, false, &[127]);
    let verdict = judge(&new, &containers, &map, &proxied).expect("cut");
    assert_eq!(verdict.path, Via::Proxied);
    // No dockfw bit: never judged, whatever the policy says.
    assert_eq!(
        judge(
            &new,
            &containers,
            &map,
            &tracked("198.51.100.77", "203.0.113.5", 8081, true, &[])
        ),
        None
    );
    // Its interface is no longer guarded: not ours to judge any more.
    let unguarded = policy(&OLD.replace(r#"["eth0", "wg*"]"#, r#"["wg*"]"#));
    let cut = tracked("198.51.100.77", "203.0.113.5", 8081, true, &[127]);
    assert_eq!(judge(&unguarded, &containers, &map, &cut), None);
}

#[test]
fn a_rule_naming_an_interface_under_a_guarded_wildcard_is_told_apart() {
    let old = policy(OLD);
    let map = interface_ct_labels(&old);
    let containers = [django()];
    // "vpn" admits anyone on wg0; from wg5 only the office gets in.
    let on_wg0 = tracked("192.0.2.1", "203.0.113.5", 8081, true, &[126, 125]);
    assert_eq!(judge(&old, &containers, &map, &on_wg0), None);
    let on_wg5 = tracked("192.0.2.1", "203.0.113.5", 8081, true, &[126]);
    let verdict = judge(&old, &containers, &map, &on_wg5).expect("cut");
    assert!(verdict.connection.interface.starts_with("wg") && verdict.connection.interface != "wg0");
    assert_eq!(verdict.arrived_on, vec![IfName::Prefix("wg".into())]);

    // A new pattern the labels cannot tell (wg5 or wg1?): cut only if denied either way.
    let new = policy(&OLD.replace(r#"interfaces = ["wg0"]"#, r#"interfaces = ["wg1"]"#));
    assert_eq!(
        judge(&new, &containers, &map, &on_wg5),
        None,
        "might be wg1, which vpn admits"
    );
    let denied_everywhere = new.clone();
    let from_elsewhere = tracked("192.0.2.1", "203.0.113.5", 9999, true, &[126]);
    assert!(judge(&denied_everywhere, &containers, &map, &from_elsewhere).is_some());
}

#[test]
fn more_interface_patterns_than_label_bits_are_refused_with_a_location() {
    let names: Vec<String> = (0..=MAX_CT_LABELLED_PATTERNS)
        .map(|i| format!("\"eth{i}\""))
        .collect();
    let text = format!("[guard]\ninterfaces = [{}]\n", names.join(", "));
    let error = parse("p.toml", &text).expect_err("refused");
    let message = error.to_string();
    assert!(message.contains("p.toml:2:"), "{message}");
    assert!(message.contains("at most 32"), "{message}");

    let mut text = "[guard]\ninterfaces = [\"eth*\"]\n".to_string();
    for i in 0..MAX_CT_LABELLED_PATTERNS {
        text += &format!("[[rule]]\nname = \"r{i}\"\ninterfaces = [\"eth{i}\"]\n");
    }
    let error = parse("p.toml", &text).expect_err("refused");
    assert!(
        error
            .to_string()
            .contains("more than 32 distinct interface patterns"),
        "{error}"
    );
}

#[test]
fn revoke_is_on_by_default_and_can_be_turned_off() {
    assert!(policy("[guard]\ninterfaces = [\"eth0\"]\n").guard.revoke);
    assert!(
        !policy("[guard]\ninterfaces = [\"eth0\"]\nrevoke = false\n")
            .guard
            .revoke
    );
    let error = parse("p.toml", "[guard]\ninterfaces = [\"eth0\"]\nrevoke = \"no\"\n").expect_err("refused");
    assert!(error.to_string().contains("p.toml:3:10"), "{error}");
}
