//! Traffic beyond single probes: TCP connections held open across firewall
//! changes, probes repeated in the background while something happens, and
//! echo servers inside the client namespaces (for connections containers
//! open).

use crate::error::{LabError, Result, io_err};
use crate::netns::{self, NetnsThread};
use crate::probe::{self, Probe, ProbeResult, Proto};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How often the background loops look at their stop flag.
const POLL: Duration = Duration::from_millis(20);

/// An established TCP connection from a client namespace, kept open so
/// that it can exchange data again later (e.g. after a firewall change).
#[derive(Debug)]
pub struct HeldConnection {
    probe: Probe,
    stream: TcpStream,
}

impl HeldConnection {
    /// Opens the connection (the socket lives in `netns` for good).
    pub(crate) fn open(netns: &Path, p: Probe, timeout: Duration) -> Result<Self> {
        if p.proto != Proto::Tcp {
            return Err(LabError::Probe {
                probe: p.to_string(),
                source: io::Error::other("only TCP connections can be held open"),
            });
        }
        let local = move |source: io::Error| LabError::Probe {
            probe: p.to_string(),
            source,
        };
        let connected = netns::in_netns(netns, move || -> io::Result<_> {
            let dst = SocketAddr::new(p.dst, p.port);
            let sock = Socket::new(Domain::for_address(dst), Type::STREAM, Some(Protocol::TCP))?;
            sock.bind(&SockAddr::from(SocketAddr::new(p.src, 0)))?;
            Ok(sock.connect_timeout(&dst.into(), timeout).map(|()| sock))
        })?
        .map_err(local)?;
        match connected {
            Ok(sock) => Ok(Self {
                probe: p,
                stream: sock.into(),
            }),
            Err(e) => match probe::classify(&e) {
                Some(outcome) => Err(LabError::NotOpen {
                    probe: p.to_string(),
                    outcome,
                }),
                None => Err(local(e)),
            },
        }
    }

    /// The connection's endpoints.
    pub fn probe(&self) -> Probe {
        self.probe
    }

    /// Sends a line and waits up to `timeout` for it to come back (the
    /// peer must echo): `Open` when it does, `TimedOut` when nothing comes,
    /// `Refused` when the connection was reset or closed.
    pub fn exchange(&mut self, timeout: Duration) -> Result<ProbeResult> {
        let local = |source: io::Error| LabError::Probe {
            probe: self.probe.to_string(),
            source,
        };
        // A reset or closed connection is "refused" here.
        let fate = |e: io::Error| match e.kind() {
            io::ErrorKind::UnexpectedEof | io::ErrorKind::BrokenPipe => Ok(ProbeResult::Refused),
            _ => probe::classify(&e).ok_or_else(|| local(e)),
        };
        let message = b"dockfw-lab held connection\n";
        self.stream.set_read_timeout(Some(timeout)).map_err(local)?;
        if let Err(e) = self.stream.write_all(message) {
            return fate(e);
        }
        let mut echoed = vec![0u8; message.len()];
        match self.stream.read_exact(&mut echoed) {
            Ok(()) if echoed == message => Ok(ProbeResult::Open),
            Ok(()) => Err(local(io::Error::other("the peer sent something else back"))),
            Err(e) => fate(e),
        }
    }
}

/// Probes repeated in the background, each in its own thread, until
/// [`ProbeLoop::stop`].
#[derive(Debug)]
pub struct ProbeLoop {
    stop: Arc<AtomicBool>,
    started: Instant,
    threads: Vec<(Probe, NetnsThread<Result<Vec<Timed>>>)>,
}

/// An outcome and when its probe started.
type Timed = (Duration, ProbeResult);

impl ProbeLoop {
    pub(crate) fn start(
        probes: &[Probe],
        netns_of: impl Fn(Probe) -> std::path::PathBuf,
        timeout: Duration,
        pause: Duration,
    ) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let mut threads = Vec::with_capacity(probes.len());
        for &p in probes {
            let stopping = Arc::clone(&stop);
            let thread = netns::spawn_in_netns(&netns_of(p), move || {
                let mut seen = Vec::new();
                while !stopping.load(Ordering::Relaxed) {
                    let at = started.elapsed();
                    seen.push((at, probe::probe_here(&p, timeout)?));
                    std::thread::sleep(pause);
                }
                Ok(seen)
            });
            match thread {
                Ok(thread) => threads.push((p, thread)),
                Err(e) => {
                    // Do not leave the loops started so far running.
                    Self {
                        stop,
                        started,
                        threads,
                    }
                    .stop()
                    .ok();
                    return Err(e);
                }
            }
        }
        Ok(Self {
            stop,
            started,
            threads,
        })
    }

    /// When the loops started (the origin of [`Tally::at`]).
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Stops the loops (each finishes its current probe) and returns what
    /// every probe saw, in the order the probes were given.
    pub fn stop(self) -> Result<Vec<Tally>> {
        self.stop.store(true, Ordering::Relaxed);
        self.threads
            .into_iter()
            .map(|(probe, thread)| {
                let (at, outcomes) = thread.join()??.into_iter().unzip();
                Ok(Tally { probe, outcomes, at })
            })
            .collect()
    }
}

/// Every outcome one looping probe saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    /// The probe.
    pub probe: Probe,
    /// What each repetition saw.
    pub outcomes: Vec<ProbeResult>,
    /// When each repetition started, from [`ProbeLoop::started`].
    pub at: Vec<Duration>,
}

impl Tally {
    /// How many repetitions saw `outcome`.
    pub fn count(&self, outcome: ProbeResult) -> usize {
        self.outcomes.iter().filter(|&&o| o == outcome).count()
    }

    /// Whether every repetition saw `outcome` (and there was at least one).
    pub fn all(&self, outcome: ProbeResult) -> bool {
        !self.outcomes.is_empty() && self.count(outcome) == self.outcomes.len()
    }
}

impl fmt::Display for Tally {
    /// Counts per outcome; `{:#}` also lists when each outcome other
    /// than the most common one started.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} probes, {} Open, {} Refused, {} TimedOut",
            self.probe,
            self.outcomes.len(),
            self.count(ProbeResult::Open),
            self.count(ProbeResult::Refused),
            self.count(ProbeResult::TimedOut)
        )?;
        let usual = [ProbeResult::Open, ProbeResult::Refused, ProbeResult::TimedOut]
            .into_iter()
            .max_by_key(|&o| self.count(o));
        if f.alternate() {
            for (at, outcome) in self.at.iter().zip(&self.outcomes) {
                if Some(*outcome) != usual {
                    write!(f, "; {outcome} at {at:?}")?;
                }
            }
        }
        Ok(())
    }
}

/// A TCP or UDP echo server running on a thread inside a lab namespace
/// (the far end of connections containers open). Stops when dropped.
#[derive(Debug)]
pub struct EchoServer {
    addr: SocketAddr,
    proto: Proto,
    served: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<NetnsThread<()>>,
}

impl EchoServer {
    pub(crate) fn start(netns: &Path, addr: SocketAddr, proto: Proto) -> Result<Self> {
        let what = format!("{proto} echo server on {addr}");
        // Bound on the namespace's thread; the result comes back at once so
        // that a bad address is reported here, not lost in the thread.
        let (bound_tx, bound_rx) = std::sync::mpsc::channel();
        let served = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = netns::spawn_in_netns(netns, {
            let (served, stop) = (Arc::clone(&served), Arc::clone(&stop));
            move || match proto {
                Proto::Tcp => match TcpListener::bind(addr).and_then(|l| {
                    l.set_nonblocking(true)?;
                    Ok(l)
                }) {
                    Ok(listener) => {
                        let _ = bound_tx.send(Ok(()));
                        serve_tcp(&listener, &served, &stop);
                    }
                    Err(e) => drop(bound_tx.send(Err(e))),
                },
                Proto::Udp => match UdpSocket::bind(addr).and_then(|s| {
                    s.set_read_timeout(Some(POLL))?;
                    Ok(s)
                }) {
                    Ok(socket) => {
                        let _ = bound_tx.send(Ok(()));
                        serve_udp(&socket, &served, &stop);
                    }
                    Err(e) => drop(bound_tx.send(Err(e))),
                },
            }
        })?;
        let bound = bound_rx
            .recv()
            .unwrap_or_else(|_| Err(io::Error::other("server thread ended")));
        let server = Self {
            addr,
            proto,
            served,
            stop,
            thread: Some(thread),
        };
        bound.map_err(io_err(what))?;
        Ok(server)
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its protocol.
    pub fn proto(&self) -> Proto {
        self.proto
    }

    /// TCP connections accepted or UDP datagrams echoed so far.
    pub fn served(&self) -> usize {
        self.served.load(Ordering::Relaxed)
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve_tcp(listener: &TcpListener, served: &AtomicUsize, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((mut stream, _)) => {
                served.fetch_add(1, Ordering::Relaxed);
                std::thread::spawn(move || {
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                    let mut buf = [0u8; 4096];
                    while let Ok(n @ 1..) = stream.read(&mut buf) {
                        if stream.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

fn serve_udp(socket: &UdpSocket, served: &AtomicUsize, stop: &AtomicBool) {
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        if let Ok((n, peer)) = socket.recv_from(&mut buf) {
            if socket.send_to(&buf[..n], peer).is_ok() {
                served.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
