//! What every command shares: the global options, the policy, the kernel
//! connection (through the session's [`Backend`]), Docker's view and the
//! console the command writes to.

use crate::backend::{Backend, Connections, Tables};
use crate::cli::Global;
use crate::docker_view::{self, DockerView};
use crate::output::{self, Console, Verbosity, errln, outln};
use crate::policy_file;
use anyhow::{Context, Result, bail};
use dockfw_core::sets::{Content, Loaded, SetSource};
use dockfw_core::{Draft, Parsed, Ruleset};
use dockfw_nft::monitor::Monitor;
use std::fmt;
use std::path::{Path, PathBuf};

/// The policy has errors; they were printed.
#[derive(Debug)]
pub struct PolicyInvalid {
    pub path: String,
    pub errors: usize,
}

impl fmt::Display for PolicyInvalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let errors = output::plural(self.errors, "error");
        write!(f, "{} has {errors}; nothing was changed", self.path)
    }
}

impl std::error::Error for PolicyInvalid {}

/// What the policy is loaded for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// To check it: what cannot be loaded yet is skipped, with a warning.
    Check,
    /// To enforce or evaluate it: everything loads, or the policy is refused.
    Enforce,
}

#[derive(Debug)]
pub struct Session {
    pub global: Global,
    pub verbosity: Verbosity,
    /// Where the firewall is read and changed: the kernel, except in tests.
    backend: Box<dyn Backend>,
    /// Where the command's output goes.
    pub console: Console,
}

impl Session {
    pub fn new(global: Global, backend: Box<dyn Backend>, console: Console) -> Self {
        let verbosity = if global.quiet {
            Verbosity::Quiet
        } else if global.verbose > 0 {
            Verbosity::Verbose
        } else {
            Verbosity::Normal
        };
        Self {
            global,
            verbosity,
            backend,
            console,
        }
    }

    pub fn config_name(&self) -> String {
        self.global.config.display().to_string()
    }

    /// Reads and validates the policy and the list files its sets name,
    /// printing warnings (unless quiet or JSON) and errors, for a command
    /// that enforces or evaluates it: a set source dockfw-nft cannot load
    /// yet (`url`, `names`) is an error, never an empty set.
    /// `--table` overrides the policy's table.
    pub fn load_policy(&self) -> Result<Parsed> {
        self.load(Purpose::Enforce)
    }

    /// Like [`Session::load_policy`], for `check`: sources dockfw-nft cannot
    /// load yet are warnings, and the rest of the policy is checked.
    pub fn check_policy(&self) -> Result<Parsed> {
        self.load(Purpose::Check)
    }

    fn load(&self, purpose: Purpose) -> Result<Parsed> {
        let path = &self.global.config;
        let bytes =
            policy_file::read(path).with_context(|| format!("cannot read the policy {}", path.display()))?;
        let parsed = Draft::parse_bytes(&self.config_name(), &bytes).and_then(|draft| {
            let loaded = self.load_sources(&draft, purpose);
            draft.resolve(loaded)
        });
        match parsed {
            Ok(mut parsed) => {
                if let Some(table) = &self.global.table {
                    parsed.policy.guard.table = table.clone();
                }
                if self.verbosity > Verbosity::Quiet && !self.global.json {
                    output::print_diagnostics(&self.console, &parsed.warnings);
                }
                Ok(parsed)
            }
            Err(error) => {
                if self.global.json {
                    let report = serde_json::json!({ "ok": false, "diagnostics": error.diagnostics });
                    outln!(self, "{report:#}");
                } else {
                    output::print_diagnostics(&self.console, &error.diagnostics);
                }
                Err(PolicyInvalid {
                    path: self.config_name(),
                    errors: error.errors().count(),
                }
                .into())
            }
        }
    }

    /// Reads the sets' list files (a relative path is relative to the
    /// policy's directory); refuses, or for `check` skips, what cannot be
    /// loaded yet.
    fn load_sources(&self, draft: &Draft, purpose: Purpose) -> Loaded {
        let directory = self.global.config.parent().unwrap_or(Path::new(""));
        let mut loaded = Loaded::new();
        for external in draft.external_sources() {
            let content = match external.source {
                SetSource::File { path, .. } => {
                    let path = directory.join(path);
                    match policy_file::read_list(&path) {
                        Ok(bytes) => Content::List {
                            name: path.display().to_string(),
                            bytes,
                        },
                        Err(error) => Content::Failed {
                            problem: format!("cannot read {}: {error}", path.display()),
                            hint: None,
                        },
                    }
                }
                SetSource::Url { .. } => not_yet(
                    purpose,
                    "url sources are not supported yet",
                    "the set was checked without its url",
                    "download the list (curl -o PATH URL) and write file = \"PATH\" instead",
                ),
                SetSource::Names { .. } => not_yet(
                    purpose,
                    "names sources are not supported yet",
                    "the set was checked without its names",
                    "write the names' addresses under entries = [...] instead",
                ),
                // Written in the policy: never external. A dynamic set's
                // elements belong to run time: nothing to load.
                SetSource::Entries { .. } | SetSource::Dynamic { .. } => continue,
            };
            loaded.insert(external.set, external.index, content);
        }
        loaded
    }

    /// The table to work on without a policy: `--table`, else the policy's
    /// (if it can be read; its sets need not load), else the default.
    pub fn table_without_policy(&self) -> String {
        if let Some(table) = &self.global.table {
            return table.clone();
        }
        policy_file::read(&self.global.config)
            .ok()
            .and_then(|bytes| Draft::parse_bytes(&self.config_name(), &bytes).ok())
            .map_or_else(
                || dockfw_core::policy::DEFAULT_TABLE.to_string(),
                |draft| draft.guard().table.clone(),
            )
    }

    /// A connection to nf_tables, in `--netns` if given.
    pub fn nft(&self) -> Result<Box<dyn Tables>> {
        match &self.global.netns {
            None => Ok(self.backend.tables(None)?),
            Some(netns) => {
                let path = netns_path(netns)?;
                match self.backend.tables(Some(&path)) {
                    Ok(nft) => Ok(nft),
                    // setns(2) refuses a file that is no namespace: a usage
                    // error like a missing name, not a kernel failure.
                    Err(dockfw_nft::Error::Io { source, .. })
                        if source.raw_os_error() == Some(libc::EINVAL) =>
                    {
                        bail!(
                            "{} is not a network namespace ({source}); `ip netns add NAME` makes one \
                             under /run/netns, and /proc/PID/ns/net is a process's",
                            path.display()
                        )
                    }
                    Err(error) => Err(error)
                        .with_context(|| format!("cannot enter network namespace {}", path.display())),
                }
            }
        }
    }

    /// A subscription to nf_tables notifications, in `--netns` if given.
    pub fn monitor(&self) -> Result<Monitor> {
        match &self.global.netns {
            None => self.backend.monitor(None),
            Some(netns) => self.backend.monitor(Some(&netns_path(netns)?)),
        }
    }

    /// A ctnetlink connection, in `--netns` if given.
    pub fn conntrack(&self) -> Result<Box<dyn Connections>> {
        match &self.global.netns {
            None => Ok(self.backend.connections(None)?),
            Some(netns) => {
                let path = netns_path(netns)?;
                self.backend
                    .connections(Some(&path))
                    .with_context(|| format!("cannot enter network namespace {}", path.display()))
            }
        }
    }

    /// Docker's containers, as far as the options allow, with what the
    /// policy gets wrong about them (printed as warnings, and kept in the
    /// view for JSON output).
    pub fn docker(&self, parsed: &Parsed) -> Result<DockerView> {
        let mut view = docker_view::query(&self.global)?;
        if view.reachable {
            view.diagnostics = dockfw_core::containers::diagnose(&parsed.policy, &view.containers);
        }
        if self.verbosity > Verbosity::Quiet && !self.global.json {
            if let Some(problem) = &view.problem {
                errln!(
                    self.console,
                    "{} {problem}",
                    output::paint(output::WARN, "warning:")
                );
            }
            output::print_diagnostics(&self.console, &view.diagnostics);
        }
        Ok(view)
    }

    /// The ruleset the policy compiles to, given what Docker runs.
    pub fn desired(&self, parsed: &Parsed, docker: &DockerView) -> Ruleset {
        dockfw_core::compile(&parsed.policy, &docker.containers)
    }
}

/// The content of a source dockfw-nft cannot load yet: skipped with a
/// warning for `check`, an error for everything else.
fn not_yet(purpose: Purpose, problem: &str, checked: &str, hint: &str) -> Content {
    match purpose {
        Purpose::Check => Content::Skipped {
            why: format!("{problem}: {checked}, and every command but check refuses this policy"),
        },
        Purpose::Enforce => Content::Failed {
            problem: problem.to_string(),
            hint: Some(hint.to_string()),
        },
    }
}

/// `--netns NAME` is a name under /run/netns (as `ip netns` makes them); a
/// value with a '/' is a path.
fn netns_path(netns: &str) -> Result<PathBuf> {
    let path = if netns.contains('/') {
        PathBuf::from(netns)
    } else {
        PathBuf::from("/run/netns").join(netns)
    };
    if !path.exists() {
        bail!(
            "network namespace {netns} not found ({} does not exist; `ip netns list` shows the names)",
            path.display()
        );
    }
    Ok(path)
}
