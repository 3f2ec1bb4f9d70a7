//! What Docker runs, for `container` and `labels` rules and the docker-proxy
//! path. Without Docker the policy still applies: those rules match nothing.

use crate::cli::Global;
use anyhow::Result;
use dockfw_core::{Container, Diagnostic};
use std::fmt;

/// Docker could not be reached where it is required: by `--require-docker`,
/// or by `watch`, which follows Docker's containers.
#[derive(Debug)]
pub struct Unreachable {
    pub error: dockfw_docker::Error,
    /// Required by `watch` rather than by `--require-docker`.
    pub by_watch: bool,
}

impl fmt::Display for Unreachable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let by = if self.by_watch {
            "watch needs Docker"
        } else {
            "--require-docker"
        };
        write!(f, "{} ({by})", self.error)
    }
}

impl std::error::Error for Unreachable {}

/// Running containers, and why the list may be incomplete.
#[derive(Debug, Default)]
pub struct DockerView {
    pub containers: Vec<Container>,
    /// Whether Docker answered.
    pub reachable: bool,
    /// Why Docker's containers are unknown, for a warning.
    pub problem: Option<String>,
    /// What the policy gets wrong about the running containers.
    pub diagnostics: Vec<Diagnostic>,
    /// Docker's bridge networks whose bridge the table does not know as
    /// Docker's (see [`dockfw_core::layout::is_docker_bridge`]): connections
    /// routed to their containers' own addresses are not judged.
    pub unjudged_bridges: Vec<dockfw_docker::BridgeNetwork>,
}

impl DockerView {
    /// A warning for each of [`DockerView::unjudged_bridges`].
    pub fn bridge_warnings(&self) -> Vec<String> {
        self.unjudged_bridges
            .iter()
            .map(|network| {
                format!(
                    "Docker network `{}` is on bridge {}, which dockfw does not know as Docker's (docker0, br-*, \
                     Docker's own names): the ports its containers publish are judged (DNAT), but not connections \
                     routed to their own addresses, and [[outbound]] and [[between]] rules do not see them; \
                     create the network without -o com.docker.network.bridge.name to have it judged",
                    network.name, network.interface
                )
            })
            .collect()
    }
}

pub fn query(global: &Global) -> Result<DockerView> {
    if global.no_docker {
        return Ok(DockerView::default());
    }
    match dockfw_docker::list_containers(global.docker_host.as_deref(), global.docker_timeout) {
        Ok(list) => Ok(DockerView {
            containers: list.iter().map(Container::from).collect(),
            reachable: true,
            unjudged_bridges: unjudged_bridges(global),
            ..DockerView::default()
        }),
        Err(error) if global.require_docker => Err(Unreachable {
            error,
            by_watch: global.watching,
        }
        .into()),
        Err(error) => Ok(DockerView {
            problem: Some(format!(
                "{error}; `container` and `labels` rules match nothing until the policy is applied \
                 again with Docker running"
            )),
            ..DockerView::default()
        }),
    }
}

/// Docker's bridge networks on bridges the table does not know as Docker's
/// (see [`DockerView::unjudged_bridges`]). Best effort: none when Docker
/// does not answer (the containers are what the table needs).
pub fn unjudged_bridges(global: &Global) -> Vec<dockfw_docker::BridgeNetwork> {
    if global.no_docker {
        return Vec::new();
    }
    dockfw_docker::list_bridge_networks(global.docker_host.as_deref(), global.docker_timeout)
        .unwrap_or_default()
        .into_iter()
        .filter(|network| !dockfw_core::layout::is_docker_bridge(&network.interface))
        .collect()
}
