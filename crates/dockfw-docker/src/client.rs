//! The async client.

use crate::host::{self, Endpoint};
use crate::{BridgeNetwork, ContainerEvent, ContainerInfo, Error, resolve_host};
use bollard::query_parameters::EventsOptions;
use futures_util::{Stream, StreamExt, stream};
use std::future::{Future, ready};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A connection to one Docker daemon, for tokio callers. Cheap to clone.
///
/// Each request opens its own connection to the daemon; every request but
/// the event stream's body is bounded by the timeout given to
/// [`Client::connect`].
#[derive(Debug, Clone)]
pub struct Client {
    docker: bollard::Docker,
    host: String,
    timeout: Duration,
}

impl Client {
    /// Connects to `host` (see [`resolve_host`]: `None` means env
    /// `DOCKER_HOST`, else the default socket) and agrees on an API version
    /// with the daemon (the newest both speak, e.g. 1.41 with Docker 20.10).
    /// Fails with [`Error::Unreachable`] within `timeout` when the daemon
    /// cannot be reached or does not answer.
    pub async fn connect(host: Option<&str>, timeout: Duration) -> Result<Self, Error> {
        let host = resolve_host(host);
        // bollard's own per-request bound, in whole seconds: ours, rounded
        // up. It is what bounds the wait for the event stream's first answer.
        let whole_seconds = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
        let seconds = whole_seconds.max(1);
        let version = bollard::API_DEFAULT_VERSION;
        let docker = match host::parse(&host)? {
            Endpoint::Unix(path) => bollard::Docker::connect_with_unix(&path, seconds, version),
            Endpoint::Tcp(addr) => bollard::Docker::connect_with_http(&addr, seconds, version),
        }
        .map_err(|e| Error::from_bollard(&host, timeout, e))?;
        // /version is unversioned, as negotiation needs.
        let docker = bounded(&host, timeout, docker.negotiate_version()).await?;
        let docker = pin_api_version(docker);
        Ok(Self {
            docker,
            host,
            timeout,
        })
    }

    /// The Docker host this client talks to, as resolved.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The API version agreed with the daemon, e.g. `1.41`.
    pub fn api_version(&self) -> String {
        let v = self.docker.client_version();
        format!("{}.{}", v.major_version, v.minor_version)
    }

    /// The running containers (also paused and restarting ones, whose
    /// ports stay published), sorted by name.
    pub async fn containers(&self) -> Result<Vec<ContainerInfo>, Error> {
        let list = bounded(&self.host, self.timeout, self.docker.list_containers(None)).await?;
        let mut containers: Vec<ContainerInfo> =
            list.iter().filter_map(ContainerInfo::from_summary).collect();
        containers.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(containers)
    }

    /// The networks on Linux bridges, with their bridges' interfaces,
    /// sorted by name.
    pub async fn bridge_networks(&self) -> Result<Vec<BridgeNetwork>, Error> {
        let list = bounded(&self.host, self.timeout, self.docker.list_networks(None)).await?;
        let mut networks: Vec<BridgeNetwork> = list.iter().filter_map(BridgeNetwork::from_network).collect();
        networks.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(networks)
    }

    /// Container changes that matter to a firewall (see [`crate::EventKind`]),
    /// from the moment of this call on: the daemon replays what happened
    /// between this call and the stream's first poll, so a watcher can call
    /// this, then [`Client::containers`], then follow the stream without
    /// missing a change (an event may repeat what the listing already shows).
    ///
    /// The stream yields `Err` once and then ends: on a transport error, or
    /// with [`Error::Unreachable`] when the daemon closes the stream (e.g.
    /// on shutdown). Waiting for the first answer is bounded by the
    /// client's timeout; waiting for events is not.
    pub fn events(&self) -> impl Stream<Item = Result<ContainerEvent, Error>> + Send + Unpin + use<> {
        let options = EventsOptions {
            since: Some(docker_timestamp(SystemTime::now())),
            until: None,
            filters: Some(ContainerEvent::filters()),
        };
        let host = self.host.clone();
        let timeout = self.timeout;
        let ended = Error::Unreachable {
            host: host.clone(),
            reason: "Docker ended the event stream".into(),
        };
        self.docker
            .events(Some(options))
            .map(move |item| item.map_err(|e| Error::from_bollard(&host, timeout, e)))
            .chain(stream::once(ready(Err(ended))))
            // Nothing after the first error.
            .scan(false, |failed, item| {
                if *failed {
                    return ready(None);
                }
                *failed = item.is_err();
                ready(Some(item))
            })
            .filter_map(|item| {
                ready(match item {
                    Ok(message) => ContainerEvent::from_message(&message).map(Ok),
                    Err(e) => Some(Err(e)),
                })
            })
            .boxed()
    }
}

/// Sends every request under `/v{negotiated}/`. bollard 0.21 negotiates
/// but then sends unversioned paths (its URL join drops the prefix), and a
/// daemon answers an unversioned request in its own newest format, which
/// may be newer than the one bollard's models describe. With the prefix, a
/// daemon newer than bollard answers in bollard's version, an older one
/// (Docker 20.10: 1.41) in its own. Paths that already carry a version are
/// left alone, should bollard start adding it.
fn pin_api_version(docker: bollard::Docker) -> bollard::Docker {
    let version = docker.client_version();
    let prefix = format!("/v{}.{}", version.major_version, version.minor_version);
    docker.with_request_modifier(move |mut request| {
        if let Some(uri) = versioned(request.uri(), &prefix) {
            *request.uri_mut() = uri;
        }
        request
    })
}

/// `uri` with `prefix` before its path, unless its path has a version.
fn versioned(uri: &http::Uri, prefix: &str) -> Option<http::Uri> {
    let has_version = uri
        .path()
        .strip_prefix("/v")
        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()));
    if has_version {
        return None;
    }
    let path_and_query = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(format!("{prefix}{path_and_query}").parse().ok()?);
    http::Uri::from_parts(parts).ok()
}

/// Runs one request with a hard time bound.
async fn bounded<T>(
    host: &str,
    timeout: Duration,
    request: impl Future<Output = Result<T, bollard::errors::Error>>,
) -> Result<T, Error> {
    match tokio::time::timeout(timeout, request).await {
        Ok(result) => result.map_err(|e| Error::from_bollard(host, timeout, e)),
        Err(_elapsed) => Err(Error::timed_out(host, timeout)),
    }
}

/// Docker's `since`/`until` form: seconds.nanoseconds since the epoch.
fn docker_timestamp(time: SystemTime) -> String {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:09}", since_epoch.as_secs(), since_epoch.subsec_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_get_the_version() {
        let uri: http::Uri = "unix://2f732e736f636b/containers/json?all=false".parse().unwrap();
        assert_eq!(
            versioned(&uri, "/v1.41").unwrap().to_string(),
            "unix://2f732e736f636b/v1.41/containers/json?all=false"
        );
        let uri: http::Uri = "http://127.0.0.1:2375/events".parse().unwrap();
        assert_eq!(
            versioned(&uri, "/v1.45").unwrap().to_string(),
            "http://127.0.0.1:2375/v1.45/events"
        );
        let already: http::Uri = "http://h:1/v1.53/version".parse().unwrap();
        assert_eq!(versioned(&already, "/v1.41"), None);
        // A path merely starting with "v" is not a version.
        let volumes: http::Uri = "http://h:1/volumes".parse().unwrap();
        assert_eq!(versioned(&volumes, "/v1.41").unwrap().path(), "/v1.41/volumes");
    }

    #[test]
    fn timestamps_in_docker_form() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 5_000);
        assert_eq!(docker_timestamp(t), "1700000000.000005000");
    }
}
