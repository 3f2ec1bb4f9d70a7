//! Docker that is not there, refuses, or hangs: a prompt `Unreachable`, and
//! version negotiation with a stand-in daemon. Needs no Docker.

use dockfw_docker::{Client, Error, list_containers, subscribe};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_millis(1500);
/// A timeout no failure that happens "at once" comes near, however slow the
/// machine (a VM under emulation is a legitimate one): these tests assert
/// that the error did not wait for the timeout, not how fast it came.
const LONG: Duration = Duration::from_secs(60);

/// Asserts that `start` was not long ago enough to have waited for [`LONG`].
fn did_not_wait(start: Instant) {
    assert!(start.elapsed() < LONG / 2, "waited {:?}", start.elapsed());
}

/// A fresh directory for sockets, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("dockfw-docker-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn socket(&self) -> PathBuf {
        self.0.join("docker.sock")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn assert_unreachable(result: Result<impl std::fmt::Debug, Error>, host: &str, reason: &str) {
    match result {
        Err(e @ Error::Unreachable { .. }) => {
            let text = e.to_string();
            assert!(text.contains(host), "names the host: {text}");
            assert!(text.contains(reason), "says why ({reason}): {text}");
            assert!(text.contains("is dockerd running?"), "gives a hint: {text}");
        }
        other => panic!("want Unreachable, got {other:?}"),
    }
}

#[test]
fn missing_socket_fails_at_once() {
    let dir = TempDir::new("missing");
    let host = format!("unix://{}", dir.socket().display());
    let start = Instant::now();
    assert_unreachable(list_containers(Some(&host), LONG), &host, "no socket at");
    assert_unreachable(subscribe(Some(&host), LONG), &host, "no socket at");
    // A bare path works as a host too.
    let bare = dir.socket().display().to_string();
    assert_unreachable(list_containers(Some(&bare), LONG), &bare, "no socket at");
    did_not_wait(start);
}

#[test]
fn refused_connection_fails_at_once() {
    let dir = TempDir::new("refused");
    // A socket file nobody listens on any more.
    drop(UnixListener::bind(dir.socket()).unwrap());
    let host = format!("unix://{}", dir.socket().display());
    let start = Instant::now();
    assert_unreachable(list_containers(Some(&host), LONG), &host, "Connection refused");
    did_not_wait(start);
}

#[test]
fn refused_tcp_fails_at_once() {
    // Port 1 on loopback: nothing listens there.
    let host = "tcp://127.0.0.1:1";
    let start = Instant::now();
    assert_unreachable(list_containers(Some(host), LONG), host, "Connection refused");
    did_not_wait(start);
}

#[test]
fn hung_daemon_fails_within_the_timeout() {
    let dir = TempDir::new("hung");
    // Listens (so connecting succeeds) but never answers.
    let _listener = UnixListener::bind(dir.socket()).unwrap();
    let host = format!("unix://{}", dir.socket().display());
    for timeout in [Duration::from_millis(300), TIMEOUT] {
        let start = Instant::now();
        assert_unreachable(list_containers(Some(&host), timeout), &host, "no answer within");
        // It waited for the timeout, and gave up (the error above) rather
        // than hang: how much later it returned is the machine's business.
        let took = start.elapsed();
        assert!(took >= timeout, "timeout {timeout:?}, took {took:?}");
    }
    let start = Instant::now();
    assert_unreachable(subscribe(Some(&host), TIMEOUT), &host, "no answer within 1.5s");
    assert!(start.elapsed() >= TIMEOUT);
}

#[test]
fn invalid_hosts_are_not_unreachable() {
    let e = list_containers(Some("ssh://me@docker"), TIMEOUT).unwrap_err();
    assert!(matches!(e, Error::InvalidHost { .. }), "{e:?}");
}

/// A stand-in daemon on a unix socket: answers `/version` with `api`, and
/// `GET /v{api}/containers/json` with `list`; records request lines.
fn fake_daemon(socket: &Path, api: &'static str, list: &'static str) -> Arc<Mutex<Vec<String>>> {
    let listener = UnixListener::bind(socket).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            answer(stream, api, list, &record);
        }
    });
    seen
}

fn answer(stream: UnixStream, api: &str, list: &str, record: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    reader.read_line(&mut request_line).unwrap();
    // Skip the headers (GET requests have no body).
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap_or(0) > 2 {
        line.clear();
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("").to_string();
    record.lock().unwrap().push(path.clone());
    let (status, body) = if path == "/version" {
        (
            "200 OK",
            format!(r#"{{"Version":"99.0","ApiVersion":"{api}","MinAPIVersion":"1.24"}}"#),
        )
    } else if path == format!("/v{api}/containers/json") || path == "/v1.53/containers/json" {
        ("200 OK", list.to_string())
    } else {
        (
            "400 Bad Request",
            r#"{"message":"unexpected request"}"#.to_string(),
        )
    };
    let mut out = stream;
    let _ = write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

const ONE_CONTAINER: &str = r#"[{"Id":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "Names":["/web"],"Labels":{"a":"b"},
    "Ports":[{"IP":"0.0.0.0","PrivatePort":80,"PublicPort":8080,"Type":"tcp"}],
    "NetworkSettings":{"Networks":{"bridge":{"IPAddress":"172.17.0.2","GlobalIPv6Address":""}}}}]"#;

#[test]
fn requests_use_the_daemons_api_version() {
    let dir = TempDir::new("api141");
    let seen = fake_daemon(&dir.socket(), "1.41", ONE_CONTAINER);
    let host = format!("unix://{}", dir.socket().display());
    let list = list_containers(Some(&host), TIMEOUT).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].name, "web");
    assert_eq!(list[0].ports[0].host_port, 8080);
    assert_eq!(*seen.lock().unwrap(), ["/version", "/v1.41/containers/json"]);
}

#[test]
fn a_newer_daemon_is_asked_in_the_clients_version() {
    let dir = TempDir::new("api199");
    let seen = fake_daemon(&dir.socket(), "1.99", ONE_CONTAINER);
    let host = format!("unix://{}", dir.socket().display());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (version, list) = runtime.block_on(async {
        let client = Client::connect(Some(&host), TIMEOUT).await.unwrap();
        assert_eq!(client.host(), host);
        (client.api_version(), client.containers().await.unwrap())
    });
    assert_eq!(list.len(), 1);
    // Never newer than the client knows (bollard's models).
    let newest = bollard::API_DEFAULT_VERSION;
    assert_eq!(
        version,
        format!("{}.{}", newest.major_version, newest.minor_version)
    );
    assert_eq!(
        *seen.lock().unwrap(),
        ["/version".to_string(), format!("/v{version}/containers/json")]
    );
}

#[test]
fn an_error_answer_is_an_api_error() {
    let dir = TempDir::new("apierr");
    // Answers /version and the list; anything else gets a 400.
    let _seen = fake_daemon(&dir.socket(), "1.40", ONE_CONTAINER);
    let host = format!("unix://{}", dir.socket().display());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = Client::connect(Some(&host), TIMEOUT).await.unwrap();
        assert_eq!(client.api_version(), "1.40");
    });
    // The stand-in does not serve events.
    let mut events = subscribe(Some(&host), TIMEOUT).unwrap();
    let e = events.next().expect("one item").unwrap_err();
    assert!(matches!(e, Error::Api { .. }), "{e:?}");
    assert!(e.to_string().contains("unexpected request (HTTP 400)"), "{e}");
    assert!(events.next().is_none(), "the stream ends after its error");
}
