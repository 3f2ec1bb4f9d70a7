//! Reading the policy file (issue 10, items 7 and 9): only regular files of
//! bounded size, refused at once otherwise; bad bytes and IPv4-mapped
//! addresses located; read errors exit 2; and the smaller message fixes.

mod common;

use assert_cmd::Command;
use common::tempdir;
use std::path::Path;
use std::time::Duration;

const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
/// Long enough for a loaded CI machine, short enough that a policy reader
/// that blocks (on a FIFO) or reads without end (/dev/zero) fails the test
/// instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(20);

fn dockfw() -> Command {
    let mut command = Command::cargo_bin("dockfw-nft").unwrap();
    command
        .env_remove("DOCKFW_CONFIG")
        .env_remove("DOCKER_HOST")
        .env_remove("CLICOLOR_FORCE")
        .current_dir(WORKSPACE)
        .timeout(PATIENCE);
    command
}

/// Runs `check -c config` and returns stderr, asserting the exit code.
fn check(config: &Path, code: i32) -> String {
    let output = dockfw()
        .args(["--no-docker", "check", "-c"])
        .arg(config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(code), "{}: {stderr}", config.display());
    stderr
}

#[test]
fn endless_devices_are_refused_without_reading_them() {
    for device in ["/dev/zero", "/dev/urandom"] {
        let err = check(Path::new(device), 2);
        assert!(
            err.contains(&format!("cannot read the policy {device}"))
                && err.contains("it is a character device, not a regular file"),
            "{err}"
        );
    }
}

#[test]
fn a_fifo_without_a_writer_is_refused_at_once() {
    let dir = tempdir("fifo");
    let fifo = dir.join("policy.toml");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    // Were the FIFO opened for reading without O_NONBLOCK, this would block
    // until PATIENCE runs out and fail (no exit code).
    let err = check(&fifo, 2);
    assert!(err.contains("it is a FIFO, not a regular file"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_directory_is_refused() {
    let dir = tempdir("directory");
    let err = check(&dir, 2);
    assert!(err.contains("it is a directory, not a regular file"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_oversized_policy_is_refused_naming_the_limit() {
    let dir = tempdir("oversized");
    let big = dir.join("policy.toml");
    // Sparse: 65 MiB of nothing, on no disk.
    std::fs::File::create(&big).unwrap().set_len(65 << 20).unwrap();
    let err = check(&big, 2);
    assert!(
        err.contains("it is larger than 64 MiB, the largest policy dockfw-nft reads"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn text_that_is_not_utf8_is_located() {
    let dir = tempdir("latin1");
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        b"[guard]\ninterfaces = [\"eth0\"]\n[[rule]]\nname = \"caf\xe9\"\nports = [80]\n",
    )
    .unwrap();
    let err = check(&policy, 2);
    assert!(
        err.contains(&format!(
            "{}:4:12: error: the policy is not UTF-8 text: 0xe9 is not valid UTF-8",
            policy.display()
        )),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ipv4_mapped_sources_are_refused_with_their_place() {
    let dir = tempdir("mapped");
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        "[guard]\ninterfaces = [\"eth0\"]\n[[rule]]\nname = \"web\"\nfrom = [\"::ffff:1.2.3.4\"]\nports = [80]\n",
    )
    .unwrap();
    let err = check(&policy, 2);
    assert!(
        err.contains(&format!(
            "{}:5:9: error: rule \"web\": from: \"::ffff:1.2.3.4\" is an IPv4-mapped IPv6 address",
            policy.display()
        )),
        "{err}"
    );
    assert!(err.contains("write \"1.2.3.4\""), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// README: a policy that cannot be read, for whatever reason, is a usage or
/// policy error (exit 2), like a missing one; 3 is for the kernel.
#[test]
fn an_unreadable_policy_exits_2() {
    let dir = tempdir("unreadable");
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, "[guard]\ninterfaces = [\"eth0\"]\n").unwrap();
    std::fs::set_permissions(&policy, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    let root = nix::unistd::geteuid().is_root();
    let output = if root {
        // Root reads anything: run as nobody, without capabilities.
        std::process::Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
            ])
            .arg(assert_cmd::cargo::cargo_bin("dockfw-nft"))
            .args(["--no-docker", "check", "-c"])
            .arg(&policy)
            .output()
            .unwrap()
    } else {
        dockfw()
            .args(["--no-docker", "check", "-c"])
            .arg(&policy)
            .output()
            .unwrap()
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot read the policy {}", policy.display()))
            && stderr.contains("Permission denied"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_regular_file_as_netns_says_its_cause_once() {
    let dir = tempdir("netns-file");
    let not_a_namespace = dir.join("netns");
    std::fs::write(&not_a_namespace, "").unwrap();
    let output = dockfw()
        .args(["--no-docker", "status", "-c", "examples/full.toml", "--netns"])
        .arg(&not_a_namespace)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{} is not a network namespace",
            not_a_namespace.display()
        )),
        "{stderr}"
    );
    assert_eq!(stderr.matches("Invalid argument").count(), 1, "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn watch_without_docker_hints_at_docker_not_at_an_option_it_forces() {
    let output = dockfw()
        .args([
            "watch",
            "-c",
            "examples/full.toml",
            "--docker-host",
            "unix:///nonexistent/docker.sock",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("hint: watch follows Docker's containers, so it needs Docker"),
        "{stderr}"
    );
    assert!(!stderr.contains("--require-docker"), "{stderr}");
}
