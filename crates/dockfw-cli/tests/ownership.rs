//! status/diff/apply/remove/check against tables others changed or own, run
//! as a user would inside a network namespace of its own (`--netns NAME`).
//! Tampering is done with the `nft` binary. Needs root: `#[ignore]`d, run by
//! `cargo xtask test` as root.

mod common;

use common::{Run, tempdir};
use dockfw_nft::testing::TestNetns;
use std::path::Path;

/// Runs `nft ARGS` inside the namespace; its output.
fn nft(netns: &TestNetns, args: &[&str]) -> String {
    netns.exec("nft", args)
}

/// The command with this test's policy file, `DIR/policy.toml`.
fn dockfw(netns: &TestNetns, dir: &Path, args: &[&str], code: i32) -> Run {
    let args: Vec<&str> = ["--config", "policy.toml"].iter().chain(args).copied().collect();
    common::dockfw(netns, dir, &args, code)
}

const POLICY: &str = r#"
[guard]
interfaces = ["eth0"]
default = "drop"

[[rule]]
name = "website"
ports = ["80/tcp"]
"#;

#[test]
#[ignore = "needs root"]
fn tampering_is_shown_with_exit_1_and_repaired() {
    let netns = TestNetns::new().unwrap();
    let dir = tempdir("tamper");
    std::fs::write(dir.join("policy.toml"), POLICY).unwrap();
    dockfw(&netns, &dir, &["apply"], 0);

    nft(
        &netns,
        &[
            "add", "table", "inet", "dockfw", "{", "flags", "dormant", ";", "}",
        ],
    );
    let status = dockfw(&netns, &dir, &["status"], 1);
    assert!(
        status
            .stdout
            .contains("differs from policy.toml: table is dormant: every chain is off"),
        "{}",
        status.stdout
    );
    let diff = dockfw(&netns, &dir, &["diff"], 1);
    assert!(diff.stdout.contains("-\tflags dormant\n"), "{}", diff.stdout);
    dockfw(&netns, &dir, &["apply"], 0);
    dockfw(&netns, &dir, &["status"], 0);

    nft(
        &netns,
        &[
            "insert", "rule", "inet", "dockfw", "forward", "tcp", "dport", "22", "accept",
        ],
    );
    nft(
        &netns,
        &["add", "rule", "inet", "dockfw", "forward", "log", "group", "7"],
    );
    nft(
        &netns,
        &[
            "add", "chain", "inet", "dockfw", "forward", "{", "policy", "drop", ";", "}",
        ],
    );
    nft(
        &netns,
        &[
            "add",
            "set",
            "inet",
            "dockfw",
            "foreign",
            "{",
            "type",
            "ipv4_addr",
            ";",
            "}",
        ],
    );
    nft(
        &netns,
        &[
            "add", "quota", "inet", "dockfw", "q", "{", "over", "1000", "bytes", ";", "}",
        ],
    );
    nft(&netns, &["add", "counter", "inet", "dockfw", "cnt"]);
    let status = dockfw(&netns, &dir, &["status"], 1);
    // `log group 7` (no prefix) is no rule dockfw writes; `tcp dport 22
    // accept` could be (a rule needs no counter), but the policy has none.
    for shown in ["1 rule dockfw did not write", "1 rule not in the policy"] {
        assert!(status.stdout.contains(shown), "{shown}: {}", status.stdout);
    }
    let diff = dockfw(&netns, &dir, &["diff"], 1);
    for line in [
        "-\t\tmeta l4proto tcp th dport 22 accept\n",
        "-\t\tlog group 7\n",
        "-\t\ttype filter hook forward priority -5; policy drop;\n",
        "-\tset foreign {",
        "-\tquota q { over 1000 bytes }\n",
        "-\tcounter cnt\n",
    ] {
        assert!(diff.stdout.contains(line), "{line:?} not in\n{}", diff.stdout);
    }
    let json = dockfw(&netns, &dir, &["--json", "diff"], 1);
    let json: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(json["equal"], false);
    assert_eq!(json["differences"].as_array().unwrap().len(), 6, "{json:#}");
    dockfw(&netns, &dir, &["apply"], 0);
    dockfw(&netns, &dir, &["diff"], 0);
    let json = dockfw(&netns, &dir, &["--json", "status"], 0);
    let json: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(
        (json["owned"].clone(), json["marked"].clone()),
        (true.into(), true.into())
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[ignore = "needs root"]
fn a_foreign_table_survives_apply_and_remove_unless_told() {
    let netns = TestNetns::new().unwrap();
    let dir = tempdir("foreign");
    std::fs::write(
        dir.join("policy.toml"),
        POLICY.replace("[guard]", "[guard]\ntable = \"filter\""),
    )
    .unwrap();
    let host = "table inet filter {
        chain input { type filter hook input priority 0; policy drop; tcp dport 22 accept; }
        chain forward { type filter hook forward priority 0; policy drop; }
    }";
    std::fs::write(dir.join("host.nft"), host).unwrap();
    nft(&netns, &["-f", dir.join("host.nft").to_str().unwrap()]);
    let before = nft(&netns, &["list", "table", "inet", "filter"]);

    let check = dockfw(&netns, &dir, &["check"], 0);
    assert!(
        check
            .stderr
            .contains("table inet filter exists and is not dockfw's"),
        "{}",
        check.stderr
    );
    let status = dockfw(&netns, &dir, &["status"], 1);
    assert!(
        status.stdout.contains("exists but is not dockfw's"),
        "{}",
        status.stdout
    );
    let diff = dockfw(&netns, &dir, &["diff"], 1);
    assert!(diff.stdout.contains("not dockfw's"), "{}", diff.stdout);
    let apply = dockfw(&netns, &dir, &["apply"], 2);
    assert!(apply.stderr.contains("is not dockfw's"), "{}", apply.stderr);
    assert!(apply.stderr.contains("--adopt"), "{}", apply.stderr);
    dockfw(&netns, &dir, &["apply", "--force"], 2);
    dockfw(&netns, &dir, &["remove", "--table", "filter"], 2);
    assert_eq!(nft(&netns, &["list", "table", "inet", "filter"]), before);

    dockfw(&netns, &dir, &["apply", "--adopt"], 0);
    dockfw(&netns, &dir, &["status"], 0);
    let listing = nft(&netns, &["list", "table", "inet", "filter"]);
    assert!(listing.contains("comment \"managed by dockfw-nft\""), "{listing}");
    // Now dockfw's: removed without a flag.
    dockfw(&netns, &dir, &["remove", "--table", "filter"], 0);

    // A foreign `table inet dockfw`: the same, and `remove --foreign` deletes it.
    std::fs::write(dir.join("policy.toml"), POLICY).unwrap();
    nft(
        &netns,
        &[
            "add",
            "table",
            "inet",
            "dockfw",
            "{",
            "comment",
            "\"not yours\"",
            ";",
            "}",
        ],
    );
    dockfw(&netns, &dir, &["apply"], 2);
    dockfw(&netns, &dir, &["remove"], 2);
    dockfw(&netns, &dir, &["remove", "--foreign"], 0);
    dockfw(&netns, &dir, &["apply"], 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[ignore = "needs root"]
fn an_unmarked_dockfw_table_is_recognised() {
    let netns = TestNetns::new().unwrap();
    let dir = tempdir("legacy");
    std::fs::write(dir.join("policy.toml"), POLICY).unwrap();
    let plan = dockfw(&netns, &dir, &["plan"], 0);
    std::fs::write(dir.join("plan.nft"), plan.stdout).unwrap();
    nft(&netns, &["-f", dir.join("plan.nft").to_str().unwrap()]);
    let status = dockfw(&netns, &dir, &["status"], 0);
    assert!(status.stdout.contains("no ownership marker"), "{}", status.stdout);
    dockfw(&netns, &dir, &["check"], 0);
    dockfw(&netns, &dir, &["apply", "--force"], 0);
    let status = dockfw(&netns, &dir, &["status"], 0);
    assert!(
        !status.stdout.contains("no ownership marker"),
        "{}",
        status.stdout
    );
    dockfw(&netns, &dir, &["remove"], 0);
    let _ = std::fs::remove_dir_all(&dir);
}
