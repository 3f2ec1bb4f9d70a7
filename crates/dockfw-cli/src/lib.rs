//! `dockfw-nft`, the command: guard Docker-published ports with one
//! nftables policy.
//!
//! The binary (`main.rs`) parses the command line and calls [`run`] with
//! the [`backend::Kernel`] and the terminal's [`Console`]. Each subcommand
//! is one function in `commands` (`watch` in `watch`); what they share (the
//! policy, Docker's view, the connections to the kernel, the console) is the
//! `session`. The commands reach the kernel only through the session's
//! [`Backend`], so tests run them in-process against
//! `backend::Memory` (feature `testing`) and read what they printed from
//! [`Console::capture`], without privilege; `tests/offline.rs` does. No
//! option or environment variable of the binary selects another backend.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod cli;
mod commands;
mod docker_view;
mod dynamic_sets;
mod features;
mod log;
mod metrics;
mod output;
mod policy_file;
mod revoke;
mod session;
mod sources;
mod watch;

pub mod backend;

pub use backend::Backend;
pub use cli::Cli;
pub use output::{Captured, Console};

use cli::Command;
use output::{BAD, DIM, errln, paint};
use session::Session;
use std::process::ExitCode;

/// Exit codes, as documented in `--help` (cli::EXIT_CODES).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done; `diff` and `status`: the table matches the policy.
    Success = 0,
    /// `diff` and `status`: the table differs, is missing or is not dockfw's.
    Differs = 1,
    /// A usage or policy error, or a table that is not dockfw's; nothing changed.
    Usage = 2,
    /// A kernel or lock error.
    Kernel = 3,
    /// Docker unreachable where it is required.
    Docker = 4,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

/// Runs the parsed command line `cli` against `backend`, writing to
/// `console`: what `main` does with the kernel and the terminal, and what
/// tests do with `backend::Memory` and [`Console::capture`]. Errors are
/// printed to the console (with their causes and a hint) and mapped to the
/// exit code `--help` documents.
pub fn run(cli: Cli, backend: Box<dyn Backend>, console: Console) -> Exit {
    let mut global = cli.global;
    if matches!(cli.command, Command::Watch { .. }) {
        // Applying without Docker's answer would forget running containers.
        global.require_docker = true;
        global.watching = true;
    }
    let session = Session::new(global, backend, console);
    let result = match cli.command {
        Command::Apply { force, adopt } => commands::apply(&session, force, adopt),
        Command::Plan => commands::plan(&session),
        Command::Diff => commands::diff(&session),
        Command::Status { format } => commands::status(&session, format),
        Command::Check { fetch } => commands::check(&session, fetch),
        Command::Explain(args) => commands::explain(&session, &args),
        Command::Remove { foreign } => commands::remove(&session, foreign),
        Command::Set { command } => dynamic_sets::set(&session, &command),
        Command::Log { group, all } => log::follow(&session, group, all),
        Command::Watch { settle, metrics } => watch::watch(&session, settle.into(), metrics),
        Command::Completions { shell } => commands::completions(shell),
        Command::Manpages { dir } => commands::manpages(&dir),
    };
    match result {
        Ok(exit) => exit,
        Err(error) => {
            report(&session.console, &error);
            exit_code(&error)
        }
    }
}

/// Which documented exit code an error maps to.
fn exit_code(error: &anyhow::Error) -> Exit {
    for cause in error.chain() {
        if let Some(error) = cause.downcast_ref::<dockfw_nft::Error>() {
            // Refusing to touch a table that is not ours is not a kernel failure.
            if matches!(
                error,
                dockfw_nft::Error::NotOwned { .. } | dockfw_nft::Error::Guarded { .. }
            ) {
                return Exit::Usage;
            }
            // `set`: the table, or the set as the policy has it, is not
            // installed, as `status` says of a missing table.
            if matches!(
                error,
                dockfw_nft::Error::NoTable { .. }
                    | dockfw_nft::Error::NoSet { .. }
                    | dockfw_nft::Error::NotRuntimeSet { .. }
            ) {
                return Exit::Differs;
            }

            return Exit::Kernel;
        }
        if cause.is::<docker_view::Unreachable>() {
            return Exit::Docker;
        }
    }
    Exit::Usage
}

/// Prints an error with its cause chain and, where we know one, a hint.
pub(crate) fn report(console: &Console, error: &anyhow::Error) {
    errln!(console, "{} {error}", paint(BAD, "error:"));
    let mut said = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        // Many errors already carry their source's message ("cannot X:
        // Invalid argument", "cannot X (path): Y; nothing was changed"):
        // say it once.
        if !said.contains(&cause) {
            errln!(console, "  {} {cause}", paint(DIM, "cause:"));
        }
        said = cause;
    }
    if let Some(hint) = hint(error) {
        errln!(console, "{} {hint}", paint(output::BOLD, "hint:"));
    }
}

fn hint(error: &anyhow::Error) -> Option<&'static str> {
    for cause in error.chain() {
        if let Some(error) = cause.downcast_ref::<dockfw_nft::Error>() {
            return nft_hint(error);
        }
        if let Some(unreachable) = cause.downcast_ref::<docker_view::Unreachable>() {
            return Some(if unreachable.by_watch {
                "watch follows Docker's containers, so it needs Docker: start dockerd, or point \
                 --docker-host (or DOCKER_HOST) at it"
            } else {
                "without --require-docker, Docker being away is only a warning"
            });
        }
        if cause.is::<commands::GuardedByWatch>() {
            return Some(
                "edit the policy file the watch reads and send it SIGHUP (`systemctl reload \
                 dockfw-nft-watch`, `kill -HUP PID`; in Swarm, `docker service update` with a new \
                 config), or stop it first (`systemctl stop dockfw-nft-watch`); `apply --force` \
                 applies anyway, until the watch puts its policy back",
            );
        }
        if cause.is::<session::PolicyInvalid>() {
            return Some("fix the errors above; `dockfw-nft check` validates without changing anything");
        }
    }
    None
}

fn nft_hint(error: &dockfw_nft::Error) -> Option<&'static str> {
    use dockfw_nft::Error;
    match error {
        Error::PermissionDenied { .. } => {
            Some("run it as root (e.g. with sudo): changing the firewall needs CAP_NET_ADMIN")
        }
        Error::LockFile { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => Some(
            "run it as root (e.g. with sudo): changing the firewall needs CAP_NET_ADMIN, and its \
             lock lives under /run/dockfw-nft",
        ),
        Error::Locked { .. } => Some(
            "dockfw commands changing one network namespace take turns (apply, remove, each apply of \
             watch); try again when the other one is done",
        ),
        Error::Busy { .. } => Some("another program kept changing the firewall; try again in a moment"),
        Error::Guarded { .. } => Some(
            "one watch guards a table: stop the other (`systemctl stop dockfw-nft-watch`, or \
             `docker service rm` for the Swarm service's task), or give this policy another `table`",
        ),
        Error::Rejected { .. } => Some(
            "the policy is valid but the kernel refused it: `dockfw-nft plan` shows the \
             script; please report this with the policy and `uname -r`",
        ),
        Error::Mismatch { .. } => Some(
            "the table read back after the apply is not what was sent: usually another program \
             changed it at that moment (try again; watch retries by itself); if it repeats with \
             nothing else changing the firewall, please report it with the policy and `uname -r`",
        ),
        Error::Unrecognised { .. } => {
            Some("someone else changed dockfw's table; `dockfw-nft apply` replaces it with the policy")
        }
        Error::NotOwned { .. } => Some(
            "dockfw only changes tables it created: choose another `table` in the policy (or \
             --table), or take this one over deliberately with `apply --adopt` (its contents \
             are lost) or delete it with `remove --foreign`",
        ),
        Error::NoTable { .. } => Some("install the policy first: `dockfw-nft apply`"),
        Error::NoSet { .. } => Some(
            "the installed table was applied from a policy without this set: `dockfw-nft apply` creates it",
        ),
        Error::NotRuntimeSet { .. } => Some(
            "the installed table differs from the policy (`dockfw-nft diff` shows how); \
             `dockfw-nft apply` makes the set dynamic",
        ),
        Error::Undone { cause, .. } => nft_hint(cause),
        Error::LeftAsIs { .. } | Error::RollbackFailed { .. } => Some(
            "`dockfw-nft apply` brings the table to the policy from whatever it holds; \
             `dockfw-nft diff` shows what differs now",
        ),
        _ => None,
    }
}
