//! NFLOG from the real kernel, in a fresh namespace: packets logged faster
//! than they are read overrun the socket's buffer, and what was lost is
//! counted by the sequence numbers. Needs root: `#[ignore]`d, run by `cargo
//! xtask test` as root.

use dockfw_nft::nflog::{LogListener, Received};
use dockfw_nft::testing::TestNetns;
use std::io::Write;
use std::net::UdpSocket;
use std::process::Stdio;
use std::time::Duration;

/// Far more one-packet messages than the listener's receive buffer holds.
const SENT: u32 = 20_000;

fn send(ns: &TestNetns, count: u32) {
    ns.run(|| {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..count {
            socket.send_to(b"x", "127.0.0.1:9999").unwrap();
        }
    })
    .unwrap();
}

#[test]
#[ignore = "needs root"]
fn events_lost_to_an_overrun_are_counted() {
    let ns = TestNetns::new().unwrap();
    ns.exec("ip", ["link", "set", "lo", "up"]);
    let mut nft = ns
        .command("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    nft.stdin
        .take()
        .unwrap()
        .write_all(
            b"table inet t {\n chain o {\n  type filter hook output priority 0; policy accept;\n  \
              udp dport 9999 log group 23\n }\n}\n",
        )
        .unwrap();
    assert!(nft.wait().unwrap().success());
    let mut listener = LogListener::bind(Some(&ns.path()), 23).unwrap();
    // Nothing read meanwhile: the buffer overruns.
    send(&ns, SENT);
    let (mut packets, mut lost) = (0, 0);
    let mut read = |listener: &mut LogListener, until: u32| {
        let mut quiet = 0;
        while packets + lost < until && quiet < 8 {
            let received = listener.receive(Duration::from_millis(250)).unwrap();
            quiet = if received.is_empty() { quiet + 1 } else { 0 };
            for item in received {
                match item {
                    Received::Packet(_) => packets += 1,
                    Received::Lost(Some(n)) => lost += n,
                    Received::Lost(None) => panic!("a loss without a count, after {packets} packets"),
                }
            }
        }
    };
    // What the buffer held; the loss is not known yet.
    read(&mut listener, SENT);
    // The gap shows at the first packet after the loss.
    send(&ns, 1);
    read(&mut listener, SENT + 1);
    assert!(lost > 0, "no overrun: {packets} packets read");
    assert_eq!(packets + lost, SENT + 1, "{packets} read, {lost} counted lost");
}
