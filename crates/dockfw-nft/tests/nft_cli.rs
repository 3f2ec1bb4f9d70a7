//! Cross-check with the real `nft` binary (nftables 1.0.6) in the same namespace.

mod common;

use dockfw_nft::testing::{TestNetns, require_root};
use std::process::Command;

fn nft_list(ns: &TestNetns, table: &str) -> String {
    let out = Command::new("nsenter")
        .arg(format!("--net={}", ns.path().display()))
        .args(["nft", "list", "table", "inet", table])
        .output()
        .expect("nsenter/nft not runnable");
    assert!(
        out.status.success(),
        "nft list failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn nft_lists_what_we_installed() {
    if !require_root("nft_lists_what_we_installed") {
        return;
    }
    let ns = TestNetns::new().unwrap();
    let mut nft = ns.nft().unwrap();
    nft.apply(&common::realistic("dockfw")).unwrap();
    let listing = nft_list(&ns, "dockfw");
    println!("{listing}");
    for needle in [
        "comment \"web\"",
        "counter packets 0 bytes 0",
        "192.0.2.0/24",
        "198.51.100.10-198.51.100.20",
        "2001:db8::/32",
        "443-444",
        "60000-65535",
        "iifname \"wg*\"",
        "oifname \"br-*\"",
        "ct status dnat",
        "ct original proto-dst @rule-1-tcp",
        "limit rate 5/second burst 10 packets",
        "update @rule-3-rate-v4 { ip saddr limit rate over 10/minute }",
        "add @rule-3-conn-v6 { ip6 saddr ct count over 20 }",
        "flags dynamic,timeout",
        "log prefix \"dockfw web: \"",
        "reject with tcp reset",
        "reject with icmpx admin-prohibited",
        "type filter hook forward priority filter - 5; policy accept;",
    ] {
        assert!(
            listing.contains(needle),
            "`nft list` lacks {needle:?}:\n{listing}"
        );
    }
}
