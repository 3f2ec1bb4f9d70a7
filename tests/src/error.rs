//! Lab errors.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Anything that can go wrong while building, using or removing the lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The lab creates namespaces and runs dockerd: it needs root.
    #[error("the Docker lab needs root (effective uid is {0})")]
    NotRoot(u32),
    /// A program the lab runs is not installed.
    #[error("`{program}` not found ({hint})")]
    MissingProgram {
        /// The program's name.
        program: String,
        /// How to install it.
        hint: &'static str,
    },
    /// The lab name prefix is unusable.
    #[error("invalid lab prefix {0:?}: use 1-12 of [a-z0-9-], starting with a letter")]
    BadPrefix(String),
    /// A command ran and failed.
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        cmd: String,
        /// How it ended (exit status or signal).
        status: String,
        /// What it wrote to standard error.
        stderr: String,
    },
    /// A command could not be started.
    #[error("cannot run `{cmd}`: {source}")]
    Spawn {
        /// The command line.
        cmd: String,
        /// Why it could not start.
        source: io::Error,
    },
    /// A file or system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, and on which file.
        what: String,
        /// The error.
        source: io::Error,
    },
    /// dockerd did not answer on its socket in time.
    #[error("dockerd did not become ready within {timeout:?} ({reason}); last lines of {}:\n{tail}", log.display())]
    DockerdNotReady {
        /// How long the lab waited.
        timeout: Duration,
        /// Why it was not ready (e.g. it exited, or never answered).
        reason: String,
        /// dockerd's log file.
        log: PathBuf,
        /// The last lines of that log.
        tail: String,
    },
    /// build.rs could not build the static `lab-echo` helper.
    #[error("the static lab-echo helper was not built: {0}")]
    NoEchoHelper(String),
    /// A container did not report that its services are listening.
    #[error("container {name} did not become ready within {timeout:?}; its log:\n{log}")]
    ContainerNotReady {
        /// The container's name.
        name: String,
        /// How long the lab waited.
        timeout: Duration,
        /// The container's log.
        log: String,
    },
    /// A probe could not even be attempted (e.g. source address missing).
    #[error("probe {probe} could not run: {source}")]
    Probe {
        /// The probe, as it is shown.
        probe: String,
        /// Why it could not run.
        source: io::Error,
    },
    /// The lab's network did not carry traffic in time.
    #[error("no answer from the docker host within {timeout:?} on: {paths}")]
    NotConnected {
        /// How long the lab waited.
        timeout: Duration,
        /// The paths that stayed silent.
        paths: String,
    },
    /// A connection meant to be held open was not accepted.
    #[error("connection {probe} was not opened: {outcome}")]
    NotOpen {
        /// The connection's probe, as it is shown.
        probe: String,
        /// What the probe met instead.
        outcome: crate::probe::ProbeResult,
    },
    /// A command's output was not what the lab expected.
    #[error("unexpected output from `{cmd}`: {output:?}")]
    Unexpected {
        /// The command line.
        cmd: String,
        /// What it printed.
        output: String,
    },
    /// Teardown left something behind.
    #[error("lab teardown incomplete: {0}")]
    Teardown(String),
}

/// Result alias for the lab.
pub type Result<T, E = LabError> = std::result::Result<T, E>;

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> LabError {
    let what = what.into();
    move |source| LabError::Io { what, source }
}
