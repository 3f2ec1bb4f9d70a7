//! The commands that need no privilege, run as a user would: from the
//! checkout, on the example policies.

mod common;

use assert_cmd::Command;
use common::tempdir;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/full.toml");
const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
/// The example policy for each common need, as the README lists them.
const USE_CASES: [&str; 5] = [
    "public-web-admin",
    "lan-per-interface",
    "database-never-exposed",
    "office-only-container",
    "containers-outbound-between",
];

fn dockfw() -> Command {
    let mut command = Command::cargo_bin("dockfw-nft").unwrap();
    command
        .env_remove("DOCKFW_CONFIG")
        .env_remove("DOCKER_HOST")
        .env_remove("CLICOLOR_FORCE")
        .current_dir(WORKSPACE);
    command
}

fn output(command: &mut Command, code: i32) -> (String, String) {
    let output = command.assert().code(code).get_output().clone();
    (
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

fn stdout(command: &mut Command) -> String {
    String::from_utf8(command.assert().success().get_output().stdout.clone()).unwrap()
}

#[test]
fn check_accepts_the_example_and_rejects_errors_with_their_place() {
    let out = stdout(dockfw().args(["check", "--config", EXAMPLE]));
    assert!(
        out.contains("ok: 4 rules, 1 outbound rule, 1 between rule, 3 sets, 0 warnings"),
        "{out}"
    );

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
    // Comments first: where each set's entries come from.
    assert!(out.starts_with("# @"), "{out}");
    let script: String = out
        .lines()
        .skip_while(|line| line.starts_with('#'))
        .map(|line| format!("{line}\n"))
        .collect();
    assert!(
        script.starts_with("table inet dockfw {}\ndelete table inet dockfw\n"),
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
         rule \"admin panel\" did not match: source 8.8.8.8 is not in from = [@admins, @office]\n\
         note: some rules here depend on the address the client dialled; give it with --to ADDR\n"
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

#[test]
fn every_use_case_example_passes_check_without_warnings() {
    for name in USE_CASES {
        let config = format!("examples/{name}.toml");
        let (out, err) = output(dockfw().args(["check", "--no-docker", "-c", &config]), 0);
        assert!(out.starts_with(&format!("{config}: ok: ")), "{out}");
        assert!(out.ends_with(", 0 warnings\n"), "{name}: {out}");
        assert_eq!(err, "", "{name}");
    }
}

/// The Debian package's /etc/dockfw/policy.toml (a conffile): valid
/// without a warning, and until it is edited it denies nothing, so
/// installing the package or starting its units locks no one out.
#[test]
fn the_packaged_policy_passes_check_and_denies_nothing() {
    let config = "packaging/debian/policy.toml";
    let (out, err) = output(dockfw().args(["check", "--no-docker", "-c", config]), 0);
    assert_eq!(out, format!("{config}: ok: 0 rules, 0 sets, 0 warnings\n"));
    assert_eq!(err, "");
    for port in ["22", "80", "443", "8443", "53/udp"] {
        let (out, _) = output(
            dockfw().args([
                "explain",
                "--no-docker",
                "-c",
                config,
                "--from",
                "198.51.100.7",
                "--port",
                port,
            ]),
            0,
        );
        assert!(out.contains("allow by default"), "{port}: {out}");
    }
    let text = std::fs::read_to_string(std::path::Path::new(WORKSPACE).join(config)).unwrap();
    let parsed = dockfw_core::parse(config, &text).unwrap();
    let ruleset = dockfw_core::compile(&parsed.policy, &[]);
    let deciders = dockfw_core::layout::policy_rules(&ruleset)
        .into_iter()
        .chain(dockfw_core::layout::default_fate(&ruleset));
    for decider in deciders {
        assert_eq!(decider.action, Some(dockfw_core::Action::Allow), "{decider:?}");
    }
}

#[test]
fn plans_of_the_use_case_examples() {
    for name in USE_CASES {
        let config = format!("examples/{name}.toml");
        let (plan, _) = output(dockfw().args(["plan", "--no-docker", "-c", &config]), 0);
        insta::assert_snapshot!(format!("plan-{name}"), plan);
    }
}

#[test]
fn explain_snapshots() {
    let cases: [&[&str]; 4] = [
        &["--from", "198.51.100.7", "--port", "8443"],
        &["--from", "203.0.113.10", "--port", "8443"],
        &["--from", "2001:db8:a::1", "--port", "443"],
        &["--from", "198.51.100.7", "--port", "22"],
    ];
    let mut all = String::new();
    for args in cases {
        let (out, _) = output(
            dockfw()
                .args(["explain", "--no-docker", "-c", "examples/public-web-admin.toml"])
                .args(args),
            0,
        );
        all.push_str(&format!("$ dockfw-nft explain {}\n{out}\n", args.join(" ")));
    }
    insta::assert_snapshot!(all);
}

#[test]
fn check_reports_warnings_and_errors_with_their_place() {
    let dir = tempdir("check");
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        "[guard]\ninterfaces = [\"eth0\"]\n\n[sets]\nunused = [\"10.0.0.0/8\"]\n\n\
         [[rule]]\nname = \"all web\"\nports = [\"80-90\"]\n\n\
         [[rule]]\nname = \"web\"\nports = [\"80\"]\naction = \"drop\"\n",
    )
    .unwrap();
    let (out, err) = output(
        dockfw()
            .current_dir(&dir)
            .args(["check", "--no-docker", "-c", "policy.toml"]),
        0,
    );
    insta::assert_snapshot!("check-warnings", format!("stdout:\n{out}\nstderr:\n{err}"));

    std::fs::write(
        &policy,
        "[guard]\ninterfaces = [\"eth0\"]\ndefualt = \"drop\"\n\n[[rule]]\nname = \"web\"\nfrom = [\"@nope\"]\nports = [\"80/sctp\"]\n",
    )
    .unwrap();
    let (out, err) = output(dockfw().current_dir(&dir).args(["check", "-c", "policy.toml"]), 2);
    insta::assert_snapshot!("check-errors", format!("stdout:\n{out}\nstderr:\n{err}"));

    // The same as data.
    let (out, _) = output(
        dockfw()
            .current_dir(&dir)
            .args(["check", "--json", "-c", "policy.toml"]),
        2,
    );
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["ok"], false);
    assert_eq!(json["diagnostics"][0]["location"]["line"], 3, "{json:#}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn colour_only_when_asked_or_on_a_terminal() {
    let bad = ["check", "-c", "/nonexistent/policy.toml"];
    let (_, plain) = output(dockfw().args(bad), 2);
    assert!(!plain.contains('\x1b'), "{plain:?}");
    let (_, forced) = output(dockfw().env("CLICOLOR_FORCE", "1").args(bad), 2);
    assert!(forced.contains("\x1b["), "{forced:?}");
    let (_, no_color) = output(
        dockfw().env("CLICOLOR_FORCE", "1").env("NO_COLOR", "1").args(bad),
        2,
    );
    assert!(!no_color.contains('\x1b'), "NO_COLOR wins: {no_color:?}");
}

#[test]
fn errors_show_their_cause_and_a_hint() {
    let dir = tempdir("errors");
    std::fs::write(dir.join("p.toml"), "[guard]\ninterfaces = 7\n").unwrap();
    let (_, err) = output(dockfw().current_dir(&dir).args(["apply", "-c", "p.toml"]), 2);
    assert!(err.contains("p.toml:2:14: error:"), "{err}");
    assert!(
        err.contains("error: p.toml has 1 error; nothing was changed"),
        "{err}"
    );
    assert!(err.contains("hint: fix the errors above"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn usage_errors_exit_2() {
    output(dockfw().args(["explain", "--port", "80"]), 2);
    output(dockfw().args(["frobnicate"]), 2);
    let (_, err) = output(
        dockfw().args([
            "explain",
            "-c",
            "examples/full.toml",
            "--from",
            "1.2.3.4",
            "--port",
            "80-90",
        ]),
        2,
    );
    assert!(err.contains("--port takes one port"), "{err}");
    let (_, err) = output(dockfw().args(["status", "--netns", "no-such-netns"]), 2);
    assert!(err.contains("network namespace no-such-netns not found"), "{err}");
}

#[test]
fn help_documents_the_exit_codes() {
    let (out, _) = output(dockfw().arg("--help"), 0);
    for line in [
        "0  success",
        "1  differences",
        "2  usage or policy error",
        "3  kernel",
        "4  Docker",
    ] {
        assert!(out.contains(line), "{line}: {out}");
    }
}

#[test]
fn completions_and_man_pages_come_from_the_definition() {
    for shell in ["bash", "zsh", "fish"] {
        let (out, _) = output(dockfw().args(["completions", shell]), 0);
        assert!(out.contains("explain"), "{shell}");
        assert!(out.contains("netns"), "{shell}");
    }
    let dir = tempdir("man");
    output(dockfw().arg("manpages").arg(&dir), 0);
    let page = std::fs::read_to_string(dir.join("dockfw-nft.1")).unwrap();
    assert!(page.contains(".TH dockfw-nft 1"), "{page}");
    assert!(page.contains("Exit status"), "the man page has the exit codes");
    assert!(dir.join("dockfw-nft-apply.1").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every nftables keyword is refused as a table name, from `--table` and from
/// the policy alike, before anything reaches nft or the kernel; and the
/// issue's injection through `--table` is refused.
#[test]
fn table_names_that_nft_cannot_read_are_refused() {
    let dir = tempdir("names");
    let policy = dir.join("policy.toml");
    for keyword in dockfw_core::names::nft_keywords() {
        let (_, stderr) = output(
            dockfw().args(["plan", "--config", EXAMPLE, "--table", keyword]),
            2,
        );
        assert!(
            stderr.contains(&format!("table name \"{keyword}\" is an nftables keyword")),
            "--table {keyword}: {stderr}"
        );
        std::fs::write(
            &policy,
            format!("[guard]\ninterfaces = [\"eth0\"]\ntable = \"{keyword}\"\n"),
        )
        .unwrap();
        let (_, stderr) = output(dockfw().args(["plan", "--config"]).arg(&policy), 2);
        assert!(
            stderr.contains(&format!(
                "{}:3:9: error: table name \"{keyword}\" is an nftables keyword",
                policy.display()
            )),
            "table = {keyword:?}: {stderr}"
        );
    }
    for injection in ["x\nflush ruleset\ntable inet x", "x;flush ruleset", "a b", ""] {
        let (stdout, stderr) = output(
            dockfw().args(["plan", "--config", EXAMPLE, "--table", injection]),
            2,
        );
        assert!(stdout.is_empty(), "{stdout}");
        assert!(
            stderr.contains("is not a valid nftables name"),
            "{injection:?}: {stderr}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
