//! Conntrack over ctnetlink against the real kernel, in a fresh namespace:
//! a held loopback connection is listed with its tuples, mark and labels,
//! deleted, and its next packet then meets the ruleset as a new connection.

use dockfw_nft::conntrack::{Conntrack, CtEntry, Status};
use dockfw_nft::testing::{TestNetns, require_root};
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

const PORT: u16 = 5555;

/// A namespace with loopback up and a ruleset that makes conntrack track
/// connections there, marks those to `PORT` with mark 0x42 and label 5.
fn namespace() -> TestNetns {
    let ns = TestNetns::new().unwrap();
    ns.exec("ip", ["link", "set", "lo", "up"]);
    ns.exec(
        "nft",
        ["add table inet t; \
             add chain inet t out { type filter hook output priority 0; }; \
             add chain inet t in { type filter hook input priority 0; }; \
             add rule inet t out tcp dport 5555 ct mark set 0x42; \
             add rule inet t out tcp dport 5555 ct label set 5"],
    );
    ns
}

/// A connected client and server over `addr`, opened in the namespace.
fn connect(ns: &TestNetns, addr: IpAddr) -> (TcpStream, TcpStream) {
    let (client, server) = ns
        .run(|| {
            let listener = TcpListener::bind(SocketAddr::new(addr, PORT)).unwrap();
            let client = TcpStream::connect(SocketAddr::new(addr, PORT)).unwrap();
            let (server, _) = listener.accept().unwrap();
            (client, server)
        })
        .unwrap();
    for s in [&client, &server] {
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    }
    (client, server)
}

/// Sends `data` from client to server; whether it arrived.
fn delivered(client: &mut TcpStream, server: &mut TcpStream, data: &[u8]) -> bool {
    client.write_all(data).unwrap();
    let mut buf = vec![0; data.len()];
    match server.read_exact(&mut buf) {
        Ok(()) => {
            assert_eq!(buf, data);
            true
        }
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
        Err(e) => panic!("read failed: {e}"),
    }
}

/// The entry of the connection from `client`.
fn entry_of(conntrack: &mut Conntrack, client: &TcpStream) -> Option<CtEntry> {
    let local = client.local_addr().unwrap();
    conntrack.dump().unwrap().into_iter().find(|e| {
        e.original.protocol == 6
            && e.original.src == local.ip()
            && e.original.src_port == Some(local.port())
            && e.original.dst_port == Some(PORT)
    })
}

#[test]
#[ignore = "needs root"]
fn a_deleted_entry_makes_the_held_connection_meet_the_ruleset_again() {
    require_root();
    let ns = namespace();
    let mut conntrack = Conntrack::in_netns(ns.path()).unwrap();
    let addr: IpAddr = "127.0.0.1".parse().unwrap();
    let (mut client, mut server) = connect(&ns, addr);
    assert!(delivered(&mut client, &mut server, b"hello"));

    let entry = entry_of(&mut conntrack, &client).expect("the connection is tracked");
    let local = client.local_addr().unwrap();
    assert_eq!(entry.original.dst, addr);
    assert_eq!(
        entry.original.to_string(),
        format!("tcp 127.0.0.1:{} -> 127.0.0.1:{PORT}", local.port())
    );
    assert_eq!(
        (
            entry.reply.src,
            entry.reply.src_port,
            entry.reply.dst,
            entry.reply.dst_port
        ),
        (addr, Some(PORT), addr, Some(local.port()))
    );
    assert!(
        entry.status.contains(Status::SeenReply | Status::Confirmed),
        "{entry:?}"
    );
    assert!(!entry.status.contains(Status::DstNat));
    assert_eq!(entry.mark, 0x42);
    assert_eq!(entry.zone, 0);
    assert!(entry.id.is_some());
    let labels = entry.labels.as_ref().expect("label 5 was set");
    assert!(labels.contains(5));
    assert!(!labels.contains(4) && !labels.contains(6) && !labels.contains(127));

    // From now on new connections to the port are dropped; the held one,
    // established, carries on.
    ns.exec("nft", ["add rule inet t in tcp dport 5555 ct state new drop"]);
    assert!(delivered(&mut client, &mut server, b"still"));

    assert!(conntrack.delete(&entry).unwrap());
    assert_eq!(entry_of(&mut conntrack, &client), None, "the entry is gone");
    assert!(
        !conntrack.delete(&entry).unwrap(),
        "deleting it again finds nothing"
    );

    // Its next packet is tracked afresh, as new, and dropped.
    assert!(!delivered(&mut client, &mut server, b"cut"));
}

#[test]
#[ignore = "needs root"]
fn ipv6_entries_are_listed_and_deleted_by_tuple() {
    require_root();
    let ns = namespace();
    let mut conntrack = Conntrack::in_netns(ns.path()).unwrap();
    let addr: IpAddr = "::1".parse().unwrap();
    let (mut client, mut server) = connect(&ns, addr);
    assert!(delivered(&mut client, &mut server, b"hello"));

    let entry = entry_of(&mut conntrack, &client).expect("the connection is tracked");
    assert_eq!((entry.original.dst, entry.reply.src), (addr, addr));
    assert_eq!(entry.mark, 0x42);

    // A stale id leaves the entry alone (it would be a newer connection).
    let id = entry.id.unwrap();
    assert!(
        !conntrack
            .delete_tuple(&entry.original, entry.zone, Some(id.wrapping_add(1)))
            .unwrap()
    );
    assert!(entry_of(&mut conntrack, &client).is_some());
    // By tuple and zone alone.
    assert!(conntrack.delete_tuple(&entry.original, 0, None).unwrap());
    assert_eq!(entry_of(&mut conntrack, &client), None);
}
