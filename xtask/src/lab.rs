//! `cargo xtask lab up|down|status|probe`: the Docker lab by hand (see the
//! dockfw-e2e crate in tests/).
//!
//! - `up [--prefix P] [--no-ipv6] [--demo]`: build or complete the lab;
//!   `--demo` also starts an echo container publishing 8081->8000/tcp,
//!   8081->8000/udp and 8443->8443/tcp.
//! - `down [--prefix P]`: remove everything, also after a crash.
//! - `status [--prefix P]`: show what exists.
//! - `probe [--prefix P] inet|lan|host SRC DST PORT tcp|udp`.

use anyhow::{Context, Result, bail};
use dockfw_e2e::{Client, Lab, LabConfig, Proto};

const USAGE: &str = "usage: cargo xtask lab <up [--no-ipv6] [--demo] | down | status | \
                     probe inet|lan|host SRC DST PORT tcp|udp> [--prefix P]";

pub(crate) fn run(args: &[String]) -> Result<()> {
    let mut prefix = None;
    let mut ipv6 = true;
    let mut demo = false;
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--prefix" => prefix = Some(it.next().context("--prefix needs a value")?.clone()),
            "--no-ipv6" => ipv6 = false,
            "--demo" => demo = true,
            _ => rest.push(a.as_str()),
        }
    }
    let mut config = match &prefix {
        Some(p) => LabConfig::new(p)?,
        None => LabConfig::from_env()?,
    };
    config.ipv6 = ipv6;
    match rest.as_slice() {
        ["up"] => up(config, demo),
        ["down"] => {
            Lab::down(&config)?;
            println!("lab {} removed", config.prefix);
            Ok(())
        }
        ["status"] => {
            print!("{}", Lab::status(&config));
            Ok(())
        }
        ["probe", from, src, dst, port, proto] => {
            let from = match *from {
                "inet" | "internet" => Client::Internet,
                "lan" => Client::Lan,
                "host" => Client::DockerHost,
                other => bail!("unknown client {other:?} (inet|lan|host)"),
            };
            let proto: Proto = proto.parse().map_err(anyhow::Error::msg)?;
            let lab = Lab::attach(config)?;
            let outcome = lab.probe(from, src.parse()?, dst.parse()?, port.parse()?, proto)?;
            println!("{outcome}");
            Ok(())
        }
        _ => bail!("{USAGE}"),
    }
}

fn up(config: LabConfig, demo: bool) -> Result<()> {
    let lab = Lab::up_with(config)?;
    if demo && lab.docker(&["inspect", "--format", "{{.Id}}", "demo"]).is_err() {
        lab.run_echo(
            "demo",
            &["8081:8000/tcp", "8081:8000/udp", "8443:8443/tcp"],
            &[(Proto::Tcp, 8000), (Proto::Udp, 8000), (Proto::Tcp, 8443)],
        )?;
    }
    print!("{}", Lab::status(lab.config()));
    println!("docker:   docker --host {} ps", lab.docker_host());
    println!(
        "firewall: nsenter --net={} nft list ruleset",
        lab.netns_path().display()
    );
    println!("probe:    cargo xtask lab probe inet 198.51.100.10 203.0.113.1 8081 tcp");
    Ok(())
}
