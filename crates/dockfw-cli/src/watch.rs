//! `dockfw-nft watch`: keep the table whole and in step with Docker.
//!
//! * **Guard.** nf_tables notifications of the watched namespace are
//!   subscribed to before the first apply. A commit that touches our table
//!   and was not ours (told apart by generation, never by pid: nf_tables
//!   records the committing *thread*) is repaired with the same glitch-free
//!   apply, from the policy and the containers last known, without waiting
//!   for Docker. A program that keeps fighting is backed off ([`Backoff`]);
//!   the table is never left broken longer than the current delay.
//! * **Follow Docker.** A thread follows Docker's events (the client is
//!   blocking); a burst (a compose stack starting) becomes one container
//!   list, handed to the guard through a channel. If Docker goes away the
//!   guard carries on with the containers it knew; the thread reconnects.
//! * **Reload.** SIGHUP re-reads the policy; a policy with errors (or one the
//!   kernel refuses) is reported and the running one stays.
//! * **Sets' sources.** A thread downloads each `url` source and resolves
//!   each `names` source again at its `refresh`; another follows the list
//!   files through inotify (their directories, so an editor's
//!   write-and-rename is seen). A change is applied only when a set's
//!   addresses changed; a source that fails keeps what it held, and one
//!   with errors is refused like a policy reload (see [`Guard::adopt`]).
//! * **systemd.** `Type=notify`: READY=1 after the first apply, STATUS= with
//!   the last change, the watchdog fed by the guard's loop while healthy.
//!   Nothing is sent when NOTIFY_SOCKET is unset.
//!
//! One thread owns the nf_tables connection and the monitor, so the
//! notifications of our own commits are always read after the apply that
//! made them returned, when their generation is known.
//!
//! Each apply takes the namespace's writer lock for its own duration only
//! (inside `Nft::apply`), never for watch's whole life: a one-shot `apply` or
//! `remove` beside a running watch waits at most for the apply under way.

use crate::Exit;
use crate::commands::{Applied, print_applied, print_revoked};
use crate::docker_view::{DockerView, Unreachable};
use crate::metrics::{self, Endpoint, GuardMetrics, RepairCause};
use crate::output::{DIM, GOOD, Verbosity, WARN, errln, outln, paint, plural};
use crate::revoke::{self, Revoked};
use crate::session::{Followed, Session};
use crate::sources::{self, Cache, Fetched};
use anyhow::{Context, Result};
use dockfw_core::revoke::CtLabelMap;
use dockfw_core::sets::{Content, SetSource};
use dockfw_core::{Container, Draft, Parsed, Policy, Ruleset};
use dockfw_docker::{BlockingEvents, ContainerEvent, EventKind};
use dockfw_nft::monitor::{Action, Event, Kind, Monitor, NfFamily, ObjectChange, Waker};
use dockfw_nft::{ApplyReport, Change};
use sd_notify::NotifyState;
use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant, SystemTime};

/// The name nf_tables records for commits of the dockfw-nft command.
const DOCKFW_PROCESS: &str = "dockfw-nft";
/// Longest wait for a Docker event before checking the connection is still alive.
const IDLE: Duration = Duration::from_secs(60);
/// Pause between attempts to reach Docker again.
const RETRY: Duration = Duration::from_secs(2);
/// Repairs made at once within [`BURST_WINDOW`] before backing off.
const BURST: usize = 3;
const BURST_WINDOW: Duration = Duration::from_secs(10);
/// First backoff delay; it doubles each round the tampering goes on, up to
/// [`BACKOFF_MAX`], and is forgotten after [`QUIET`] without tampering.
const BACKOFF_FIRST: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_secs(60);
/// Longest the guard reads queued notifications before acting on what is due.
const DRAIN_BUDGET: Duration = Duration::from_millis(20);
/// Longest pause between attempts when applying fails (kernel errors).
const FAILURE_RETRY_MAX: Duration = Duration::from_secs(10);
/// How often the guard looks at the table itself (one small request), for
/// changes no notification announces: nf_tables deletes a table flagged
/// `owner` silently when its owner exits.
const LOOK: Duration = Duration::from_secs(5);
/// Wait after a list file changed before reading it, so that a burst of
/// writes (or a copy in several steps) is read once, whole.
const FILE_SETTLE: Duration = Duration::from_millis(300);
/// A table that could not be repaired for this long makes the guard
/// unhealthy: it stops feeding systemd's watchdog, which restarts it.
const UNHEALTHY_AFTER: Duration = Duration::from_secs(60);

/// What the other threads tell the guard.
#[derive(Debug)]
enum Input {
    /// Docker's containers after a change (or after reconnecting), the
    /// named bridges of Docker's networks, and why.
    Containers {
        containers: Vec<Container>,
        named_bridges: Vec<String>,
        why: String,
    },
    /// Docker went away; the thread reconnects.
    DockerLost(String),
    /// A failed attempt to reconnect (shown with -v).
    DockerRetry(String),
    /// SIGHUP.
    Reload,
    /// SIGTERM or SIGINT (by name): the end.
    Stop(&'static str),
    /// A `url` or `names` source loaded again at its `refresh`.
    Refreshed(Fetched),
    /// Entries of the directories holding list files changed (by watch
    /// descriptor and name); `None` when inotify lost track (overflow).
    FilesChanged(Option<Vec<(inotify::WatchDescriptor, OsString)>>),
}

pub fn watch(session: &Session, settle: Duration, metrics: Option<SocketAddr>) -> Result<Exit> {
    if session.global.no_docker {
        anyhow::bail!("watch follows Docker's containers; it cannot run with --no-docker");
    }
    // Bound before the first apply: an address in use ends watch before it
    // changes anything, and no scrape is refused once it is up.
    let endpoint = match metrics {
        Some(address) => Some((Endpoint::bind(address)?, session.counter_reader()?)),
        None => None,
    };
    // First, so a SIGHUP during start-up is a reload, not the end; SIGTERM
    // and SIGINT end watch cleanly (exit 0, the table left in force), also
    // as a container's PID 1, which the kernel sends only signals it handles.
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGHUP, SIGTERM, SIGINT])
        .context("cannot handle SIGHUP, SIGTERM and SIGINT")?;
    let docker_at = DockerAt {
        host: session.global.docker_host.clone(),
        timeout: session.global.docker_timeout,
    };
    // Docker is required at start: without it there is nothing to follow (exit 4).
    let events = dockfw_docker::subscribe(docker_at.host.as_deref(), docker_at.timeout).map_err(|error| {
        Unreachable {
            error,
            by_watch: true,
        }
    })?;
    log(
        session,
        &format!("watching Docker at {} for container changes", events.host()),
    );
    let shared = endpoint.as_ref().map(|_| metrics::Shared::default());
    let mut guard = Guard::start(session, shared.clone())?;
    if let (Some((endpoint, reader)), Some(shared)) = (endpoint, shared) {
        let address = endpoint.address();
        // The console is not shared between threads: the metrics thread
        // writes its (rare, rate-limited) warnings to stderr itself.
        let quiet = session.verbosity == Verbosity::Quiet;
        let warn_metrics = Box::new(move |text: &str| {
            if !quiet {
                anstream::eprintln!("{} {text}", paint(WARN, "warning:"));
            }
        });
        endpoint
            .serve(shared, reader, warn_metrics)
            .context("cannot start the metrics thread")?;
        log(session, &format!("serving metrics at http://{address}/metrics"));
    }
    let (sender, inputs) = std::sync::mpsc::channel();
    let files = inotify::Inotify::init().context("cannot follow the sets' list files (inotify)")?;
    guard.files = Some(FileWatch {
        watches: files.watches(),
        directories: HashMap::new(),
    });
    let file_events = Inbox {
        sender: sender.clone(),
        waker: guard.monitor.waker(),
    };
    std::thread::Builder::new()
        .name("list-files".into())
        .spawn(move || follow_files(files, &file_events))
        .context("cannot start the list files' thread")?;
    let (schedule, schedules) = std::sync::mpsc::channel();
    let refreshed = Inbox {
        sender: sender.clone(),
        waker: guard.monitor.waker(),
    };
    let cache = session.cache();
    std::thread::Builder::new()
        .name("refresh".into())
        .spawn(move || refresh_sources(&schedules, &cache, &refreshed))
        .context("cannot start the refresh thread")?;
    guard.schedule = Some(schedule);
    guard.follow_sources();
    // A list file changed between the first read and inotify's watch.
    guard.reread_files();
    let docker = Inbox {
        sender: sender.clone(),
        waker: guard.monitor.waker(),
    };
    std::thread::Builder::new()
        .name("docker-events".into())
        .spawn(move || follow_docker(&docker_at, events, settle, &docker))
        .context("cannot start the Docker thread")?;
    let reloads = Inbox {
        sender,
        waker: guard.monitor.waker(),
    };
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                reloads.send(match signal {
                    SIGHUP => Input::Reload,
                    SIGINT => Input::Stop("SIGINT"),
                    _ => Input::Stop("SIGTERM"),
                });
            }
        })
        .context("cannot start the signal thread")?;
    guard.run(&inputs)
}

/// The guard's end of the channel: a message, then a wake-up of its wait.
struct Inbox {
    sender: Sender<Input>,
    waker: Waker,
}

impl Inbox {
    fn send(&self, input: Input) {
        if self.sender.send(input).is_ok() {
            self.waker.wake();
        }
    }
}

/// Follows Docker's events for ever, handing the guard each settled change.
fn follow_docker(host: &DockerAt, mut events: BlockingEvents, settle: Duration, inbox: &Inbox) {
    loop {
        let update = wait_for_change(&mut events, settle).and_then(|changes| {
            let running = list_running(host)?;
            Ok((running, describe_events(&changes)))
        });
        match update {
            Ok(((containers, named_bridges), why)) => inbox.send(Input::Containers {
                containers,
                named_bridges,
                why,
            }),
            Err(error) => {
                inbox.send(Input::DockerLost(error.to_string()));
                let (containers, named_bridges);
                (events, (containers, named_bridges)) = reconnect(host, inbox);
                inbox.send(Input::Containers {
                    containers,
                    named_bridges,
                    why: "Docker is back".into(),
                });
            }
        }
    }
}

/// Where Docker is, and how long one exchange with it may take.
struct DockerAt {
    host: Option<String>,
    timeout: Duration,
}

/// Docker's running containers and the named bridges of Docker's networks
/// (see [`crate::docker_view::running`]).
fn list_running(docker: &DockerAt) -> Result<(Vec<Container>, Vec<String>), dockfw_docker::Error> {
    crate::docker_view::running(docker.host.as_deref(), docker.timeout)
}

/// Blocks until an event arrives, then gathers the events that follow within
/// `settle` of each other.
fn wait_for_change(
    events: &mut BlockingEvents,
    settle: Duration,
) -> Result<Vec<ContainerEvent>, dockfw_docker::Error> {
    let first = loop {
        if let Some(event) = events.next_timeout(IDLE)? {
            break event;
        }
    };
    let mut changes = vec![first];
    while let Some(event) = events.next_timeout(settle)? {
        changes.push(event);
    }
    Ok(changes)
}

/// Subscribes again (before listing, so no change falls in between) until
/// Docker answers both.
fn reconnect(host: &DockerAt, inbox: &Inbox) -> (BlockingEvents, (Vec<Container>, Vec<String>)) {
    loop {
        let attempt = dockfw_docker::subscribe(host.host.as_deref(), host.timeout)
            .and_then(|events| Ok((events, list_running(host)?)));
        match attempt {
            Ok(connected) => return connected,
            Err(error) => inbox.send(Input::DockerRetry(error.to_string())),
        }
        std::thread::sleep(RETRY);
    }
}

fn describe_events(changes: &[ContainerEvent]) -> String {
    let mut parts: Vec<String> = changes
        .iter()
        .map(|e| match e.kind {
            EventKind::NetworkCreate | EventKind::NetworkDestroy => {
                format!("{} network {}", e.kind, e.network.as_deref().unwrap_or("?"))
            }
            _ => format!(
                "{} {}",
                e.kind,
                e.container_name.as_deref().unwrap_or(&e.container_id)
            ),
        })
        .collect();
    parts.dedup();
    summarise(parts, "more")
}

/// At most four parts, then "N more".
fn summarise(mut parts: Vec<String>, more: &str) -> String {
    if parts.len() > 4 {
        let rest = parts.len() - 3;
        parts.truncate(3);
        parts.push(format!("{rest} {more}"));
    }
    parts.join(", ")
}

/// Follows the directories of the list files for ever (the guard adds and
/// removes them), handing the guard the names of the entries that changed.
fn follow_files(mut inotify: inotify::Inotify, inbox: &Inbox) {
    let mut buffer = vec![0; 16 * 1024];
    loop {
        match inotify.read_events_blocking(&mut buffer) {
            Ok(events) => {
                let mut changed = Some(Vec::new());
                for event in events {
                    if event.mask.contains(inotify::EventMask::Q_OVERFLOW) {
                        changed = None;
                    } else if let (Some(list), Some(name)) = (&mut changed, event.name) {
                        list.push((event.wd.clone(), name.to_os_string()));
                    }
                }
                if changed.as_ref().is_none_or(|list| !list.is_empty()) {
                    inbox.send(Input::FilesChanged(changed));
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => {
                // Cannot read inotify any more: say so once, by a re-read
                // of every file, and stop following.
                inbox.send(Input::FilesChanged(None));
                return;
            }
        }
    }
}

/// A `url` or `names` source watch loads again every `every`.
#[derive(Debug)]
struct Refresh {
    fetched: Fetched,
    every: Duration,
}

/// Loads each scheduled source again when it is due, for ever, handing the
/// guard what it loaded; the guard sends a new schedule whenever the
/// policy's sources change (a source kept keeps its due time).
fn refresh_sources(schedules: &Receiver<Vec<Refresh>>, cache: &Cache, inbox: &Inbox) {
    let mut due: Vec<(Refresh, Instant)> = Vec::new();
    loop {
        let next = due.iter().map(|(_, at)| *at).min();
        let received = match next {
            Some(at) => schedules.recv_timeout(at.saturating_duration_since(Instant::now())),
            None => schedules.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match received {
            Ok(schedule) => {
                let now = Instant::now();
                due = schedule
                    .into_iter()
                    .map(|refresh| {
                        let at = due
                            .iter()
                            .find(|(old, _)| {
                                old.every == refresh.every
                                    && old.fetched.index == refresh.fetched.index
                                    && old
                                        .fetched
                                        .same_target(&refresh.fetched.set, &refresh.fetched.source)
                            })
                            .map_or(now + refresh.every, |(_, at)| *at);
                        (refresh, at)
                    })
                    .collect();
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        for (refresh, at) in &mut due {
            if *at > Instant::now() {
                continue;
            }
            let fetched = &refresh.fetched;
            let (content, warnings) = match &fetched.source {
                SetSource::Url { url, .. } => sources::load_url(url, cache),
                SetSource::Names { names, .. } => sources::load_names(names, cache),
                _ => continue,
            };
            let mut loaded = Fetched::new(&fetched.set, fetched.index, &fetched.source, content);
            loaded.warnings = warnings;
            inbox.send(Input::Refreshed(loaded));
            *at = Instant::now() + refresh.every;
        }
    }
}

/// The directories of the list files, as inotify watches them.
#[derive(Debug)]
struct FileWatch {
    watches: inotify::Watches,
    directories: HashMap<PathBuf, inotify::WatchDescriptor>,
}

/// Where a list file's changes are seen: its directory (an editor replaces
/// the file by a new one), and its name in it.
fn file_place(policy_dir: &Path, path: &str) -> Option<(PathBuf, OsString)> {
    let full = policy_dir.join(path);
    let name = full.file_name()?.to_os_string();
    let directory = match full.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Some((directory, name))
}

/// How each set's addresses differ between two resolutions of one policy:
/// (set, intervals added, intervals removed), for the sets that changed.
fn set_changes(old: &Policy, new: &Policy) -> Vec<(String, usize, usize)> {
    fn count<T: Eq + std::hash::Hash>(from: &[T], to: &[T]) -> (usize, usize) {
        let from: HashSet<&T> = from.iter().collect();
        let to: HashSet<&T> = to.iter().collect();
        (to.difference(&from).count(), from.difference(&to).count())
    }
    new.sets
        .iter()
        .filter_map(|(name, set)| {
            let before = old.sets.get(name)?;
            if before.addrs == set.addrs {
                return None;
            }
            let (added4, removed4) = count(&before.addrs.v4, &set.addrs.v4);
            let (added6, removed6) = count(&before.addrs.v6, &set.addrs.v6);
            Some((name.clone(), added4 + added6, removed4 + removed6))
        })
        .collect()
}

/// A foreign commit that touched our table.
#[derive(Debug)]
struct Tampering {
    /// `nft (pid 1234)`.
    by: String,
    /// Whether another dockfw-nft process made it (a one-shot `apply`, e.g.
    /// `systemctl reload dockfw-nft` after the policy was edited).
    by_dockfw: bool,
    /// Its changes to our table.
    changes: Vec<ObjectChange>,
    /// Tables of others it deleted too (`flush ruleset` deletes them all).
    other_tables_deleted: usize,
    /// Whether notifications were lost before it.
    complete: bool,
}

/// Why the table must be brought back to the policy.
#[derive(Debug, Default)]
struct Pending {
    /// When the first cause was seen.
    since: Option<Instant>,
    /// When to apply.
    due: Option<Instant>,
    tampering: Vec<Tampering>,
    /// Notifications were lost: what the table holds is unknown.
    overflow: bool,
    /// Something was committed while notifications were paused for our
    /// own apply: what the table holds is unknown.
    unseen: bool,
    /// An apply failed and is retried.
    retry: bool,
    /// ... because another program kept changing the table: backing off.
    fought: bool,
}

impl Pending {
    fn note(&mut self, now: Instant, due: Instant) {
        self.since.get_or_insert(now);
        // The earliest wins: a later cause never delays a scheduled repair.
        self.due = Some(self.due.map_or(due, |d| d.min(due)));
    }
}

/// When to repair, against a program that keeps changing the table: the
/// first [`BURST`] repairs within [`BURST_WINDOW`] at once, then after a
/// delay of [`BACKOFF_FIRST`] doubling to [`BACKOFF_MAX`] (all tampering
/// seen meanwhile coalesced into one repair), until [`QUIET`] passes
/// without tampering.
#[derive(Debug, Default)]
struct Backoff {
    repairs: VecDeque<Instant>,
    delay: Option<Duration>,
    /// Whether a repair was made under the current delay (the next round doubles it).
    repaired_under_delay: bool,
    last_tampering: Option<Instant>,
}

impl Backoff {
    /// The delay before repairing tampering seen at `now`, and whether it is
    /// a new one (to be said in the log).
    fn delay(&mut self, now: Instant) -> (Duration, bool) {
        self.last_tampering = Some(now);
        while self
            .repairs
            .front()
            .is_some_and(|t| now.duration_since(*t) > BURST_WINDOW)
        {
            self.repairs.pop_front();
        }
        match self.delay {
            None if self.repairs.len() < BURST => (Duration::ZERO, false),
            None => {
                self.delay = Some(BACKOFF_FIRST);
                self.repaired_under_delay = false;
                (BACKOFF_FIRST, true)
            }
            Some(delay) if self.repaired_under_delay && delay < BACKOFF_MAX => {
                let doubled = (delay * 2).min(BACKOFF_MAX);
                self.delay = Some(doubled);
                self.repaired_under_delay = false;
                (doubled, true)
            }
            Some(delay) => (delay, false),
        }
    }

    fn repaired(&mut self, now: Instant) {
        self.repairs.push_back(now);
        self.repaired_under_delay = self.delay.is_some();
    }

    /// When backing off ends if nothing changes the table before.
    fn ends_at(&self) -> Option<Instant> {
        self.delay?;
        self.last_tampering.map(|t| t + QUIET)
    }

    /// Ends backing off after [`QUIET`]; `true` when it just ended.
    fn expire(&mut self, now: Instant) -> bool {
        if self.ends_at().is_some_and(|end| now >= end) {
            *self = Self::default();
            return true;
        }
        false
    }
}

/// Whether applying failed because another program kept changing the table
/// (or another dockfw writer held the lock) through every attempt.
fn is_contention(error: &anyhow::Error) -> bool {
    fn busy(error: &dockfw_nft::Error) -> bool {
        use dockfw_nft::Error;
        match error {
            Error::Busy { .. } | Error::Locked { .. } => true,
            Error::Undone { cause, .. } | Error::LeftAsIs { cause, .. } => busy(cause),
            _ => false,
        }
    }
    nft_errors(error).any(busy)
}

/// The dockfw-nft errors in `error`'s chain of causes.
fn nft_errors(error: &anyhow::Error) -> impl Iterator<Item = &dockfw_nft::Error> {
    error
        .chain()
        .filter_map(|cause| cause.downcast_ref::<dockfw_nft::Error>())
}

/// Whether nf_tables refused with EPERM.
fn is_permission_denied(error: &anyhow::Error) -> bool {
    nft_errors(error).any(|e| matches!(e, dockfw_nft::Error::PermissionDenied { .. }))
}

/// Whether applying was refused because the table is not dockfw's.
fn is_not_owned(error: &anyhow::Error) -> bool {
    nft_errors(error).any(|e| matches!(e, dockfw_nft::Error::NotOwned { .. }))
}

/// The root cause's message, up to its first line.
fn root_line(error: &anyhow::Error) -> String {
    error
        .root_cause()
        .to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// `text` with each control character (a newline, an escape) as `?`.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// `a` is a later generation than `b` (generations are u32 and wrap).
fn is_after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

struct Guard<'a> {
    session: &'a Session,
    nft: Box<dyn crate::backend::Tables>,
    monitor: Monitor,
    parsed: Parsed,
    /// The policy file as read, and its sets' sources as loaded: resolved
    /// again into `parsed` when a source changes.
    draft: Draft,
    sources: Vec<Fetched>,
    /// Where the `url` and `names` sources to refresh are sent.
    schedule: Option<Sender<Vec<Refresh>>>,
    /// The list files' directories followed.
    files: Option<FileWatch>,
    /// When to read the list files again, after they changed.
    files_due: Option<Instant>,
    containers: Vec<Container>,
    /// The named bridges of Docker's networks (see [`DockerView::named_bridges`]).
    named_bridges: Vec<String>,
    docker_reachable: bool,
    /// The generation our last apply left the table matching the policy
    /// in: its last committed generation ([`ApplyReport::committed_generations`]),
    /// or the one it read when nothing needed changing. Commits up to it
    /// are ours or were seen by that apply; later ones touching the table
    /// are someone else's.
    synced: Option<u32>,
    pending: Pending,
    backoff: Backoff,
    failures: u32,
    /// Since when the table has been known broken and could not be repaired.
    failing_since: Option<Instant>,
    watchdog: Option<Duration>,
    watchdog_fed: Instant,
    last_change: String,
    /// The connection-label map of the ruleset our last apply installed: how
    /// revoke reads the labels of connections judged under it.
    labels: Option<CtLabelMap>,
    /// When to look at the table next (some changes come unannounced).
    next_look: Instant,
    /// This watch's claim on guarding the table (a second one is refused).
    _claim: Option<dockfw_nft::GuardClaim>,
    /// What `--metrics` serves, when asked for.
    metrics: Option<metrics::Shared>,
}

impl<'a> Guard<'a> {
    /// Subscribes to nf_tables notifications, then reads the policy, asks
    /// Docker and applies: a failure here ends watch (policy error: exit 2,
    /// Docker: 4, kernel: 3).
    fn start(session: &'a Session, metrics: Option<metrics::Shared>) -> Result<Self> {
        let mut nft = session.nft()?;
        crate::features::check(nft.as_mut())?;
        nft.keep_images_in_memory_only();
        // Before the first apply, so no commit falls between it and the subscription.
        let monitor = session.monitor()?;
        let Followed {
            draft,
            sources,
            parsed,
        } = session.follow_policy(&[])?;
        // One guard a table: two with different policies would undo each
        // other's every apply.
        let mut claim = nft.claim_guard(&parsed.policy.guard.table)?;
        // Which policy this watch follows: an apply of the same file is
        // followed, not undone, so `apply` lets it through (see
        // `commands::install`). Without the note apply only errs on the
        // side of refusing.
        if let (Some(claim), Some(policy)) =
            (&mut claim, crate::policy_file::identity(&session.global.config))
        {
            let _ = claim.note(&policy);
        }
        let view = session.docker(&parsed)?;
        let mut guard = Self {
            session,
            nft,
            monitor,
            parsed,
            draft,
            sources,
            schedule: None,
            files: None,
            files_due: None,
            containers: view.containers,
            named_bridges: view.named_bridges,
            docker_reachable: view.reachable,
            synced: None,
            pending: Pending::default(),
            backoff: Backoff::default(),
            failures: 0,
            failing_since: None,
            watchdog: sd_notify::watchdog_enabled(),
            watchdog_fed: Instant::now(),
            last_change: String::new(),
            labels: None,
            next_look: Instant::now() + LOOK,
            _claim: claim,
            metrics,
        };
        guard.record(|m| m.docker_reachable(guard.docker_reachable));
        log(session, "applying (start)");
        let started = Instant::now();
        let (report, ruleset, revoked) = guard.apply(true)?;
        guard.print(report, ruleset, revoked, started.elapsed());
        let (table, priority) = (guard.table().to_string(), guard.parsed.policy.guard.priority);
        crate::commands::warn_same_priority(session, guard.nft.as_mut(), &table, priority);
        crate::commands::warn_other_engines(session);
        guard.last_change = format!("applied at start, {}", now_text());
        notify(&[NotifyState::Ready, NotifyState::Status(&guard.status())]);
        Ok(guard)
    }

    fn table(&self) -> &str {
        &self.parsed.policy.guard.table
    }

    /// Updates the metrics, when served.
    fn record(&self, update: impl FnOnce(&mut GuardMetrics)) {
        if let Some(shared) = &self.metrics {
            update(&mut metrics::lock(shared));
        }
    }

    fn status(&self) -> String {
        let docker = if self.docker_reachable {
            plural(self.containers.len(), "container")
        } else {
            format!(
                "Docker away, {} last known",
                plural(self.containers.len(), "container")
            )
        };
        format!(
            "guarding table inet {} ({docker}); last: {}",
            self.table(),
            self.last_change
        )
    }

    /// Applies the policy to the containers known, records the generation
    /// it left the table in, and (unless `[guard] revoke = false`) cuts the
    /// connections the policy no longer admits, as the one-shot apply does.
    ///
    /// With `quiet`, notifications are paused while it commits: for applies
    /// that may write whole sets (the first, and repairs of a deleted
    /// table), for which nf_tables would build one notification per
    /// element. Commits by others in that window are not reported, so it
    /// is not used for the small updates of container starts, which must
    /// not cost a full read when Docker commits at the same moment.
    fn apply(&mut self, quiet: bool) -> Result<(ApplyReport, Ruleset, Option<Revoked>)> {
        let started = Instant::now();
        let ruleset =
            dockfw_core::compile_with_bridges(&self.parsed.policy, &self.containers, &self.named_bridges);
        let revoking = self.parsed.policy.guard.revoke;
        if revoking && self.labels.is_none() {
            // Before our first apply: the labels were set by whatever is installed.
            self.labels = self
                .nft
                .installed(&ruleset.table)
                .ok()
                .flatten()
                .map(|installed| dockfw_core::revoke::ct_label_map(&installed));
        }
        // Our own commits need no notifications (we know what we sent),
        // and nf_tables builds one per set element for every listener: with
        // a large set that made each commit several times slower.
        let paused = quiet && self.monitor.pause().is_ok();
        let result = self.nft.apply(&ruleset);
        if paused {
            self.monitor
                .resume()
                .context("cannot follow nf_tables any more")?;
        }
        let report = result.with_context(|| {
            format!(
                "cannot install {} into table inet {}",
                self.session.config_name(),
                ruleset.table
            )
        })?;
        let synced = report.committed_generations().last().unwrap_or(report.generation);
        self.synced = Some(synced);
        // Whatever was pending is now in force.
        self.pending = Pending::default();
        // A commit by anyone between our last one and resuming was not
        // reported: if there was one, look again at once.
        if paused && self.nft.generation().map_or(true, |now| now != synced) {
            let now = Instant::now();
            self.pending.unseen = true;
            self.pending.note(now, now);
        }
        self.failures = 0;
        self.failing_since = None;
        let new_labels = dockfw_core::revoke::ct_label_map(&ruleset);
        let labelled_by = self.labels.replace(new_labels.clone()).unwrap_or(new_labels);
        let revoked = (revoking && report.change != Change::Unchanged)
            .then(|| revoke::revoke(self.session, &self.parsed.policy, &self.containers, &labelled_by));
        self.record(|m| {
            m.applied(&ruleset, started.elapsed());
            m.revoked(revoked.as_ref().map_or(0, |r| r.cut.len()));
        });
        Ok((report, ruleset, revoked))
    }

    /// An apply failed: retry later, the pause growing with each failure.
    /// Another program changing the table under the apply (it kept
    /// committing through every attempt) is fighting: backed off as
    /// tampering is, not retried at once on its next change.
    fn failed(&mut self, error: &anyhow::Error, now: Instant) {
        if is_contention(error) {
            // An attempt, for the backoff's count, as a repair is.
            self.backoff.repaired(now);
            let (delay, new_delay) = self.backoff.delay(now);
            let by = self
                .pending
                .tampering
                .last()
                .map_or_else(|| "another program".to_string(), |t| t.by.clone());
            if new_delay {
                log(
                    self.session,
                    &format!(
                        "{by} keeps changing table inet {} (while we repaired it); backing off: next repair in {}",
                        self.table(),
                        millis(delay)
                    ),
                );
            }
            self.pending.retry = true;
            self.pending.fought = true;
            self.pending.note(now, now + delay.max(BACKOFF_FIRST));
            return;
        }
        crate::report(&self.session.console, error);
        self.record(GuardMetrics::apply_failed);
        // EPERM as root: the table is another process's (`flags owner`),
        // which nf_tables lets no one else change.
        const NFT_TABLE_F_OWNER: u32 = 2;
        let table = self.table().to_string();
        if is_permission_denied(error)
            && self
                .nft
                .table_flags(&table)
                .is_ok_and(|flags| flags.is_some_and(|f| f & NFT_TABLE_F_OWNER != 0))
        {
            log(
                self.session,
                &format!(
                    "table inet {table} is held by another process (flags owner): nf_tables lets only \
                     that process change it, until it exits"
                ),
            );
        }
        self.failures += 1;
        let pause = Duration::from_secs(1 << self.failures.min(6)).min(FAILURE_RETRY_MAX);
        // A table someone else created under our name is theirs: nothing a
        // restart could mend, so the watchdog stays fed (a restart would end
        // in exit 2, and the guard for good); the status says it.
        if !is_not_owned(error) {
            self.failing_since.get_or_insert(now);
        }
        self.pending.fought = false;
        self.last_change = format!(
            "NOT as the policy says: cannot apply ({}), {}",
            root_line(error),
            now_text()
        );
        notify(&[NotifyState::Status(&self.status())]);
        self.pending.retry = true;
        self.pending.note(now, now + pause);
        log(
            self.session,
            &format!("the table stays as it was; trying again in {}", millis(pause)),
        );
    }

    /// Looks at the table itself every [`LOOK`]: a table missing or flagged
    /// with nothing pending means a change no notification announced.
    fn look(&mut self, now: Instant) {
        if now < self.next_look {
            return;
        }
        self.next_look = now + LOOK;
        // A repair already due soon needs no look; one waiting to retry after
        // a failure (e.g. a table another process owns) does: the table may
        // have gone silently since.
        if self.pending.due.is_some() && (!self.pending.retry || self.pending.fought) {
            return;
        }
        let table = self.table().to_string();
        let why = match self.nft.table_flags(&table) {
            Ok(None) => "found missing",
            Ok(Some(_)) if self.pending.retry => return,
            Ok(Some(0)) | Err(_) => return,
            Ok(Some(_)) => "found with flags set (dormant or owner)",
        };
        log(
            self.session,
            &format!("table inet {table} {why}, with no notification of it; repairing"),
        );
        self.pending.unseen = true;
        self.pending.note(now, now);
    }

    fn print(&self, report: ApplyReport, ruleset: Ruleset, revoked: Option<Revoked>, elapsed: Duration) {
        let applied = Applied {
            parsed: self.parsed.clone(),
            docker: DockerView {
                containers: self.containers.clone(),
                named_bridges: self.named_bridges.clone(),
                reachable: self.docker_reachable,
                ..DockerView::default()
            },
            ruleset,
            report,
            elapsed,
            revoked,
            bridge_netfilter: crate::commands::bridge_netfilter_problems(
                self.session,
                &self.parsed.policy,
                &self.containers,
            ),
        };
        let _ = print_applied(self.session, &applied);
    }

    fn run(&mut self, inputs: &Receiver<Input>) -> Result<Exit> {
        loop {
            let now = Instant::now();
            let wake = [
                self.pending.due,
                self.backoff.ends_at(),
                self.next_feed(),
                self.files_due,
                Some(self.next_look),
            ]
            .into_iter()
            .flatten()
            .min();
            // The queued notifications before acting, so a burst is one
            // repair; but not for longer than DRAIN_BUDGET, so a program
            // committing without pause (to any table) cannot starve a repair.
            let first = self
                .monitor
                .next(wake.map(|w| w.saturating_duration_since(now)))?;
            let monitor = &mut self.monitor;
            for event in drain(DRAIN_BUDGET, first, || monitor.try_next())? {
                self.on_event(event);
            }
            let (inputs, reload) = take_inputs(inputs);
            for input in inputs {
                if let Input::Stop(signal) = input {
                    return Ok(self.stop(signal));
                }
                self.on_input(input);
            }
            if reload {
                self.reload();
            }
            let now = Instant::now();
            if self.files_due.is_some_and(|due| now >= due) {
                self.files_due = None;
                self.reread_files();
            }
            let now = Instant::now();
            self.look(now);
            if self.pending.due.is_some_and(|due| now >= due) {
                self.repair(now);
            }
            if self.backoff.expire(now) {
                log(
                    self.session,
                    &format!(
                        "table inet {} left alone for {}; repairing at once again",
                        self.table(),
                        millis(QUIET)
                    ),
                );
            }
            self.feed_watchdog(now);
        }
    }

    fn on_event(&mut self, event: Event) {
        let now = Instant::now();
        let commit = match event {
            Event::Overflow => {
                // Typically our own large commit: its element notifications
                // overflow the buffer while we are busy committing. If
                // nothing was committed since, nothing was missed.
                if self.nft.note_lost_notifications().unwrap_or(false) {
                    self.monitor.loss_accounted_for();
                    if self.verbose() {
                        log(
                            self.session,
                            "nf_tables notifications were lost (receive buffer overflow), \
                             but nothing was committed since our last commit",
                        );
                    }
                    return;
                }
                log(
                    self.session,
                    &format!(
                        "nf_tables notifications were lost (receive buffer overflow); checking table inet {} again",
                        self.table()
                    ),
                );
                self.pending.overflow = true;
                self.pending.note(now, now);
                return;
            }
            Event::Commit(commit) => commit,
            _ => return,
        };
        // Every commit, in order: those elsewhere keep what apply installed
        // trusted, so the next apply reads nothing (see `Nft::note_commit`).
        self.nft.note_commit(&commit);
        // Ours, or seen by our last apply (see `synced`).
        if self
            .synced
            .is_some_and(|synced| !is_after(commit.generation, synced))
        {
            return;
        }
        let table = self.table().to_string();
        // Addresses coming and going in the dynamic sets are run time's.
        let runtime: Vec<String> = dockfw_core::layout::runtime_sets(&self.parsed.policy)
            .into_iter()
            .map(|set| set.kernel)
            .collect();
        let is_runtime = |set: &str| runtime.iter().any(|name| name == set);
        if !commit.touches_beyond_elements_of(NfFamily::Inet, &table, is_runtime) {
            return;
        }
        let by = format!(
            "{} (pid {})",
            // The name is whatever the process chose (comm): no control
            // characters into our log lines or systemd's notify protocol.
            commit
                .process
                .as_deref()
                .map_or_else(|| "an unknown process".to_string(), printable),
            commit
                .pid
                .map_or_else(|| "unknown".to_string(), |p| p.to_string())
        );
        let other_tables_deleted = commit
            .changes
            .iter()
            .filter(|c| c.kind == Kind::Table && c.action == Action::Deleted)
            .filter(|c| !(c.family == NfFamily::Inet && c.table == table))
            .count();
        let tampering = Tampering {
            changes: commit
                .changes_to(NfFamily::Inet, &table)
                .filter(|c| !(c.kind == Kind::Element && c.name.as_deref().is_some_and(is_runtime)))
                .cloned()
                .collect(),
            by_dockfw: commit.process.as_deref() == Some(DOCKFW_PROCESS),
            by,
            other_tables_deleted,
            complete: commit.complete,
        };
        if self.verbose() {
            log(
                self.session,
                &format!(
                    "generation {}: {} by {}",
                    commit.generation,
                    describe_tampering(std::slice::from_ref(&tampering)),
                    tampering.by
                ),
            );
        }
        let (delay, new_delay) = self.backoff.delay(now);
        if new_delay {
            log(
                self.session,
                &format!(
                    "{} keeps changing table inet {table} ({} in {}); backing off: next repair in {}",
                    tampering.by,
                    plural(self.backoff.repairs.len() + 1, "change"),
                    millis(BURST_WINDOW),
                    millis(delay)
                ),
            );
        }
        self.pending.tampering.push(tampering);
        self.pending.note(now, now + delay);
    }

    /// The end, on `signal`: the table stays in force, as installed.
    fn stop(&self, signal: &str) -> Exit {
        notify(&[NotifyState::Stopping]);
        log(
            self.session,
            &format!("stopping on {signal}; table inet {} stays in force", self.table()),
        );
        Exit::Success
    }

    fn on_input(&mut self, input: Input) {
        match input {
            Input::Containers {
                containers,
                named_bridges,
                why,
            } => {
                self.containers = containers;
                self.named_bridges = named_bridges;
                self.docker_reachable = true;
                self.record(|m| m.docker_reachable(true));
                if self.session.verbosity > Verbosity::Quiet && !self.session.global.json {
                    crate::output::print_diagnostics(
                        &self.session.console,
                        &dockfw_core::containers::diagnose(&self.parsed.policy, &self.containers),
                    );
                }
                self.apply_logged(&why);
            }
            Input::DockerLost(error) => {
                self.docker_reachable = false;
                self.record(|m| m.docker_reachable(false));
                warn(
                    self.session,
                    &format!(
                        "lost Docker: {error}; reconnecting (still guarding table inet {} with the {} last known)",
                        self.table(),
                        plural(self.containers.len(), "container")
                    ),
                );
                self.last_change = format!("lost Docker, {}", now_text());
                notify(&[NotifyState::Status(&self.status())]);
            }
            Input::DockerRetry(error) => {
                if self.verbose() {
                    warn(self.session, &format!("{error}; retrying"));
                }
            }
            Input::Reload => self.reload(),
            // Handled by `run`.
            Input::Stop(_) => {}
            Input::Refreshed(fetched) => self.on_refreshed(fetched),
            Input::FilesChanged(changed) => {
                let ours = changed.is_none_or(|changed| {
                    changed.iter().any(|(wd, name)| {
                        self.file_places().any(|(directory, file)| {
                            self.watched(&directory).is_some_and(|w| w == wd) && &file == name
                        })
                    })
                });
                if ours && self.files_due.is_none() {
                    self.files_due = Some(Instant::now() + FILE_SETTLE);
                }
            }
        }
    }

    /// The directory and name of each list file the policy reads.
    fn file_places(&self) -> impl Iterator<Item = (PathBuf, OsString)> + '_ {
        self.sources.iter().filter_map(|fetched| match &fetched.source {
            SetSource::File { path, .. } => file_place(self.session.policy_dir(), path),
            _ => None,
        })
    }

    fn watched(&self, directory: &Path) -> Option<&inotify::WatchDescriptor> {
        self.files.as_ref()?.directories.get(directory)
    }

    /// Follows the sources of the policy now in force: the refresh thread
    /// gets the `url` and `names` sources, inotify the list files'
    /// directories (those no longer needed are dropped).
    fn follow_sources(&mut self) {
        if let Some(schedule) = &self.schedule {
            let refreshes = self
                .sources
                .iter()
                .filter_map(|fetched| {
                    Some(Refresh {
                        every: sources::refresh_interval(&fetched.source)?,
                        fetched: fetched.clone(),
                    })
                })
                .collect();
            let _ = schedule.send(refreshes);
        }
        let wanted: HashSet<PathBuf> = self.file_places().map(|(directory, _)| directory).collect();
        let Some(files) = &mut self.files else { return };
        files.directories.retain(|directory, wd| {
            let keep = wanted.contains(directory);
            if !keep {
                let _ = files.watches.remove(wd.clone());
            }
            keep
        });
        for directory in wanted {
            if files.directories.contains_key(&directory) {
                continue;
            }
            let mask = inotify::WatchMask::CLOSE_WRITE
                | inotify::WatchMask::MOVED_TO
                | inotify::WatchMask::MOVED_FROM
                | inotify::WatchMask::CREATE
                | inotify::WatchMask::DELETE;
            match files.watches.add(&directory, mask) {
                Ok(wd) => {
                    files.directories.insert(directory, wd);
                }
                Err(error) => warn(
                    self.session,
                    &format!(
                        "cannot follow changes in {} ({error}): its list files are read again only \
                         on SIGHUP",
                        directory.display()
                    ),
                ),
            }
        }
    }

    /// A list file changed: read them again, and apply what changed.
    fn reread_files(&mut self) {
        let mut sources = self.sources.clone();
        let mut read = Vec::new();
        for fetched in &mut sources {
            if let SetSource::File { path, .. } = &fetched.source {
                let content = sources::read_file(self.session.policy_dir(), path);
                if content != fetched.content {
                    read.push(path.clone());
                    fetched.content = content;
                }
            }
        }
        if !read.is_empty() {
            self.adopt(sources, &format!("{} changed", read.join(", ")));
        }
    }

    /// A `url` or `names` source was loaded again at its refresh.
    fn on_refreshed(&mut self, mut fetched: Fetched) {
        let Some(position) = self.sources.iter().position(|known| {
            known.index == fetched.index && known.same_target(&fetched.set, &fetched.source)
        }) else {
            // The policy was reloaded since, without this source.
            return;
        };
        // What the policy writes now (its refresh, its place in the file).
        fetched.source = self.sources[position].source.clone();
        let warnings: Vec<_> = fetched.diagnostics().collect();
        if self.session.verbosity > Verbosity::Quiet {
            crate::output::print_diagnostics(&self.session.console, &warnings);
        }
        if let Content::Failed { problem, .. } = &fetched.content {
            // Never an empty set: what it held stays.
            warn(
                self.session,
                &format!("set \"{}\": {problem}; it keeps what it held", fetched.set),
            );
            return;
        }
        if fetched.content == self.sources[position].content {
            return;
        }
        let what = match &fetched.source {
            SetSource::Url { url, .. } => format!("{url} downloaded again"),
            SetSource::Names { .. } => "names resolved again".to_string(),
            _ => "refreshed".to_string(),
        };
        let mut sources = self.sources.clone();
        fetched.warnings.clear();
        sources[position] = fetched;
        self.adopt(sources, &what);
    }

    /// Resolves the policy with `sources` (one or more of which changed,
    /// `what` says how). With errors (a bad line in a list), they are
    /// reported and everything stays as it was, as for a policy reload.
    /// Otherwise the sources are kept, and the policy applied when a set's
    /// addresses changed, with one line for each such set.
    fn adopt(&mut self, mut sources: Vec<Fetched>, what: &str) {
        // Said when they were loaded.
        for fetched in &mut sources {
            fetched.warnings.clear();
        }
        let parsed = match self.session.resolve(&self.draft, &sources) {
            Ok(parsed) => parsed,
            Err(error) => {
                if self.session.global.json {
                    let line = serde_json::json!({ "refused": what, "diagnostics": error.diagnostics });
                    outln!(self.session, "{line}");
                } else if self.session.verbosity > Verbosity::Quiet {
                    crate::output::print_diagnostics(&self.session.console, &error.diagnostics);
                }
                log(
                    self.session,
                    &format!("{what}, with errors: the sets keep what they held"),
                );
                self.last_change = format!("{what}, refused (errors), {}", now_text());
                notify(&[NotifyState::Status(&self.status())]);
                return;
            }
        };
        let changes = set_changes(&self.parsed.policy, &parsed.policy);
        self.sources = sources;
        self.parsed = parsed;
        if changes.is_empty() {
            if self.verbose() {
                log(self.session, &format!("{what}: no set changed"));
            }
            return;
        }
        for (set, added, removed) in &changes {
            if self.session.global.json {
                let line = serde_json::json!({ "set": set, "added": added, "removed": removed, "why": what });
                outln!(self.session, "{line}");
            } else if self.session.verbosity > Verbosity::Quiet {
                outln!(
                    self.session,
                    "set {set}: {added} added, {removed} removed ({what})"
                );
            }
        }
        let sets: Vec<String> = changes
            .into_iter()
            .map(|(set, ..)| format!("set {set}"))
            .collect();
        self.apply_logged(&format!("{} changed", summarise(sets, "other sets")));
    }

    /// Applies after a change of Docker's containers or of the policy.
    fn apply_logged(&mut self, why: &str) -> bool {
        log(self.session, &format!("applying ({why})"));
        let started = Instant::now();
        match self.apply(false) {
            Ok((report, ruleset, revoked)) => {
                self.print(report, ruleset, revoked, started.elapsed());
                self.last_change = format!("applied ({why}), {}", now_text());
                notify(&[NotifyState::Status(&self.status())]);
                true
            }
            Err(error) => {
                self.failed(&error, Instant::now());
                false
            }
        }
    }

    /// SIGHUP: the policy file again. With errors, or refused by the
    /// kernel, the running policy (and table) stays.
    fn reload(&mut self) {
        let reloading = [NotifyState::Reloading];
        match sd_notify::NotifyState::monotonic_usec_now() {
            Ok(now) => notify(&[NotifyState::Reloading, now]),
            Err(_) => notify(&reloading),
        }
        log(
            self.session,
            &format!("reloading {} (SIGHUP)", self.session.config_name()),
        );
        // Downloads and names already loaded are kept until their refresh:
        // the guard is not held up by a slow server.
        match self.session.follow_policy(&self.sources) {
            Err(error) => {
                crate::report(&self.session.console, &error);
                log(
                    self.session,
                    &format!(
                        "reload refused: still enforcing the previous policy in table inet {}",
                        self.table()
                    ),
                );
                self.last_change = format!("reload refused (policy errors), {}", now_text());
            }
            Ok(followed) => {
                let previous = std::mem::replace(&mut self.parsed, followed.parsed);
                let previous_draft = std::mem::replace(&mut self.draft, followed.draft);
                let previous_sources = std::mem::replace(&mut self.sources, followed.sources);
                // Repairs still due (tampering seen during a backoff, lost
                // notifications, a failed apply) stay due if the reload fails.
                let due = (
                    std::mem::take(&mut self.pending),
                    self.failures,
                    self.failing_since,
                );
                if previous.policy.guard.table != self.table() {
                    warn(
                        self.session,
                        &format!(
                            "the policy now names table inet {}; table inet {} stays installed \
                             (`dockfw-nft remove --table {}` removes it)",
                            self.table(),
                            previous.policy.guard.table,
                            previous.policy.guard.table
                        ),
                    );
                }
                if !self.apply_logged("policy reloaded") {
                    // The failed apply left the table as it was: keep guarding that.
                    self.parsed = previous;
                    self.draft = previous_draft;
                    self.sources = previous_sources;
                    // The table is as it was before the reload: whatever was
                    // due then is due still (and its cause is kept for the
                    // log line); the new policy's failure is not retried.
                    (self.pending, self.failures, self.failing_since) = due;
                    log(
                        self.session,
                        &format!(
                            "reload refused: still enforcing the previous policy in table inet {}",
                            self.table()
                        ),
                    );
                    self.last_change = format!("reload refused (kernel error), {}", now_text());
                }
                self.follow_sources();
            }
        }
        notify(&[NotifyState::Ready, NotifyState::Status(&self.status())]);
    }

    /// Another dockfw-nft process changed the table: a one-shot `apply` of
    /// the policy file (`systemctl reload dockfw-nft` after an edit) must be
    /// followed, not undone, so read the file again before repairing. A
    /// policy with errors, or one naming another table, leaves the running
    /// policy in force (and the repair undoes the change). The process name
    /// can be forged, but then this only re-reads the policy file.
    ///
    /// Everything is loaded anew, as that `apply` did: downloads and names
    /// too, so as not to undo what it installed from them.
    fn follow_policy_file(&mut self, by: &str) {
        match self.session.follow_policy(&[]) {
            Ok(followed) if followed.parsed.policy == self.parsed.policy => {
                self.sources = followed.sources;
            }
            Ok(Followed { parsed, .. }) if parsed.policy.guard.table != self.table() => warn(
                self.session,
                &format!(
                    "{by} changed table inet {}, and {} now names table inet {}: still \
                     enforcing the previous policy (send SIGHUP to switch tables)",
                    self.table(),
                    self.session.config_name(),
                    parsed.policy.guard.table
                ),
            ),
            Ok(followed) => {
                log(
                    self.session,
                    &format!(
                        "{by} changed table inet {}: following {} as it is now",
                        self.table(),
                        self.session.config_name()
                    ),
                );
                self.parsed = followed.parsed;
                self.draft = followed.draft;
                self.sources = followed.sources;
                self.follow_sources();
            }
            Err(error) => {
                crate::report(&self.session.console, &error);
                log(
                    self.session,
                    &format!(
                        "{by} changed table inet {}, but {} has errors: still enforcing the \
                         previous policy",
                        self.table(),
                        self.session.config_name()
                    ),
                );
            }
        }
    }

    /// Brings the table back to the policy after tampering, lost
    /// notifications or a failed apply, and says what was repaired.
    fn repair(&mut self, now: Instant) {
        let pending = std::mem::take(&mut self.pending);
        let since = pending.since.unwrap_or(now);
        if let Some(sibling) = pending.tampering.iter().find(|t| t.by_dockfw) {
            self.follow_policy_file(&sibling.by);
        }
        // Not after lost or unseen notifications: the table is then most
        // likely whole, and pausing again could miss the next commit too.
        let deleted = pending.tampering.iter().any(|t| {
            t.changes
                .iter()
                .any(|c| c.kind == Kind::Table && c.action == Action::Deleted)
        });
        match self.apply(deleted) {
            Ok((report, _, revoked)) => {
                let took = since.elapsed();
                if let Some(revoked) = &revoked {
                    print_revoked(self.session, revoked);
                }
                let table = self.table().to_string();
                let cause = if !pending.tampering.is_empty() {
                    RepairCause::Tampering
                } else if pending.unseen {
                    RepairCause::UnseenCommit
                } else if pending.overflow {
                    RepairCause::NotificationsLost
                } else {
                    RepairCause::Retry
                };
                if report.change != Change::Unchanged {
                    self.record(|m| m.repaired(cause));
                }
                let what = if !pending.tampering.is_empty() {
                    self.backoff.repaired(Instant::now());
                    let by: Vec<String> = dedup(pending.tampering.iter().map(|t| t.by.clone()));
                    format!(
                        "{}, by {}",
                        describe_tampering(&pending.tampering),
                        summarise(by, "others")
                    )
                } else if pending.unseen {
                    "after a change made while we were applying".to_string()
                } else if pending.overflow {
                    "after lost notifications".to_string()
                } else {
                    "after the earlier error".to_string()
                };
                if report.change == Change::Unchanged {
                    // E.g. a change undone in the same commit, or our own
                    // rollback after a failed apply.
                    if self.verbose() {
                        log(self.session, &format!("table inet {table} is whole ({what})"));
                    }
                    return;
                }
                if self.session.global.json {
                    let line = serde_json::json!({
                        "repaired": table,
                        "what": what,
                        "elapsed_ms": took.as_secs_f64() * 1000.0,
                    });
                    outln!(self.session, "{line}");
                } else if self.session.verbosity > Verbosity::Quiet {
                    outln!(
                        self.session,
                        "{} table inet {table}: {what}, in {}",
                        paint(GOOD, "repaired"),
                        millis(took)
                    );
                }
                self.last_change = format!("repaired ({what}), {}", now_text());
                notify(&[NotifyState::Status(&self.status())]);
            }
            Err(error) => {
                // Keep the causes for the log line of the repair that works.
                self.pending = pending;
                self.pending.due = None;
                self.failed(&error, now);
            }
        }
    }

    fn next_feed(&self) -> Option<Instant> {
        self.watchdog.map(|period| self.watchdog_fed + period / 2)
    }

    /// Feeds systemd's watchdog from this loop (a hung loop is restarted),
    /// unless the table could not be repaired for [`UNHEALTHY_AFTER`].
    fn feed_watchdog(&mut self, now: Instant) {
        if self.next_feed().is_none_or(|due| now < due) {
            return;
        }
        self.watchdog_fed = now;
        if self
            .failing_since
            .is_some_and(|since| now.duration_since(since) > UNHEALTHY_AFTER)
        {
            return;
        }
        notify(&[NotifyState::Watchdog]);
    }

    fn verbose(&self) -> bool {
        self.session.verbosity == Verbosity::Verbose && !self.session.global.json
    }
}

/// Takes `first` and what `next` yields after it, until it yields nothing
/// or `budget` has passed (the caller acts on what is due, then comes back
/// for the rest).
fn drain<T, E>(
    budget: Duration,
    first: Option<T>,
    mut next: impl FnMut() -> Result<Option<T>, E>,
) -> Result<Vec<T>, E> {
    let until = Instant::now() + budget;
    let mut taken = Vec::new();
    let mut item = first;
    while let Some(i) = item {
        taken.push(i);
        item = if Instant::now() < until { next()? } else { None };
    }
    Ok(taken)
}

/// The inputs queued now, SIGHUPs folded into one reload (`true`): a storm
/// of signals is one re-read of the policy, not a backlog of them.
fn take_inputs(inputs: &Receiver<Input>) -> (Vec<Input>, bool) {
    let mut reload = false;
    let mut others = Vec::new();
    while let Ok(input) = inputs.try_recv() {
        match input {
            Input::Reload => reload = true,
            other => others.push(other),
        }
    }
    (others, reload)
}

fn dedup(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut seen = Vec::new();
    for item in items {
        if !seen.contains(&item) {
            seen.push(item);
        }
    }
    seen
}

/// What tampering did to our table, in words: `rule deleted in chain rules`,
/// `table deleted, with 2 other tables`, `3 elements deleted from set blocked`.
fn describe_tampering(tampering: &[Tampering]) -> String {
    let changes: Vec<&ObjectChange> = tampering.iter().flat_map(|t| &t.changes).collect();
    let mut parts = Vec::new();
    if changes
        .iter()
        .any(|c| c.kind == Kind::Table && c.action == Action::Deleted)
    {
        // Deleting the table deletes everything in it: say just that.
        let others: usize = tampering.iter().map(|t| t.other_tables_deleted).sum();
        parts.push(if others > 0 {
            format!("table deleted, with {}", plural(others, "other table"))
        } else {
            "table deleted".to_string()
        });
    } else {
        // (kind, action, name) → count, in order of appearance.
        let mut groups: Vec<(Kind, Action, Option<&str>, usize)> = Vec::new();
        for c in &changes {
            let key = (c.kind, c.action, c.name.as_deref());
            // An interval is two kernel elements (its start, and an end
            // after it): count what the user wrote, one per interval.
            let end = libc::NFT_SET_ELEM_INTERVAL_END as u32;
            let counted = usize::from(c.element.as_ref().is_none_or(|e| e.flags & end == 0));
            match groups.iter_mut().find(|g| (g.0, g.1, g.2) == key) {
                Some(group) => group.3 += counted,
                None => groups.push((key.0, key.1, key.2, counted)),
            }
        }
        for (kind, action, name, count) in groups {
            let count = count.max(1);
            let name = name.unwrap_or("?");
            let done = match action {
                Action::Added => "added",
                Action::Deleted => "deleted",
            };
            parts.push(match kind {
                Kind::Table => "table flags changed (e.g. dormant)".to_string(),
                Kind::Rule => format!("{} {done} in chain {name}", plural(count, "rule")),
                Kind::Element => {
                    let prep = if action == Action::Added { "to" } else { "from" };
                    format!("{} {done} {prep} set {name}", plural(count, "element"))
                }
                Kind::Unknown(n) => format!("unrecognised change (nf_tables message {n})"),
                kind => format!("{kind} {name} {done}"),
            });
        }
    }
    if parts.is_empty() {
        parts.push("unknown changes".to_string());
    }
    let mut text = summarise(parts, "other changes");
    if tampering.iter().any(|t| !t.complete) {
        text.push_str(" (notifications were lost: there may be more)");
    }
    text
}

/// `3.1 ms`, `250 ms`, `1.5 s`.
fn millis(duration: Duration) -> String {
    let ms = duration.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        let s = ms / 1000.0;
        if s.fract() == 0.0 {
            format!("{s:.0} s")
        } else {
            format!("{s:.1} s")
        }
    }
}

fn now_text() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// Tells systemd, when it asked (NOTIFY_SOCKET); otherwise does nothing.
fn notify(states: &[NotifyState]) {
    let _ = sd_notify::notify(states);
}

fn log(session: &Session, text: &str) {
    if session.verbosity > Verbosity::Quiet && !session.global.json {
        outln!(session, "{}", paint(DIM, text));
    }
}

fn warn(session: &Session, text: &str) {
    if session.verbosity > Verbosity::Quiet {
        errln!(session.console, "{} {text}", paint(WARN, "warning:"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_repairs_a_burst_at_once_then_doubles_and_forgets() {
        let mut b = Backoff::default();
        let t0 = Instant::now();
        for i in 0..3 {
            let now = t0 + Duration::from_millis(50 * i);
            assert_eq!(b.delay(now), (Duration::ZERO, false));
            b.repaired(now);
        }
        let now = t0 + Duration::from_millis(150);
        assert_eq!(b.delay(now), (BACKOFF_FIRST, true));
        // More tampering before that repair: coalesced, same delay, said once.
        assert_eq!(b.delay(now), (BACKOFF_FIRST, false));
        b.repaired(now + BACKOFF_FIRST);
        let mut expected = BACKOFF_FIRST;
        for _ in 0..6 {
            expected = (expected * 2).min(BACKOFF_MAX);
            let (delay, _) = b.delay(now + Duration::from_secs(1));
            assert_eq!(delay, expected);
            b.repaired(now + Duration::from_secs(1));
        }
        assert_eq!(expected, BACKOFF_MAX);
        let last = now + Duration::from_secs(2);
        b.delay(last);
        assert!(!b.expire(last + QUIET - Duration::from_millis(1)));
        assert!(b.expire(last + QUIET));
        assert_eq!(b.delay(last + QUIET * 2), (Duration::ZERO, false));
    }

    #[test]
    fn a_stream_without_pause_is_read_for_the_budget_only() {
        let endless = drain(Duration::from_millis(5), Some(0u32), || Ok::<_, ()>(Some(1))).unwrap();
        assert!(!endless.is_empty());
        let mut left = 3;
        let burst = drain(Duration::from_secs(60), Some(0u32), || {
            left -= 1;
            Ok::<_, ()>((left > 0).then_some(left))
        })
        .unwrap();
        assert_eq!(burst, [0, 2, 1]);
        assert!(
            drain(Duration::ZERO, None::<u32>, || Ok::<_, ()>(Some(1)))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_storm_of_sighups_is_one_reload() {
        let (sender, receiver) = std::sync::mpsc::channel();
        for _ in 0..1000 {
            sender.send(Input::Reload).unwrap();
        }
        sender.send(Input::DockerRetry("x".into())).unwrap();
        sender.send(Input::Reload).unwrap();
        let (others, reload) = take_inputs(&receiver);
        assert!(reload);
        assert!(matches!(others.as_slice(), [Input::DockerRetry(_)]));
        assert!(!take_inputs(&receiver).1);
    }

    #[test]
    fn generations_wrap() {
        assert!(is_after(5, 4));
        assert!(!is_after(4, 4));
        assert!(!is_after(3, 4));
        assert!(is_after(1, u32::MAX));
    }

    #[test]
    fn millis_reads_well() {
        assert_eq!(millis(Duration::from_micros(3100)), "3.1 ms");
        assert_eq!(millis(Duration::from_millis(250)), "250 ms");
        assert_eq!(millis(Duration::from_secs(10)), "10 s");
        assert_eq!(millis(Duration::from_millis(1500)), "1.5 s");
    }
}
