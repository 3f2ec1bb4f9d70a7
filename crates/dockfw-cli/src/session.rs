//! What every command shares: the global options, the policy, the kernel
//! connection (through the session's [`Backend`]), Docker's view and the
//! console the command writes to.

use crate::backend::{Backend, Connections, Tables};
use crate::cli::Global;
use crate::docker_view::{self, DockerView};
use crate::output::{self, Console, Verbosity, errln, outln};
use crate::policy_file;
use crate::sources::{self, Cache, Fetched};
use anyhow::{Context, Result, bail};
use dockfw_core::sets::{Content, Loaded, SetSource};
use dockfw_core::{Draft, Parsed, PolicyError, Ruleset};
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
    /// To check it: what cannot be loaded yet is skipped, with a warning;
    /// `url` and `names` sources are loaded only when `fetch` is set.
    Check { fetch: bool },
    /// To enforce or evaluate it: everything loads, or the policy is refused.
    Enforce,
}

/// A policy as watch keeps it: the policy file read, its sources as loaded
/// (to resolve it again when one of them changes), and the result.
#[derive(Debug, Clone)]
pub struct Followed {
    pub draft: Draft,
    pub sources: Vec<Fetched>,
    pub parsed: Parsed,
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

    /// Reads and validates the policy and the sources its sets name (list
    /// files, downloads, DNS names), printing warnings (unless quiet or
    /// JSON) and errors, for a command that enforces or evaluates it: a
    /// source that cannot be loaded (and has no earlier copy) is an error,
    /// never an empty set. `--table` overrides the policy's table.
    pub fn load_policy(&self) -> Result<Parsed> {
        Ok(self.load(Purpose::Enforce, None)?.parsed)
    }

    /// Like [`Session::load_policy`], for `check`: `url` and `names`
    /// sources are loaded only with `fetch` (else skipped with a warning),
    /// and sources dockfw-nft cannot load yet are warnings.
    pub fn check_policy(&self, fetch: bool) -> Result<Parsed> {
        Ok(self.load(Purpose::Check { fetch }, None)?.parsed)
    }

    /// Like [`Session::load_policy`], for watch: `url` and `names` sources
    /// loaded before (in `previous`) are kept as they are, since watch
    /// refreshes them on its own schedule; list files are read again.
    pub fn follow_policy(&self, previous: &[Fetched]) -> Result<Followed> {
        self.load(Purpose::Enforce, Some(previous))
    }

    /// The draft of the policy resolved with `sources` (watch, after one
    /// changed); nothing printed.
    pub fn resolve(&self, draft: &Draft, sources: &[Fetched]) -> Result<Parsed, PolicyError> {
        let mut loaded = Loaded::new();
        for fetched in sources {
            loaded.insert(&fetched.set, fetched.index, fetched.content.clone());
        }
        let mut parsed = draft.clone().resolve(loaded);
        let warnings = sources.iter().flat_map(Fetched::diagnostics);
        match &mut parsed {
            Ok(parsed) => {
                parsed.warnings.extend(warnings);
                if let Some(table) = &self.global.table {
                    parsed.policy.guard.table = table.clone();
                }
            }
            Err(error) => error.diagnostics.extend(warnings),
        }
        parsed
    }

    /// Where downloads and resolved names are kept.
    pub fn cache(&self) -> Cache {
        Cache::new(&self.global.cache_dir)
    }

    /// The directory relative `file` paths are relative to.
    pub fn policy_dir(&self) -> &Path {
        self.global.config.parent().unwrap_or(Path::new(""))
    }

    fn load(&self, purpose: Purpose, previous: Option<&[Fetched]>) -> Result<Followed> {
        let path = &self.global.config;
        let bytes =
            policy_file::read(path).with_context(|| format!("cannot read the policy {}", path.display()))?;
        let loaded = Draft::parse_bytes(&self.config_name(), &bytes).and_then(|draft| {
            let sources = self.load_sources(&draft, purpose, previous);
            let parsed = self.resolve(&draft, &sources)?;
            Ok(Followed {
                draft,
                sources,
                parsed,
            })
        });
        match loaded {
            Ok(followed) => {
                if self.verbosity > Verbosity::Quiet && !self.global.json {
                    output::print_diagnostics(&self.console, &followed.parsed.warnings);
                }
                Ok(followed)
            }
            Err(error) => Err(self.refused(&error)),
        }
    }

    /// Prints a policy's errors; the error that says it was refused.
    pub fn refused(&self, error: &PolicyError) -> anyhow::Error {
        if self.global.json {
            let report = serde_json::json!({ "ok": false, "diagnostics": error.diagnostics });
            outln!(self, "{report:#}");
        } else {
            output::print_diagnostics(&self.console, &error.diagnostics);
        }
        PolicyInvalid {
            path: self.config_name(),
            errors: error.errors().count(),
        }
        .into()
    }

    /// Loads the sets' external sources: list files (a relative path is
    /// relative to the policy's directory), downloads and names (for
    /// `check` only when fetching; what `previous` holds is kept); refuses,
    /// or for `check` skips, what cannot be loaded yet.
    fn load_sources(&self, draft: &Draft, purpose: Purpose, previous: Option<&[Fetched]>) -> Vec<Fetched> {
        let fetching = purpose != Purpose::Check { fetch: false };
        // Only downloads and names: files are read again.
        let kept = |set: &str, source: &SetSource| {
            if !matches!(source, SetSource::Url { .. } | SetSource::Names { .. }) {
                return None;
            }
            previous?
                .iter()
                .find(|fetched| fetched.same_target(set, source))
                .map(|fetched| Fetched {
                    source: source.clone(),
                    ..fetched.clone()
                })
        };
        let mut loaded = Vec::new();
        for external in draft.external_sources() {
            let (set, index, source) = (external.set, external.index, external.source);
            if let Some(mut kept) = kept(set, source) {
                kept.index = index;
                kept.warnings.clear();
                loaded.push(kept);
                continue;
            }
            let (content, warnings) = match source {
                SetSource::File { path, .. } => (sources::read_file(self.policy_dir(), path), Vec::new()),
                SetSource::Url { .. } | SetSource::Names { .. } if !fetching => {
                    let why = if matches!(source, SetSource::Url { .. }) {
                        "its url was not downloaded (`check --fetch` downloads it)"
                    } else {
                        "its names were not resolved (`check --fetch` resolves them)"
                    };
                    (Content::Skipped { why: why.to_string() }, Vec::new())
                }
                SetSource::Url { url, .. } => sources::load_url(url, &self.cache()),
                SetSource::Names { names, .. } => sources::load_names(names, &self.cache()),
                // Written in the policy: never external. A dynamic set's
                // elements belong to run time: nothing to load.
                SetSource::Entries { .. } | SetSource::Dynamic { .. } => continue,
            };
            let mut fetched = Fetched::new(set, index, source, content);
            fetched.warnings = warnings;
            loaded.push(fetched);
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

    /// A connection reading counters from another thread (watch's metrics
    /// endpoint), in `--netns` if given.
    pub fn counter_reader(&self) -> Result<Box<dyn crate::backend::CounterReader>> {
        match &self.global.netns {
            None => self.backend.counter_reader(None),
            Some(netns) => self.backend.counter_reader(Some(&netns_path(netns)?)),
        }
    }

    /// NFLOG group `group`, bound in `--netns` if given.
    pub fn log_listener(&self, group: u16) -> Result<dockfw_nft::nflog::LogListener> {
        match &self.global.netns {
            None => Ok(self.backend.log_listener(None, group)?),
            Some(netns) => {
                let path = netns_path(netns)?;
                self.backend
                    .log_listener(Some(&path), group)
                    .with_context(|| format!("cannot follow NFLOG group {group} in {}", path.display()))
            }
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

    /// The value of a sysctl under `/proc/sys` (like
    /// `net/bridge/bridge-nf-call-iptables`), in `--netns` if given.
    pub fn sysctl(&self, key: &str) -> std::io::Result<String> {
        match &self.global.netns {
            None => self.backend.sysctl(None, key),
            Some(netns) => {
                let path = netns_path(netns).map_err(std::io::Error::other)?;
                self.backend.sysctl(Some(&path), key)
            }
        }
    }

    /// The network interfaces' names, in `--netns` if given.
    pub fn interfaces(&self) -> std::io::Result<Vec<String>> {
        match &self.global.netns {
            None => self.backend.interfaces(None),
            Some(netns) => {
                let path = netns_path(netns).map_err(std::io::Error::other)?;
                self.backend.interfaces(Some(&path))
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
            for bridge in &view.named_bridges {
                if parsed.policy.guard.guards(bridge) {
                    errln!(
                        self.console,
                        "{} {bridge} is a Docker network's bridge and a guarded interface: what arrives \
                         on it is judged as coming from outside, and its containers' connections are not \
                         judged as theirs ([[outbound]], [[between]])",
                        output::paint(output::WARN, "warning:")
                    );
                }
            }
        }
        Ok(view)
    }

    /// The ruleset the policy compiles to, given what Docker runs.
    pub fn desired(&self, parsed: &Parsed, docker: &DockerView) -> Ruleset {
        dockfw_core::compile_with_bridges(&parsed.policy, &docker.containers, &docker.named_bridges)
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
