//! dockfw-docker: what Docker runs, as dockfw needs it.
//!
//! Reads the Docker Engine API (through [bollard]) for the running containers
//! with their names, labels, network addresses and published ports, turns
//! them into [`dockfw_core::Container`]s for the policy compiler, and follows
//! Docker's events so a watcher can re-apply when containers change.
//!
//! - Synchronous callers (the CLI): [`list_containers`],
//!   [`list_containers_and_bridge_networks`] and [`subscribe`], which run a
//!   small single-threaded runtime of their own.
//! - Async callers (tokio): [`Client`].
//!
//! Which daemon: an explicit host (the CLI's `--docker-host`), else env
//! `DOCKER_HOST`, else [`DEFAULT_HOST`]; see [`resolve_host`]. `unix://PATH`,
//! a bare absolute socket path, and plain-HTTP `tcp://HOST:PORT` /
//! `http://HOST:PORT` are understood. The API version is negotiated with the
//! daemon, so Docker 20.10 (API 1.41) works as well as current releases.
//!
//! # From Docker to the policy
//!
//! [`ContainerInfo`] keeps what Docker reports (`GET /containers/json`):
//! one [`PortBinding`] per host binding. [`ContainerInfo::to_container`]
//! gives the compiler's view:
//!
//! | Docker reports (`-p …`)                      | `PublishedPort::host_addr`                 |
//! |----------------------------------------------|--------------------------------------------|
//! | `0.0.0.0:8081` and `:::8081` (`-p 8081:8000`) | `None`: one port, every address            |
//! | only `0.0.0.0:8081` (`-p 0.0.0.0:8081:8000`)  | `Some(0.0.0.0)`: every IPv4 address, no IPv6 |
//! | only `:::8081`                                | `Some(::)`: every IPv6 address, no IPv4     |
//! | `203.0.113.1:8082`                            | `Some(203.0.113.1)`: that address only      |
//! | no host address                               | `None`                                     |
//!
//! Exposed but unpublished ports (`--expose`, `EXPOSE`) are not published
//! ports; SCTP ports are left out (policies speak TCP and UDP); stopped
//! containers are not listed, paused and restarting ones are (their ports
//! stay published). `addresses` are the container's IPv4 and global IPv6
//! addresses on each of its networks (none with `--network host`).
//!
//! Every call is bounded by a timeout: a missing socket, a refused
//! connection or a daemon that does not answer gives
//! [`Error::Unreachable`] within that time, never a hang.
//!
//! ```no_run
//! use std::time::Duration;
//! let containers = dockfw_docker::list_containers(None, dockfw_docker::DEFAULT_TIMEOUT)?;
//! let for_policy: Vec<dockfw_core::Container> =
//!     containers.iter().map(|c| c.to_container()).collect();
//! # Ok::<(), dockfw_docker::Error>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod blocking;
mod client;
mod error;
mod events;
mod host;
mod model;

pub use blocking::{BlockingEvents, list_containers, list_containers_and_bridge_networks, subscribe};
pub use client::Client;
pub use error::Error;
pub use events::{ContainerEvent, EventKind};
pub use host::{DEFAULT_HOST, resolve_host};
pub use model::{BridgeNetwork, ContainerInfo, NetworkInfo, PortBinding};

/// A sensible bound for one exchange with Docker (connect, negotiate, list).
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
