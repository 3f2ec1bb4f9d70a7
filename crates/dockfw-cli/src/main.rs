//! `dockfw-nft`: guard Docker-published ports with one nftables policy.
//!
//! This binary so far has the commands that need no kernel access: `check`,
//! `plan` and `explain`. Installing the ruleset (`apply`, `diff`, `status`,
//! `remove`) comes with the netlink backend.

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use dockfw_core::{Connection, Parsed};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit code for usage and policy errors.
const EXIT_CONFIG: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "dockfw-nft",
    version,
    about = "Guard Docker-published ports with one nftables policy"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct ConfigArg {
    /// Policy file.
    #[arg(long, short = 'c', env = "DOCKFW_CONFIG", default_value = dockfw_core::policy::DEFAULT_PATH)]
    config: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate the policy; print warnings. Needs no privilege.
    Check {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Print the nft script the policy compiles to. Needs no privilege.
    Plan {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Say which rule decides a connection, and why the rules before it did not match.
    Explain {
        #[command(flatten)]
        config: ConfigArg,
        /// Client address.
        #[arg(long)]
        from: IpAddr,
        /// Published port the client dials, PORT or PORT/PROTO (default tcp).
        #[arg(long)]
        port: String,
        /// Interface the connection arrives on (default: the first guarded one).
        #[arg(long = "in")]
        interface: Option<String>,
        /// Host address the client dials.
        #[arg(long)]
        to: Option<IpAddr>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("dockfw-nft: {error:#}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// Reads and validates the policy; prints warnings to stderr.
fn load(config: &ConfigArg) -> Result<Option<Parsed>> {
    let text = std::fs::read_to_string(&config.config)
        .with_context(|| format!("cannot read the policy {}", config.config.display()))?;
    match dockfw_core::parse(&config.config.display().to_string(), &text) {
        Ok(parsed) => {
            for warning in &parsed.warnings {
                eprintln!("{warning}");
            }
            Ok(Some(parsed))
        }
        Err(error) => {
            eprintln!("{error}");
            Ok(None)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Check { config } => {
            let Some(parsed) = load(&config)? else {
                return Ok(ExitCode::from(EXIT_CONFIG));
            };
            let policy = &parsed.policy;
            println!(
                "{}: ok: {} rule{}, {} set{}, {} warning{}",
                config.config.display(),
                policy.rules.len(),
                plural(policy.rules.len()),
                policy.sets.len(),
                plural(policy.sets.len()),
                parsed.warnings.len(),
                plural(parsed.warnings.len()),
            );
        }
        Command::Plan { config } => {
            let Some(parsed) = load(&config)? else {
                return Ok(ExitCode::from(EXIT_CONFIG));
            };
            // Container rules match nothing until Docker is consulted (a later version).
            print!(
                "{}",
                dockfw_core::render(&dockfw_core::compile(&parsed.policy, &[]))
            );
        }
        Command::Explain {
            config,
            from,
            port,
            interface,
            to,
        } => {
            let Some(parsed) = load(&config)? else {
                return Ok(ExitCode::from(EXIT_CONFIG));
            };
            let range = dockfw_core::values::parse_port_range(&port)
                .map_err(|e| anyhow::anyhow!("--port: {}", e.message))?;
            if range.ports.first != range.ports.last {
                bail!("--port takes one port, like 443 or 53/udp");
            }
            let interface = match interface {
                Some(interface) => interface,
                None => guessed_interface(&parsed)?,
            };
            let connection = Connection {
                interface,
                source: from,
                dialled: to,
                port: range.ports.first,
                proto: range.proto,
            };
            print_explanation(&parsed, &connection);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn guessed_interface(parsed: &Parsed) -> Result<String> {
    match parsed.policy.guard.interfaces.first() {
        Some(dockfw_core::ruleset::IfName::Exact(name)) => Ok(name.clone()),
        _ => bail!("say which interface the connection arrives on with --in"),
    }
}

fn print_explanation(parsed: &Parsed, connection: &Connection) {
    let explanation = dockfw_core::explain(&parsed.policy, &[], connection);
    let proto = connection.proto.name();
    let to = connection.dialled.map_or(String::new(), |d| format!(" to {d}"));
    println!(
        "{} → port {}/{proto}{to} on {}: {}",
        connection.source, connection.port, connection.interface, explanation.decision
    );
    for miss in &explanation.misses {
        println!("  rule \"{}\" did not match: {}", miss.rule, miss.reason);
    }
}

fn plural(count: usize) -> &'static str {
    if count == 1 { "" } else { "s" }
}
