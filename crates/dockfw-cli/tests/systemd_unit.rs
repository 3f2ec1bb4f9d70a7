//! The systemd units shipped in packaging/: dockfw-nft.service ordered before
//! Docker, oneshot, reloadable, and stopping it leaves the rules in force;
//! dockfw-nft-watch.service a notify service with a watchdog that outlives
//! Docker's restarts.

use std::collections::BTreeMap;

const UNIT: &str = include_str!("../../../packaging/dockfw-nft.service");
const WATCH_UNIT: &str = include_str!("../../../packaging/dockfw-nft-watch.service");

/// Directive → values, across sections (the units have no repeated keys that matter here).
fn directives(unit: &str) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in unit.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with('[') || line.is_empty() {
            continue;
        }
        let (key, value) = line.split_once('=').expect("key=value");
        map.entry(key.into())
            .or_default()
            .extend(value.split_whitespace().map(String::from));
    }
    map
}

#[test]
fn unit_guards_the_boot_before_docker_and_fails_closed() {
    let d = directives(UNIT);
    let has = |key: &str, value: &str| d.get(key).is_some_and(|v| v.iter().any(|x| x == value));
    assert!(has("Before", "docker.service"), "ordered before Docker");
    assert!(
        has("WantedBy", "docker.service"),
        "pulled in whenever Docker starts"
    );
    assert!(has("WantedBy", "multi-user.target"));
    assert!(has("Type", "oneshot"));
    assert!(has("RemainAfterExit", "yes"));
    assert!(d["ExecStart"].last().is_some_and(|a| a == "apply"));
    assert!(
        d["ExecReload"].last().is_some_and(|a| a == "apply"),
        "reload re-applies"
    );
    assert!(!d.contains_key("ExecStop"), "stopping must not remove the rules");
    assert!(
        has("ReloadPropagatedFrom", "nftables.service"),
        "nftables' flush is followed by a re-apply"
    );
}

#[test]
fn watch_unit_follows_docker_and_guards_through_its_restarts() {
    let d = directives(WATCH_UNIT);
    let has = |key: &str, value: &str| d.get(key).is_some_and(|v| v.iter().any(|x| x == value));
    assert!(has("After", "docker.service"));
    // Was PartOf=docker.service (stopped and restarted with Docker). The
    // live guard must keep repairing while Docker is stopped or restarting:
    // a flush can happen then too.
    assert!(
        !d.get("PartOf")
            .is_some_and(|v| v.iter().any(|x| x == "docker.service")),
        "stopping Docker must not stop the guard"
    );
    assert!(!d.contains_key("BindsTo"), "nor bound to Docker");
    assert!(has("WantedBy", "docker.service"));
    assert!(d["ExecStart"].last().is_some_and(|a| a == "watch"));
    assert!(!d.contains_key("ExecStop"), "stopping must not remove the rules");
    // systemd: ready after the first apply, watchdog fed while healthy.
    assert!(has("Type", "notify"));
    assert!(has("NotifyAccess", "main"));
    assert!(d.contains_key("WatchdogSec"), "watchdog enabled");
    // Reload = `check` (two ExecReload lines, run in order: a policy with
    // errors fails `systemctl reload` and is never sent), then SIGHUP to the
    // watcher, which re-reads the policy.
    assert_eq!(
        d["ExecReload"],
        [
            "/usr/local/bin/dockfw-nft",
            "--config",
            "/etc/dockfw/policy.toml",
            "--no-docker",
            "check",
            "/bin/kill",
            "-HUP",
            "$MAINPID"
        ]
    );
    assert_eq!(
        WATCH_UNIT
            .lines()
            .filter(|l| l.starts_with("ExecReload="))
            .count(),
        2,
        "check and SIGHUP as two commands"
    );
    assert!(has("Restart", "on-failure"));
    assert!(
        has("RestartPreventExitStatus", "2"),
        "a policy with errors is not retried"
    );
}

/// Ignored by default because it needs `systemd-analyze`, which `cargo xtask
/// test` (running ignored tests) and CI have (`.ci/packages` installs systemd).
#[test]
#[ignore = "needs systemd-analyze"]
fn systemd_accepts_the_units() {
    if let Err(e) = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
    {
        panic!("systemd-analyze cannot run ({e}): install systemd to run this test");
    }
    let dir = std::env::temp_dir().join(format!("dockfw-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let binary = assert_cmd::cargo::cargo_bin("dockfw-nft");
    for (name, unit) in [
        ("dockfw-nft.service", UNIT),
        ("dockfw-nft-watch.service", WATCH_UNIT),
    ] {
        let unit = unit.replace("/usr/local/bin/dockfw-nft", binary.to_str().unwrap());
        std::fs::write(dir.join(name), unit).unwrap();
    }
    let out = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(dir.join("dockfw-nft.service"))
        .arg(dir.join("dockfw-nft-watch.service"))
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("dockfw-nft.service:"),
        "warnings about the unit: {stderr}"
    );
    assert!(
        !stderr.contains("dockfw-nft-watch.service:"),
        "warnings about the watch unit: {stderr}"
    );
}
