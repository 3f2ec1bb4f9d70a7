//! `status`, `diff`, `apply` and `remove` as a user sees them, without
//! privilege: each command runs in-process ([`dockfw_cli::run`]) against the
//! in-memory backend ([`Memory`]) and its console is captured. What the
//! kernel really does with the same commands is tested in `kernel.rs` and
//! `ownership.rs` (root); the snapshots here that have a kernel twin
//! (`kernel__status`, `kernel__diff`, `kernel__apply`) must read the same.

mod common;

use clap::Parser;
use common::{POLICY, Run, stable};
use dockfw_cli::backend::{Memory, MemoryTable};
use dockfw_cli::{Cli, Console};
use dockfw_core::layout;
use dockfw_nft::MARKER;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A policy file in a directory of its own, and the tables in memory.
struct Offline {
    dir: PathBuf,
    memory: Memory,
}

impl Offline {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "dockfw-offline-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let offline = Self {
            dir,
            memory: Memory::new(),
        };
        offline.policy(POLICY);
        offline
    }

    fn policy(&self, text: &str) {
        std::fs::write(self.dir.join("policy.toml"), text).unwrap();
    }

    /// Runs `dockfw-nft --no-docker -c DIR/policy.toml ARGS` expecting exit
    /// `code`; the directory is left out of the output, so it reads as if run
    /// in it with `-c policy.toml`.
    fn run(&self, args: &[&str], code: i32) -> Run {
        let config = self.dir.join("policy.toml");
        // Downloads are kept here, never under /var/lib.
        let cache = self.dir.join("cache");
        let cli = Cli::try_parse_from(
            [
                "dockfw-nft",
                "--no-docker",
                "-c",
                config.to_str().unwrap(),
                "--cache-dir",
                cache.to_str().unwrap(),
            ]
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

    /// The ruleset the policy compiles to (no containers).
    fn desired(&self) -> dockfw_core::Ruleset {
        let text = std::fs::read_to_string(self.dir.join("policy.toml")).unwrap();
        let parsed = dockfw_core::parse_bytes("policy.toml", text.as_bytes()).unwrap();
        dockfw_core::compile(&parsed.policy, &[])
    }

    fn table(&self) -> Option<MemoryTable> {
        self.memory.table("dockfw")
    }
}

impl Drop for Offline {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `apply --json` without the time it took.
fn stable_json(run: &Run) -> String {
    let mut json = run.json();
    assert!(json["elapsed_ms"].is_number(), "{json}");
    json["elapsed_ms"] = serde_json::Value::Null;
    format!("{json:#}")
}

const FOREIGN: &str = "host firewall";

#[test]
fn status_not_installed() {
    let offline = Offline::new();
    let status = offline.run(&["status"], 1);
    assert_eq!(status.stdout, "table inet dockfw: not installed\n");
    assert_eq!(status.stderr, "");
    let json = offline.run(&["status", "--json"], 1).json();
    assert_eq!(json["installed"], false);
    assert_eq!(json["owned"], false);
    assert_eq!(json["matches_policy"], false);
    assert_eq!(json["rules"], serde_json::json!([]));
    assert_eq!(json["default"], serde_json::Value::Null);
}

#[test]
fn status_matches_and_shows_counters() {
    let offline = Offline::new();
    offline.run(&["apply"], 0);
    let status = offline.run(&["status"], 0);
    // What the kernel test shows for the same policy, counters at zero.
    insta::assert_snapshot!("status-fresh", status.stdout);

    offline.memory.count("dockfw", &layout::rule_counter(0), 7, 1500);
    offline.memory.count("dockfw", &layout::rule_counter(2), 2, 120);
    offline
        .memory
        .count("dockfw", &layout::default_counter(), 31, 4 << 20);
    let status = offline.run(&["status"], 0);
    insta::assert_snapshot!("status-counted", status.stdout);
    let json = offline.run(&["status", "--json"], 0);
    insta::assert_snapshot!("status-counted-json", json.stdout);
}

/// Checks `text` is Prometheus' text format as far as dockfw writes it:
/// every sample follows the `# HELP` and `# TYPE` of its family, names and
/// label names are valid, label values quoted, values numbers. Returns the
/// samples as (name{labels}, value).
fn prometheus_samples(text: &str) -> Vec<(String, f64)> {
    let valid_name = |name: &str| {
        !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let mut family = None;
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(help) = line.strip_prefix("# HELP ") {
            let name = help.split(' ').next().unwrap();
            assert!(valid_name(name), "{line}");
            family = Some((name.to_string(), false));
            continue;
        }
        if let Some(kind) = line.strip_prefix("# TYPE ") {
            let (name, kind) = kind.split_once(' ').unwrap();
            let (helped, typed) = family.as_mut().expect("TYPE after HELP");
            assert_eq!(name, helped.as_str(), "{line}");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            *typed = true;
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line}"));
        let name = series.split('{').next().unwrap();
        let (helped, typed) = family.as_ref().expect("a sample of a family");
        assert!(*typed, "{line}");
        assert!(
            name == helped
                || name
                    .strip_prefix(helped.as_str())
                    .is_some_and(|s| ["_bucket", "_sum", "_count"].contains(&s)),
            "{line} outside its family {helped}"
        );
        if let Some(labels) = series.strip_prefix(name).filter(|l| !l.is_empty()) {
            let labels = labels
                .strip_prefix('{')
                .and_then(|l| l.strip_suffix('}'))
                .unwrap();
            for pair in labels.split("\",").filter(|p| !p.is_empty()) {
                let (label, quoted) = pair.split_once('=').unwrap_or_else(|| panic!("{line}"));
                assert!(valid_name(label), "{line}");
                assert!(quoted.starts_with('"'), "{line}");
            }
            assert!(labels.ends_with('"'), "{line}");
        }
        samples.push((series.to_string(), value));
    }
    samples
}

#[test]
fn status_in_prometheus_format_for_the_textfile_collector() {
    let offline = Offline::new();
    let missing = offline.run(&["status", "--format", "prometheus"], 1);
    let samples = prometheus_samples(&missing.stdout);
    assert!(
        samples.contains(&("dockfw_table_installed{table=\"dockfw\"}".into(), 0.0)),
        "{}",
        missing.stdout
    );
    assert!(
        !missing.stdout.contains("dockfw_rule_packets_total{"),
        "{}",
        missing.stdout
    );

    offline.run(&["apply"], 0);
    offline.memory.count("dockfw", &layout::rule_counter(0), 7, 1500);
    offline.memory.count("dockfw", &layout::rule_counter(2), 2, 120);
    offline
        .memory
        .count("dockfw", &layout::default_counter(), 31, 4 << 20);
    let status = offline.run(&["status", "--format", "prometheus"], 0);
    assert_eq!(status.stderr, "");
    let samples = prometheus_samples(&status.stdout);
    for expected in [
        ("dockfw_table_installed{table=\"dockfw\"}", 1.0),
        ("dockfw_table_matches_policy{table=\"dockfw\"}", 1.0),
        (
            "dockfw_rule_packets_total{table=\"dockfw\",rule=\"website\",action=\"allow\",direction=\"inbound\"}",
            7.0,
        ),
        (
            "dockfw_rule_bytes_total{table=\"dockfw\",rule=\"databases\",action=\"reject\",direction=\"inbound\"}",
            120.0,
        ),
        (
            "dockfw_rule_packets_total{table=\"dockfw\",rule=\"admin panel\",action=\"allow\",direction=\"inbound\"}",
            0.0,
        ),
        (
            "dockfw_default_packets_total{table=\"dockfw\",action=\"drop\",direction=\"inbound\"}",
            31.0,
        ),
        (
            "dockfw_default_bytes_total{table=\"dockfw\",action=\"drop\",direction=\"inbound\"}",
            4194304.0,
        ),
        ("dockfw_untracked_dropped_packets_total{table=\"dockfw\"}", 0.0),
    ] {
        assert!(
            samples.contains(&(expected.0.to_string(), expected.1)),
            "{expected:?} in\n{}",
            status.stdout
        );
    }
    insta::assert_snapshot!("status-prometheus", status.stdout);

    // The policy edited: the counters still show, and it does not match.
    offline.policy(&POLICY.replace("5432", "5433"));
    let differs = offline.run(&["status", "--format", "prometheus"], 1);
    let samples = prometheus_samples(&differs.stdout);
    assert!(samples.contains(&("dockfw_table_matches_policy{table=\"dockfw\"}".into(), 0.0)));
    assert!(samples.contains(&(
        "dockfw_rule_packets_total{table=\"dockfw\",rule=\"website\",action=\"allow\",direction=\"inbound\"}".into(),
        7.0
    )));

    let both = offline.run(&["status", "--json", "--format", "prometheus"], 2);
    assert!(both.stderr.contains("choose one"), "{}", both.stderr);

    // A table of that name that is not dockfw's: none of its counters are ours.
    let foreign = Offline::new();
    foreign
        .memory
        .put(MemoryTable::commented(foreign.desired(), Some(FOREIGN)));
    let run = foreign.run(&["status", "--format", "prometheus"], 1);
    let samples = prometheus_samples(&run.stdout);
    assert!(samples.contains(&("dockfw_table_installed{table=\"dockfw\"}".into(), 0.0)));
    assert!(samples.contains(&("dockfw_table_matches_policy{table=\"dockfw\"}".into(), 0.0)));
    assert!(
        !run.stdout.contains("dockfw_rule_packets_total{"),
        "{}",
        run.stdout
    );
}

#[test]
fn status_says_a_dormant_table_differs_and_apply_repairs_it() {
    let offline = Offline::new();
    offline.run(&["apply"], 0);
    offline.memory.set_flags("dockfw", 1);
    let status = offline.run(&["status"], 1);
    insta::assert_snapshot!("status-dormant", status.stdout);
    let json = offline.run(&["status", "--json"], 1).json();
    assert_eq!(json["owned"], true);
    assert_eq!(json["matches_policy"], false);
    assert_eq!(
        json["differences"],
        serde_json::json!(["table is dormant: every chain is off"])
    );
    let diff = offline.run(&["diff"], 1);
    assert!(diff.stdout.contains("-\tflags dormant\n"), "{}", diff.stdout);

    // Flags cannot be cleared in place: the table is rebuilt.
    offline.run(&["apply"], 0);
    assert_eq!(offline.table().unwrap().flags, 0);
    offline.run(&["status"], 0);
}

#[test]
fn status_of_a_table_that_is_not_dockfws() {
    let offline = Offline::new();
    let ruleset = offline.desired();
    offline.memory.put(MemoryTable::commented(ruleset, Some(FOREIGN)));
    let status = offline.run(&["status"], 1);
    insta::assert_snapshot!("status-foreign", status.stdout);
    let json = offline.run(&["status", "--json"], 1);
    insta::assert_snapshot!("status-foreign-json", json.stdout);
}

#[test]
fn status_of_a_table_an_earlier_dockfw_wrote() {
    let offline = Offline::new();
    offline
        .memory
        .put(MemoryTable::commented(offline.desired(), None));
    let status = offline.run(&["status"], 0);
    assert!(
        status
            .stdout
            .contains("written by an earlier dockfw (no ownership marker); `apply --force` adds it"),
        "{}",
        status.stdout
    );
    let json = offline.run(&["status", "--json"], 0).json();
    assert_eq!(
        (json["owned"].clone(), json["marked"].clone()),
        (true.into(), false.into())
    );
    // An update in place keeps it unmarked; --force rebuilds it marked.
    offline.run(&["apply"], 0);
    assert_eq!(offline.table().unwrap().comment, None);
    offline.run(&["apply", "--force"], 0);
    assert_eq!(offline.table().unwrap().comment.as_deref(), Some(MARKER));
}

#[test]
fn diff_equal_exits_0_and_different_exits_1_with_the_unified_text() {
    let offline = Offline::new();
    let missing = offline.run(&["diff"], 1);
    assert!(
        missing.stdout.starts_with(
            "--- installed (table inet dockfw is not installed)\n+++ desired from policy.toml\n"
        ),
        "{}",
        missing.stdout
    );
    let json = offline.run(&["diff", "--json"], 1).json();
    assert_eq!(
        (json["installed"].clone(), json["equal"].clone()),
        (false.into(), false.into())
    );

    offline.run(&["apply"], 0);
    let equal = offline.run(&["diff"], 0);
    assert_eq!(equal.stdout, "table inet dockfw matches policy.toml\n");
    assert_eq!(offline.run(&["diff", "-q"], 0).stdout, "");
    let json = offline.run(&["diff", "--json"], 0);
    insta::assert_snapshot!("diff-equal-json", json.stdout);

    offline.policy(&POLICY.replace("203.0.113.10", "203.0.113.12"));
    let diff = offline.run(&["diff"], 1);
    // The kernel test's `kernel__diff` snapshot reads the same.
    insta::assert_snapshot!("diff-differs", diff.stdout);
    let json = offline.run(&["diff", "--json"], 1);
    insta::assert_snapshot!("diff-differs-json", json.stdout);
}

#[test]
fn diff_of_a_table_that_is_not_dockfws() {
    let offline = Offline::new();
    offline
        .memory
        .put(MemoryTable::commented(offline.desired(), Some(FOREIGN)));
    let diff = offline.run(&["diff"], 1);
    insta::assert_snapshot!("diff-foreign", diff.stdout);
    let json = offline.run(&["diff", "--json"], 1).json();
    assert_eq!(json["owned"], false);
    assert_eq!(json["equal"], false);
}

#[test]
fn apply_creates_then_leaves_alone_then_updates() {
    let offline = Offline::new();
    let created = offline.run(&["apply"], 0);
    // As `kernel__apply` reads.
    insta::assert_snapshot!("apply-created", stable(&created.stdout));
    assert_eq!(created.stderr, "");
    let installed = offline.table().unwrap();
    assert_eq!(installed, MemoryTable::dockfw(offline.desired()));

    // Nothing sent: the counters keep counting.
    offline.memory.count("dockfw", &layout::rule_counter(0), 7, 1500);
    let unchanged = offline.run(&["apply"], 0);
    insta::assert_snapshot!("apply-unchanged", unchanged.stdout);
    assert_eq!(offline.table().unwrap().counters.len(), 1);
    let json = offline.run(&["apply", "--json"], 0);
    insta::assert_snapshot!("apply-unchanged-json", stable_json(&json));

    offline.policy(&POLICY.replace("203.0.113.10", "203.0.113.12"));
    let updated = offline.run(&["apply", "--json"], 0);
    insta::assert_snapshot!("apply-updated-json", stable_json(&updated));
    assert_eq!(offline.table().unwrap().ruleset, offline.desired());
    offline.run(&["diff"], 0);

    let verbose = offline.run(&["apply", "--force", "-v"], 0);
    assert!(verbose.stdout.starts_with("applied "), "{}", verbose.stdout);
    assert!(verbose.stdout.contains("0 transaction(s)"), "{}", verbose.stdout);
    assert_eq!(offline.run(&["apply", "-q"], 0).stdout, "");
}

#[test]
fn apply_refuses_a_table_that_is_not_dockfws_unless_adopting() {
    let offline = Offline::new();
    let mut foreign = MemoryTable::commented(offline.desired(), Some(FOREIGN));
    foreign.ruleset.chains.truncate(1);
    offline.memory.put(foreign.clone());

    for args in [&["apply"][..], &["apply", "--force"], &["apply", "--json"]] {
        let refused = offline.run(args, 2);
        assert_eq!(refused.stdout, "", "{args:?}");
        insta::assert_snapshot!("apply-foreign-refused", refused.stderr);
        assert_eq!(offline.table(), Some(foreign.clone()), "{args:?}");
    }

    let adopted = offline.run(&["apply", "--adopt"], 0);
    assert!(
        adopted.stdout.starts_with("applied policy.toml "),
        "{}",
        adopted.stdout
    );
    assert_eq!(offline.table(), Some(MemoryTable::dockfw(offline.desired())));
    offline.run(&["status"], 0);
}

#[test]
fn remove_deletes_dockfws_table_and_refuses_anothers() {
    let offline = Offline::new();
    offline.run(&["apply"], 0);
    let removed = offline.run(&["remove"], 0);
    assert_eq!(removed.stdout, "removed table inet dockfw\n");
    assert_eq!(offline.table(), None);
    let absent = offline.run(&["remove"], 0);
    assert_eq!(
        absent.stdout,
        "table inet dockfw was not installed; nothing to do\n"
    );
    assert_eq!(
        offline.run(&["remove", "--json"], 0).json(),
        serde_json::json!({ "table": "dockfw", "removed": false })
    );
    offline.run(&["apply"], 0);
    assert_eq!(
        offline.run(&["remove", "--json"], 0).json(),
        serde_json::json!({ "table": "dockfw", "removed": true })
    );

    let foreign = MemoryTable::commented(offline.desired(), Some(FOREIGN));
    offline.memory.put(foreign.clone());
    let refused = offline.run(&["remove"], 2);
    assert_eq!(refused.stdout, "");
    insta::assert_snapshot!("remove-foreign-refused", refused.stderr);
    assert_eq!(offline.table(), Some(foreign));
    let removed = offline.run(&["remove", "--foreign", "--json"], 0);
    assert_eq!(
        removed.json(),
        serde_json::json!({ "table": "dockfw", "removed": true })
    );
    assert_eq!(offline.table(), None);
}

#[test]
fn table_option_names_the_table() {
    let offline = Offline::new();
    offline.run(&["apply", "--table", "other"], 0);
    assert!(offline.memory.table("other").is_some());
    assert_eq!(offline.table(), None);
    offline.run(&["status", "--table", "other"], 0);
    offline.run(&["status"], 1);
    offline.run(&["remove", "--table", "other"], 0);
    assert_eq!(offline.memory.table("other"), None);
}

/// A policy whose blocklist is partly a FireHOL-style file beside it.
const FILE_POLICY: &str = r#"
[guard]
interfaces = ["eth0"]

[sets]
blocked = { entries = ["192.0.2.0/24"], file = "sets/blocked.netset" }

[[rule]]
name = "blocklist"
from = "@blocked"
action = "drop"

[[rule]]
name = "website"
ports = [443]
"#;

const BLOCKED_NETSET: &str =
    "#\n# blocked\n#\n# ipv4 hash:net ipset\n#\n198.51.100.0/24\n203.0.113.7 ; one host\n2001:db8:bad::/48\n";

impl Offline {
    /// Writes `text` to `path` under the policy's directory.
    fn file(&self, path: &str, text: &str) {
        let path = self.dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

#[test]
fn a_set_from_a_file_beside_the_policy_plans_applies_and_explains() {
    let offline = Offline::new();
    offline.policy(FILE_POLICY);
    offline.file("sets/blocked.netset", BLOCKED_NETSET);

    let check = offline.run(&["check"], 0);
    assert_eq!(check.stdout, "policy.toml: ok: 2 rules, 1 set, 0 warnings\n");
    assert_eq!(check.stderr, "");

    let plan = offline.run(&["plan"], 0);
    assert!(
        plan.stdout
            .contains("elements = { 192.0.2.0/24, 198.51.100.0/24, 203.0.113.7 }"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("elements = { 2001:db8:bad::/48 }"),
        "{}",
        plan.stdout
    );

    offline.run(&["apply"], 0);
    let installed = offline.table().unwrap().ruleset;
    let blocked_v4 = installed.set("set-blocked-v4").expect("the set is installed");
    assert_eq!(blocked_v4.elements.len(), 3);

    let explain = offline.run(&["explain", "--from", "203.0.113.7", "--port", "443"], 0);
    assert_eq!(
        explain.stdout,
        "203.0.113.7 → port 443/tcp on eth0: drop by rule \"blocklist\"\n  \
         203.0.113.7 is in @blocked, from sets/blocked.netset line 7\n"
    );
    let explain = offline.run(&["explain", "--from", "192.0.2.9", "--port", "443"], 0);
    assert!(
        explain
            .stdout
            .contains("192.0.2.9 is in @blocked, written in policy.toml line 6\n"),
        "{}",
        explain.stdout
    );
    let json = offline
        .run(
            &["explain", "--from", "2001:db8:bad::1", "--port", "443", "--json"],
            0,
        )
        .json();
    assert_eq!(
        json["sets"],
        serde_json::json!([{
            "address": "2001:db8:bad::1",
            "set": "blocked",
            "origins": [{ "source": "file", "path": "sets/blocked.netset", "line": 8 }],
        }])
    );
    // Not in any set: nothing said about sets.
    let explain = offline.run(&["explain", "--from", "198.18.0.1", "--port", "443"], 0);
    assert_eq!(
        explain.stdout,
        "198.18.0.1 → port 443/tcp on eth0: allow by rule \"website\"\n  \
         rule \"blocklist\" did not match: source 198.18.0.1 is not in from = [@blocked]\n"
    );

    // The file is read at each apply.
    offline.file("sets/blocked.netset", "198.51.100.0/24\n");
    offline.run(&["apply"], 0);
    let installed = offline.table().unwrap().ruleset;
    assert_eq!(installed.set("set-blocked-v4").unwrap().elements.len(), 2);
    assert!(installed.set("set-blocked-v6").is_none());
}

#[test]
fn a_bad_line_in_a_set_file_is_an_error_at_its_file_and_line() {
    let offline = Offline::new();
    offline.policy(FILE_POLICY);
    offline.file(
        "sets/blocked.netset",
        "# blocked\n198.51.100.0/24\n  203.0.113.300\n",
    );
    for command in ["check", "plan", "apply"] {
        let refused = offline.run(&[command], 2);
        assert_eq!(refused.stdout, "", "{command}");
        assert_eq!(
            refused.stderr,
            "sets/blocked.netset:3:3: error: set \"blocked\": \"203.0.113.300\" is not an IP address\n  \
             hint: an IPv4 address has four numbers 0-255, like 192.0.2.10\n\
             error: policy.toml has 1 error; nothing was changed\n\
             hint: fix the errors above; `dockfw-nft check` validates without changing anything\n",
            "{command}"
        );
    }
    assert_eq!(offline.table(), None);
}

#[test]
fn a_set_file_that_cannot_be_read_names_the_set_and_the_path() {
    let offline = Offline::new();
    offline.policy(FILE_POLICY);
    let missing = offline.run(&["plan"], 2);
    assert!(
        missing.stderr.starts_with(
            "policy.toml:6:48: error: set \"blocked\": cannot read sets/blocked.netset: No such file or directory"
        ),
        "{}",
        missing.stderr
    );
    // Not a regular file: refused without reading, like the policy.
    std::fs::create_dir_all(offline.dir.join("sets/blocked.netset")).unwrap();
    let directory = offline.run(&["apply"], 2);
    assert!(
        directory.stderr.starts_with(
            "policy.toml:6:48: error: set \"blocked\": cannot read sets/blocked.netset: it is a directory, not a regular file"
        ),
        "{}",
        directory.stderr
    );
    assert_eq!(offline.table(), None);
}

#[test]
fn check_neither_downloads_nor_resolves() {
    let offline = Offline::new();
    // Port 1 of the loopback: refused at once, nothing leaves the host.
    offline.policy(
        r#"
[guard]
interfaces = ["eth0"]

[sets]
cdn = { url = "http://127.0.0.1:1/ips-v4", refresh = "1d" }
partners = { names = ["api.partner.example"], refresh = "5m" }

[[rule]]
from = ["@cdn", "@partners"]
ports = [443]
"#,
    );
    let check = offline.run(&["check"], 0);
    assert_eq!(check.stdout, "policy.toml: ok: 1 rule, 2 sets, 2 warnings\n");
    assert_eq!(
        check.stderr,
        "policy.toml:6:15: warning: set \"cdn\": its url was not downloaded (`check --fetch` downloads it)\n\
         policy.toml:7:22: warning: set \"partners\": its names were not resolved (`check --fetch` resolves them)\n"
    );
    // The names are left out below: resolving them would ask the host's DNS.
    offline.policy(
        &std::fs::read_to_string(offline.dir.join("policy.toml"))
            .unwrap()
            .replace("\"@cdn\", \"@partners\"", "\"@cdn\"")
            .replace(
                "partners = { names = [\"api.partner.example\"], refresh = \"5m\" }\n",
                "",
            ),
    );
    for command in [
        &["plan"][..],
        &["apply"],
        &["diff"],
        &["check", "--fetch"],
        &["explain", "--from", "192.0.2.1", "--port", "443"],
    ] {
        let refused = offline.run(command, 2);
        assert_eq!(refused.stdout, "", "{command:?}");
        for expected in [
            "policy.toml:6:15: error: set \"cdn\": cannot download http://127.0.0.1:1/ips-v4 (Connection refused (os error 111)), and no earlier copy is kept\n",
            "error: policy.toml has ",
        ] {
            assert!(
                refused.stderr.contains(expected),
                "{command:?}: {expected:?} not in {}",
                refused.stderr
            );
        }
    }
    assert_eq!(offline.table(), None);
}

/// The common policy with containers' own connections judged: outbound
/// and between rules and defaults (no Docker here, so their container
/// selectors match nothing, but they count), in `mode`.
fn with_container_rules(mode: &str) -> String {
    POLICY.replace(
        "default = \"drop\"",
        &format!("default = \"drop\"\noutbound = \"drop\"\nbetween = \"reject\"\nmode = \"{mode}\""),
    ) + r#"
[[outbound]]
name = "web calls the API"
container = "web"
to = ["203.0.113.99"]
ports = [443]

[[outbound]]
name = "no mail"
ports = [25]
action = "reject"

[[between]]
name = "only the proxy reaches the app"
from = { container = "proxy" }
to = { container = "app" }
ports = [8000]
"#
}

#[test]
fn status_shows_outbound_and_between_rules_with_their_counters() {
    use dockfw_core::Direction;
    let offline = Offline::new();
    offline.policy(&with_container_rules("enforce"));
    let applied = offline.run(&["apply"], 0);
    assert!(
        applied.stdout.starts_with(
            "applied policy.toml to table inet dockfw: 3 rules, 2 outbound rules, 1 between rule ("
        ),
        "{}",
        applied.stdout
    );
    let counters = [
        (layout::decision_counter(Direction::Outbound, 0), 5, 300),
        (layout::decision_counter(Direction::Outbound, 1), 1, 60),
        (layout::direction_default_counter(Direction::Outbound), 3, 180),
        (layout::decision_counter(Direction::Between, 0), 2, 120),
        (layout::direction_default_counter(Direction::Between), 4, 240),
    ];
    for (at, packets, bytes) in &counters {
        offline.memory.count("dockfw", at, *packets, *bytes);
    }
    let status = offline.run(&["status"], 0);
    insta::assert_snapshot!("status-directions", status.stdout);
    let json = offline.run(&["status", "--json"], 0).json();
    assert_eq!(json["outbound"][0]["name"], "web calls the API");
    assert_eq!(json["outbound"][0]["packets"], 5);
    assert_eq!(json["outbound"][2]["name"], "outbound default");
    assert_eq!(json["outbound"][2]["action"], "drop");
    assert_eq!(json["between"][1]["action"], "reject");
    assert_eq!(json["between"][1]["packets"], 4);
    assert!(json.get("audit").is_none(), "{json}");
    assert_eq!(json["unattributed"]["action"], "drop");
    let prometheus = offline.run(&["status", "--format", "prometheus"], 0).stdout;
    for line in [
        "dockfw_rule_packets_total{table=\"dockfw\",rule=\"web calls the API\",action=\"allow\",direction=\"outbound\"} 5",
        "dockfw_default_packets_total{table=\"dockfw\",action=\"drop\",direction=\"outbound\"} 3",
        "dockfw_default_bytes_total{table=\"dockfw\",action=\"reject\",direction=\"between\"} 240",
        "dockfw_unattributed_dropped_packets_total{table=\"dockfw\"} 0",
        "dockfw_audit_mode{table=\"dockfw\"} 0",
    ] {
        assert!(prometheus.lines().any(|l| l == line), "{line}\n{prometheus}");
    }
}

#[test]
fn status_in_audit_mode_shows_what_would_have_been_denied() {
    use dockfw_core::Direction;
    let offline = Offline::new();
    offline.policy(&with_container_rules("audit"));
    let applied = offline.run(&["apply"], 0);
    assert!(
        applied
            .stdout
            .contains("note: audit mode: every drop and reject is only logged"),
        "{}",
        applied.stdout
    );
    offline
        .memory
        .count("dockfw", &layout::default_counter(), 31, 4 << 20);
    offline.memory.count(
        "dockfw",
        &layout::direction_default_counter(Direction::Between),
        4,
        240,
    );
    offline
        .memory
        .count("dockfw", &layout::decision_counter(Direction::Outbound, 1), 1, 60);
    let status = offline.run(&["status"], 0);
    insta::assert_snapshot!("status-audit", status.stdout);
    let json = offline.run(&["status", "--json"], 0).json();
    assert_eq!(json["audit"], true);
    assert_eq!(json["default"]["action"], "drop");
    assert_eq!(json["default"]["audit"], true);
    assert_eq!(json["rules"][0]["action"], "allow");
    assert!(json["rules"][0].get("audit").is_none());
    assert_eq!(json["between"][1]["audit"], true);
    assert_eq!(json["untracked"]["audit"], true);
    let prometheus = offline.run(&["status", "--format", "prometheus"], 0).stdout;
    assert!(
        prometheus.contains("dockfw_audit_mode{table=\"dockfw\"} 1"),
        "{prometheus}"
    );
}

#[test]
fn a_kernel_lacking_a_feature_is_refused_at_start_and_nothing_is_installed() {
    let offline = Offline::new();
    offline.memory.lack_feature("per-source rate limits");
    let run = offline.run(&["apply"], 2);
    assert!(
        run.stderr
            .contains("lacks nf_tables features dockfw-nft needs (nothing was changed")
            && run.stderr.contains("\"per-source rate limits\"")
            && run.stderr.contains("Kernel and nftables requirements"),
        "{}",
        run.stderr
    );
    assert_eq!(offline.memory.table("dockfw"), None);
}
