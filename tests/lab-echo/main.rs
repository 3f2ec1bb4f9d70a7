//! `lab-echo tcp:PORT udp:PORT …`: a tiny TCP and UDP echo server for lab
//! containers. busybox-static's `nc` has no UDP mode and no `udpsvd`, so the
//! lab ships this instead; build.rs links it statically so that it runs in a
//! busybox-only image.
//!
//! `lab-echo ask tcp|udp ADDR:PORT` is the client side, for connections a
//! container opens: it sends a line, waits up to two seconds for the echo,
//! and prints `open`, `refused` or `timed out` (exit 0, 3 or 4).

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::exit;
use std::thread;
use std::time::Duration;

fn main() {
    let specs: Vec<String> = std::env::args().skip(1).collect();
    if specs.first().map(String::as_str) == Some("ask") {
        ask(&specs[1..]);
    }
    if specs.is_empty() {
        eprintln!("usage: lab-echo tcp:PORT|udp:PORT … | lab-echo ask tcp|udp ADDR:PORT");
        exit(2);
    }
    let mut workers = Vec::new();
    for spec in &specs {
        let Some((proto, port)) = spec.split_once(':') else {
            die(&format!("bad spec {spec:?}"));
        };
        let port: u16 = port.parse().unwrap_or_else(|_| die(&format!("bad port in {spec:?}")));
        match proto {
            "tcp" => {
                // [::] is dual-stack (bindv6only=0); fall back to IPv4 when the
                // container has IPv6 disabled.
                let listener = TcpListener::bind((Ipv6Addr::UNSPECIFIED, port))
                    .or_else(|_| TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)))
                    .unwrap_or_else(|e| die(&format!("tcp bind {port}: {e}")));
                workers.push(thread::spawn(move || serve_tcp(listener)));
            }
            "udp" => {
                let socket = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, port))
                    .or_else(|_| UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)))
                    .unwrap_or_else(|e| die(&format!("udp bind {port}: {e}")));
                workers.push(thread::spawn(move || serve_udp(socket)));
            }
            _ => die(&format!("bad protocol in {spec:?}")),
        }
    }
    // The lab waits for this line before probing.
    println!("lab-echo: ready {}", specs.join(" "));
    for worker in workers {
        let _ = worker.join();
    }
}

fn serve_tcp(listener: TcpListener) {
    for stream in listener.incoming().flatten() {
        thread::spawn(move || echo_stream(stream));
    }
}

fn echo_stream(mut stream: TcpStream) {
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

fn serve_udp(socket: UdpSocket) {
    let mut buf = [0u8; 65536];
    loop {
        if let Ok((n, peer)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..n], peer);
        }
    }
}

fn ask(args: &[String]) -> ! {
    let [proto, dst] = args else {
        die("usage: lab-echo ask tcp|udp ADDR:PORT");
    };
    let dst: SocketAddr = dst.parse().unwrap_or_else(|_| die(&format!("bad address {dst:?}")));
    let wait = Duration::from_secs(2);
    let message = b"lab-echo ask\n";
    let mut reply = [0u8; 64];
    let result = match proto.as_str() {
        "tcp" => TcpStream::connect_timeout(&dst, wait).and_then(|mut stream| {
            stream.set_read_timeout(Some(wait))?;
            stream.write_all(message)?;
            stream.read_exact(&mut reply[..message.len()])
        }),
        "udp" => {
            let any: SocketAddr = if dst.is_ipv4() {
                (Ipv4Addr::UNSPECIFIED, 0).into()
            } else {
                (Ipv6Addr::UNSPECIFIED, 0).into()
            };
            UdpSocket::bind(any).and_then(|socket| {
                socket.connect(dst)?;
                socket.set_read_timeout(Some(wait))?;
                socket.send(message)?;
                socket.recv(&mut reply).map(drop)
            })
        }
        _ => die(&format!("bad protocol {proto:?}")),
    };
    let (word, code) = match result {
        Ok(()) => ("open", 0),
        Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => ("timed out", 4),
        Err(e) if matches!(e.kind(), ErrorKind::ConnectionRefused | ErrorKind::ConnectionReset) => ("refused", 3),
        Err(e) => die(&format!("{proto} {dst}: {e}")),
    };
    println!("{word}");
    exit(code)
}

fn die(msg: &str) -> ! {
    eprintln!("lab-echo: {msg}");
    exit(1)
}
