//! What the command's test files share: the policy `kernel.rs` runs against
//! the kernel and `offline.rs` against the in-memory backend (one text, so
//! the two stay in step), what one run of the command gave, running the
//! binary in a test namespace, and scratch directories.
// Each test file uses only part of this.
#![allow(dead_code)]

pub mod fake_docker;
pub mod packets;

use dockfw_nft::testing::TestNetns;
use std::path::{Path, PathBuf};

/// A guarded host with a set, an open port, a port for the set only and a
/// rejected one: every kind of rule the status and diff outputs show.
pub const POLICY: &str = r#"
[guard]
interfaces = ["eth0"]
default = "drop"

[sets]
admins = ["203.0.113.10", "2001:db8:a::/64"]

[[rule]]
name = "website"
ports = ["80/tcp", "443/tcp"]

[[rule]]
name = "admin panel"
from = ["@admins"]
ports = ["8443/tcp"]
action = "allow"

[[rule]]
name = "databases"
ports = ["5432"]
action = "reject"
"#;

/// What one run of the command gave.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Standard output as JSON; panics with the text when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {}", self.stdout))
    }
}

/// Runs the `dockfw-nft` binary in `dir` with `--netns NAME --no-docker
/// ARGS`, as a user would on a host whose namespace `netns` stands for;
/// asserts it exits with `code`.
pub fn dockfw(netns: &TestNetns, dir: &Path, args: &[&str], code: i32) -> Run {
    let output = assert_cmd::Command::cargo_bin("dockfw-nft")
        .unwrap()
        .env_remove("DOCKFW_CONFIG")
        .env_remove("CLICOLOR_FORCE")
        .current_dir(dir)
        .args(["--netns", netns.name(), "--no-docker"])
        .args(args)
        .assert()
        .code(code)
        .get_output()
        .clone();
    Run {
        code,
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

/// Strips what varies between runs: the time `apply` took, its last field.
pub fn stable(text: &str) -> String {
    text.lines()
        .map(|line| match line.rsplit_once("; ") {
            Some((head, _)) if line.starts_with("applied ") => format!("{head}; [time]"),
            _ => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// An empty scratch directory for this process, `dockfw-cli-NAME-PID` in the
/// system's temporary directory (emptied first if an earlier run left it).
pub fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dockfw-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
