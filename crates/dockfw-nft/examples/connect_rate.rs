//! A bounded TCP connect-rate load for measuring the data plane by hand
//! (`examples/dataplane.sh` runs it in network namespaces).
//!
//! `connect_rate server ADDR:PORT` accepts and closes connections forever;
//! `connect_rate client ADDR:PORT SECONDS THREADS` opens connections for
//! SECONDS (at most 60) from THREADS threads and prints the rate of completed
//! handshakes. Each client socket closes with a reset (linger 0), so no
//! TIME_WAIT exhausts the client's ports and every connection is new to
//! conntrack on the router.
//!
//! `connect_rate syn NET DST:PORT SECONDS` sends TCP SYNs, each from another
//! address of NET (`ADDR/LEN`) and source port (a new connection for conntrack), as fast as it can for
//! SECONDS (at most 60), over a raw socket (root): like `hping3 --flood -S`.
//! Count what arrives at the server, e.g. its interface's rx packets.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["server", addr] => serve(addr.parse().expect("ADDR:PORT")),
        ["client", addr, seconds, threads] => load(
            addr.parse().expect("ADDR:PORT"),
            Duration::from_secs(seconds.parse::<u64>().expect("SECONDS").min(60)),
            threads.parse().expect("THREADS"),
        ),
        ["syn", source, addr, seconds] => syn_flood(
            source.parse().expect("NET"),
            addr.parse().expect("DST:PORT"),
            Duration::from_secs(seconds.parse::<u64>().expect("SECONDS").min(60)),
        ),
        _ => {
            eprintln!(
                "usage: connect_rate server ADDR:PORT | client ADDR:PORT SECONDS THREADS | syn NET DST:PORT SECONDS"
            );
            std::process::exit(2);
        }
    }
}

fn serve(addr: SocketAddr) {
    let listener = TcpListener::bind(addr).expect("bind");
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let listener = listener.try_clone().expect("clone listener");
            std::thread::spawn(move || {
                loop {
                    // Accept and close at once: only the handshake is measured.
                    let _ = listener.accept();
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.join();
    }
}

/// Closes with a reset instead of a FIN, so no TIME_WAIT is left behind.
fn reset_on_close(stream: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a correctly sized `linger` value.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

fn load(addr: SocketAddr, duration: Duration, threads: usize) {
    let done = Arc::new(AtomicBool::new(false));
    let connected = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..threads.max(1))
        .map(|_| {
            let (done, connected, failed) = (done.clone(), connected.clone(), failed.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                        Ok(stream) => {
                            reset_on_close(&stream);
                            connected.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(duration);
    done.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.join();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let connected = connected.load(Ordering::Relaxed);
    println!(
        "{:.0} connections/s ({connected} in {elapsed:.2} s, {} failed)",
        connected as f64 / elapsed,
        failed.load(Ordering::Relaxed)
    );
}

/// The one's-complement sum of `bytes` (as big-endian 16-bit words) onto `sum`.
fn ones_complement_sum(mut sum: u32, bytes: &[u8]) -> u32 {
    for chunk in bytes.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    sum
}

fn syn_flood(sources: Ipv4Net, target: std::net::SocketAddrV4, duration: Duration) {
    // SAFETY: plain socket creation; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
    assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
    let destination = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(*target.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    let hosts = 1u32 << (32 - sources.1);
    let start = Instant::now();
    let mut sent: u64 = 0;
    let mut i: u64 = 0;
    while start.elapsed() < duration {
        for _ in 0..1000 {
            i += 1;
            // Every packet a new (source address, source port): a new connection.
            let source = std::net::Ipv4Addr::from(u32::from(sources.0) + (i % u64::from(hosts)) as u32);
            let port = 1024 + ((i / u64::from(hosts)) % 64000) as u16;
            let mut packet = [0u8; 40];
            packet[0] = 0x45; // IPv4, 5-word header
            packet[2..4].copy_from_slice(&40u16.to_be_bytes());
            packet[8] = 64; // TTL
            packet[9] = libc::IPPROTO_TCP as u8;
            packet[12..16].copy_from_slice(&source.octets());
            packet[16..20].copy_from_slice(&target.ip().octets());
            let header_sum = fold(ones_complement_sum(0, &packet[..20]));
            packet[10..12].copy_from_slice(&(!header_sum).to_be_bytes());
            let segment = &mut packet[20..];
            segment[0..2].copy_from_slice(&port.to_be_bytes());
            segment[2..4].copy_from_slice(&target.port().to_be_bytes());
            segment[4..8].copy_from_slice(&(i as u32).to_be_bytes());
            segment[12] = 5 << 4; // header length: 5 words
            segment[13] = 0x02; // SYN
            segment[14..16].copy_from_slice(&64240u16.to_be_bytes());
            let mut sum = ones_complement_sum(0, &source.octets());
            sum = ones_complement_sum(sum, &target.ip().octets());
            sum += u32::from(libc::IPPROTO_TCP as u16) + segment.len() as u32;
            let sum = fold(ones_complement_sum(sum, segment));
            segment[16..18].copy_from_slice(&(!sum).to_be_bytes());
            // SAFETY: `packet` and `destination` are valid for the lengths given.
            let n = unsafe {
                libc::sendto(
                    fd,
                    packet.as_ptr().cast(),
                    packet.len(),
                    0,
                    (&raw const destination).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            };
            if n > 0 {
                sent += 1;
            }
        }
    }
    // SAFETY: `fd` is ours and closed once.
    unsafe { libc::close(fd) };
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "sent {sent} SYNs in {elapsed:.2} s ({:.0}/s)",
        sent as f64 / elapsed
    );
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// An IPv4 network, `ADDR/LEN`.
struct Ipv4Net(std::net::Ipv4Addr, u32);

impl std::str::FromStr for Ipv4Net {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let (addr, len) = text.split_once('/').ok_or("ADDR/LEN")?;
        let len: u32 = len.parse().map_err(|_| "LEN")?;
        if !(8..=32).contains(&len) {
            return Err("LEN: 8 to 32".into());
        }
        Ok(Self(addr.parse().map_err(|_| "ADDR")?, len))
    }
}
