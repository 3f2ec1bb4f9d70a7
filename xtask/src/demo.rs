//! `cargo xtask demo`: dockfw-nft at work, for a newcomer, in a throwaway lab.
//!
//! Brings the lab up (a private dockerd in a network namespace, an "internet"
//! client namespace; nothing on the host is touched), starts two containers,
//! shows a stranger and an admin reaching both, applies a policy with the
//! real `dockfw-nft` binary, shows the stranger blocked from the admin panel
//! while the admin gets in, with `dockfw-nft status` counters, explains the
//! blocked connection, removes the policy, and tears the lab down.

use anyhow::{Context, Result, bail};
use dockfw_e2e::{Client, Lab, LabConfig, Probe, ProbeResult, Proto, addr};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

const PREFIX: &str = "dfw-demo";
const WEB_PORT: u16 = 8080;
const ADMIN_PORT: u16 = 8443;

/// The policy the demo applies: only the admin's address is named.
fn policy(admin: IpAddr) -> String {
    format!(
        r#"# The demo policy: the website is public, the admin panel is for one address.
[guard]
interfaces = ["eth0"]      # the host's internet side
default = "drop"

[sets]
admins = ["{admin}"]

[[rule]]
name = "website"
ports = ["{WEB_PORT}/tcp"]

[[rule]]
name = "admin panel"
from = ["@admins"]
container = "admin"    # whatever it publishes: dockfw-nft asks Docker (8443, to its 8000)
"#
    )
}

pub fn run() -> Result<()> {
    crate::run("cargo", &["build", "--quiet", "-p", "dockfw-cli"])?;
    let binary = crate::target_dir()?.join("debug/dockfw-nft");
    let config = LabConfig::new(PREFIX)?;
    // A demo interrupted earlier may have left its lab behind.
    Lab::down(&config)?;
    step(
        "Bringing up the lab: a private dockerd in network namespace dfw-demo-host, clients in dfw-demo-inet",
    );
    let lab =
        Lab::up_with(config).context("cannot bring the lab up (run as root, with docker.io installed)")?;
    let result = demo(&lab, &binary);
    step("Tearing the lab down");
    let teardown = lab.teardown();
    result?;
    teardown?;
    println!("\nDone. Nothing was left behind on this machine.");
    Ok(())
}

fn demo(lab: &Lab, binary: &Path) -> Result<()> {
    let stranger = IpAddr::V4(addr::INET_SOURCES[0]);
    let admin = IpAddr::V4(addr::INET_SOURCES[1]);
    let host = IpAddr::V4(addr::HOST_INET_A);

    step("Starting two containers: web (publishes 8080 -> 80) and admin (publishes 8443 -> 8000)");
    lab.run_echo("web", &[&format!("{WEB_PORT}:80/tcp")], &[(Proto::Tcp, 80)])?;
    lab.run_echo(
        "admin",
        &[&format!("{ADMIN_PORT}:8000/tcp")],
        &[(Proto::Tcp, 8000)],
    )?;
    println!(
        "{}",
        lab.docker(&["ps", "--format", "  {{.Names}}\t{{.Ports}}"])?
            .trim_end()
    );

    step("Without dockfw-nft, Docker's published ports are open to everyone");
    let probes = [
        ("stranger", stranger, WEB_PORT),
        ("stranger", stranger, ADMIN_PORT),
        ("admin", admin, WEB_PORT),
        ("admin", admin, ADMIN_PORT),
    ];
    show_probes(lab, host, &probes)?;

    let dir = std::env::temp_dir().join(format!("dockfw-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let policy_path = dir.join("policy.toml");
    std::fs::write(&policy_path, policy(admin))?;
    step(&format!("The policy ({}):", policy_path.display()));
    println!("{}", policy(admin));

    let cli = Cli {
        binary,
        policy: &policy_path,
        netns: lab.netns_path(),
        docker_host: lab.docker_host(),
    };
    cli.run(&["apply"])?;

    step("With the policy: the website stays public; only the admin reaches the admin panel");
    show_probes(lab, host, &probes)?;
    expect(lab, probe(stranger, host, ADMIN_PORT), ProbeResult::TimedOut)?;
    expect(lab, probe(admin, host, ADMIN_PORT), ProbeResult::Open)?;

    cli.run(&["status"])?;
    cli.run(&[
        "explain",
        "--from",
        &stranger.to_string(),
        "--port",
        &ADMIN_PORT.to_string(),
        "--to",
        &host.to_string(),
    ])?;

    cli.run(&["remove"])?;
    step("Removed: Docker's default behaviour is back (everything published is open)");
    show_probes(lab, host, &probes[1..2])?;
    expect(lab, probe(stranger, host, ADMIN_PORT), ProbeResult::Open)?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

struct Cli<'a> {
    binary: &'a Path,
    policy: &'a PathBuf,
    netns: &'a Path,
    docker_host: String,
}

impl Cli<'_> {
    /// Runs `dockfw-nft ARGS` against the lab, echoing the command as a user would type it.
    fn run(&self, args: &[&str]) -> Result<()> {
        step(&format!("$ dockfw-nft {}", args.join(" ")));
        let status = Command::new(self.binary)
            .args(args)
            .arg("--config")
            .arg(self.policy)
            .arg("--netns")
            .arg(self.netns)
            .args(["--docker-host", &self.docker_host])
            .status()
            .context("cannot run dockfw-nft")?;
        if !status.success() {
            bail!("dockfw-nft {} failed ({status})", args.join(" "));
        }
        Ok(())
    }
}

fn show_probes(lab: &Lab, host: IpAddr, probes: &[(&str, IpAddr, u16)]) -> Result<()> {
    let list: Vec<Probe> = probes
        .iter()
        .map(|&(_, src, port)| probe(src, host, port))
        .collect();
    let outcomes = lab.probe_all(&list)?;
    for ((who, src, port), outcome) in probes.iter().zip(outcomes) {
        let what = match port {
            &WEB_PORT => "website",
            _ => "admin panel",
        };
        let verdict = match outcome {
            ProbeResult::Open => "connected".to_string(),
            ProbeResult::TimedOut => "blocked (no answer: dropped)".to_string(),
            ProbeResult::Refused => "refused".to_string(),
        };
        println!("  {who:<8} {src:<15} -> {host}:{port:<5} ({what:<11})  {verdict}");
    }
    Ok(())
}

fn probe(src: IpAddr, dst: IpAddr, port: u16) -> Probe {
    Probe {
        from: Client::Internet,
        src,
        dst,
        port,
        proto: Proto::Tcp,
    }
}

fn expect(lab: &Lab, probe: Probe, want: ProbeResult) -> Result<()> {
    let got = lab.probe(probe.from, probe.src, probe.dst, probe.port, probe.proto)?;
    if got != want {
        bail!("demo expectation failed: {probe}: want {want}, got {got}");
    }
    Ok(())
}

fn step(text: &str) {
    use std::io::IsTerminal;
    if std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
        println!("\n\x1b[1m==> {text}\x1b[0m");
    } else {
        println!("\n==> {text}");
    }
}
