//! A stand-in Docker daemon on a unix socket, for the tests of `watch` and
//! of container rules: it answers the few requests dockfw makes (version,
//! the container list, empty unless given, an event stream that stays open
//! until the stand-in stops).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A stand-in Docker daemon: `/version`, a container list (empty unless
/// given), and an event stream held open until [`FakeDocker::stop`].
pub struct FakeDocker {
    socket: PathBuf,
    stopped: Arc<AtomicBool>,
}

/// One running container as `GET /containers/json` lists it: a name, its
/// labels, its addresses (one network each, IPv4 and IPv6 mixed), no
/// published ports.
pub fn container_json(name: &str, labels: &[(&str, &str)], addresses: &[&str]) -> String {
    publishing_json(name, labels, addresses, &[])
}

/// Like [`container_json`], publishing TCP ports `(host port, container
/// port)` on every address (0.0.0.0 and ::, as Docker reports `-p H:C`).
pub fn publishing_json(
    name: &str,
    labels: &[(&str, &str)],
    addresses: &[&str],
    ports: &[(u16, u16)],
) -> String {
    let ports: Vec<String> = ports
        .iter()
        .flat_map(|(host, container)| {
            ["0.0.0.0", "::"].map(|ip| {
                format!(
                    "{{\"IP\":\"{ip}\",\"PrivatePort\":{container},\"PublicPort\":{host},\"Type\":\"tcp\"}}"
                )
            })
        })
        .collect();
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("\"{k}\":\"{v}\"")).collect();
    let (v4, v6): (Vec<&str>, Vec<&str>) = addresses.iter().partition(|a| !a.contains(':'));
    let networks: Vec<String> = (0..v4.len().max(v6.len()))
        .map(|i| {
            format!(
                "\"net{i}\":{{\"IPAddress\":\"{}\",\"GlobalIPv6Address\":\"{}\"}}",
                v4.get(i).unwrap_or(&""),
                v6.get(i).unwrap_or(&"")
            )
        })
        .collect();
    format!(
        "{{\"Id\":\"{name}0123456789\",\"Names\":[\"/{name}\"],\"Labels\":{{{}}},\"Ports\":[{}],\"NetworkSettings\":{{\"Networks\":{{{}}}}}}}",
        labels.join(","),
        ports.join(","),
        networks.join(",")
    )
}

impl FakeDocker {
    pub fn start(socket: &Path) -> Self {
        Self::with_containers(socket, &[])
    }

    /// A stand-in listing these containers (each from [`container_json`]).
    pub fn with_containers(socket: &Path, containers: &[String]) -> Self {
        let listener = UnixListener::bind(socket).unwrap();
        let stopped = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stopped);
        let list = Arc::new(format!("[{}]", containers.join(",")));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { return };
                let flag = Arc::clone(&flag);
                let list = Arc::clone(&list);
                std::thread::spawn(move || answer(stream, &flag, &list));
            }
        });
        Self {
            socket: socket.to_path_buf(),
            stopped,
        }
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Ends every event stream and refuses new connections, as a stopped daemon.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag, then remove the socket.
        let _ = UnixStream::connect(&self.socket);
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl Drop for FakeDocker {
    fn drop(&mut self) {
        self.stop();
    }
}

fn answer(stream: UnixStream, stopped: &AtomicBool, list: &str) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap_or(0) > 2 {
        line.clear();
    }
    let path = request.split_whitespace().nth(1).unwrap_or("");
    let mut out = stream;
    if path.contains("/events") {
        let _ = write!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        let _ = out.flush();
        while !stopped.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = out.shutdown(std::net::Shutdown::Both);
        return;
    }
    let body = if path == "/version" {
        r#"{"Version":"20.10.0","ApiVersion":"1.41","MinAPIVersion":"1.12"}"#
    } else if path.contains("/containers/json") {
        list
    } else {
        "[]"
    };
    let _ = write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}
