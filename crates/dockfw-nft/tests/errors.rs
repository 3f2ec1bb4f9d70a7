//! Kernel errors name the object at fault, refused batches change nothing,
//! and missing privilege is reported as such.

mod common;

use dockfw_core::ruleset::{Family, Match, Rule, Verdict};
use dockfw_nft::Error;
use dockfw_nft::testing::TestNetns;

fn with_extra_rule(rule: Rule) -> dockfw_core::ruleset::Ruleset {
    let mut broken = common::realistic("dockfw");
    let policy = broken.chains.iter_mut().find(|c| c.name == "policy").unwrap();
    policy.rules.insert(1, rule);
    broken
}

#[test]
#[ignore = "needs root"]
fn jump_to_missing_chain_names_the_rule_and_changes_nothing() {
    let ns = TestNetns::new().unwrap();
    let mut nft = ns.nft().unwrap();
    let good = common::realistic("dockfw");
    nft.apply(&good).unwrap();
    let generation = nft.generation().unwrap();

    let broken = with_extra_rule(Rule {
        comment: "broken-rule".into(),
        matches: vec![Match::NfProto(Family::Ipv4)],
        statements: vec![],
        verdict: Some(Verdict::Jump("no-such-chain".into())),
    });
    let err = nft.apply(&broken).unwrap_err();
    let text = err.to_string();
    eprintln!("{text}");
    let Error::Rejected { failures, .. } = &err else {
        panic!("expected Rejected, got {err:?}")
    };
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].errno, libc::ENOENT);
    assert!(
        text.contains("rule 1 \"broken-rule\" in chain `policy`"),
        "{text}"
    );
    assert!(text.contains("jumps to a chain that does not exist"), "{text}");
    assert!(text.contains("Jump(\"no-such-chain\")"), "{text}");
    // The refused batch left the table exactly as it was, in the same generation.
    assert_eq!(nft.installed("dockfw").unwrap(), Some(good));
    assert_eq!(nft.generation().unwrap(), generation);
}

#[test]
#[ignore = "needs root"]
fn lookup_in_missing_set_names_the_match() {
    let ns = TestNetns::new().unwrap();
    let mut nft = ns.nft().unwrap();
    let good = common::realistic("dockfw");
    nft.apply(&good).unwrap();

    let broken = with_extra_rule(Rule {
        comment: "uses a ghost set".into(),
        matches: vec![
            Match::NfProto(Family::Ipv6),
            Match::SourceIn {
                family: Family::Ipv6,
                set: "ghost-v6".into(),
            },
        ],
        statements: vec![],
        verdict: Some(Verdict::Accept),
    });
    let text = nft.apply(&broken).unwrap_err().to_string();
    eprintln!("{text}");
    assert!(text.contains("\"uses a ghost set\""), "{text}");
    assert!(text.contains("(`lookup`) of match 1 SourceIn"), "{text}");
    assert!(text.contains("refers to a set that does not exist"), "{text}");
    assert!(text.contains("ENOENT"), "{text}");
    assert_eq!(nft.installed("dockfw").unwrap(), Some(good));
}

#[test]
fn invalid_names_are_refused_before_the_kernel() {
    // No privilege needed: encoding fails first.
    let mut bad = common::realistic("dockfw");
    bad.chains[0].rules[0].comment = "x".repeat(200);
    if let Ok(mut nft) = dockfw_nft::Nft::open() {
        let err = nft.apply(&bad).unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{err}");
    }
}

/// Drops CAP_NET_ADMIN from the calling thread only (capabilities are per
/// thread on Linux; the raw syscall avoids libc broadcasting to all threads).
fn drop_net_admin_in_this_thread() {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    const CAP_NET_ADMIN: u32 = 12;
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget/capset with a v3 header and two data structs, as the ABI requires.
    unsafe {
        assert_eq!(
            libc::syscall(libc::SYS_capget, &raw mut header, data.as_mut_ptr()),
            0
        );
        data[0].effective &= !(1 << CAP_NET_ADMIN);
        data[0].permitted &= !(1 << CAP_NET_ADMIN);
        assert_eq!(libc::syscall(libc::SYS_capset, &raw mut header, data.as_ptr()), 0);
    }
}

#[test]
#[ignore = "needs root"]
fn without_cap_net_admin_the_error_says_so() {
    let ns = TestNetns::new().unwrap();
    let path = ns.path();
    let (apply, read) = std::thread::spawn(move || {
        drop_net_admin_in_this_thread();
        let mut nft = dockfw_nft::Nft::in_netns(&path).unwrap();
        (
            nft.apply(&common::realistic("dockfw")).unwrap_err(),
            nft.installed("dockfw").unwrap_err(),
        )
    })
    .join()
    .unwrap();
    for err in [apply, read] {
        let text = err.to_string();
        assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");
        assert!(
            text.contains("CAP_NET_ADMIN") && text.contains("run as root"),
            "{text}"
        );
    }
    // Nothing was installed.
    assert_eq!(ns.nft().unwrap().installed("dockfw").unwrap(), None);
}

#[test]
#[ignore = "needs root"]
fn remove_absent_table_is_fine_and_remove_leaves_nothing() {
    let ns = TestNetns::new().unwrap();
    let mut nft = ns.nft().unwrap();
    assert!(!nft.remove("dockfw").unwrap());
    nft.apply(&common::realistic("dockfw")).unwrap();
    assert!(nft.remove("dockfw").unwrap());
    assert_eq!(nft.installed("dockfw").unwrap(), None);
    assert!(nft.counters("dockfw").unwrap().is_empty());
    assert!(!nft.remove("dockfw").unwrap());
    let listing = ns.exec("nft", ["list", "ruleset"]);
    assert_eq!(listing.trim(), "");
}

#[test]
#[ignore = "needs root"]
fn counters_list_every_rule_with_its_comment() {
    let ns = TestNetns::new().unwrap();
    let mut nft = ns.nft().unwrap();
    let want = common::realistic("dockfw");
    nft.apply(&want).unwrap();
    let counters = nft.counters("dockfw").unwrap();
    let expected: Vec<(String, usize, String)> = want
        .chains
        .iter()
        .flat_map(|c| {
            c.rules
                .iter()
                .enumerate()
                .map(|(i, r)| (c.name.clone(), i, r.comment.clone()))
        })
        .collect();
    let got: Vec<(String, usize, String)> = counters
        .iter()
        .map(|c| (c.chain.clone(), c.index, c.comment.clone()))
        .collect();
    assert_eq!(got, expected);
    assert!(
        counters
            .iter()
            .all(|c| c.packets == 0 && c.bytes == 0 && c.handle > 0)
    );
}

#[test]
#[ignore = "needs root"]
fn validate_checks_with_the_kernel_and_commits_nothing() {
    let ns = TestNetns::new().unwrap();
    let mut nft = ns.nft().unwrap();
    let generation = nft.generation().unwrap();
    // A ruleset the kernel takes: validated, yet no table appears.
    nft.validate(&common::realistic("dockfw")).unwrap();
    // One it refuses: the rule is named, as apply would name it.
    let broken = with_extra_rule(Rule {
        comment: "broken-rule".into(),
        matches: vec![Match::NfProto(Family::Ipv4)],
        statements: vec![],
        verdict: Some(Verdict::Jump("no-such-chain".into())),
    });
    let err = nft.validate(&broken).unwrap_err();
    let Error::Rejected { failures, .. } = &err else {
        panic!("expected Rejected, got {err:?}")
    };
    assert!(
        failures.iter().any(|f| f.to_string().contains("broken-rule")),
        "{err}"
    );
    // Neither batch committed: the ruleset generation did not move, and
    // nothing exists in the namespace.
    assert_eq!(nft.generation().unwrap(), generation);
    assert_eq!(nft.installed("dockfw").unwrap(), None);
    let listing = ns.exec("nft", ["list", "ruleset"]);
    assert_eq!(listing.trim(), "", "{listing}");
    // And it can be installed after all.
    nft.apply(&common::realistic("dockfw")).unwrap();
    assert!(nft.installed("dockfw").unwrap().is_some());
}
