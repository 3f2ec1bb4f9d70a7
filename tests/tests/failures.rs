//! Failed applies leave the previous policy enforced, shown with packets:
//! a policy with a configuration error is refused before anything reaches
//! the kernel, and a ruleset the kernel rejects changes nothing. Both
//! replacement policies would have opened the port to everyone, so a
//! partial apply could not go unnoticed.
//!
//! Needs root and docker.io: `#[ignore]`d, run by `cargo xtask test` as root.

mod common;

use common::{Firewall, check, tcp, udp};
use dockfw_core::layout::CHAIN_RULES;
use dockfw_core::ruleset::{Rule, Verdict};
use dockfw_e2e::addr::{
    HOST_INET_A, HOST_INET6_A, HOST_LAN, INET_SOURCES as INET, INET6_SOURCES as INET6, LAN_SOURCES as LAN,
};
use dockfw_e2e::{Client, Lab, Probe, ProbeResult, Proto};

use Client::{Internet, Lan};
use ProbeResult::{Open, TimedOut};

/// In force throughout: one source allowed, everyone else dropped.
const ENFORCED: &str = r#"
    [guard]
    interfaces = ["eth0", "eth1"]
    default = "drop"

    [[rule]]
    name = "web"
    from = ["198.51.100.10", "2001:db8:100::10"]
    ports = ["8081/tcp", "8081/udp"]
"#;

/// What the failed replacements would do: open to everyone.
const OPEN_TO_ALL: &str = r#"
    [guard]
    interfaces = ["eth0", "eth1"]
    default = "accept"
"#;

fn enforced(lab: &Lab, when: &str) {
    check(
        lab,
        when,
        &[
            (tcp(Internet, INET[0], HOST_INET_A, 8081), Open),
            (udp(Internet, INET[0], HOST_INET_A, 8081), Open),
            (tcp(Internet, INET6[0], HOST_INET6_A, 8081), Open),
            (tcp(Internet, INET[1], HOST_INET_A, 8081), TimedOut),
            (udp(Internet, INET[1], HOST_INET_A, 8081), TimedOut),
            (tcp(Internet, INET6[1], HOST_INET6_A, 8081), TimedOut),
            (tcp(Lan, LAN[0], HOST_LAN, 8081), TimedOut),
        ],
    );
}

#[test]
#[ignore = "needs root and the Docker lab"]
fn failed_applies_leave_the_previous_policy_enforced() {
    let (_serial, lab) = common::lab("dfwe-fail");
    lab.run_echo(
        "web",
        &["8081:8000/tcp", "8081:8000/udp"],
        &[(Proto::Tcp, 8000), (Proto::Udp, 8000)],
    )
    .unwrap();
    let mut fw = Firewall::new(&lab);
    let before = fw.apply(ENFORCED);
    enforced(&lab, "the policy in force");

    // Configuration errors: TOML that does not parse, and TOML that parses
    // but fails validation. Each is refused with a diagnostic; the CLI
    // stops there, so nothing is applied.
    for (broken, says) in [
        (
            format!("{OPEN_TO_ALL}\n[[rule]\nname = \"unclosed\"\n"),
            "unclosed",
        ),
        (
            format!("{OPEN_TO_ALL}\n[[rule]]\nfrom = \"@nowhere\"\nports = [8081]\n"),
            "nowhere",
        ),
        (
            format!("{OPEN_TO_ALL}\n[[rule]]\nports = [8081]\nactoin = \"allow\"\n"),
            "actoin",
        ),
    ] {
        let err = common::parse(&broken).expect_err("a broken policy");
        assert!(err.to_string().contains(says), "{err}");
        assert_eq!(fw.installed("dockfw").as_ref(), Some(&before));
        enforced(&lab, &format!("after refusing a broken policy ({says})"));
    }

    // The kernel refuses a ruleset (a jump to a chain that does not exist):
    // the whole transaction is rejected, the previous table stays as it was.
    let mut refused = fw.compile(OPEN_TO_ALL);
    let rules = refused
        .chains
        .iter_mut()
        .find(|c| c.name == CHAIN_RULES)
        .expect("the rules chain");
    rules.rules.insert(
        0,
        Rule {
            comment: "jumps nowhere".into(),
            matches: vec![],
            statements: vec![],
            verdict: Some(Verdict::Jump("no-such-chain".into())),
        },
    );
    let err = fw.apply_ruleset(&refused).expect_err("the kernel refuses it");
    assert!(matches!(err, dockfw_nft::Error::Rejected { .. }), "{err:?}");
    assert!(err.to_string().contains("jumps nowhere"), "{err}");
    assert_eq!(fw.installed("dockfw").as_ref(), Some(&before));
    enforced(&lab, "after the kernel refused a ruleset");

    // Without the faulty rule the same ruleset applies and opens the port:
    // the refusal above is what kept it closed.
    rules_without_fault(&mut refused);
    fw.apply_ruleset(&refused).unwrap();
    let everyone: Vec<Probe> = [
        tcp(Internet, INET[1], HOST_INET_A, 8081),
        udp(Internet, INET[1], HOST_INET_A, 8081),
        tcp(Lan, LAN[0], HOST_LAN, 8081),
    ]
    .into();
    check(&lab, "the corrected ruleset", &common::expect(everyone, Open));
}

fn rules_without_fault(ruleset: &mut dockfw_core::Ruleset) {
    for chain in &mut ruleset.chains {
        chain.rules.retain(|r| r.comment != "jumps nowhere");
    }
}
