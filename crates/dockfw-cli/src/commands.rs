//! One function per subcommand. Each returns the exit code; errors go up to
//! `main`, which prints them and maps them to an exit code.

use crate::Exit;
use crate::cli::{Cli, ExplainArgs, StatusFormat};
use crate::docker_view::DockerView;
use crate::output::{
    self, ADDED, Align, BOLD, DIM, GOOD, REMOVED, Table, Verbosity, WARN, errln, out, outln, paint, plural,
};
use crate::revoke::{self, Revoked};
use crate::session::Session;
use anstyle::Style;
use anyhow::{Context, Result, bail};
use clap::CommandFactory;
use dockfw_core::layout::{self, Decider};
use dockfw_core::ruleset::IfName;
use dockfw_core::sets::Origin;
use dockfw_core::{Action, Connection, Container, Direction, Parsed, Policy, Ruleset};
use dockfw_nft::{ApplyReport, Change};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

pub fn check(session: &Session, fetch: bool) -> Result<Exit> {
    let parsed = session.check_policy(fetch)?;
    let docker = session.docker(&parsed)?;
    let policy = &parsed.policy;
    let foreign = foreign_table(session, &policy.guard.table);
    if let Ok(mut nft) = session.nft() {
        warn_same_priority(session, nft.as_mut(), &policy.guard.table, policy.guard.priority);
    }
    warn_other_engines(session);
    let warnings = parsed.warnings.len() + docker.diagnostics.len() + usize::from(foreign.is_some());
    if session.global.json {
        let diagnostics: Vec<_> = parsed.warnings.iter().chain(&docker.diagnostics).collect();
        let report = serde_json::json!({
            "ok": true,
            "file": session.config_name(),
            "rules": policy.rules.len(),
            "outbound_rules": policy.outbound.len(),
            "between_rules": policy.between.len(),
            "sets": policy.sets.len(),
            "docker": {
                "reachable": docker.reachable,
                "problem": docker.problem,
                "named_bridges": docker.named_bridges,
            },
            "diagnostics": diagnostics,
            "foreign_table": foreign,
        });
        outln!(session, "{report:#}");
    } else if session.verbosity > Verbosity::Quiet {
        if let Some(why) = &foreign {
            errln!(
                session.console,
                "{} table inet {} exists and is not dockfw's ({why}): `apply` will refuse to replace it \
                 (choose another `table`, or `apply --adopt` to take it over)",
                paint(WARN, "warning:"),
                policy.guard.table
            );
        }
        outln!(
            session,
            "{}: {}: {}, {}, {}",
            session.config_name(),
            paint(GOOD, "ok"),
            rule_counts(policy),
            plural(policy.sets.len(), "set"),
            plural(warnings, "warning"),
        );
        if policy.guard.audit() {
            outln!(session, "{}", audit_note());
        }
    }
    Ok(Exit::Success)
}

/// `4 rules`, and `, 1 outbound rule, 2 between rules` when it has some.
fn rule_counts(policy: &Policy) -> String {
    let mut counts = plural(policy.rules.len(), "rule");
    for (rules, kind) in [
        (&policy.outbound, "outbound rule"),
        (&policy.between, "between rule"),
    ] {
        if !rules.is_empty() {
            counts += &format!(", {}", plural(rules.len(), kind));
        }
    }
    counts
}

/// What audit mode means, said wherever the policy or the table is in it.
fn audit_note() -> String {
    format!(
        "{} audit mode: every drop and reject is only logged (`dockfw-nft log` shows them as \
         would-drop, would-reject) and counted; nothing is denied (`status` shows what would have been)",
        paint(WARN, "note:")
    )
}

/// What keeps connections between containers of one bridge from being
/// judged, when the policy judges them: bridged packets pass netfilter
/// only with `br_netfilter` loaded and `bridge-nf-call-iptables` (IPv6:
/// `-ip6tables`, checked when a running container has an IPv6 address) on.
/// Docker loads it and turns them on. Best effort: what cannot be read is
/// not reported.
pub fn bridge_netfilter_problems(
    session: &Session,
    policy: &Policy,
    containers: &[Container],
) -> Vec<String> {
    if !policy.judges(Direction::Between) {
        return Vec::new();
    }
    let ipv6 = containers
        .iter()
        .flat_map(|c| &c.addresses)
        .any(std::net::IpAddr::is_ipv6);
    let mut problems = Vec::new();
    for (key, checked) in [
        ("net/bridge/bridge-nf-call-iptables", true),
        ("net/bridge/bridge-nf-call-ip6tables", ipv6),
    ] {
        match session.sysctl(key) {
            Ok(value) if value != "0" => {}
            Ok(_) if checked => problems.push(format!(
                "/proc/sys/{key} is 0: packets between containers on the same Docker network are bridged \
                 without passing netfilter, so [[between]] rules and `between` judge only connections \
                 across networks (Docker sets it to 1; `sysctl -w {}=1`)",
                key.replace('/', ".")
            )),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                problems.push(format!(
                    "br_netfilter is not loaded (no /proc/sys/{key}): packets between containers on the same \
                     Docker network are bridged without passing netfilter, so [[between]] rules and `between` \
                     judge only connections across networks (Docker loads it; `modprobe br_netfilter`)"
                ));
                break;
            }
            _ => {}
        }
    }
    problems
}

fn warn_all(session: &Session, problems: &[String]) {
    if session.verbosity == Verbosity::Quiet || session.global.json {
        return;
    }
    for problem in problems {
        errln!(session.console, "{} {problem}", paint(WARN, "warning:"));
    }
}

/// Why the policy's table, if it exists, is not dockfw's. `check` needs no
/// privilege: when the table cannot be read (no CAP_NET_ADMIN), nothing is said.
/// Base chains of other tables on the hooks ours use (forward, input) at our
/// very priority: nf_tables runs two base chains of one priority in an
/// undefined order, so which decides first is luck. Best effort: nothing
/// when the kernel cannot be asked.
pub fn same_priority(nft: &mut dyn crate::backend::Tables, table: &str, priority: i32) -> Vec<String> {
    use dockfw_nft::monitor::NfFamily;
    let Ok(chains) = nft.base_chains() else {
        return Vec::new();
    };
    chains
        .into_iter()
        .filter(|c| matches!(c.family, NfFamily::Inet | NfFamily::Ip | NfFamily::Ip6))
        .filter(|c| !(c.family == NfFamily::Inet && c.table == table))
        .filter(|c| c.priority == priority)
        .filter_map(|c| {
            let hook = match c.hook as i32 {
                libc::NF_INET_FORWARD => "forward",
                libc::NF_INET_LOCAL_IN => "input",
                _ => return None,
            };
            Some(format!(
                "table {} {} chain {} ({hook} hook)",
                c.family, c.table, c.chain
            ))
        })
        .collect()
}

/// Bridges of other container engines: netavark names Podman's networks'
/// bridges `podman0`, `podman1`, … (its CNI backend `cni-podman0`, …).
/// dockfw knows Docker's bridges by name (`docker0`, `br-*`), so on these
/// only published (DNATed) ports are judged. Best effort: nothing when the
/// interfaces cannot be read.
pub fn other_engines_bridges(session: &Session) -> Vec<String> {
    let Ok(names) = session.interfaces() else {
        return Vec::new();
    };
    let numbered = |name: &str, prefix: &str| {
        name.strip_prefix(prefix)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    names
        .into_iter()
        .filter(|name| numbered(name, "podman") || numbered(name, "cni-podman"))
        .map(|name| {
            format!(
                "interface {name} looks like a Podman network's bridge, not one of Docker's (docker0, br-*): \
                 dockfw judges the ports its containers publish (DNAT), but not connections routed to their \
                 own addresses without NAT (netavark does not drop them either), and [[outbound]] and \
                 [[between]] rules do not see them"
            )
        })
        .collect()
}

/// Warns of [`other_engines_bridges`].
pub fn warn_other_engines(session: &Session) {
    warn_all(session, &other_engines_bridges(session));
}

/// Warns of [`same_priority`] chains.
pub fn warn_same_priority(
    session: &Session,
    nft: &mut dyn crate::backend::Tables,
    table: &str,
    priority: i32,
) {
    if session.verbosity == Verbosity::Quiet || session.global.json {
        return;
    }
    for chain in same_priority(nft, table, priority) {
        errln!(
            session.console,
            "{} {chain} hooks at priority {priority}, as table inet {table} does: nf_tables runs base \
             chains of one priority in an undefined order, so either may decide first; set `priority` \
             in [guard] to another value below 0 (e.g. {})",
            paint(WARN, "warning:"),
            priority - 5
        );
    }
}

fn foreign_table(session: &Session, table: &str) -> Option<String> {
    let table = session.global.table.as_deref().unwrap_or(table);
    match session.nft().ok()?.inspect(table).ok()??.owner() {
        dockfw_nft::Owner::Foreign { why } => Some(why.clone()),
        _ => None,
    }
}

pub fn plan(session: &Session) -> Result<Exit> {
    let parsed = session.load_policy()?;
    let docker = session.docker(&parsed)?;
    let ruleset = session.desired(&parsed, &docker);
    if session.global.json {
        outln!(session, "{:#}", serde_json::to_value(&ruleset)?);
    } else {
        // Comments, so the script still loads with `nft -f`.
        for origins in set_origins(&parsed.policy) {
            outln!(session, "# {}", origins_line(&origins));
        }
        out!(session, "{}", dockfw_core::render(&ruleset));
    }
    Ok(Exit::Success)
}

#[derive(Serialize)]
struct ApplyOutput<'a> {
    table: &'a str,
    changed: bool,
    policy_rules: usize,
    kernel_rules: usize,
    set_elements: usize,
    interfaces: Vec<String>,
    containers: Vec<&'a str>,
    docker_reachable: bool,
    elapsed_ms: f64,
    /// `null` when revoke did not run (off, or nothing changed).
    revoked: Option<RevokedOutput<'a>>,
    /// Kernel sets of dynamic sets recreated (emptied) because the policy
    /// changed their timeout or type (left out when none).
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    recreated_dynamic_sets: &'a [String],
    /// Addresses of dynamic sets put back after the table was rebuilt
    /// (left out when none).
    #[serde(skip_serializing_if = "is_zero")]
    dynamic_addresses_kept: usize,
    /// `[[outbound]]` and `[[between]]` rules (left out when none).
    #[serde(skip_serializing_if = "is_zero")]
    outbound_rules: usize,
    #[serde(skip_serializing_if = "is_zero")]
    between_rules: usize,
    /// Audit mode: nothing is denied (left out when enforcing).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    audit: bool,
    /// Why connections between containers of one bridge are not judged
    /// (left out when none).
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    bridge_netfilter: &'a [String],
}

#[derive(Serialize)]
struct RevokedOutput<'a> {
    /// Audit mode: nothing was cut; `cut` counts what would have been.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    audit: bool,
    cut: usize,
    labelled: usize,
    by: std::collections::BTreeMap<String, usize>,
    connections: &'a [crate::revoke::Cut],
    problem: Option<&'a str>,
}

fn is_zero(count: &usize) -> bool {
    *count == 0
}

/// What one apply did.
pub struct Applied {
    pub parsed: Parsed,
    pub docker: DockerView,
    pub ruleset: Ruleset,
    pub report: ApplyReport,
    pub elapsed: Duration,
    /// What revoke cut; `None` when it did not run (`[guard] revoke = false`,
    /// or the table was already up to date).
    pub revoked: Option<Revoked>,
    /// Why connections between containers of one bridge cannot be judged.
    pub bridge_netfilter: Vec<String>,
}

/// Validates, compiles against Docker's containers, and installs the policy
/// unless the installed table already matches it.
pub fn install(session: &Session, force: bool, adopt: bool) -> Result<Applied> {
    let start = Instant::now();
    let parsed = session.load_policy()?;
    let docker = session.docker(&parsed)?;
    let ruleset = session.desired(&parsed, &docker);
    let mut nft = session.nft()?;
    crate::features::check(nft.as_mut())?;
    let table = &ruleset.table;
    // A watch guarding the table puts its own policy back within
    // milliseconds: an apply of another policy file beside it would say
    // "applied", revoke by a policy that does not stay, and be undone. The
    // watch follows an apply of its own file (it reads the file again), and
    // an apply that changes nothing is harmless (nftables.service's reload
    // propagating to dockfw-nft.service).
    let guard = match nft.guard_of(table)? {
        Some(holder)
            if holder.note.is_some()
                && holder.note == crate::policy_file::identity(&session.global.config) =>
        {
            None
        }
        Some(_) if !force && installed_matches(nft.as_mut(), &ruleset) => None,
        guard => guard,
    };
    if let Some(holder) = guard {
        let guard = GuardedByWatch {
            table: table.clone(),
            pid: holder.pid,
        };
        if !force {
            return Err(guard.into());
        }
        errln!(
            session.console,
            "{} {guard}; applying anyway (--force): it will put its own policy back",
            paint(WARN, "warning:")
        );
    }
    let context = || format!("cannot install {} into table inet {table}", session.config_name());
    // Revoke reads connections' labels by the map of the ruleset that set
    // them: the one installed now. (One more read of the table; without one,
    // the new ruleset's map is the best guess.)
    let revoking = parsed.policy.guard.revoke;
    let labelled_by = revoking
        .then(|| nft.installed(table).ok().flatten())
        .flatten()
        .map(|installed| dockfw_core::revoke::ct_label_map(&installed));
    // apply changes only what differs, and nothing when the table already matches
    // (counters and rate-limit state carry on); --force rebuilds it from scratch;
    // --adopt rebuilds it even if dockfw did not create it. Without --adopt a table
    // that is not dockfw's is refused (exit 2), whatever else is asked.
    let report = if adopt {
        nft.adopt(&ruleset)
    } else if force {
        nft.replace(&ruleset)
    } else {
        nft.apply(&ruleset)
    }
    .with_context(context)?;
    let revoked = (revoking && report.change != Change::Unchanged).then(|| {
        let labelled_by = labelled_by.unwrap_or_else(|| dockfw_core::revoke::ct_label_map(&ruleset));
        revoke::revoke(session, &parsed.policy, &docker.containers, &labelled_by)
    });
    let bridge_netfilter = bridge_netfilter_problems(session, &parsed.policy, &docker.containers);
    Ok(Applied {
        parsed,
        docker,
        ruleset,
        report,
        elapsed: start.elapsed(),
        revoked,
        bridge_netfilter,
    })
}

/// Whether the installed table already is `ruleset` (an apply would change
/// nothing); `false` when it cannot be read.
fn installed_matches(nft: &mut dyn crate::backend::Tables, ruleset: &Ruleset) -> bool {
    nft.inspect(&ruleset.table)
        .ok()
        .flatten()
        .is_some_and(|installed| installed.compare(ruleset).matches())
}

/// `apply` refused: a guard (`dockfw-nft watch`) guards the table and would
/// undo it.
#[derive(Debug)]
pub struct GuardedByWatch {
    pub table: String,
    pub pid: Option<u32>,
}

impl std::fmt::Display for GuardedByWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "dockfw-nft watch{} guards table inet {} in this network namespace from another policy \
             file and would put back its own policy at once; nothing was applied",
            self.pid.map(|pid| format!(" (pid {pid})")).unwrap_or_default(),
            self.table,
        )
    }
}

impl std::error::Error for GuardedByWatch {}

pub fn apply(session: &Session, force: bool, adopt: bool) -> Result<Exit> {
    let applied = install(session, force, adopt)?;
    print_applied(session, &applied)?;
    let guard = &applied.parsed.policy.guard;
    warn_same_priority(session, session.nft()?.as_mut(), &guard.table, guard.priority);
    warn_other_engines(session);
    Ok(Exit::Success)
}

pub fn print_applied(session: &Session, applied: &Applied) -> Result<()> {
    let Applied {
        parsed,
        docker,
        ruleset,
        report,
        elapsed,
        revoked,
        bridge_netfilter,
    } = applied;
    let table = &ruleset.table;
    let interfaces: Vec<String> = parsed
        .policy
        .guard
        .interfaces
        .iter()
        .map(IfName::to_string)
        .collect();
    if session.global.json {
        let out = ApplyOutput {
            table,
            changed: report.change != Change::Unchanged,
            policy_rules: parsed.policy.rules.len(),
            kernel_rules: ruleset.rule_count(),
            set_elements: ruleset.element_count(),
            interfaces,
            containers: docker.containers.iter().map(|c| c.name.as_str()).collect(),
            docker_reachable: docker.reachable,
            elapsed_ms: elapsed.as_secs_f64() * 1000.0,
            revoked: revoked.as_ref().map(|r| RevokedOutput {
                audit: r.audit,
                cut: r.cut.len(),
                labelled: r.labelled,
                by: r.counts(),
                connections: &r.cut,
                problem: r.problem.as_deref(),
            }),
            recreated_dynamic_sets: &report.recreated_runtime_sets,
            dynamic_addresses_kept: report.runtime_elements_kept,
            outbound_rules: parsed.policy.outbound.len(),
            between_rules: parsed.policy.between.len(),
            audit: parsed.policy.guard.audit(),
            bridge_netfilter,
        };
        outln!(session, "{}", serde_json::to_value(out)?);
        return Ok(());
    }
    if session.verbosity == Verbosity::Quiet {
        return Ok(());
    }
    let what = format!(
        "{} ({} in the kernel), {}; guarding {}",
        rule_counts(&parsed.policy),
        ruleset.rule_count(),
        plural(ruleset.element_count(), "set element"),
        interfaces.join(", "),
    );
    if report.change != Change::Unchanged {
        outln!(
            session,
            "{} {} to table inet {table}: {what}; {elapsed:.0?}",
            paint(GOOD, "applied"),
            session.config_name(),
        );
    } else {
        outln!(
            session,
            "{} table inet {table} already matches {}: {what}; nothing changed (--force reinstalls)",
            paint(GOOD, "up to date:"),
            session.config_name(),
        );
    }
    for set in &report.recreated_runtime_sets {
        errln!(
            session.console,
            "{} dynamic set `{set}` was recreated: the policy changed its timeout or type, so the \
             addresses added to it at run time (fail2ban, `dockfw-nft set add`) are gone",
            paint(WARN, "warning:")
        );
    }
    if parsed.policy.guard.audit() {
        outln!(session, "{}", audit_note());
    }
    warn_all(session, bridge_netfilter);
    if let Some(revoked) = revoked {
        print_revoked(session, revoked);
    }
    if report.change != Change::Unchanged && session.verbosity == Verbosity::Verbose {
        outln!(
            session,
            "  {}",
            paint(
                DIM,
                format!(
                    "{} transaction(s): {} messages, {} bytes, generation {}, {} attempt(s); apply {:.1?}: commit {:.1?}, \
                     verify {:.1?}; read the table {} time(s), {} with set elements{}",
                    report.transactions.len(),
                    report.messages,
                    report.batch_bytes,
                    report.generation,
                    report.attempts,
                    report.call_time,
                    report.commit_time,
                    report.verify_time,
                    report.reads,
                    report.element_reads,
                    match report.runtime_elements_kept {
                        0 => String::new(),
                        kept => format!("; kept {kept} address(es) of dynamic sets"),
                    },
                )
            )
        );
    }
    Ok(())
}

/// `revoked 2 connections the policy no longer admits: 1 drop by rule "x", 1 drop by default`;
/// with `-v` one line per connection.
pub fn print_revoked(session: &Session, revoked: &Revoked) {
    if let Some(problem) = &revoked.problem {
        errln!(session.console, "{} revoke: {problem}", paint(WARN, "warning:"));
    }
    if revoked.cut.is_empty() {
        if session.verbosity == Verbosity::Verbose {
            outln!(
                session,
                "  {}",
                paint(
                    DIM,
                    format!(
                        "revoke: {} judged by dockfw, none the policy denies now",
                        plural(revoked.labelled, "tracked connection")
                    )
                )
            );
        }
        return;
    }
    let by: Vec<String> = revoked
        .by_decision()
        .into_iter()
        .map(|(what, count)| format!("{count} {what}"))
        .collect();
    if revoked.audit {
        outln!(
            session,
            "{} {} the policy no longer admits, but kept them (audit mode): {}",
            paint(WARN, "would have revoked"),
            plural(revoked.cut.len(), "connection"),
            by.join(", ")
        );
    } else {
        outln!(
            session,
            "{} {} the policy no longer admits: {}",
            paint(WARN, "revoked"),
            plural(revoked.cut.len(), "connection"),
            by.join(", ")
        );
    }
    if session.verbosity == Verbosity::Verbose {
        let verb = if revoked.audit { "would cut" } else { "cut" };
        for cut in &revoked.cut {
            let how = match cut.path {
                Some(path) => {
                    let path = serde_json::to_value(path)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default();
                    format!("{path}, on {}", cut.interfaces.join(", "))
                }
                None => format!("{}, from a container", cut.direction),
            };
            outln!(session, "  {verb} {} ({how}): {}", cut.tuple, cut.decision);
        }
    }
    if revoked.tcp_loose_off {
        errln!(
            session.console,
            "{} net.netfilter.nf_conntrack_tcp_loose is 0: the next packet of a cut TCP connection is invalid, not new; it no longer reaches its container through Docker's NAT, but set the sysctl to 1 (the default) for revoke to work as documented",
            paint(WARN, "warning:")
        );
    }
}

pub fn remove(session: &Session, foreign: bool) -> Result<Exit> {
    let table = session.table_without_policy();
    let mut nft = session.nft()?;
    let removed = if foreign {
        nft.remove_foreign(&table)
    } else {
        nft.remove(&table)
    }
    .with_context(|| format!("cannot remove table inet {table}"))?;
    if session.global.json {
        outln!(
            session,
            "{:#}",
            serde_json::json!({ "table": table, "removed": removed })
        );
    } else if session.verbosity > Verbosity::Quiet {
        if removed {
            outln!(session, "{} table inet {table}", paint(GOOD, "removed"));
        } else {
            outln!(session, "table inet {table} was not installed; nothing to do");
        }
    }
    Ok(Exit::Success)
}

pub fn diff(session: &Session) -> Result<Exit> {
    let parsed = session.load_policy()?;
    let docker = session.docker(&parsed)?;
    let desired = session.desired(&parsed, &docker);
    let table = &desired.table;
    let installed = session.nft()?.inspect(table)?;
    // Both sides rendered by the same code: everything the table holds, foreign
    // parts included, shows up as text.
    let comparison = installed.as_ref().map(|t| t.compare(&desired));
    let desired_text = dockfw_nft::table_text(&desired);
    let installed_text = comparison
        .as_ref()
        .map(|c| c.installed_text.clone())
        .unwrap_or_default();
    let equal = comparison.as_ref().is_some_and(dockfw_nft::Comparison::matches);
    let foreign = installed.as_ref().and_then(|t| match t.owner() {
        dockfw_nft::Owner::Foreign { why } => Some(why.clone()),
        _ => None,
    });
    let diff = similar::TextDiff::from_lines(&installed_text, &desired_text);
    let installed_label = match (&installed, &foreign) {
        (None, _) => format!("installed (table inet {table} is not installed)"),
        (Some(_), None) => format!("installed table inet {table}"),
        (Some(_), Some(_)) => format!("installed table inet {table} (not dockfw's)"),
    };
    let unified = diff
        .unified_diff()
        .context_radius(3)
        .header(
            &installed_label,
            &format!("desired from {}", session.config_name()),
        )
        .to_string();
    if session.global.json {
        let differences: Vec<String> = comparison
            .iter()
            .flat_map(|c| &c.differences)
            .map(ToString::to_string)
            .collect();
        let out = serde_json::json!({
            "table": table,
            "installed": installed.is_some(),
            "owned": installed.is_some() && foreign.is_none(),
            "equal": equal,
            "differences": differences,
            "diff": unified,
        });
        outln!(session, "{out:#}");
    } else if equal {
        if session.verbosity > Verbosity::Quiet {
            outln!(session, "table inet {table} matches {}", session.config_name());
        }
    } else {
        if let Some(why) = &foreign {
            outln!(
                session,
                "{} table inet {table} is not dockfw's ({why}); `apply` leaves it alone without --adopt",
                paint(WARN, "note:"),
            );
        }
        for line in unified.lines() {
            let style = match line.as_bytes().first() {
                Some(b'+') => ADDED,
                Some(b'-') => REMOVED,
                Some(b'@') => DIM,
                _ => Style::new(),
            };
            outln!(session, "{}", paint(style, line));
        }
        // Where the wanted side's set entries come from (`explain --from
        // ADDR` tells it for one address).
        for origins in set_origins(&parsed.policy) {
            outln!(session, "{}", paint(DIM, format!("# {}", origins_line(&origins))));
        }
    }
    Ok(if equal { Exit::Success } else { Exit::Differs })
}

#[derive(Serialize)]
struct RuleStatus {
    name: String,
    /// What the rule decides; in audit mode, the drop or reject it would.
    action: Option<Action>,
    /// Audit mode: the drop or reject is only logged and counted (left out when not).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    audit: bool,
    packets: u64,
    bytes: u64,
    /// The running containers the rule reaches; `None` when Docker is unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    containers: Option<Vec<String>>,
}

#[derive(Serialize)]
struct StatusOutput {
    table: String,
    installed: bool,
    /// Whether the table is dockfw's (`false` also when not installed).
    owned: bool,
    /// Marked as dockfw's (`false` for a table of an earlier version, recognised by its content).
    marked: bool,
    /// `None` when the policy could not be read.
    matches_policy: Option<bool>,
    /// Every difference from the policy (empty when it matches or cannot be compared).
    differences: Vec<String>,
    /// A short reason the table differs, or why it is not dockfw's.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    policy: String,
    interfaces: Vec<String>,
    rules: Vec<RuleStatus>,
    default: Option<RuleStatus>,
    /// Untracked packets the guard would judge, dropped (`notrack` somewhere).
    untracked: Option<RuleStatus>,
    /// What containers sent that no outbound or between rule could judge,
    /// dropped: invalid packets; between containers: IPv6 link-local, broadcasts, multicasts (left
    /// out when neither direction is judged).
    #[serde(skip_serializing_if = "Option::is_none")]
    unattributed: Option<RuleStatus>,
    /// Where each of the policy's sets gets its entries.
    sets: Vec<SetOrigins>,
    /// Containers' new connections to the outside: `[[outbound]]` rules,
    /// then the outbound default (left out when not judged).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    outbound: Vec<RuleStatus>,
    /// Containers' new connections to other containers: `[[between]]`
    /// rules, then the between default (left out when not judged).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    between: Vec<RuleStatus>,
    /// The installed table only logs and counts denials (left out when it enforces).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    audit: bool,
    /// Why connections between containers of one bridge are not judged
    /// (left out when none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    bridge_netfilter: Vec<String>,
}

/// Where one set of the policy gets its entries, source by source.
#[derive(Serialize)]
struct SetOrigins {
    name: String,
    sources: Vec<String>,
}

/// [`SetOrigins`] of every set of `policy`.
fn set_origins(policy: &dockfw_core::Policy) -> Vec<SetOrigins> {
    policy
        .sets
        .iter()
        .map(|(name, set)| SetOrigins {
            name: name.clone(),
            sources: set.source_summary(),
        })
        .collect()
}

/// `@name: 12 entries from sets/x.netset, 2 entries written in policy.toml`.
fn origins_line(origins: &SetOrigins) -> String {
    format!("@{}: {}", origins.name, origins.sources.join(", "))
}

pub fn status(session: &Session, format: StatusFormat) -> Result<Exit> {
    if format == StatusFormat::Prometheus && session.global.json {
        bail!("--json and --format prometheus ask for two formats: choose one");
    }
    // Status is worth showing even when the policy is broken: compare only if it loads.
    let parsed = match session.load_policy() {
        Ok(parsed) => Some(parsed),
        Err(error) if error.is::<crate::session::PolicyInvalid>() => None,
        Err(error) => {
            if session.verbosity > Verbosity::Quiet && !session.global.json {
                errln!(session.console, "{} {error:#}", paint(WARN, "warning:"));
            }
            None
        }
    };
    let table = match &parsed {
        Some(parsed) => parsed.policy.guard.table.clone(),
        None => session.table_without_policy(),
    };
    let mut nft = session.nft()?;
    if let Some(parsed) = &parsed {
        warn_same_priority(session, nft.as_mut(), &table, parsed.policy.guard.priority);
    }
    warn_other_engines(session);
    let inspected = nft.inspect(&table)?;
    let owner = inspected.as_ref().map(|t| t.owner().clone());
    let foreign = match &owner {
        Some(dockfw_nft::Owner::Foreign { why }) => Some(why.clone()),
        _ => None,
    };
    // Rows come from what decodes as dockfw's; the comparison covers everything.
    let installed = inspected.as_ref().map(|t| t.recognised().clone());
    let mut resolutions = None;
    let mut comparison = None;
    let mut running: Option<Vec<Container>> = None;
    let mut bridge_netfilter = Vec::new();
    let matches_policy = match &parsed {
        Some(parsed) => {
            let docker = session.docker(parsed)?;
            let desired = session.desired(parsed, &docker);
            comparison = inspected.as_ref().map(|t| t.compare(&desired));
            resolutions = docker
                .reachable
                .then(|| dockfw_core::containers::resolve(&parsed.policy, &docker.containers));
            bridge_netfilter = bridge_netfilter_problems(session, &parsed.policy, &docker.containers);
            running = docker.reachable.then(|| docker.containers.clone());
            Some(comparison.as_ref().is_some_and(dockfw_nft::Comparison::matches))
        }
        None => None,
    };
    let reason = match (&foreign, &comparison) {
        (Some(why), _) => Some(why.clone()),
        (None, Some(c)) if !c.matches() => Some(c.summary()),
        _ => None,
    };
    let differences: Vec<String> = comparison
        .iter()
        .flat_map(|c| &c.differences)
        .map(ToString::to_string)
        .collect();
    let counters = if installed.is_some() {
        nft.counters(&table)?
    } else {
        Vec::new()
    };
    let row = |decider: Decider, containers: Option<Vec<String>>| {
        let (packets, bytes) = counters
            .iter()
            .find(|c| decider.counter.is(&c.chain, c.index))
            .map_or((0, 0), |c| (c.packets, c.bytes));
        RuleStatus {
            name: decider.name,
            action: decider.action,
            audit: decider.audit,
            packets,
            bytes,
            containers,
        }
    };
    let mut rules = Vec::new();
    let mut default = None;
    let mut untracked = None;
    let mut unattributed = None;
    let mut own: [Vec<RuleStatus>; 2] = Default::default();
    if let Some(installed) = &installed {
        for decider in layout::policy_rules(installed) {
            let containers = resolutions.as_ref().map(|all| {
                all.iter()
                    .find(|r| r.rule == decider.name)
                    .map(|r| r.containers.iter().map(|c| c.name.clone()).collect())
                    .unwrap_or_default()
            });
            rules.push(row(decider, containers));
        }
        default = layout::default_fate(installed).map(|decider| row(decider, None));
        untracked = layout::untracked_drop(installed).map(|decider| row(decider, None));
        unattributed = layout::unattributed_drop(installed).map(|decider| row(decider, None));
        for (rows, direction) in own.iter_mut().zip([Direction::Outbound, Direction::Between]) {
            for decider in layout::direction_rules(installed, direction) {
                let containers = running.as_deref().map(|running| {
                    parsed
                        .as_ref()
                        .and_then(|p| {
                            p.policy
                                .container_rules(direction)
                                .iter()
                                .find(|r| r.name == decider.name)
                        })
                        .map(|rule| container_rule_reach(rule, running))
                        .unwrap_or_default()
                });
                rows.push(row(decider, containers));
            }
            rows.extend(layout::direction_default(installed, direction).map(|decider| row(decider, None)));
        }
    }
    let [outbound, between] = own;
    let audit = installed.as_ref().is_some_and(layout::is_audit);
    let interfaces = installed
        .as_ref()
        .map(|installed| {
            layout::guarded_interfaces(installed)
                .iter()
                .map(IfName::to_string)
                .collect()
        })
        .unwrap_or_default();
    let out = StatusOutput {
        table: table.clone(),
        installed: installed.is_some(),
        owned: owner.as_ref().is_some_and(dockfw_nft::Owner::is_dockfw),
        marked: owner == Some(dockfw_nft::Owner::Dockfw),
        matches_policy,
        differences,
        reason,
        policy: session.config_name(),
        interfaces,
        rules,
        default,
        untracked,
        unattributed,
        sets: parsed
            .as_ref()
            .map(|p| set_origins(&p.policy))
            .unwrap_or_default(),
        outbound,
        between,
        audit,
        bridge_netfilter,
    };
    let exit = match (out.installed, matches_policy) {
        _ if out.installed && !out.owned => Exit::Differs,
        (true, Some(true)) => Exit::Success,
        (_, None) => Exit::Usage,
        _ => Exit::Differs,
    };
    if format == StatusFormat::Prometheus {
        out!(session, "{}", status_metrics(&out));
    } else if session.global.json {
        outln!(session, "{:#}", serde_json::to_value(&out)?);
    } else if session.verbosity > Verbosity::Quiet {
        print_status(session, &out);
    }
    Ok(exit)
}

/// `status --format prometheus`: the decisions' counters, whether the table
/// is installed and whether it matches the policy.
fn status_metrics(out: &StatusOutput) -> String {
    use crate::metrics::{Decision, DecisionKind, Exposition, Kind};
    let owned = out.installed && out.owned;
    let decision = |kind, direction, rule: &RuleStatus| Decision {
        kind,
        direction,
        audit: rule.audit,
        name: rule.name.clone(),
        action: rule.action,
        packets: rule.packets,
        bytes: rule.bytes,
    };
    // The outbound and between lists end in their default (see `status`).
    let own = |rows: &[RuleStatus], direction: Direction| -> Vec<Decision> {
        let default = layout::default_comment(direction);
        rows.iter()
            .map(|rule| {
                let kind = if rule.name == default {
                    DecisionKind::Default
                } else {
                    DecisionKind::Rule
                };
                decision(kind, direction, rule)
            })
            .collect()
    };
    let decisions: Vec<Decision> = out
        .rules
        .iter()
        .map(|rule| decision(DecisionKind::Rule, Direction::Inbound, rule))
        .chain(
            out.default
                .iter()
                .map(|rule| decision(DecisionKind::Default, Direction::Inbound, rule)),
        )
        .chain(own(&out.outbound, Direction::Outbound))
        .chain(own(&out.between, Direction::Between))
        .chain(
            out.untracked
                .iter()
                .map(|rule| decision(DecisionKind::Untracked, Direction::Inbound, rule)),
        )
        .chain(
            out.unattributed
                .iter()
                .map(|rule| decision(DecisionKind::Unattributed, Direction::Outbound, rule)),
        )
        // As in the text: no rows for a table that is not dockfw's.
        .filter(|_| owned)
        .collect();
    let mut exposition = Exposition::default();
    crate::metrics::decisions(&mut exposition, &out.table, owned, &decisions);
    if let Some(matches) = out.matches_policy {
        let name = "dockfw_table_matches_policy";
        exposition.family(
            name,
            Kind::Gauge,
            "Whether the installed table matches the policy file (0 also when missing or not dockfw's).",
        );
        exposition.sample(name, &[("table", &out.table)], u8::from(matches));
    }
    exposition.finish()
}

fn print_status(session: &Session, out: &StatusOutput) {
    let reason = out.reason.as_deref().unwrap_or_default();
    let state = match (out.installed, out.matches_policy) {
        (false, _) => paint(WARN, "not installed"),
        (true, _) if !out.owned => format!(
            "{} ({reason}); dockfw leaves it alone (`apply --adopt` takes it over)",
            paint(WARN, "exists but is not dockfw's"),
        ),
        (true, Some(true)) => format!("{}, matches {}", paint(GOOD, "installed"), out.policy),
        (true, Some(false)) => format!(
            "{}, but {}: {reason} (run `dockfw-nft diff`, then `dockfw-nft apply`)",
            paint(GOOD, "installed"),
            paint(WARN, format!("differs from {}", out.policy))
        ),
        (true, None) => format!(
            "{} (cannot compare: the policy has errors)",
            paint(GOOD, "installed")
        ),
    };
    outln!(
        session,
        "{} {state}",
        paint(BOLD, format!("table inet {}:", out.table))
    );
    if !out.installed || !out.owned {
        return;
    }
    if !out.marked {
        outln!(
            session,
            "{}",
            paint(
                DIM,
                "written by an earlier dockfw (no ownership marker); `apply --force` adds it"
            )
        );
    }
    if out.audit {
        outln!(
            session,
            "{} every drop and reject is only logged and counted, nothing is denied; \
             rows marked \"would\" count what enforcing would have denied",
            paint(WARN, "mode: audit:"),
        );
    }
    outln!(session, "guarding: {}", out.interfaces.join(", "));
    outln!(session);
    let rows: Vec<&RuleStatus> = out
        .rules
        .iter()
        .chain(&out.default)
        .chain(&out.untracked)
        .collect();
    out!(session, "{}", rules_table(&rows));
    for (rows, title) in [
        (&out.outbound, "containers to the outside (outbound):"),
        (&out.between, "between containers:"),
    ] {
        if rows.is_empty() {
            continue;
        }
        outln!(session);
        outln!(session, "{title}");
        out!(session, "{}", rules_table(&rows.iter().collect::<Vec<_>>()));
    }
    if let Some(unattributed) = &out.unattributed {
        outln!(session);
        outln!(
            session,
            "from containers, judged by no rule (invalid packets; between containers: IPv6 link-local, broadcasts, multicasts):"
        );
        out!(session, "{}", rules_table(&[unattributed]));
    }
    if !out.sets.is_empty() {
        outln!(session);
        outln!(session, "sets:");
        for origins in &out.sets {
            outln!(session, "  {}", origins_line(origins));
        }
    }
    warn_all(session, &out.bridge_netfilter);
}

/// Which running containers an outbound or between rule reaches, in words:
/// the containers it is from (outbound), `proxy → app` (between).
fn container_rule_reach(rule: &dockfw_core::ContainerRule, running: &[Container]) -> Vec<String> {
    let names = |selector: Option<&dockfw_core::policy::Selector>| -> String {
        match selector {
            None => "any".to_string(),
            Some(selector) => {
                let selected: Vec<&str> = selector
                    .selected(running)
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect();
                if selected.is_empty() {
                    "none running".to_string()
                } else {
                    selected.join(", ")
                }
            }
        }
    };
    match rule.direction {
        Direction::Between => {
            let to = match &rule.to {
                Some(dockfw_core::policy::Destination::Containers(to)) => Some(to),
                _ => None,
            };
            vec![format!("{} → {}", names(rule.from.as_ref()), names(to))]
        }
        _ => match &rule.from {
            None => vec!["any".to_string()],
            Some(from) => from.selected(running).iter().map(|c| c.name.clone()).collect(),
        },
    }
}

/// A table of rules: name, action (`would drop` in audit mode), packets,
/// bytes, and the containers each reaches when Docker is known.
fn rules_table(rules: &[&RuleStatus]) -> String {
    let docker_known = rules.iter().any(|r| r.containers.is_some());
    let mut columns = vec![
        ("RULE", Align::Left),
        ("ACTION", Align::Left),
        ("PACKETS", Align::Right),
        ("BYTES", Align::Right),
    ];
    if docker_known {
        columns.push(("CONTAINERS", Align::Left));
    }
    let mut table = Table::new(&columns);
    for rule in rules {
        let (action, style) = rule.action.map_or(("?".to_string(), Style::new()), |a| {
            let word = if rule.audit {
                format!("would {a}")
            } else {
                a.to_string()
            };
            (word, output::action_style(a))
        });
        let mut row = vec![
            (rule.name.clone(), Style::new()),
            (action, style),
            (rule.packets.to_string(), Style::new()),
            (output::human_bytes(rule.bytes), Style::new()),
        ];
        if docker_known {
            row.push((rule.containers.as_deref().unwrap_or_default().join(", "), DIM));
        }
        table.row(row);
    }
    table.render()
}

pub fn explain(session: &Session, args: &ExplainArgs) -> Result<Exit> {
    let mut parsed = session.load_policy()?;
    // What the dynamic sets hold now, when the kernel tells (root, table
    // installed); otherwise the explanation says it does not know.
    let unread = crate::dynamic_sets::fill_runtime(session, &mut parsed.policy);
    let docker = session.docker(&parsed)?;
    let range = dockfw_core::values::parse_port_range(&args.port)
        .map_err(|e| anyhow::anyhow!("--port {}: {}", args.port, e.message))?;
    if range.ports.first != range.ports.last {
        bail!("--port takes one port, like 443 or 53/udp");
    }
    let asked = args.direction.map(Direction::from);
    if args.from_container.is_some()
        || args.to_container.is_some()
        || matches!(asked, Some(Direction::Outbound | Direction::Between))
    {
        return explain_container(session, args, &parsed, &docker, &unread, range);
    }
    let Some(from) = args.from.map(|a| a.to_canonical()) else {
        bail!("say where the connection comes from: --from ADDR, or --from-container NAME");
    };
    let interface = match &args.interface {
        Some(interface) => interface.clone(),
        None => guessed_interface(&parsed)?,
    };
    let connection = Connection {
        interface,
        source: from,
        dialled: args.to.map(|a| a.to_canonical()),
        port: range.ports.first,
        proto: range.proto,
    };
    let path = dockfw_core::Via::from(args.via.unwrap_or(crate::cli::ViaArg::Published));
    let explanation = dockfw_core::explain_via(&parsed.policy, &docker.containers, &connection, path);
    // A rule with `to`, or a container rule (which tells host from container
    // addresses), that missed might have matched had we known the address dialled.
    let address_decides = args.to.is_none()
        && explanation.misses.iter().any(|miss| {
            parsed
                .policy
                .rule(&miss.rule)
                .is_some_and(|rule| rule.to.is_some() || rule.selects_containers())
        });
    let memberships = set_memberships(
        &parsed,
        std::iter::once(connection.source).chain(connection.dialled),
    );
    // Why each dynamic set the decision needed is unknown.
    let unknown: Vec<(&String, &str)> = explanation
        .unknown_sets
        .iter()
        .map(|name| {
            let why = unread.get(name).map_or("not read", String::as_str);
            (name, why)
        })
        .collect();
    if session.global.json {
        let unknown: BTreeMap<&String, &str> = unknown.iter().copied().collect();
        let out = serde_json::json!({
            "connection": connection,
            "via": path,
            "explanation": explanation,
            "address_unknown_decides": address_decides,
            "sets": memberships,
            "dynamic_sets_not_read": unknown,
        });
        outln!(session, "{out:#}");
        return Ok(Exit::Success);
    }
    let proto = connection.proto.name();
    let to = connection.dialled.map_or(String::new(), |d| format!(" to {d}"));
    let decision = &explanation.decision;
    let why = explanation
        .not_judged
        .as_ref()
        .map_or(String::new(), |why| format!(" ({why})"));
    let audit = if explanation.audit {
        " (audit mode: only logged and counted; the connection goes on)"
    } else {
        ""
    };
    outln!(
        session,
        "{} → port {}/{proto}{to} on {}: {}{why}{audit}",
        connection.source,
        connection.port,
        connection.interface,
        paint(output::action_style(decision.action()), decision)
    );
    print_explanation_details(
        session,
        &explanation.misses,
        &memberships,
        &unknown,
        connection.source,
    );
    if address_decides {
        outln!(
            session,
            "{} some rules here depend on the address the client dialled; give it with --to ADDR",
            paint(WARN, "note:")
        );
    }
    Ok(Exit::Success)
}

/// The lines under an explanation's verdict: the rules before the deciding
/// one and why each missed, the sets holding the connection's addresses,
/// and the dynamic sets that could not be read (assumed not to hold `assumed`).
fn print_explanation_details(
    session: &Session,
    misses: &[dockfw_core::Miss],
    memberships: &[Membership<'_>],
    unknown: &[(&String, &str)],
    assumed: std::net::IpAddr,
) {
    for miss in misses {
        outln!(
            session,
            "  {} \"{}\" did not match: {}",
            paint(DIM, "rule"),
            miss.rule,
            miss.reason
        );
    }
    for membership in memberships {
        outln!(session, "  {membership}");
    }
    for (name, why) in unknown {
        outln!(
            session,
            "{} @{name} is dynamic: its addresses exist only in the kernel, and could not be read ({why}); \
             this assumes {assumed} is not in it",
            paint(WARN, "note:"),
        );
    }
}

/// An address of the connection that is in a set, and where the set's
/// entries holding it came from (for a dynamic set: added at run time).
#[derive(Serialize)]
struct Membership<'a> {
    address: std::net::IpAddr,
    set: &'a str,
    origins: Vec<Origin<'a>>,
    /// In a dynamic set: added at run time (left out when not).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    dynamic: bool,
}

impl std::fmt::Display for Membership<'_> {
    /// "198.51.100.7 is in @blocked, from /etc/dockfw/sets/blocked.netset line 12"
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const SHOWN: usize = 3;
        write!(f, "{} is in @{}", self.address, self.set)?;
        if self.dynamic {
            return write!(f, ", added at run time (`dockfw-nft set list {}`)", self.set);
        }
        for (i, origin) in self.origins.iter().take(SHOWN).enumerate() {
            write!(f, "{}{origin}", if i == 0 { ", " } else { ", and " })?;
        }
        if self.origins.len() > SHOWN {
            write!(f, ", and {} more entries", self.origins.len() - SHOWN)?;
        }
        Ok(())
    }
}

/// The sets the connection's addresses (source, and dialled or destination
/// address if given) are in.
fn set_memberships(
    parsed: &Parsed,
    addresses: impl Iterator<Item = std::net::IpAddr>,
) -> Vec<Membership<'_>> {
    addresses
        .flat_map(|address| {
            parsed
                .policy
                .sets
                .iter()
                .filter(move |(_, set)| set.holds(address) == Some(true))
                .map(move |(name, set)| Membership {
                    address,
                    set: name,
                    origins: set.origins_of(address).collect(),
                    dynamic: set.is_dynamic(),
                })
        })
        .collect()
}

/// A running container by name, or why there is none.
fn running_container<'c>(docker: &'c DockerView, name: &str) -> Result<&'c Container> {
    let name = name.trim_start_matches('/');
    if let Some(container) = docker.containers.iter().find(|c| c.name == name) {
        return Ok(container);
    }
    if !docker.reachable {
        bail!(
            "cannot tell the address of container {name:?}: Docker is not known (give its address instead: --from ADDR or --to ADDR, with --direction outbound or between)"
        );
    }
    let close = dockfw_core::names::closest(name, docker.containers.iter().map(|c| c.name.as_str()));
    match close {
        Some(close) => bail!("container {name:?} is not running; did you mean {close:?}?"),
        None => bail!("container {name:?} is not running"),
    }
}

/// The address of `container` of `family`, if given, else its first
/// (IPv4 before IPv6 on each network, as Docker lists them).
fn container_address(container: &Container, family: Option<bool>) -> Result<std::net::IpAddr> {
    container
        .addresses
        .iter()
        .copied()
        .find(|a| family.is_none_or(|v6| a.is_ipv6() == v6))
        .ok_or_else(|| {
            let which = match family {
                Some(true) => "IPv6 address",
                Some(false) => "IPv4 address",
                None => "address",
            };
            anyhow::anyhow!(
                "container {:?} has no {which} (Docker reports none)",
                container.name
            )
        })
}

/// `explain --from-container` / `--to-container`: a container's own new
/// connection, outbound (to an address no running container has) or
/// between (to a running container).
fn explain_container(
    session: &Session,
    args: &ExplainArgs,
    parsed: &Parsed,
    docker: &DockerView,
    unread: &BTreeMap<String, String>,
    range: dockfw_core::values::PortRange,
) -> Result<Exit> {
    if args.interface.is_some() {
        bail!("--in is for connections from outside: a container's connection comes from its Docker bridge");
    }
    let proxied = match args.via {
        None => false,
        Some(crate::cli::ViaArg::Proxied) if args.to_container.is_none() && args.to.is_some() => true,
        Some(crate::cli::ViaArg::Proxied) => bail!(
            "--via proxied is a container dialling a port the host publishes: give the host's address with --to"
        ),
        Some(_) => bail!(
            "a container's own connection is outbound, between containers (--to-container), or through \
             docker-proxy to a port the host publishes (--via proxied)"
        ),
    };
    let from = args
        .from_container
        .as_deref()
        .map(|name| running_container(docker, name))
        .transpose()?;
    let to = args
        .to_container
        .as_deref()
        .map(|name| running_container(docker, name))
        .transpose()?;
    // One family for both ends: the one of the address given, if any.
    // An IPv4-mapped IPv6 address is the IPv4 address on the wire.
    let (given_from, given_to) = (
        args.from.map(|a| a.to_canonical()),
        args.to.map(|a| a.to_canonical()),
    );
    let given = given_from.or(given_to).map(|a| a.is_ipv6());
    let source = match (given_from, from) {
        (Some(address), _) => address,
        (None, Some(container)) => match to {
            // Both containers: a family both have, IPv4 first.
            Some(to) => [false, true]
                .into_iter()
                .find(|&v6| {
                    container.addresses.iter().any(|a| a.is_ipv6() == v6)
                        && to.addresses.iter().any(|a| a.is_ipv6() == v6)
                })
                .map_or_else(
                    || container_address(container, None),
                    |v6| container_address(container, Some(v6)),
                )?,
            None => container_address(container, given)?,
        },
        (None, None) => bail!("say where the connection comes from: --from-container NAME or --from ADDR"),
    };
    let destination = match (given_to, to) {
        (Some(address), _) => address,
        (None, Some(container)) => container_address(container, Some(source.is_ipv6()))?,
        (None, None) => bail!("say where the connection goes: --to ADDR or --to-container NAME"),
    };
    let asked = args.direction.map(Direction::from);
    let container_at =
        |address: std::net::IpAddr| docker.containers.iter().find(|c| c.addresses.contains(&address));
    if asked == Some(Direction::Inbound) {
        bail!("--direction inbound is a connection from outside: give --from ADDR, not a container");
    }
    // From an address no running container has: not a container's own
    // connection, unless the user says it is (Docker unknown, or a name
    // Docker does not report).
    if asked.is_none() && docker.reachable && from.is_none() && container_at(source).is_none() {
        bail!(
            "{source} is no running container's address: a connection from outside to a container is \
             inbound (explain --from {source} --to ADDR --port PORT, with --via routed for a container's \
             own address), or say --direction between"
        );
    }
    // Where the host's own addresses are known (this namespace), a
    // connection to one of them is for the host: to a port a running
    // container publishes, docker-proxy answers it (between); to any other,
    // it is the host's own service (never judged).
    let for_the_host = to.is_none()
        && session.global.netns.is_none()
        && !destination.is_loopback()
        && host_addresses().contains(&destination);
    let publishes = docker.containers.iter().any(|c| {
        c.published
            .iter()
            .any(|p| p.proto == range.proto && p.host_port == range.ports.first)
    });
    let proxied = proxied || (for_the_host && publishes && asked.is_none());
    let connection = dockfw_core::ContainerConnection {
        source,
        destination,
        port: range.ports.first,
        proto: range.proto,
        proxied,
    };
    let stays_inside = destination.is_loopback();
    if (for_the_host && !publishes) || stays_inside {
        let why = if stays_inside {
            "a loopback address (Docker's DNS at 127.0.0.11 too) is inside the container: the host never sees it"
        } else {
            "for the host itself (its own service, on the input hook): containers' connections to the host are not judged"
        };
        return explained_elsewhere(session, &connection, from, to, "not judged", why);
    }
    let link_local = layout::is_link_local;
    // Broadcasts and multicasts stay on the link: every container on the
    // bridge gets them.
    let to_everyone =
        destination.is_multicast() || destination == std::net::IpAddr::V4(std::net::Ipv4Addr::BROADCAST);
    // Onto a Docker bridge when it goes to a running container (or stays
    // on the link).
    let onto_container = to.or_else(|| container_at(destination));
    let direction = match asked {
        Some(Direction::Outbound) if proxied => {
            bail!("--via proxied reaches a container through docker-proxy: that is between containers")
        }
        Some(Direction::Outbound) if onto_container.is_some() => bail!(
            "{destination} is container {:?}'s address: a connection to it is between containers",
            onto_container.map_or("", |c| c.name.as_str())
        ),
        Some(direction) => direction,
        None if proxied || onto_container.is_some() || link_local(destination) || to_everyone => {
            Direction::Between
        }
        None => Direction::Outbound,
    };
    let unattributed = if link_local(source) || (!proxied && link_local(destination)) {
        Some("IPv6 link-local: Docker reports no such address, so no rule naming containers could judge it")
    } else if to_everyone && !proxied {
        Some(
            "a broadcast or multicast reaches every container on the bridge: no rule naming containers could judge it",
        )
    } else {
        None
    };
    if let Some(why) =
        unattributed.filter(|_| direction == Direction::Between && parsed.policy.judges(Direction::Between))
    {
        let (decision, counted) = if parsed.policy.guard.audit() {
            (
                "would drop",
                "audit mode: only logged and counted in `unattributed`; the connection goes on",
            )
        } else {
            ("drop", "counted in `unattributed`")
        };
        return explained_elsewhere(
            session,
            &connection,
            from,
            to,
            decision,
            &format!("{why}; {counted}"),
        );
    }
    let explanation =
        dockfw_core::explain_container(&parsed.policy, &docker.containers, &connection, direction);
    let memberships = set_memberships(parsed, [connection.destination].into_iter());
    let unknown: Vec<(&String, &str)> = explanation
        .unknown_sets
        .iter()
        .map(|name| (name, unread.get(name).map_or("not read", String::as_str)))
        .collect();
    if session.global.json {
        let unknown: BTreeMap<&String, &str> = unknown.iter().copied().collect();
        let out = serde_json::json!({
            "container_connection": connection,
            "direction": direction,
            "from_container": from.map(|c| &c.name),
            "to_container": to.map(|c| &c.name),
            "explanation": explanation,
            "sets": memberships,
            "dynamic_sets_not_read": unknown,
        });
        outln!(session, "{out:#}");
        return Ok(Exit::Success);
    }
    let end = |container: Option<&Container>, address: std::net::IpAddr| match container {
        Some(container) => format!("{} ({address})", container.name),
        None => address.to_string(),
    };
    let path = if proxied { " through docker-proxy" } else { "" };
    let decision = &explanation.decision;
    let why = explanation
        .not_judged
        .as_ref()
        .map_or(String::new(), |why| format!(" ({why})"));
    let audit = if explanation.audit {
        " (audit mode: only logged and counted; the connection goes on)"
    } else {
        ""
    };
    outln!(
        session,
        "{} → {} port {}/{}, {direction}{path}: {}{why}{audit}",
        end(from, source),
        end(to, destination),
        connection.port,
        connection.proto.name(),
        paint(output::action_style(decision.action()), decision)
    );
    print_explanation_details(
        session,
        &explanation.misses,
        &memberships,
        &unknown,
        connection.destination,
    );
    Ok(Exit::Success)
}

/// `explain` of a container's connection no policy rule decides: one line
/// (or JSON) saying what happens and why.
fn explained_elsewhere(
    session: &Session,
    connection: &dockfw_core::ContainerConnection,
    from: Option<&Container>,
    to: Option<&Container>,
    decision: &str,
    why: &str,
) -> Result<Exit> {
    if session.global.json {
        let out = serde_json::json!({
            "container_connection": connection,
            "from_container": from.map(|c| &c.name),
            "to_container": to.map(|c| &c.name),
            "decision": decision,
            "why": why,
        });
        outln!(session, "{out:#}");
        return Ok(Exit::Success);
    }
    let end = |container: Option<&Container>, address: std::net::IpAddr| match container {
        Some(container) => format!("{} ({address})", container.name),
        None => address.to_string(),
    };
    outln!(
        session,
        "{} → {} port {}/{}: {decision} ({why})",
        end(from, connection.source),
        end(to, connection.destination),
        connection.port,
        connection.proto.name(),
    );
    Ok(Exit::Success)
}

/// This namespace's own addresses (none when they cannot be listed).
fn host_addresses() -> Vec<std::net::IpAddr> {
    let Ok(interfaces) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    interfaces
        .filter_map(|interface| {
            let address = interface.address?;
            address
                .as_sockaddr_in()
                .map(|a| std::net::IpAddr::V4(a.ip()))
                .or_else(|| address.as_sockaddr_in6().map(|a| std::net::IpAddr::V6(a.ip())))
        })
        .collect()
}

fn guessed_interface(parsed: &Parsed) -> Result<String> {
    match parsed.policy.guard.interfaces.first() {
        Some(IfName::Exact(name)) => Ok(name.clone()),
        _ => bail!("say which interface the connection arrives on with --in"),
    }
}

pub fn completions(shell: clap_complete::Shell) -> Result<Exit> {
    clap_complete::generate(shell, &mut Cli::command(), "dockfw-nft", &mut std::io::stdout());
    Ok(Exit::Success)
}

pub fn manpages(dir: &Path) -> Result<Exit> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("cannot write man pages into {}", dir.display()))?;
    Ok(Exit::Success)
}
