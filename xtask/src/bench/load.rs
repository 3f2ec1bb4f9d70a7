//! The data-plane load: a TCP server that accepts and drops, a client that
//! opens (and resets) as many connections as it can in a bounded time, and a
//! stand-in Docker daemon for `dockfw-nft watch`.

use anyhow::{Result, anyhow, bail};
use dockfw_e2e::netns::{NetnsThread, spawn_in_netns};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Never more connections than this per measurement, whatever the rate.
const MAX_CONNECTIONS: u64 = 2_000_000;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Accepts and closes connections until dropped.
#[derive(Debug)]
pub struct Server {
    stop: Arc<AtomicBool>,
    /// The listening socket, to wake the blocked accept when stopping.
    listener: Option<TcpListener>,
    thread: Option<NetnsThread<()>>,
}

/// Accept queue: long enough that a server thread briefly starved of CPU by
/// the clients (two cores) never makes the kernel drop SYNs, which would
/// cost a 1 s retransmission each.
const BACKLOG: i32 = 4096;

fn listen(addr: SocketAddr) -> Result<TcpListener> {
    use nix::sys::socket::{
        AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, bind, setsockopt, socket, sockopt,
    };
    let SocketAddr::V4(v4) = addr else {
        bail!("IPv4 only")
    };
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    bind(fd.as_raw_fd(), &SockaddrIn::from(v4))?;
    nix::sys::socket::listen(&fd, Backlog::new(BACKLOG)?)?;
    Ok(TcpListener::from(fd))
}

impl Server {
    pub fn start(netns: &Path, addr: SocketAddr) -> Result<Server> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = spawn_in_netns(netns, move || {
            let listener = match listen(addr) {
                Ok(l) => l,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(listener.try_clone()));
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => drop(stream),
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
            }
        })?;
        let listener = ready_rx
            .recv()
            .map_err(|_| anyhow!("the server thread ended"))?
            .map_err(|e| anyhow!("cannot listen on {addr}: {e}"))??;
        Ok(Server {
            stop,
            listener: Some(listener),
            thread: Some(thread),
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(listener) = self.listener.take() {
            // Wakes the blocked accept (Linux returns EINVAL from it).
            let _ = nix::sys::socket::shutdown(listener.as_raw_fd(), nix::sys::socket::Shutdown::Read);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// New connections per second from `threads` client threads in `netns` to
/// `target` for `duration` (bounded by [`MAX_CONNECTIONS`]); and how many
/// attempts failed. Each connection is reset at once (linger 0), so client
/// ports are never stuck in TIME_WAIT.
pub fn connection_rate(
    netns: &Path,
    target: SocketAddr,
    duration: Duration,
    threads: usize,
) -> Result<(f64, u64)> {
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..threads {
        handles.push(spawn_in_netns(netns, move || {
            let (mut ok, mut failed) = (0u64, 0u64);
            while started.elapsed() < duration && ok < MAX_CONNECTIONS / threads as u64 {
                match TcpStream::connect_timeout(&target, CONNECT_TIMEOUT) {
                    Ok(stream) => {
                        let linger = nix::libc::linger {
                            l_onoff: 1,
                            l_linger: 0,
                        };
                        let _ =
                            nix::sys::socket::setsockopt(&stream, nix::sys::socket::sockopt::Linger, &linger);
                        ok += 1;
                    }
                    Err(_) => failed += 1,
                }
            }
            (ok, failed)
        })?);
    }
    let (mut ok, mut failed) = (0, 0);
    for handle in handles {
        let (o, f) = handle.join()?;
        ok += o;
        failed += f;
    }
    Ok((ok as f64 / started.elapsed().as_secs_f64(), failed))
}

/// A stand-in Docker daemon on a unix socket, enough for `dockfw-nft watch`:
/// `/version`, no containers, an event stream that stays open.
#[derive(Debug)]
pub struct FakeDocker {
    pub socket: PathBuf,
    stop: Arc<AtomicBool>,
}

impl FakeDocker {
    pub fn start(socket: &Path) -> Result<FakeDocker> {
        let _ = std::fs::remove_file(socket);
        let listener = UnixListener::bind(socket)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { return };
                let flag = Arc::clone(&flag);
                std::thread::spawn(move || answer(stream, &flag));
            }
        });
        Ok(FakeDocker {
            socket: socket.to_path_buf(),
            stop,
        })
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }
}

impl Drop for FakeDocker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = UnixStream::connect(&self.socket);
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn answer(stream: UnixStream, stop: &AtomicBool) {
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
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
        while !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = out.shutdown(std::net::Shutdown::Both);
        return;
    }
    let body = if path.ends_with("/version") {
        r#"{"Version":"20.10.0","ApiVersion":"1.41","MinAPIVersion":"1.12"}"#
    } else {
        "[]"
    };
    let _ = write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}
