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
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

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
             (invalid packets; between containers: IPv6 link-local, broadcasts, multicasts)",
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
///
/// A small server of our own on [`TcpListener`], not an HTTP crate: the
/// endpoint must not let any local user (a loopback bind) or anyone on the
/// management network exhaust the guard's threads, file descriptors or
/// memory. tiny_http, used before, gave every connection a thread of its
/// own with no cap and no timeout, buffered request heads without limit and
/// ended its accept loop for good at the first EMFILE. Here one thread
/// serves everything, multiplexed with epoll: at most [`MAX_CONNECTIONS`]
/// at a time (a new one evicts the oldest still being read, so idle
/// connections cannot keep a scrape out), each given [`READ_DEADLINE`] to
/// send a head of at most [`HEAD_LIMIT`] bytes, only `GET`/`HEAD`, one
/// request per connection (closed after the response), and an accept error
/// is logged and retried, never the end of the endpoint.
pub struct Endpoint {
    listener: TcpListener,
    address: SocketAddr,
}

/// How many connections are served at once; a scrape is one short request.
pub(crate) const MAX_CONNECTIONS: usize = 16;
/// The longest request head read (request line and headers); a scrape's is
/// well under 1 KiB.
pub(crate) const HEAD_LIMIT: usize = 8 * 1024;
/// How long a client has, from its connection, to send its request head.
pub(crate) const READ_DEADLINE: Duration = Duration::from_secs(2);
/// How long a client has to read its response.
const WRITE_DEADLINE: Duration = Duration::from_secs(10);
/// The pause after a failed accept (EMFILE, ENFILE, ENOBUFS...): the
/// pending connection stays queued, so retrying at once would spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// At most one warning about failing accepts per this long.
const ACCEPT_WARN_EVERY: Duration = Duration::from_secs(60);

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Endpoint({})", self.address)
    }
}

impl Endpoint {
    /// Binds `address`; an address in use or not ours is an error saying so.
    pub fn bind(address: SocketAddr) -> anyhow::Result<Self> {
        let failed = |error: std::io::Error| anyhow::anyhow!("cannot serve metrics on {address}: {error}");
        let listener = TcpListener::bind(address).map_err(failed)?;
        listener.set_nonblocking(true).map_err(failed)?;
        // Port 0 binds any free port: say which.
        let address = listener.local_addr().unwrap_or(address);
        Ok(Self { listener, address })
    }

    /// The address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Serves scrapes on a thread of its own, for ever: `GET /metrics`
    /// reads the table's counters with `reader` (a connection of its own,
    /// read-only, so the guard's loop is never held up) and renders them
    /// with what `shared` holds. `warn` says what goes wrong (accept
    /// errors, at most once a minute).
    pub fn serve(
        self,
        shared: Shared,
        reader: Box<dyn CounterReader>,
        warn: Box<dyn Fn(&str) + Send>,
    ) -> std::io::Result<()> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        epoll.add(&self.listener, EpollEvent::new(EpollFlags::EPOLLIN, LISTENER))?;
        let mut server = Server {
            listener: self.listener,
            epoll,
            connections: BTreeMap::new(),
            next_id: 0,
            shared,
            reader,
            warn,
            warned_at: None,
        };
        std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || server.run())
            .map(drop)
    }
}

/// The epoll key of the listener; connections are keyed by their id.
const LISTENER: u64 = u64::MAX;

/// The serving thread's state.
struct Server {
    listener: TcpListener,
    epoll: Epoll,
    /// By id: ids grow, so the first is the oldest.
    connections: BTreeMap<u64, Connection>,
    next_id: u64,
    shared: Shared,
    reader: Box<dyn CounterReader>,
    warn: Box<dyn Fn(&str) + Send>,
    warned_at: Option<Instant>,
}

struct Connection {
    stream: TcpStream,
    phase: Phase,
    /// When it is closed, whatever it is doing.
    deadline: Instant,
}

enum Phase {
    /// The request head read so far.
    Reading(Vec<u8>),
    /// The response, and how much of it was written.
    Writing(Vec<u8>, usize),
}

impl Server {
    fn run(&mut self) {
        let mut events = [EpollEvent::empty(); 32];
        loop {
            let now = Instant::now();
            let wait = self
                .connections
                .values()
                .map(|c| c.deadline.saturating_duration_since(now))
                .min()
                .unwrap_or(Duration::from_secs(60));
            // Rounded up, so a deadline is past when the wait ends.
            let millis = u16::try_from(wait.as_millis() + 1).unwrap_or(u16::MAX);
            let ready = match self.epoll.wait(&mut events, millis) {
                Ok(ready) => ready,
                Err(nix::errno::Errno::EINTR) => 0,
                Err(error) => {
                    self.warn_now(&format!("metrics: waiting for connections failed: {error}"));
                    std::thread::sleep(ACCEPT_RETRY);
                    0
                }
            };
            for event in &events[..ready] {
                match event.data() {
                    LISTENER => self.accept(),
                    id => self.progress(id),
                }
            }
            let now = Instant::now();
            let expired: Vec<u64> = self
                .connections
                .iter()
                .filter(|(_, c)| c.deadline <= now)
                .map(|(id, _)| *id)
                .collect();
            for id in expired {
                self.close(id);
            }
        }
    }

    /// Takes every connection waiting; the oldest still sending its request
    /// makes room when all places are taken.
    fn accept(&mut self) {
        loop {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                // A client that gave up before we took it.
                Err(error) if error.raw_os_error() == Some(libc::ECONNABORTED) => continue,
                Err(error) => {
                    // EMFILE and the like: the connection stays queued; the
                    // endpoint stays up and tries again.
                    self.warn_limited(&format!("metrics: cannot accept a connection: {error}; retrying"));
                    std::thread::sleep(ACCEPT_RETRY);
                    return;
                }
            };
            if self.connections.len() >= MAX_CONNECTIONS {
                let oldest = self
                    .connections
                    .iter()
                    .find(|(_, c)| matches!(c.phase, Phase::Reading(_)))
                    .or_else(|| self.connections.iter().next())
                    .map(|(id, _)| *id);
                if let Some(oldest) = oldest {
                    self.close(oldest);
                }
            }
            let id = self.next_id;
            self.next_id += 1;
            if stream.set_nonblocking(true).is_err()
                || self
                    .epoll
                    .add(&stream, EpollEvent::new(EpollFlags::EPOLLIN, id))
                    .is_err()
            {
                continue;
            }
            self.connections.insert(
                id,
                Connection {
                    stream,
                    phase: Phase::Reading(Vec::new()),
                    deadline: Instant::now() + READ_DEADLINE,
                },
            );
        }
    }

    /// Reads or writes what connection `id` is ready for.
    fn progress(&mut self, id: u64) {
        let Some(connection) = self.connections.get_mut(&id) else {
            return;
        };
        let step = match &mut connection.phase {
            Phase::Reading(head) => read_head(&mut connection.stream, head),
            Phase::Writing(response, written) => write_response(&mut connection.stream, response, written),
        };
        match step {
            Step::Wait => {}
            Step::Close => self.close(id),
            Step::Answer(request) => {
                let response = self.response(&request);
                let connection = self.connections.get_mut(&id).expect("still there");
                connection.phase = Phase::Writing(response, 0);
                connection.deadline = Instant::now() + WRITE_DEADLINE;
                let Phase::Writing(response, written) = &mut connection.phase else {
                    unreachable!()
                };
                // Most responses fit the socket's buffer: written at once.
                match write_response(&mut connection.stream, response, written) {
                    Step::Wait => {
                        let mut event = EpollEvent::new(EpollFlags::EPOLLOUT, id);
                        if self.epoll.modify(&connection.stream, &mut event).is_err() {
                            self.close(id);
                        }
                    }
                    _ => self.close(id),
                }
            }
        }
    }

    fn close(&mut self, id: u64) {
        if let Some(connection) = self.connections.remove(&id) {
            let _ = self.epoll.delete(&connection.stream);
            // One request per connection: the response ends with it.
            let _ = connection.stream.shutdown(std::net::Shutdown::Write);
        }
    }

    /// The whole response (head and body) to `request`.
    fn response(&mut self, request: &Request) -> Vec<u8> {
        const TEXT: &str = "text/plain; charset=utf-8";
        let (status, body, content_type) = match request {
            Request::TooLarge => (431, "request header fields too large\n".to_string(), TEXT),
            Request::Malformed => (400, "bad request\n".to_string(), TEXT),
            Request::Parsed { method, path } => {
                if method != "GET" && method != "HEAD" {
                    (405, "only GET and HEAD\n".to_string(), TEXT)
                } else if path == "/metrics" {
                    self.scrape()
                } else {
                    (404, "not found: metrics are at /metrics\n".to_string(), TEXT)
                }
            }
        };
        let head_only = matches!(request, Request::Parsed { method, .. } if method == "HEAD");
        let mut response = format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{}Connection: close\r\n\r\n",
            reason(status),
            body.len(),
            if status == 405 { "Allow: GET, HEAD\r\n" } else { "" },
        )
        .into_bytes();
        if !head_only {
            response.extend_from_slice(body.as_bytes());
        }
        response
    }

    /// Status, body and content type of `GET /metrics`.
    fn scrape(&mut self) -> (u16, String, &'static str) {
        let table = lock(&self.shared).table.clone();
        let counters = match table {
            Some(table) => match self.reader.counters(&table) {
                Ok(counters) => counters,
                Err(error) => {
                    return (
                        500,
                        format!("cannot read the counters of table inet {table}: {error}\n"),
                        "text/plain; charset=utf-8",
                    );
                }
            },
            None => Vec::new(),
        };
        (200, lock(&self.shared).render(&counters), CONTENT_TYPE)
    }

    fn warn_now(&mut self, text: &str) {
        self.warned_at = Some(Instant::now());
        (self.warn)(text);
    }

    fn warn_limited(&mut self, text: &str) {
        if self.warned_at.is_none_or(|at| at.elapsed() >= ACCEPT_WARN_EVERY) {
            self.warn_now(text);
        }
    }
}

/// What a connection needs next.
enum Step {
    Wait,
    Close,
    Answer(Request),
}

/// A request as far as the endpoint cares.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    Parsed { method: String, path: String },
    Malformed,
    TooLarge,
}

/// Reads what `stream` has into `head`, up to [`HEAD_LIMIT`] and a chunk.
fn read_head(stream: &mut TcpStream, head: &mut Vec<u8>) -> Step {
    let mut chunk = [0; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return Step::Close,
            Ok(read) => head.extend_from_slice(&chunk[..read]),
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => return Step::Wait,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return Step::Close,
        }
        if let Some(request) = parse_head(head) {
            return Step::Answer(request);
        }
    }
}

/// The request in `head` once it is complete (or too large to be one).
fn parse_head(head: &[u8]) -> Option<Request> {
    let end = head
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .or_else(|| head.windows(2).position(|w| w == b"\n\n"));
    match end {
        Some(end) if end <= HEAD_LIMIT => {}
        _ if head.len() > HEAD_LIMIT => return Some(Request::TooLarge),
        _ => return None,
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = std::str::from_utf8(line).map(str::trim_end);
    let mut words = line.unwrap_or_default().split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Some(Request::Malformed);
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() {
        return Some(Request::Malformed);
    }
    let path = target.split('?').next().unwrap_or_default();
    Some(Request::Parsed {
        method: method.to_string(),
        path: path.to_string(),
    })
}

/// Writes what `stream` takes of `response`; closes once all is written.
fn write_response(stream: &mut TcpStream, response: &[u8], written: &mut usize) -> Step {
    while *written < response.len() {
        match stream.write(&response[*written..]) {
            Ok(0) => return Step::Close,
            Ok(count) => *written += count,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => return Step::Wait,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Step::Close,
        }
    }
    Step::Close
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Internal Server Error",
    }
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

    /// A reader of a table with no rules, for the endpoint's tests.
    struct NoCounters;

    impl CounterReader for NoCounters {
        fn counters(&mut self, _table: &str) -> dockfw_nft::Result<Vec<RuleCounter>> {
            Ok(Vec::new())
        }
    }

    /// An endpoint on a free loopback port, serving; its warnings are kept.
    fn serving() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
        let endpoint = Endpoint::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let address = endpoint.address();
        let warnings = Arc::new(Mutex::new(Vec::new()));
        let kept = warnings.clone();
        endpoint
            .serve(
                Shared::default(),
                Box::new(NoCounters),
                Box::new(move |text: &str| kept.lock().unwrap().push(text.to_string())),
            )
            .unwrap();
        (address, warnings)
    }

    /// A generous bound so a broken server fails the test instead of hanging
    /// it; never a measure of speed.
    const HANG: Duration = Duration::from_secs(30);

    /// Sends `request` and reads the response until the server closes.
    fn exchange(address: SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(address).unwrap();
        stream.set_read_timeout(Some(HANG)).unwrap();
        stream.write_all(request).unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        String::from_utf8(response).unwrap()
    }

    fn status(response: &str) -> u16 {
        response
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {response:?}"))
    }

    #[test]
    fn only_get_and_head_of_metrics_one_request_per_connection() {
        let (address, _) = serving();
        let scrape = exchange(address, b"GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(status(&scrape), 200, "{scrape}");
        assert!(scrape.contains("\r\nConnection: close\r\n"), "{scrape}");
        assert!(
            scrape.contains(&format!("Content-Type: {CONTENT_TYPE}\r\n")),
            "{scrape}"
        );
        assert!(
            scrape.contains("\ndockfw_repairs_total{cause=\"tampering\"} 0\n"),
            "{scrape}"
        );
        let (head, body) = scrape.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("Content-Length: {}\r\n", body.len())),
            "{head}"
        );
        // HEAD: the same head, no body.
        let head_only = exchange(address, b"HEAD /metrics HTTP/1.0\r\n\r\n");
        assert_eq!(status(&head_only), 200, "{head_only}");
        assert!(head_only.ends_with("\r\n\r\n"), "{head_only}");
        assert_eq!(status(&exchange(address, b"GET /nope HTTP/1.1\r\n\r\n")), 404);
        let post = exchange(address, b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
        assert_eq!(status(&post), 405, "{post}");
        assert!(post.contains("\r\nAllow: GET, HEAD\r\n"), "{post}");
        assert_eq!(status(&exchange(address, b"nonsense\r\n\r\n")), 400);
        // Keep-alive asked for: still one response, then the end.
        let kept = exchange(
            address,
            b"GET /metrics HTTP/1.1\r\nConnection: keep-alive\r\n\r\n",
        );
        assert_eq!(kept.matches("HTTP/1.1 ").count(), 1);
    }

    #[test]
    fn idle_and_half_sent_connections_do_not_keep_a_scrape_out() {
        let (address, _) = serving();
        // Far more than the endpoint serves at once: idle ones, and ones
        // that never finish their head (slowloris).
        let mut idle = Vec::new();
        for i in 0..(MAX_CONNECTIONS * 8) {
            let mut stream = TcpStream::connect(address).unwrap();
            if i % 2 == 0 {
                stream.write_all(b"GET /metrics HTTP/1.1\r\nHost").unwrap();
            }
            idle.push(stream);
        }
        let scrape = exchange(address, b"GET /metrics HTTP/1.1\r\n\r\n");
        assert_eq!(status(&scrape), 200, "{scrape}");
        // The idle ones are closed by the server (evicted or past the read
        // deadline), not held for ever.
        for mut stream in idle {
            stream.set_read_timeout(Some(HANG)).unwrap();
            let mut rest = Vec::new();
            match stream.read_to_end(&mut rest) {
                Ok(_) => assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest)),
                Err(error) => assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset, "{error}"),
            }
        }
        assert_eq!(status(&exchange(address, b"GET /metrics HTTP/1.0\r\n\r\n")), 200);
    }

    #[test]
    fn an_oversized_head_is_refused_and_not_buffered() {
        let (address, _) = serving();
        let mut stream = TcpStream::connect(address).unwrap();
        stream.set_write_timeout(Some(HANG)).unwrap();
        stream.set_read_timeout(Some(HANG)).unwrap();
        stream.write_all(b"GET /metrics HTTP/1.1\r\nX-A: ").unwrap();
        // 256 MiB of one header: far beyond what the socket buffers hold, so
        // the server must have stopped reading (closed) for it to fail.
        let chunk = vec![b'a'; 1 << 20];
        let mut sent = 0usize;
        let failed = loop {
            if sent >= 256 << 20 {
                break None;
            }
            match stream.write(&chunk) {
                Ok(count) => sent += count,
                Err(error) => break Some(error),
            }
        };
        let error = failed.unwrap_or_else(|| panic!("the server took {sent} bytes of one header"));
        assert!(
            matches!(
                error.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ),
            "{error} after {sent} bytes"
        );
        // What arrived before the reset, if anything, is the refusal.
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        let response = String::from_utf8_lossy(&response);
        assert!(
            response.is_empty() || response.starts_with("HTTP/1.1 431 "),
            "{response}"
        );
        // Exactly at the limit still refused, once the head is complete.
        let mut big = b"GET /metrics HTTP/1.1\r\nX-A: ".to_vec();
        big.resize(HEAD_LIMIT + 1, b'a');
        big.extend_from_slice(b"\r\n\r\n");
        assert!(parse_head(&big) == Some(Request::TooLarge));
        // The endpoint serves on.
        assert_eq!(status(&exchange(address, b"GET /metrics HTTP/1.1\r\n\r\n")), 200);
    }
}
