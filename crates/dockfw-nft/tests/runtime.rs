//! Sets whose elements belong to run time (a policy's `dynamic` sets)
//! against the kernel: created by apply, filled by `add_runtime_elements`
//! (and by `nft`, as other programs would), never compared, rewritten or
//! emptied by apply (unchanged, updated, replaced), emptied by the kernel's
//! timeouts, recreated only when their own flags change (and then said);
//! their element changes are no reason to read the table again. Each test
//! in a namespace of its own.

use dockfw_core::ruleset::Ruleset;
use dockfw_nft::monitor::{Event, Monitor};
use dockfw_nft::testing::TestNetns;
use dockfw_nft::{Change, Error, Nft, RuntimeElement, RuntimeEntry};
use std::time::Duration;

const POLICY: &str = r#"
[guard]
interfaces = ["eth0"]
[sets]
banned = { dynamic = true, timeout = "1h" }
admins = ["203.0.113.10"]
[[rule]]
name = "bans"
from = "@banned"
action = "drop"
[[rule]]
name = "admin"
from = "@admins"
ports = [22]
"#;

fn compiled(text: &str) -> Ruleset {
    dockfw_core::compile(&dockfw_core::parse("p.toml", text).unwrap().policy, &[])
}

fn entry(set: &str, addr: &str, timeout: Option<Duration>) -> RuntimeEntry {
    RuntimeEntry {
        set: set.into(),
        addr: addr.parse().unwrap(),
        timeout,
    }
}

fn addrs(elements: &[RuntimeElement]) -> Vec<String> {
    elements
        .iter()
        .map(|e| e.addr.map_or("*".to_string(), |a| a.to_string()))
        .collect()
}

fn listed(nft: &mut Nft, set: &str) -> Vec<String> {
    addrs(&nft.runtime_elements("dockfw", set).unwrap())
}

/// Feeds every commit the monitor reports until none comes for a while.
fn follow(nft: &mut Nft, monitor: &mut Monitor) {
    while let Some(event) = monitor.next(Some(Duration::from_millis(300))).unwrap() {
        match event {
            Event::Commit(commit) => nft.note_commit(&commit),
            _ => nft.forget_installed(),
        }
    }
}

#[test]
#[ignore = "needs root"]
fn run_time_elements_live_through_applies_and_expire() {
    let ns = TestNetns::new().unwrap();
    let mut monitor = Monitor::in_netns(ns.path()).unwrap();
    let mut nft = ns.nft().unwrap();
    let ruleset = compiled(POLICY);
    nft.apply(&ruleset).unwrap();
    let listing = ns.exec("nft", ["list", "set", "inet", "dockfw", "set-banned-v4"]);
    assert!(
        listing.contains("type ipv4_addr") && listing.contains("timeout 1h"),
        "{listing}"
    );

    // Filled at run time: by us (one transaction, both families, one with
    // a short timeout of its own), and by another program.
    nft.add_runtime_elements(
        "dockfw",
        &[
            entry("set-banned-v4", "192.0.2.7", None),
            entry("set-banned-v6", "2001:db8::7", Some(Duration::from_secs(3))),
        ],
    )
    .unwrap();
    ns.exec(
        "nft",
        ["add element inet dockfw set-banned-v4 { 192.0.2.8 timeout 5m }"],
    );
    let v4 = nft.runtime_elements("dockfw", "set-banned-v4").unwrap();
    assert_eq!(addrs(&v4), ["192.0.2.7", "192.0.2.8"]);
    let left = v4[0].expires.expect("the set's default timeout");
    assert!(
        left > Duration::from_secs(3500) && left <= Duration::from_secs(3600),
        "{v4:?}"
    );
    assert_eq!(v4[1].timeout, Some(Duration::from_secs(300)));
    assert_eq!(listed(&mut nft, "set-banned-v6"), ["2001:db8::7"]);

    // Not a difference, and no reason to read: the image ignores them.
    follow(&mut nft, &mut monitor);
    let before = nft.dump_requests();
    let report = nft.apply(&ruleset).unwrap();
    assert_eq!((report.change, report.reads), (Change::Unchanged, 0));
    assert_eq!(nft.dump_requests(), before, "run-time elements made apply read");
    assert_eq!(nft.installed("dockfw").unwrap(), Some(ruleset.clone()));
    let inspected = nft.inspect("dockfw").unwrap().unwrap();
    let comparison = inspected.compare(&ruleset);
    assert!(comparison.matches(), "{:?}", comparison.differences);

    // A policy change (another rule, another set before ours): kept.
    let grown = compiled(&format!(
        "{POLICY}[[rule]]\nname = \"web\"\nports = [80, 443, 8080]\nto = [\"198.51.100.1\", \"198.51.100.2\"]\n"
    ));
    let report = nft.apply(&grown).unwrap();
    assert_eq!(report.change, Change::Updated);
    assert!(report.recreated_runtime_sets.is_empty());
    assert_eq!(listed(&mut nft, "set-banned-v4"), ["192.0.2.7", "192.0.2.8"]);

    // Rebuilt from scratch (apply --force): put back, with the time left.
    let report = nft.replace(&grown).unwrap();
    assert_eq!(report.change, Change::Replaced);
    // Both IPv4 ones, and the IPv6 one unless its 3 s ran out already.
    assert!((2..=3).contains(&report.runtime_elements_kept), "{report:?}");
    let v4 = nft.runtime_elements("dockfw", "set-banned-v4").unwrap();
    assert_eq!(addrs(&v4), ["192.0.2.7", "192.0.2.8"]);
    assert!(v4[1].expires.unwrap() <= Duration::from_secs(300), "{v4:?}");
    assert_eq!(nft.installed("dockfw").unwrap(), Some(grown.clone()));

    // The kernel's own timeout empties it.
    std::thread::sleep(Duration::from_millis(3500));
    assert!(listed(&mut nft, "set-banned-v6").is_empty());

    // Idempotent: adding what is there, deleting what is not.
    nft.add_runtime_elements("dockfw", &[entry("set-banned-v4", "192.0.2.7", None)])
        .unwrap();
    nft.delete_runtime_elements(
        "dockfw",
        &[
            entry("set-banned-v4", "192.0.2.7", None),
            entry("set-banned-v4", "192.0.2.99", None),
        ],
    )
    .unwrap();
    assert_eq!(listed(&mut nft, "set-banned-v4"), ["192.0.2.8"]);
    nft.flush_runtime_sets("dockfw", &["set-banned-v4", "set-banned-v6"])
        .unwrap();
    assert!(listed(&mut nft, "set-banned-v4").is_empty());

    // Its own timeout changes: recreated (empty), and said so.
    nft.add_runtime_elements("dockfw", &[entry("set-banned-v4", "192.0.2.7", None)])
        .unwrap();
    let shorter = compiled(&policy_with_timeout("10m"));
    let report = nft.apply(&shorter).unwrap();
    assert_eq!(report.recreated_runtime_sets, ["set-banned-v4", "set-banned-v6"]);
    assert!(listed(&mut nft, "set-banned-v4").is_empty());
    assert_eq!(nft.installed("dockfw").unwrap(), Some(shorter));
}

fn policy_with_timeout(timeout: &str) -> String {
    POLICY.replace("timeout = \"1h\"", &format!("timeout = \"{timeout}\""))
}

#[test]
#[ignore = "needs root"]
fn only_dockfws_run_time_sets_take_run_time_elements() {
    let ns = TestNetns::new().unwrap();
    let mut nft = ns.nft().unwrap();
    let v4 = |set: &str| [entry(set, "192.0.2.7", None)];
    assert!(matches!(
        nft.add_runtime_elements("dockfw", &v4("set-banned-v4")),
        Err(Error::NoTable { .. })
    ));
    nft.apply(&compiled(POLICY)).unwrap();
    assert!(matches!(
        nft.add_runtime_elements("dockfw", &v4("set-nothing-v4")),
        Err(Error::NoSet { .. })
    ));
    // The policy's own addresses are not run time's.
    let error = nft
        .add_runtime_elements("dockfw", &v4("set-admins-v4"))
        .unwrap_err();
    assert!(matches!(error, Error::NotRuntimeSet { .. }), "{error}");
    assert!(error.to_string().contains("policy's own addresses"), "{error}");
    // An address of the other family.
    let error = nft
        .add_runtime_elements("dockfw", &[entry("set-banned-v6", "192.0.2.7", None)])
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "ruleset cannot be encoded for nf_tables: 192.0.2.7 cannot go into set `set-banned-v6`, which holds IPv6 addresses"
    );
    // A table that is not dockfw's, with a set of the same form.
    ns.exec(
        "nft",
        ["add table inet host; add set inet host set-banned-v4 { type ipv4_addr; flags timeout; }"],
    );
    assert!(matches!(
        nft.add_runtime_elements("host", &v4("set-banned-v4")),
        Err(Error::NotOwned { .. })
    ));
    assert_eq!(
        ns.exec("nft", ["list set inet host set-banned-v4"])
            .matches("192.0.2.7")
            .count(),
        0
    );
}

#[test]
#[ignore = "needs root"]
fn deleting_works_without_destroy_as_on_kernels_before_6_3() {
    let ns = TestNetns::new().unwrap();
    let mut nft = ns.nft().unwrap();
    dockfw_nft::testing::delete_without_destroy(&mut nft);
    nft.apply(&compiled(POLICY)).unwrap();
    nft.add_runtime_elements(
        "dockfw",
        &[
            entry("set-banned-v4", "192.0.2.7", None),
            entry("set-banned-v4", "192.0.2.8", None),
        ],
    )
    .unwrap();
    // One there, one never added: the absent one is no error.
    nft.delete_runtime_elements(
        "dockfw",
        &[
            entry("set-banned-v4", "192.0.2.7", None),
            entry("set-banned-v4", "192.0.2.9", None),
        ],
    )
    .unwrap();
    assert_eq!(listed(&mut nft, "set-banned-v4"), ["192.0.2.8"]);
    // Nothing there at all: nothing sent.
    nft.delete_runtime_elements("dockfw", &[entry("set-banned-v4", "192.0.2.7", None)])
        .unwrap();
}
