//! What Docker runs, for `container` and `labels` rules and the docker-proxy
//! path. Without Docker the policy still applies: those rules match nothing.

use crate::cli::Global;
use anyhow::Result;
use dockfw_core::{Container, Diagnostic};
use dockfw_docker::BridgeNetwork;
use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

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
    /// The bridges of Docker's bridge networks, where Docker was told their
    /// names (`com.docker.network.bridge.name`): the table knows them as
    /// Docker's, as it knows `docker0` and `br-*`. Every such network's,
    /// not only those containers run on: a container started on one after
    /// the apply is then judged from its first packet, as on `br-*`.
    pub named_bridges: Vec<String>,
    /// Whether Docker answered.
    pub reachable: bool,
    /// Why Docker's containers are unknown, for a warning.
    pub problem: Option<String>,
    /// What the policy gets wrong about the running containers.
    pub diagnostics: Vec<Diagnostic>,
}

/// What Docker runs, as the table needs it: the running containers, and the
/// named bridges of Docker's networks (see [`DockerView::named_bridges`]).
pub fn running(
    host: Option<&str>,
    timeout: Duration,
) -> Result<(Vec<Container>, Vec<String>), dockfw_docker::Error> {
    let (containers, networks) = dockfw_docker::list_containers_and_bridge_networks(host, timeout)?;
    Ok((
        containers.iter().map(Container::from).collect(),
        named_bridges(&networks),
    ))
}

/// The bridges of `networks` not named as Docker names bridges itself;
/// sorted, without repeats.
fn named_bridges(networks: &[BridgeNetwork]) -> Vec<String> {
    let bridges: BTreeSet<&str> = networks
        .iter()
        .map(|network| network.interface.as_str())
        .filter(|interface| !dockfw_core::layout::is_docker_bridge(interface))
        .collect();
    bridges.into_iter().map(str::to_string).collect()
}

pub fn query(global: &Global) -> Result<DockerView> {
    if global.no_docker {
        return Ok(DockerView::default());
    }
    match running(global.docker_host.as_deref(), global.docker_timeout) {
        Ok((containers, named_bridges)) => Ok(DockerView {
            containers,
            named_bridges,
            reachable: true,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every named bridge, also of a network no container is on yet: the
    /// table must judge a container's first packets there, before anything
    /// re-applies (as it does on `br-*`).
    #[test]
    fn named_bridges_of_every_network_are_known() {
        let network = |name: &str, interface: &str| BridgeNetwork {
            name: name.into(),
            interface: interface.into(),
        };
        let networks = [
            network("bridge", "docker0"),
            network("web", "br-0123456789ab"),
            network("dmz", "dmz0"),
            network("lab", "lab0"),
            network("idle", "idle0"),
            network("shares-docker0", "docker0"),
            network("again", "dmz0"),
        ];
        assert_eq!(named_bridges(&networks), ["dmz0", "idle0", "lab0"]);
        assert!(named_bridges(&[]).is_empty());
    }
}
