//! `cargo xtask lab up|down|status|probe`: the Docker lab by hand (see the
//! dockfw-e2e crate in tests/; the flags are in flags.rs).

use crate::flags::{self, LabCommand, ProbeClient};
use anyhow::Result;
use dockfw_e2e::{Client, Lab, LabConfig, Proto};

pub(crate) fn run(args: flags::Lab) -> Result<()> {
    let config = LabConfig::new(&args.prefix)?;
    match args.command {
        LabCommand::Up { no_ipv6, demo } => {
            let ipv6 = !no_ipv6;
            up(LabConfig { ipv6, ..config }, demo)
        }
        LabCommand::Down => {
            Lab::down(&config)?;
            println!("lab {} removed", config.prefix);
            Ok(())
        }
        LabCommand::Status => {
            print!("{}", Lab::status(&config));
            Ok(())
        }
        LabCommand::Probe {
            from,
            src,
            dst,
            port,
            proto,
        } => {
            let from = match from {
                ProbeClient::Inet => Client::Internet,
                ProbeClient::Lan => Client::Lan,
                ProbeClient::Host => Client::DockerHost,
            };
            let outcome = Lab::attach(config)?.probe(from, src, dst, port, proto)?;
            println!("{outcome}");
            Ok(())
        }
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
