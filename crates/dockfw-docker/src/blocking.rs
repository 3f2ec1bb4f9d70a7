//! Blocking wrappers for synchronous callers: each runs a single-threaded
//! tokio runtime of its own.

use crate::{BridgeNetwork, Client, ContainerEvent, ContainerInfo, Error, resolve_host};
use futures_util::{Stream, StreamExt};
use std::pin::Pin;
use std::time::Duration;
use tokio::runtime::Runtime;

/// The running containers of the Docker daemon at `host` (see
/// [`resolve_host`]), sorted by name; connecting, negotiating the API version
/// and listing take at most about `timeout` together, else
/// [`Error::Unreachable`].
pub fn list_containers(host: Option<&str>, timeout: Duration) -> Result<Vec<ContainerInfo>, Error> {
    ask(host, timeout, async |client| client.containers().await)
}

/// The running containers (as [`list_containers`]) and the bridge networks
/// of the Docker daemon at `host`, over one connection and within about
/// `timeout` together: what a firewall compiles from, asked at once.
pub fn list_containers_and_bridge_networks(
    host: Option<&str>,
    timeout: Duration,
) -> Result<(Vec<ContainerInfo>, Vec<BridgeNetwork>), Error> {
    ask(host, timeout, async |client| {
        Ok((client.containers().await?, client.bridge_networks().await?))
    })
}

/// Connects to the daemon at `host` and asks it `question`, all within
/// about `timeout`.
fn ask<T>(
    host: Option<&str>,
    timeout: Duration,
    question: impl AsyncFnOnce(&Client) -> Result<T, Error>,
) -> Result<T, Error> {
    let resolved = resolve_host(host);
    runtime()?.block_on(async {
        let answer = async {
            let client = Client::connect(Some(&resolved), timeout).await?;
            question(&client).await
        };
        tokio::time::timeout(timeout, answer)
            .await
            .unwrap_or_else(|_elapsed| Err(Error::timed_out(&resolved, timeout)))
    })
}

/// Connects to the daemon at `host` (see [`resolve_host`]; bounded by
/// `timeout`) and follows its container events from now on, as
/// [`Client::events`] does.
pub fn subscribe(host: Option<&str>, timeout: Duration) -> Result<BlockingEvents, Error> {
    let runtime = runtime()?;
    let client = runtime.block_on(Client::connect(host, timeout))?;
    Ok(BlockingEvents {
        host: client.host().to_owned(),
        stream: Box::pin(client.events()),
        runtime,
        ended: false,
    })
}

/// Container events, blocking: iterate, or wait with [`BlockingEvents::next_timeout`].
///
/// The iterator yields `Err` once (Docker went away or ended the stream)
/// and then ends.
pub struct BlockingEvents {
    host: String,
    stream: Pin<Box<dyn Stream<Item = Result<ContainerEvent, Error>> + Send>>,
    runtime: Runtime,
    ended: bool,
}

impl BlockingEvents {
    /// The Docker host followed.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The next event, waiting at most `wait`: `Ok(None)` when none came in
    /// that time (handy to let a burst of events settle before acting).
    /// Once the stream has failed or ended, returns [`Error::Unreachable`].
    pub fn next_timeout(&mut self, wait: Duration) -> Result<Option<ContainerEvent>, Error> {
        if self.ended {
            return Err(self.ended_error());
        }
        // The timer must be made inside the runtime.
        let stream = &mut self.stream;
        let next = self
            .runtime
            .block_on(async { tokio::time::timeout(wait, stream.next()).await });
        match next {
            Err(_elapsed) => Ok(None),
            Ok(Some(Ok(event))) => Ok(Some(event)),
            Ok(Some(Err(e))) => {
                self.ended = true;
                Err(e)
            }
            Ok(None) => {
                self.ended = true;
                Err(self.ended_error())
            }
        }
    }

    fn ended_error(&self) -> Error {
        Error::Unreachable {
            host: self.host.clone(),
            reason: "the event stream has ended".into(),
        }
    }
}

impl Iterator for BlockingEvents {
    type Item = Result<ContainerEvent, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.ended {
            return None;
        }
        let item = self.runtime.block_on(self.stream.next());
        self.ended = !matches!(item, Some(Ok(_)));
        item
    }
}

impl std::fmt::Debug for BlockingEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingEvents")
            .field("host", &self.host)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

fn runtime() -> Result<Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)
}
