//! The policy's dynamic sets as a user (or fail2ban) sees them, without
//! privilege: `set list|add|del|flush`, their exit codes and messages, and
//! what `apply`, `status`, `diff` and `explain` do with addresses added at
//! run time, each command run in-process against the in-memory backend.
//! The same against the kernel, with real packets and fail2ban, is in
//! `dynamic_kernel.rs`.

mod common;

use clap::Parser;
use common::Run;
use dockfw_cli::backend::Memory;
use dockfw_cli::{Cli, Console};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

const POLICY: &str = r#"
[guard]
interfaces = ["eth0"]
default = "accept"

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

/// A policy in a directory of its own, and tables in memory.
struct Offline {
    dir: PathBuf,
    memory: Memory,
}

impl Offline {
    fn new(policy: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "dockfw-dynamic-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("policy.toml"), policy).unwrap();
        Self {
            dir,
            memory: Memory::new(),
        }
    }

    fn policy(&self, text: &str) {
        std::fs::write(self.dir.join("policy.toml"), text).unwrap();
    }

    /// `dockfw-nft --no-docker -c policy.toml ARGS`, expecting exit `code`.
    fn run(&self, args: &[&str], code: i32) -> Run {
        let config = self.dir.join("policy.toml");
        let cli = Cli::try_parse_from(
            ["dockfw-nft", "--no-docker", "-c", config.to_str().unwrap()]
                .iter()
                .chain(args),
        )
        .unwrap();
        let (console, captured) = Console::capture();
        let exit = dockfw_cli::run(cli, Box::new(self.memory.clone()), console);
        let dir = format!("{}/", self.dir.display());
        let run = Run {
            code: exit as i32,
            stdout: captured.stdout().replace(&dir, ""),
            stderr: captured.stderr().replace(&dir, ""),
        };
        assert_eq!(run.code, code, "dockfw-nft {args:?}: {run:#?}");
        run
    }

    fn banned(&self) -> Vec<String> {
        let table = self.memory.table("dockfw").expect("installed");
        ["set-banned-v4", "set-banned-v6"]
            .iter()
            .flat_map(|set| table.runtime.get(*set).into_iter().flatten())
            .map(|(addr, _)| addr.to_string())
            .collect()
    }
}

impl Drop for Offline {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn set_add_list_del_flush() {
    let offline = Offline::new(POLICY);
    // Not installed yet: exit 1, as status says of a missing table.
    let early = offline.run(&["set", "add", "banned", "192.0.2.7"], 1);
    assert_eq!(
        early.stderr,
        "error: cannot add to @banned in table inet dockfw\n  \
         cause: table `dockfw` does not exist\n\
         hint: install the policy first: `dockfw-nft apply`\n"
    );
    offline.run(&["apply"], 0);

    let added = offline.run(
        &[
            "set",
            "add",
            "banned",
            "192.0.2.7",
            "2001:db8::7",
            "--timeout",
            "10m",
        ],
        0,
    );
    assert_eq!(
        added.stdout,
        "added to @banned: 192.0.2.7, 2001:db8::7 (timeout 10m)\n"
    );
    // Again, and as fail2ban passes its bantime (seconds): no error.
    let again = offline.run(&["set", "add", "@banned", "192.0.2.7", "--timeout", "600"], 0);
    assert_eq!(again.stdout, "added to @banned: 192.0.2.7 (timeout 10m)\n");
    let permanent = offline.run(&["set", "add", "banned", "192.0.2.8/32", "--timeout", "-1"], 0);
    assert_eq!(
        permanent.stdout,
        "added to @banned: 192.0.2.8 (the set's timeout, 1h)\n"
    );
    assert_eq!(offline.banned(), ["192.0.2.7", "192.0.2.8", "2001:db8::7"]);

    let list = offline.run(&["set", "list"], 0);
    assert_eq!(
        list.stdout,
        "@banned (set-banned-v4, set-banned-v6; timeout 1h): 3 addresses\n  \
         192.0.2.7    expires in 10m (timeout 10m)\n  \
         192.0.2.8    expires in 1h\n  \
         2001:db8::7  expires in 10m (timeout 10m)\n"
    );
    let json = offline.run(&["set", "list", "banned", "--json"], 0).json();
    assert_eq!(json["table"], "dockfw");
    assert_eq!(json["sets"][0]["name"], "banned");
    assert_eq!(json["sets"][0]["timeout_ms"], 3_600_000);
    assert_eq!(json["sets"][0]["addresses"][2]["address"], "2001:db8::7");
    assert_eq!(json["sets"][0]["addresses"][2]["timeout_ms"], 600_000);

    let deleted = offline.run(&["set", "del", "banned", "192.0.2.7", "192.0.2.99"], 0);
    assert_eq!(deleted.stdout, "@banned no longer holds 192.0.2.7, 192.0.2.99\n");
    assert_eq!(offline.banned(), ["192.0.2.8", "2001:db8::7"]);
    let flushed = offline.run(&["set", "flush", "banned", "--json"], 0).json();
    assert_eq!(flushed["flushed"], true);
    assert!(offline.banned().is_empty());
    assert_eq!(
        offline.run(&["set", "list", "banned"], 0).stdout,
        "@banned (set-banned-v4, set-banned-v6; timeout 1h): empty\n"
    );
    // Quiet: nothing said.
    assert_eq!(
        offline
            .run(&["set", "add", "-q", "banned", "192.0.2.9"], 0)
            .stdout,
        ""
    );
}

#[test]
fn set_refuses_what_is_not_a_dynamic_set_or_an_address() {
    let offline = Offline::new(POLICY);
    offline.run(&["apply"], 0);
    let static_set = offline.run(&["set", "add", "admins", "192.0.2.7"], 2);
    assert_eq!(
        static_set.stderr,
        "error: set @admins of policy.toml is not dynamic: its addresses are the policy's, and only \
         sets with dynamic = true take addresses at run time (its dynamic sets: @banned)\n"
    );
    let undefined = offline.run(&["set", "list", "bannd"], 2);
    assert_eq!(
        undefined.stderr,
        "error: policy.toml defines no set @bannd (its dynamic sets: @banned)\n"
    );
    let network = offline.run(&["set", "add", "banned", "192.0.2.0/24"], 2);
    assert_eq!(
        network.stderr,
        "error: \"192.0.2.0/24\" holds 256 addresses: a dynamic set holds single addresses; give each \
         address on its own; networks and ranges belong in a set written in the policy or a file\n"
    );
    offline.run(&["set", "add", "banned", "192.0.2.300"], 2);
    let timeout = offline.run(&["set", "add", "banned", "192.0.2.7", "--timeout", "soon"], 2);
    assert!(
        timeout.stderr.contains("--timeout \"soon\" is not a duration"),
        "{}",
        timeout.stderr
    );
    offline.run(&["set", "add", "banned", "192.0.2.7", "--timeout", "0"], 2);
    assert!(offline.banned().is_empty(), "nothing was added");
    // A policy with errors: exit 2, nothing changed.
    offline.policy(&POLICY.replace("[[rule]]\nname = \"admin\"", "[[rule]]\nname = \"bans\""));
    let broken = offline.run(&["set", "add", "banned", "192.0.2.7"], 2);
    assert!(
        broken.stderr.contains("is already used by the rule on line 11"),
        "{}",
        broken.stderr
    );
    // The table installed from a policy without the set: exit 1.
    let fresh = Offline::new(
        &POLICY
            .replace("banned = { dynamic = true, timeout = \"1h\" }\n", "")
            .replace(
                "[[rule]]\nname = \"bans\"\nfrom = \"@banned\"\naction = \"drop\"\n",
                "",
            ),
    );
    fresh.run(&["apply"], 0);
    fresh.policy(POLICY);
    let missing = fresh.run(&["set", "add", "banned", "192.0.2.7"], 1);
    assert!(
        missing
            .stderr
            .contains("table `dockfw` has no set `set-banned-v4`"),
        "{}",
        missing.stderr
    );
}

#[test]
fn addresses_added_at_run_time_are_no_difference_and_survive_applies() {
    let offline = Offline::new(POLICY);
    offline.run(&["apply"], 0);
    offline.run(&["set", "add", "banned", "192.0.2.7", "2001:db8::7"], 0);
    assert_eq!(
        offline.run(&["status"], 0).stdout.lines().next().unwrap(),
        "table inet dockfw: installed, matches policy.toml"
    );
    offline.run(&["diff"], 0);
    let again = offline.run(&["apply"], 0);
    assert!(again.stdout.starts_with("up to date: "), "{}", again.stdout);
    let forced = offline.run(&["apply", "--force", "--json"], 0).json();
    assert_eq!(forced["dynamic_addresses_kept"], 2);
    // Another rule: kept.
    offline.policy(&format!("{POLICY}\n[[rule]]\nname = \"web\"\nports = [443]\n"));
    offline.run(&["apply"], 0);
    assert_eq!(offline.banned(), ["192.0.2.7", "2001:db8::7"]);
    // The set's own timeout changed: recreated, empty, and said so.
    offline.policy(&POLICY.replace("\"1h\"", "\"2h\""));
    let diff = offline.run(&["diff", "--json"], 1).json();
    let differences = diff["differences"].to_string();
    assert!(
        differences
            .contains("dynamic set `set-banned-v4` has other flags or another timeout: apply recreates it"),
        "{differences}"
    );
    let applied = offline.run(&["apply"], 0);
    assert_eq!(
        applied.stderr,
        "warning: dynamic set `set-banned-v4` was recreated: the policy changed its timeout or type, so the \
         addresses added to it at run time (fail2ban, `dockfw-nft set add`) are gone\n\
         warning: dynamic set `set-banned-v6` was recreated: the policy changed its timeout or type, so the \
         addresses added to it at run time (fail2ban, `dockfw-nft set add`) are gone\n"
    );
    assert!(offline.banned().is_empty());
}

#[test]
fn explain_reads_dynamic_sets_when_it_can_and_says_when_it_cannot() {
    let offline = Offline::new(POLICY);
    // Not installed: nothing to read.
    let unknown = offline.run(&["explain", "--from", "192.0.2.7", "--port", "443"], 0);
    assert_eq!(
        unknown.stdout,
        "192.0.2.7 → port 443/tcp on eth0: allow by default (no rule matched)\n  \
         rule \"bans\" did not match: source 192.0.2.7 is not in from = [@banned], unless it is in \
         @banned: dynamic, filled at run time, not read (assumed not to hold it)\n  \
         rule \"admin\" did not match: source 192.0.2.7 is not in from = [@admins]\n\
         note: @banned is dynamic: its addresses exist only in the kernel, and could not be read (table \
         `dockfw` does not exist); this assumes 192.0.2.7 is not in it\n"
    );
    offline.run(&["apply"], 0);
    offline.run(&["set", "add", "banned", "192.0.2.7"], 0);
    let known = offline.run(&["explain", "--from", "192.0.2.7", "--port", "443"], 0);
    assert_eq!(
        known.stdout,
        "192.0.2.7 → port 443/tcp on eth0: drop by rule \"bans\"\n  \
         192.0.2.7 is in @banned, added at run time (`dockfw-nft set list banned`)\n"
    );
    let other = offline
        .run(&["explain", "--from", "192.0.2.8", "--port", "443", "--json"], 0)
        .json();
    assert_eq!(other["explanation"]["decision"]["decided_by"], "default");
    assert!(other["explanation"].get("unknown_sets").is_none(), "{other}");
}
