//! `dockfw-nft`: guard Docker-published ports with one nftables policy.

mod cli;
mod commands;
mod docker;
mod output;
mod revoke;
mod session;
mod watch;

use clap::Parser;
use cli::{Cli, Command};
use output::{BAD, DIM, paint};
use session::Session;
use std::process::ExitCode;

/// Exit codes, as documented in `--help` (cli::EXIT_CODES).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success = 0,
    Differs = 1,
    Usage = 2,
    Kernel = 3,
    Docker = 4,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut global = cli.global;
    if matches!(cli.command, Command::Watch { .. }) {
        // Applying without Docker's answer would forget running containers.
        global.require_docker = true;
    }
    let session = Session::new(global);
    let result = match cli.command {
        Command::Apply { force } => commands::apply(&session, force),
        Command::Plan => commands::plan(&session),
        Command::Diff => commands::diff(&session),
        Command::Status => commands::status(&session),
        Command::Check => commands::check(&session),
        Command::Explain(args) => commands::explain(&session, &args),
        Command::Remove => commands::remove(&session),
        Command::Watch { settle } => watch::watch(&session, settle.into()),
        Command::Completions { shell } => commands::completions(shell),
        Command::Manpages { dir } => commands::manpages(&dir),
    };
    match result {
        Ok(exit) => exit.into(),
        Err(error) => {
            report(&error);
            exit_code(&error).into()
        }
    }
}

/// Which documented exit code an error maps to.
fn exit_code(error: &anyhow::Error) -> Exit {
    for cause in error.chain() {
        if cause.is::<dockfw_nft::Error>() {
            return Exit::Kernel;
        }
        if cause.is::<docker::Unreachable>() {
            return Exit::Docker;
        }
    }
    Exit::Usage
}

/// Prints an error with its cause chain and, where we know one, a hint.
pub fn report(error: &anyhow::Error) {
    anstream::eprintln!("{} {error}", paint(BAD, "error:"));
    for cause in error.chain().skip(1) {
        anstream::eprintln!("  {} {cause}", paint(DIM, "cause:"));
    }
    if let Some(hint) = hint(error) {
        anstream::eprintln!("{} {hint}", paint(output::BOLD, "hint:"));
    }
}

fn hint(error: &anyhow::Error) -> Option<&'static str> {
    for cause in error.chain() {
        if let Some(error) = cause.downcast_ref::<dockfw_nft::Error>() {
            return match error {
                dockfw_nft::Error::PermissionDenied { .. } => {
                    Some("run it as root (e.g. with sudo): changing the firewall needs CAP_NET_ADMIN")
                }
                dockfw_nft::Error::Busy { .. } => {
                    Some("another program kept changing the firewall; try again in a moment")
                }
                dockfw_nft::Error::Rejected { .. } | dockfw_nft::Error::Mismatch { .. } => Some(
                    "the policy is valid but the kernel refused it: `dockfw-nft plan` shows the \
                     script; please report this with the policy and `uname -r`",
                ),
                dockfw_nft::Error::Unrecognised { .. } => Some(
                    "someone else changed dockfw's table; `dockfw-nft apply` replaces it with the policy",
                ),
                _ => None,
            };
        }
        if cause.is::<docker::Unreachable>() {
            return Some("without --require-docker, Docker being away is only a warning");
        }
        if cause.is::<session::PolicyInvalid>() {
            return Some("fix the errors above; `dockfw-nft check` validates without changing anything");
        }
    }
    None
}
