//! The commands that need no privilege, run as a user would.

use assert_cmd::Command;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/full.toml");

fn dockfw() -> Command {
    let mut command = Command::cargo_bin("dockfw-nft").unwrap();
    command.env_remove("DOCKFW_CONFIG");
    command
}

fn stdout(command: &mut Command) -> String {
    String::from_utf8(command.assert().success().get_output().stdout.clone()).unwrap()
}

#[test]
fn check_accepts_the_example_and_rejects_errors_with_their_place() {
    let out = stdout(dockfw().args(["check", "--config", EXAMPLE]));
    assert!(out.contains("ok: 4 rules, 2 sets, 0 warnings"), "{out}");

    let dir = std::env::temp_dir().join(format!("dockfw-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[guard]\ninterfaces = [\"eth0\"]\n[[rule]]\nname = \"web\"\nports = [\"80\", \"70000\"]\n",
    )
    .unwrap();
    let output = dockfw()
        .args(["check", "--config"])
        .arg(&bad)
        .assert()
        .code(2)
        .get_output()
        .stderr
        .clone();
    let stderr = String::from_utf8(output).unwrap();
    assert!(
        stderr.contains(&format!(
            "{}:5:16: error: rule \"web\": ports: port 70000 is out of range",
            bad.display()
        )),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_policy_is_a_clear_error() {
    let output = dockfw()
        .args(["check", "--config", "/nonexistent/policy.toml"])
        .assert()
        .code(2)
        .get_output()
        .stderr
        .clone();
    assert!(
        String::from_utf8(output)
            .unwrap()
            .contains("cannot read the policy /nonexistent/policy.toml")
    );
}

#[test]
fn config_comes_from_the_environment_too() {
    let out = stdout(dockfw().env("DOCKFW_CONFIG", EXAMPLE).arg("check"));
    assert!(out.contains("ok:"));
}

#[test]
fn plan_prints_the_nft_script() {
    let out = stdout(dockfw().args(["plan", "--config", EXAMPLE]));
    assert!(
        out.starts_with("table inet dockfw {}\ndelete table inet dockfw\n"),
        "{out}"
    );
    assert!(out.contains("type filter hook forward priority -5; policy accept;"));
    assert!(out.contains("comment \"public web\""));
}

#[test]
fn explain_names_the_deciding_rule_and_the_misses() {
    let out = stdout(dockfw().args([
        "explain", "--config", EXAMPLE, "--from", "8.8.8.8", "--port", "5432",
    ]));
    assert_eq!(
        out,
        "8.8.8.8 → port 5432/tcp on eth0: reject by rule \"no database\"\n  \
         rule \"public web\" did not match: the rule needs a dialled address in [203.0.113.5, 2001:db8::5] (none given)\n  \
         rule \"admin panel\" did not match: source 8.8.8.8 is not in from = [@admins, @office]\n"
    );
    let out = stdout(dockfw().args([
        "explain",
        "--config",
        EXAMPLE,
        "--from",
        "2001:db8::9",
        "--port",
        "443",
        "--to",
        "2001:db8::5",
    ]));
    assert!(out.contains("allow by rule \"public web\""), "{out}");
    let out = stdout(dockfw().args([
        "explain", "--config", EXAMPLE, "--from", "10.8.0.1", "--port", "9000/udp", "--in", "wg0",
    ]));
    assert!(out.contains("drop by rule \"vpn only\""), "{out}");
    let out = stdout(dockfw().args([
        "explain", "--config", EXAMPLE, "--from", "10.8.0.1", "--port", "9000/udp", "--in", "lo",
    ]));
    assert!(out.contains("not judged"), "{out}");
}
