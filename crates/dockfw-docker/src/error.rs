//! What can go wrong talking to Docker.

use std::time::Duration;

/// An error from this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Docker could not be reached: no socket, connection refused or reset,
    /// no answer within the timeout, or an event stream that ended. The CLI
    /// treats this one apart (exit code 4, or a warning at boot).
    #[error(
        "cannot reach Docker at {host}: {reason} \
         (is dockerd running? is DOCKER_HOST or --docker-host right?)"
    )]
    Unreachable {
        /// The host tried, e.g. `unix:///var/run/docker.sock`.
        host: String,
        /// What happened.
        reason: String,
    },
    /// The Docker host string cannot be used.
    #[error("invalid Docker host {host:?}: {reason}")]
    InvalidHost {
        /// The host as given.
        host: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// Docker answered, but with an error or something unreadable.
    #[error("Docker at {host} failed the request: {message}")]
    Api {
        /// The host asked.
        host: String,
        /// Docker's message, or what could not be read.
        message: String,
    },
    /// The runtime for the blocking functions could not be built.
    #[error("cannot start the I/O runtime for Docker: {0}")]
    Runtime(#[source] std::io::Error),
}

impl Error {
    /// Whether this is [`Error::Unreachable`].
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Unreachable { .. })
    }

    pub(crate) fn timed_out(host: &str, timeout: Duration) -> Self {
        Self::Unreachable {
            host: host.into(),
            reason: format!("no answer within {}", seconds(timeout)),
        }
    }

    /// Sorts a bollard error: transport failures mean Docker is unreachable,
    /// answers that are errors or unreadable are [`Error::Api`].
    pub(crate) fn from_bollard(host: &str, timeout: Duration, error: bollard::errors::Error) -> Self {
        use bollard::errors::Error as B;
        let host = host.to_string();
        match error {
            B::RequestTimeoutError => Self::timed_out(&host, timeout),
            B::SocketNotFoundError(path) => Self::Unreachable {
                host,
                reason: format!("no socket at {path}"),
            },
            B::DockerResponseServerError { status_code, message } => Self::Api {
                host,
                message: format!("{} (HTTP {status_code})", message.trim()),
            },
            B::JsonDataError { .. }
            | B::JsonSerdeError { .. }
            | B::APIVersionParseError { .. }
            | B::StrParseError { .. } => Self::Api {
                host,
                message: format!("unreadable answer: {}", chain(&error)),
            },
            B::URLEncodedError { .. }
            | B::URLParseError { .. }
            | B::InvalidURIError { .. }
            | B::InvalidURIPartsError { .. }
            | B::UnsupportedURISchemeError { .. } => Self::InvalidHost {
                host,
                reason: chain(&error),
            },
            // Connect, I/O and HTTP transport failures: the root cause
            // ("Connection refused (os error 111)") says it best.
            _ => Self::Unreachable {
                host,
                reason: root_cause(&error),
            },
        }
    }
}

/// An error and its sources, e.g. "client error (Connect): Connection refused (os error 111)".
fn chain(error: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        // Transparent wrappers repeat their source's text.
        if !parts.last().is_some_and(|last| last.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

/// The innermost source's text.
fn root_cause(error: &dyn std::error::Error) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// "5s", "1.5s", "250ms".
fn seconds(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_message_names_host_and_hint() {
        let e = Error::timed_out("unix:///run/x.sock", Duration::from_millis(1500));
        let text = e.to_string();
        assert!(e.is_unreachable());
        assert!(text.contains("unix:///run/x.sock"), "{text}");
        assert!(text.contains("no answer within 1.5s"), "{text}");
        assert!(text.contains("is dockerd running?"), "{text}");
        assert!(text.contains("DOCKER_HOST"), "{text}");
    }

    #[test]
    fn server_errors_are_api_errors() {
        let e = Error::from_bollard(
            "unix:///s",
            Duration::from_secs(1),
            bollard::errors::Error::DockerResponseServerError {
                status_code: 400,
                message: "client version 1.53 is too new\n".into(),
            },
        );
        assert!(!e.is_unreachable());
        assert_eq!(
            e.to_string(),
            "Docker at unix:///s failed the request: client version 1.53 is too new (HTTP 400)"
        );
    }

    #[test]
    fn transport_errors_give_their_root_cause() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let e = Error::from_bollard(
            "unix:///s",
            Duration::from_secs(1),
            bollard::errors::Error::IOError { err: refused },
        );
        assert!(e.is_unreachable());
        assert!(e.to_string().contains(": connection refused ("), "{e}");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(seconds(Duration::from_secs(5)), "5s");
        assert_eq!(seconds(Duration::from_millis(250)), "250ms");
        assert_eq!(seconds(Duration::from_millis(2500)), "2.5s");
    }
}
