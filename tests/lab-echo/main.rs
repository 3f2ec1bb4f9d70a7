//! `lab-echo tcp:PORT udp:PORT …`: a tiny TCP and UDP echo server for lab
//! containers. busybox-static's `nc` has no UDP mode and no `udpsvd`, so the
//! lab ships this instead; build.rs links it statically so that it runs in a
//! busybox-only image.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, TcpListener, TcpStream, UdpSocket};
use std::process::exit;
use std::thread;

fn main() {
    let specs: Vec<String> = std::env::args().skip(1).collect();
    if specs.is_empty() {
        eprintln!("usage: lab-echo tcp:PORT|udp:PORT …");
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

fn die(msg: &str) -> ! {
    eprintln!("lab-echo: {msg}");
    exit(1)
}
