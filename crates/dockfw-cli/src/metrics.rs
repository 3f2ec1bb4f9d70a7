//! Prometheus metrics: `dockfw-nft status --format prometheus` (for
//! node_exporter's textfile collector) and `dockfw-nft watch --metrics
//! ADDR:PORT` (served over HTTP).
//!
//! The text exposition format (version 0.0.4) is written by hand: a few
//! families of counters, gauges and one histogram, whose only subtleties
//! are escaping (`escape_label`, `escape_help`) and the histogram's
//! cumulative buckets; a metrics crate would add a registry we would
//! bypass anyway, since the per-rule counters are read from the kernel at
//! each scrape, not counted here.
//!
//! Both outputs share the per-decision families, read from the counters of
//! the installed table (the same counters `status` shows):
//!
//! | metric | labels |
//! |---|---|
//! | `dockfw_table_installed` (gauge) | table |
//! | `dockfw_rule_packets_total`, `dockfw_rule_bytes_total` | table, rule, action, direction |
//! | `dockfw_default_packets_total`, `dockfw_default_bytes_total` | table, action, direction |
//! | `dockfw_untracked_dropped_packets_total`, `dockfw_untracked_dropped_bytes_total` | table |
//! | `dockfw_unattributed_dropped_packets_total`, `dockfw_unattributed_dropped_bytes_total` | table |
//! | `dockfw_audit_mode` (gauge) | table |
//!
//! `direction` is `inbound`, `outbound` or `between`. In audit mode
//! (`dockfw_audit_mode` 1) a rule's `action` is what it would do: its
//! drops and rejects were only logged and counted.
//!
//! `watch` adds what only the guard knows ([`GuardMetrics`]).

use crate::backend::CounterReader;
use dockfw_core::Ruleset;
use dockfw_core::layout::{self, CounterAt, Decider};
use dockfw_core::{Action, Direction};
use dockfw_nft::RuleCounter;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

/// The Content-Type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Upper bounds (seconds) of the apply-duration histogram's buckets: from a
/// container start on a small table (about 1 ms) to re-creating a table of
/// 100,000 entries (a few hundred ms), and slow kernels.
const APPLY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// A document in the text format, family by family.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
}

/// A metric's type, as `# TYPE` says it.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Exposition {
    /// Starts family `name`: its `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    /// One sample of the family started last (or, for a histogram, of its
    /// `_bucket`, `_sum` or `_count` series).
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Into<f64>) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{label}=\"{}\"", escape_label(value));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {}", number(value.into()));
    }

    /// The document.
    pub fn finish(self) -> String {
        self.text
    }
}

/// A sample value: integers without a fraction, `+Inf` as the format spells it.
fn number(value: f64) -> String {
    if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else if value.is_nan() {
        "NaN".to_string()
    } else {
        // Rust never writes an exponent here, which the format also accepts.
        format!("{value}")
    }
}

/// Label values escape `\`, `"` and line feeds.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// HELP text escapes `\` and line feeds.
fn escape_help(text: &str) -> String {
    text.replace('\\', r"\\").replace('\n', r"\n")
}

/// One decision the table takes and counts (a policy rule, the default
/// fate, the untracked drop), with what its counter holds now.
#[derive(Debug, Clone)]
pub struct Decision {
    pub kind: DecisionKind,
    /// Which way the connections it decides go.
    pub direction: Direction,
    /// Whether it only logs and counts what it stands for (audit mode).
    pub audit: bool,
    /// The rule's name (for a policy rule).
    pub name: String,
    /// `None` when the chain ends in no verdict dockfw writes.
    pub action: Option<Action>,
    pub packets: u64,
    pub bytes: u64,
}

/// Which family a [`Decision`] belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionKind {
    Rule,
    Default,
    Untracked,
    Unattributed,
}

/// The per-decision families of table `table`: whether it is installed,
/// then every decision's packets and bytes (none when it is not).
pub fn decisions(out: &mut Exposition, table: &str, installed: bool, decisions: &[Decision]) {
    out.family(
        "dockfw_table_installed",
        Kind::Gauge,
        "Whether dockfw's nftables table is installed (1) or not (0).",
    );
    out.sample("dockfw_table_installed", &[("table", table)], u8::from(installed));
    out.family(
        "dockfw_audit_mode",
        Kind::Gauge,
        "Whether the table only logs and counts denials (1: audit mode) or enforces them (0).",
    );
    let audit = decisions.iter().any(|d| d.audit);
    out.sample("dockfw_audit_mode", &[("table", table)], u8::from(audit));
    let families = [
        (
            DecisionKind::Rule,
            "dockfw_rule",
            "the policy rule decided: the first packet of each new connection it judged \
             (a dropped client's retries each count), and each packet of a connection judged late",
        ),
        (
            DecisionKind::Default,
            "dockfw_default",
            "the default fate decided (no rule matched), counted as for rules",
        ),
        (
            DecisionKind::Untracked,
            "dockfw_untracked_dropped",
            "dropped as untracked (exempted from conntrack by notrack) on a path the guard judges",
        ),
        (
            DecisionKind::Unattributed,
            "dockfw_unattributed_dropped",
            "sent by containers and dropped because no outbound or between rule could judge it \
             (invalid packets, IPv6 link-local between containers)",
        ),
    ];
    for (kind, prefix, what) in families {
        for (unit, value) in [
            ("packets", (|d: &Decision| d.packets) as fn(&Decision) -> u64),
            ("bytes", |d: &Decision| d.bytes),
        ] {
            let name = format!("{prefix}_{unit}_total");
            out.family(&name, Kind::Counter, &format!("{} {what}.", capitalised(unit)));
            for decision in decisions.iter().filter(|d| d.kind == kind) {
                let action = decision
                    .action
                    .map_or_else(|| "unknown".to_string(), |a| a.to_string());
                let mut labels = vec![("table", table)];
                match kind {
                    DecisionKind::Rule => labels.extend([
                        ("rule", decision.name.as_str()),
                        ("action", action.as_str()),
                        ("direction", decision.direction.name()),
                    ]),
                    DecisionKind::Default => labels.extend([
                        ("action", action.as_str()),
                        ("direction", decision.direction.name()),
                    ]),
                    DecisionKind::Untracked | DecisionKind::Unattributed => {}
                }
                out.sample(&name, &labels, value(decision) as f64);
            }
        }
    }
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// Every decision of `ruleset` (policy rules and default fates of each
/// direction, the untracked and unattributed drops), as [`Decider`]s.
pub fn deciders(ruleset: &Ruleset) -> Vec<(DecisionKind, Decider)> {
    let mut out = Vec::new();
    for direction in [Direction::Inbound, Direction::Outbound, Direction::Between] {
        out.extend(
            layout::direction_rules(ruleset, direction)
                .into_iter()
                .map(|d| (DecisionKind::Rule, d)),
        );
        out.extend(layout::direction_default(ruleset, direction).map(|d| (DecisionKind::Default, d)));
    }
    out.extend(layout::untracked_drop(ruleset).map(|d| (DecisionKind::Untracked, d)));
    out.extend(layout::unattributed_drop(ruleset).map(|d| (DecisionKind::Unattributed, d)));
    out
}

/// What `counters` (read from the kernel) hold for each decider; deciders
/// whose counter is not in the table (it was deleted or changed) are left out.
pub fn counted(deciders: &[(DecisionKind, Decider)], counters: &[RuleCounter]) -> Vec<Decision> {
    let at = |counter: &CounterAt| counters.iter().find(|c| counter.is(&c.chain, c.index));
    deciders
        .iter()
        .filter_map(|(kind, decider)| {
            let counter = at(&decider.counter)?;
            Some(Decision {
                kind: *kind,
                direction: decider.direction,
                audit: decider.audit,
                name: decider.name.clone(),
                action: decider.action,
                packets: counter.packets,
                bytes: counter.bytes,
            })
        })
        .collect()
}

/// Why watch repaired the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RepairCause {
    /// Another program changed the table.
    Tampering,
    /// nf_tables notifications were lost: the table was read again.
    NotificationsLost,
    /// Something was committed while watch's own apply had notifications paused.
    UnseenCommit,
    /// An earlier apply failed and was retried.
    Retry,
}

impl RepairCause {
    fn label(self) -> &'static str {
        match self {
            Self::Tampering => "tampering",
            Self::NotificationsLost => "notifications_lost",
            Self::UnseenCommit => "unseen_commit",
            Self::Retry => "retry",
        }
    }
}

/// What the guard of `watch` counts, shared with the thread serving scrapes.
#[derive(Debug, Default)]
pub struct GuardMetrics {
    /// The table guarded, and the decisions of the ruleset last applied to it
    /// (`None` until the first apply).
    table: Option<String>,
    deciders: Vec<(DecisionKind, Decider)>,
    repairs: BTreeMap<RepairCause, u64>,
    revoked: u64,
    apply_failures: u64,
    /// Observations of the apply-duration histogram: per bucket, then the sum and count.
    apply_buckets: [u64; APPLY_BUCKETS.len()],
    apply_seconds: f64,
    applies: u64,
    last_success: Option<SystemTime>,
    docker_reachable: bool,
}

/// [`GuardMetrics`] as the guard and the scrape thread share them.
pub type Shared = Arc<Mutex<GuardMetrics>>;

impl GuardMetrics {
    /// A successful apply of `ruleset` that took `took`.
    pub fn applied(&mut self, ruleset: &Ruleset, took: Duration) {
        self.table = Some(ruleset.table.clone());
        self.deciders = deciders(ruleset);
        let seconds = took.as_secs_f64();
        for (count, bound) in self.apply_buckets.iter_mut().zip(APPLY_BUCKETS) {
            if seconds <= bound {
                *count += 1;
            }
        }
        self.apply_seconds += seconds;
        self.applies += 1;
        self.last_success = Some(SystemTime::now());
    }

    pub fn apply_failed(&mut self) {
        self.apply_failures += 1;
    }

    /// An apply that changed the table to repair it, for `cause`.
    pub fn repaired(&mut self, cause: RepairCause) {
        *self.repairs.entry(cause).or_default() += 1;
    }

    pub fn revoked(&mut self, connections: usize) {
        self.revoked += connections as u64;
    }

    pub fn docker_reachable(&mut self, reachable: bool) {
        self.docker_reachable = reachable;
    }

    /// The whole document: the guard's own families, then the decisions
    /// with `counters` as read from the kernel now.
    fn render(&self, counters: &[RuleCounter]) -> String {
        let mut out = Exposition::default();
        out.family(
            "dockfw_repairs_total",
            Kind::Counter,
            "Applies by watch that changed the table to repair it, by cause (tampering: another \
             program changed it; notifications_lost, unseen_commit: read again after missing \
             notifications; retry: after a failed apply).",
        );
        for cause in [
            RepairCause::Tampering,
            RepairCause::NotificationsLost,
            RepairCause::UnseenCommit,
            RepairCause::Retry,
        ] {
            let count = self.repairs.get(&cause).copied().unwrap_or(0);
            out.sample("dockfw_repairs_total", &[("cause", cause.label())], count as f64);
        }
        out.family(
            "dockfw_revoked_connections_total",
            Kind::Counter,
            "Tracked connections deleted after an apply because the new policy denies them (revoke).",
        );
        out.sample("dockfw_revoked_connections_total", &[], self.revoked as f64);
        out.family(
            "dockfw_apply_failures_total",
            Kind::Counter,
            "Applies by watch that failed (the table stayed as it was; retried).",
        );
        out.sample("dockfw_apply_failures_total", &[], self.apply_failures as f64);
        out.family(
            "dockfw_apply_duration_seconds",
            Kind::Histogram,
            "Time each successful apply by watch took: compiling, the netlink transactions and \
             their read-back, and revoke.",
        );
        for (count, bound) in self.apply_buckets.iter().zip(APPLY_BUCKETS) {
            let le = number(bound);
            out.sample(
                "dockfw_apply_duration_seconds_bucket",
                &[("le", &le)],
                *count as f64,
            );
        }
        out.sample(
            "dockfw_apply_duration_seconds_bucket",
            &[("le", "+Inf")],
            self.applies as f64,
        );
        out.sample("dockfw_apply_duration_seconds_sum", &[], self.apply_seconds);
        out.sample("dockfw_apply_duration_seconds_count", &[], self.applies as f64);
        out.family(
            "dockfw_last_apply_success_timestamp_seconds",
            Kind::Gauge,
            "When watch last applied the policy successfully (Unix time; 0: never).",
        );
        let last = self
            .last_success
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(0.0, |d| d.as_secs_f64());
        out.sample("dockfw_last_apply_success_timestamp_seconds", &[], last);
        out.family(
            "dockfw_docker_reachable",
            Kind::Gauge,
            "Whether watch reaches Docker (1) or guards with the containers last known (0).",
        );
        out.sample("dockfw_docker_reachable", &[], u8::from(self.docker_reachable));
        if let Some(table) = &self.table {
            // A deleted table reads as no rules: not installed (until repaired).
            let installed = !counters.is_empty();
            decisions(&mut out, table, installed, &counted(&self.deciders, counters));
        }
        out.finish()
    }
}

/// Locks `shared`, whatever a panicking holder left (the counts stay usable).
pub fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, GuardMetrics> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The HTTP endpoint of `watch --metrics`, bound (before the first apply)
/// but not yet serving.
pub struct Endpoint {
    server: tiny_http::Server,
    address: SocketAddr,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Endpoint({})", self.address)
    }
}

impl Endpoint {
    /// Binds `address`; an address in use or not ours is an error saying so.
    pub fn bind(address: SocketAddr) -> anyhow::Result<Self> {
        let server = tiny_http::Server::http(address)
            .map_err(|error| anyhow::anyhow!("cannot serve metrics on {address}: {error}"))?;
        // Port 0 binds any free port: say which.
        let address = server.server_addr().to_ip().unwrap_or(address);
        Ok(Self { server, address })
    }

    /// The address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Serves scrapes on a thread of its own, for ever: `GET /metrics`
    /// reads the table's counters with `reader` (a connection of its own,
    /// read-only, so the guard's loop is never held up) and renders them
    /// with what `shared` holds.
    pub fn serve(self, shared: Shared, mut reader: Box<dyn CounterReader>) -> std::io::Result<()> {
        std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                for request in self.server.incoming_requests() {
                    let (status, body, content_type) = answer(&request, &shared, reader.as_mut());
                    let header =
                        tiny_http::Header::from_bytes("Content-Type", content_type).expect("a valid header");
                    let response = tiny_http::Response::from_string(body)
                        .with_status_code(status)
                        .with_header(header);
                    // A scraper that hung up is its own problem.
                    let _ = request.respond(response);
                }
            })
            .map(drop)
    }
}

/// Status, body and content type for one request.
fn answer(
    request: &tiny_http::Request,
    shared: &Shared,
    reader: &mut dyn CounterReader,
) -> (u16, String, &'static str) {
    const TEXT: &str = "text/plain; charset=utf-8";
    let path = request.url().split('?').next().unwrap_or_default();
    match (request.method(), path) {
        (tiny_http::Method::Get | tiny_http::Method::Head, "/metrics") => {}
        (tiny_http::Method::Get | tiny_http::Method::Head, "/") => {
            return (200, "dockfw-nft watch: metrics at /metrics\n".into(), TEXT);
        }
        (tiny_http::Method::Get | tiny_http::Method::Head, _) => return (404, "not found\n".into(), TEXT),
        _ => return (405, "only GET\n".into(), TEXT),
    }
    let table = lock(shared).table.clone();
    let counters = match table {
        Some(table) => match reader.counters(&table) {
            Ok(counters) => counters,
            Err(error) => {
                return (
                    500,
                    format!("cannot read the counters of table inet {table}: {error}\n"),
                    TEXT,
                );
            }
        },
        None => Vec::new(),
    };
    (200, lock(shared).render(&counters), CONTENT_TYPE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_help_are_escaped() {
        let mut out = Exposition::default();
        out.family("x_total", Kind::Counter, "a \\ b\nc");
        out.sample("x_total", &[("rule", "say \"hi\"\\\n"), ("action", "drop")], 3u32);
        assert_eq!(
            out.finish(),
            "# HELP x_total a \\\\ b\\nc\n# TYPE x_total counter\n\
             x_total{rule=\"say \\\"hi\\\"\\\\\\n\",action=\"drop\"} 3\n"
        );
    }

    #[test]
    fn numbers_read_as_the_format_wants() {
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.0025), "0.0025");
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(1e-7), "0.0000001");
    }

    #[test]
    fn the_histogram_is_cumulative() {
        let policy = dockfw_core::parse("p.toml", "[guard]\ninterfaces = [\"eth0\"]\n").unwrap();
        let ruleset = dockfw_core::compile(&policy.policy, &[]);
        let mut metrics = GuardMetrics::default();
        metrics.applied(&ruleset, Duration::from_micros(800));
        metrics.applied(&ruleset, Duration::from_millis(30));
        metrics.applied(&ruleset, Duration::from_secs(20));
        metrics.repaired(RepairCause::Tampering);
        let text = metrics.render(&[]);
        for line in [
            "dockfw_apply_duration_seconds_bucket{le=\"0.001\"} 1\n",
            "dockfw_apply_duration_seconds_bucket{le=\"0.025\"} 1\n",
            "dockfw_apply_duration_seconds_bucket{le=\"0.05\"} 2\n",
            "dockfw_apply_duration_seconds_bucket{le=\"10\"} 2\n",
            "dockfw_apply_duration_seconds_bucket{le=\"+Inf\"} 3\n",
            "dockfw_apply_duration_seconds_count 3\n",
            "dockfw_repairs_total{cause=\"tampering\"} 1\n",
            "dockfw_repairs_total{cause=\"retry\"} 0\n",
            // No counters read: the table is not there.
            "dockfw_table_installed{table=\"dockfw\"} 0\n",
        ] {
            assert!(text.contains(line), "{line}in\n{text}");
        }
        assert!(!text.contains("dockfw_default_packets_total{"), "{text}");
    }
}
