//! Which Docker daemon to talk to, and how.

use crate::Error;

/// Docker's own default: the daemon's socket on this machine.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// Port of Docker's plain-HTTP API when a `tcp://` host names none.
const DEFAULT_TCP_PORT: u16 = 2375;

/// The Docker host to use: `explicit` (e.g. the CLI's `--docker-host`) if
/// given and not empty, else env `DOCKER_HOST` if set and not empty, else
/// [`DEFAULT_HOST`].
pub fn resolve_host(explicit: Option<&str>) -> String {
    choose_host(explicit, std::env::var("DOCKER_HOST").ok())
}

fn choose_host(explicit: Option<&str>, env: Option<String>) -> String {
    let non_empty = |s: &str| !s.trim().is_empty();
    explicit
        .filter(|h| non_empty(h))
        .map(str::to_owned)
        .or_else(|| env.filter(|h| non_empty(h)))
        .unwrap_or_else(|| DEFAULT_HOST.to_owned())
}

/// How to reach a daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// A unix socket path.
    Unix(String),
    /// Plain HTTP to `host:port`.
    Tcp(String),
}

/// Reads a Docker host string: `unix://PATH`, an absolute socket path,
/// `tcp://HOST[:PORT]` or `http://HOST[:PORT]` (port 2375 when none).
pub(crate) fn parse(host: &str) -> Result<Endpoint, Error> {
    let invalid = |reason: &str| Error::InvalidHost {
        host: host.into(),
        reason: reason.into(),
    };
    let trimmed = host.trim();
    if let Some(path) = trimmed.strip_prefix("unix://") {
        if path.is_empty() {
            return Err(invalid("no socket path after unix://"));
        }
        return Ok(Endpoint::Unix(path.into()));
    }
    if trimmed.starts_with('/') {
        return Ok(Endpoint::Unix(trimmed.into()));
    }
    let Some((scheme, rest)) = trimmed.split_once("://") else {
        return Err(invalid(
            "expected unix:///path/to/docker.sock, an absolute socket path, or tcp://HOST:PORT",
        ));
    };
    match scheme {
        "tcp" | "http" => {}
        "https" => {
            return Err(invalid(
                "TLS is not supported; use the unix socket or plain tcp://",
            ));
        }
        _ => {
            return Err(invalid(&format!(
                "{scheme}:// is not supported; use unix:// or tcp://"
            )));
        }
    }
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() || authority.contains('/') || authority.contains('@') {
        return Err(invalid("expected tcp://HOST:PORT"));
    }
    let has_port = match authority.strip_prefix('[') {
        Some(bracketed) => bracketed.contains("]:"),
        None => authority.contains(':'),
    };
    Ok(Endpoint::Tcp(if has_port {
        authority.into()
    } else {
        format!("{authority}:{DEFAULT_TCP_PORT}")
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_hosts() {
        assert_eq!(
            parse("unix:///var/run/docker.sock").unwrap(),
            Endpoint::Unix("/var/run/docker.sock".into())
        );
        assert_eq!(
            parse("/run/dockfw-lab/x/docker.sock").unwrap(),
            Endpoint::Unix("/run/dockfw-lab/x/docker.sock".into())
        );
        assert!(matches!(parse("unix://"), Err(Error::InvalidHost { .. })));
    }

    #[test]
    fn tcp_hosts() {
        assert_eq!(
            parse("tcp://127.0.0.1:2375").unwrap(),
            Endpoint::Tcp("127.0.0.1:2375".into())
        );
        assert_eq!(
            parse("http://localhost:23750/").unwrap(),
            Endpoint::Tcp("localhost:23750".into())
        );
        assert_eq!(
            parse("tcp://docker").unwrap(),
            Endpoint::Tcp("docker:2375".into())
        );
        assert_eq!(parse("tcp://[::1]").unwrap(), Endpoint::Tcp("[::1]:2375".into()));
        assert_eq!(parse("tcp://[::1]:99").unwrap(), Endpoint::Tcp("[::1]:99".into()));
    }

    #[test]
    fn unsupported_hosts_say_why() {
        for (host, why) in [
            ("https://docker:2376", "TLS is not supported"),
            ("ssh://me@docker", "ssh:// is not supported"),
            ("npipe:////./pipe/docker_engine", "npipe:// is not supported"),
            ("docker.sock", "expected unix://"),
            ("tcp://", "expected tcp://HOST:PORT"),
            ("tcp://host:1/path", "expected tcp://HOST:PORT"),
        ] {
            let e = parse(host).unwrap_err();
            assert!(matches!(e, Error::InvalidHost { .. }), "{host}: {e}");
            assert!(e.to_string().contains(why), "{host}: {e}");
        }
    }

    #[test]
    fn explicit_host_then_env_then_default() {
        let env = || Some("unix:///env.sock".to_string());
        assert_eq!(choose_host(Some("unix:///x.sock"), env()), "unix:///x.sock");
        assert_eq!(choose_host(None, env()), "unix:///env.sock");
        assert_eq!(choose_host(Some(""), env()), "unix:///env.sock");
        assert_eq!(choose_host(None, Some(" ".into())), DEFAULT_HOST);
        assert_eq!(choose_host(None, None), DEFAULT_HOST);
        assert_eq!(resolve_host(Some("unix:///x.sock")), "unix:///x.sock");
    }
}
