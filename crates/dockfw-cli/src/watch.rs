//! `dockfw-nft watch`: re-apply the policy whenever Docker's containers
//! change, so `container` and `labels` rules and the docker-proxy guard follow
//! what runs.
//!
//! Events are subscribed to before the first apply, so a change between
//! listing and watching is never missed. A burst of events (a compose stack
//! starting) leads to one apply once it settles. If Docker cannot be asked
//! mid-way, nothing is applied: the installed table stays until Docker
//! answers again (never an apply that forgets running containers).
//!
//! Each apply takes the namespace's writer lock for its own duration only
//! (inside `Nft::apply`), never for watch's whole life: a one-shot `apply` or
//! `remove` beside a running watch waits at most for the apply under way.

use crate::Exit;
use crate::commands::{install, print_applied};
use crate::docker::Unreachable;
use crate::output::{DIM, WARN, paint};
use crate::session::Session;
use anyhow::Result;
use dockfw_docker::{BlockingEvents, ContainerEvent, DEFAULT_TIMEOUT};
use std::time::Duration;

/// Longest wait for an event before checking the connection is still alive.
const IDLE: Duration = Duration::from_secs(60);
/// Pause between attempts to reach Docker again.
const RETRY: Duration = Duration::from_secs(2);

pub fn watch(session: &Session, settle: Duration) -> Result<Exit> {
    if session.global.no_docker {
        anyhow::bail!("watch follows Docker's containers; it cannot run with --no-docker");
    }
    let host = session.global.docker_host.as_deref();
    // Docker is required: without it there is nothing to watch (exit 4).
    let mut events = dockfw_docker::subscribe(host, DEFAULT_TIMEOUT).map_err(|error| Unreachable {
        error,
        by_watch: true,
    })?;
    log(
        session,
        &format!("watching Docker at {} for container changes", events.host()),
    );
    apply_logged(session, "start");
    loop {
        match wait_for_change(&mut events, settle) {
            Ok(changes) => apply_logged(session, &describe(&changes)),
            Err(error) => {
                warn(session, &format!("lost Docker: {error}; reconnecting"));
                events = reconnect(session, host);
                apply_logged(session, "Docker is back");
            }
        }
    }
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

fn reconnect(session: &Session, host: Option<&str>) -> BlockingEvents {
    loop {
        match dockfw_docker::subscribe(host, DEFAULT_TIMEOUT) {
            Ok(events) => return events,
            Err(error) if session.verbosity > crate::output::Verbosity::Normal => {
                warn(session, &format!("{error}; retrying"));
            }
            Err(_) => {}
        }
        std::thread::sleep(RETRY);
    }
}

/// Applies; an error is reported and the installed table stays as it was.
/// (The session requires Docker, so a Docker that does not answer is such an
/// error, rather than an apply that forgets running containers.)
fn apply_logged(session: &Session, why: &str) {
    log(session, &format!("applying ({why})"));
    match install(session, false, false) {
        Ok(applied) => {
            let _ = print_applied(session, &applied);
        }
        Err(error) => crate::report(&error),
    }
}

fn describe(changes: &[ContainerEvent]) -> String {
    let mut parts: Vec<String> = changes
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e.kind,
                e.container_name.as_deref().unwrap_or(&e.container_id)
            )
        })
        .collect();
    parts.dedup();
    if parts.len() > 5 {
        let more = parts.len() - 4;
        parts.truncate(4);
        parts.push(format!("{more} more"));
    }
    parts.join(", ")
}

fn log(session: &Session, text: &str) {
    if session.verbosity > crate::output::Verbosity::Quiet && !session.global.json {
        anstream::println!("{}", paint(DIM, text));
    }
}

fn warn(session: &Session, text: &str) {
    if session.verbosity > crate::output::Verbosity::Quiet {
        anstream::eprintln!("{} {text}", paint(WARN, "warning:"));
    }
}
