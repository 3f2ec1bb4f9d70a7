//! `dockfw-nft`: guard Docker-published ports with one nftables policy. The
//! command lives in the library (`lib.rs`); this only runs it against the
//! kernel and the terminal.
#![forbid(unsafe_code)]

use clap::Parser;
use dockfw_cli::{Cli, Console, backend::Kernel};
use std::process::ExitCode;

fn main() -> ExitCode {
    dockfw_cli::run(Cli::parse(), Box::new(Kernel), Console::terminal()).into()
}
