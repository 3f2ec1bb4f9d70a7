//! Against a real dockerd (docker.io 20.10, API 1.41) in the lab: listing
//! shows what the daemon reports, events follow containers, and a stopped
//! daemon is unreachable. Needs root and docker.io:
//! `#[ignore]`d, run by `cargo xtask test` as root.

use dockfw_core::{Container, Proto, PublishedPort};
use dockfw_docker::{Client, ContainerInfo, Error, EventKind, PortBinding, list_containers, subscribe};
use dockfw_e2e::{Lab, LabConfig, Proto as LabProto};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One dockerd at a time: the machine has two cores.
static SERIAL: Mutex<()> = Mutex::new(());

const TIMEOUT: Duration = Duration::from_secs(5);

fn by_name<'a>(all: &'a [ContainerInfo], name: &str) -> &'a ContainerInfo {
    all.iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no container {name} in {all:#?}"))
}

/// The container's bindings as `docker port NAME` prints them, e.g.
/// "8000/tcp -> 0.0.0.0:8081".
fn docker_port(lab: &Lab, name: &str) -> BTreeSet<PortBinding> {
    let out = lab.docker(&["port", name]).unwrap();
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let (container, host) = line.split_once(" -> ").unwrap();
            let (port, proto) = container.split_once('/').unwrap();
            let (ip, host_port) = host.rsplit_once(':').unwrap();
            PortBinding {
                host_ip: Some(ip.trim_matches(['[', ']']).parse().unwrap()),
                host_port: host_port.parse().unwrap(),
                container_port: port.parse().unwrap(),
                proto: if proto == "udp" { Proto::Udp } else { Proto::Tcp },
            }
        })
        .collect()
}

/// The container's addresses as `docker inspect` reports them.
fn docker_addresses(lab: &Lab, name: &str) -> BTreeSet<IpAddr> {
    let format = "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{.GlobalIPv6Address}} {{end}}";
    lab.docker(&["inspect", "--format", format, name])
        .unwrap()
        .split_whitespace()
        .map(|a| a.parse().unwrap())
        .collect()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
#[ignore = "needs root and the Docker lab"]
fn listing_shows_what_the_daemon_reports() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = dockfw_e2e::up_for_test(LabConfig::for_test("dfwt-dock").unwrap());
    let host = lab.docker_host();
    lab.run_echo_with(
        "web",
        &[
            "-p",
            "8081:8000/tcp",
            "-p",
            "8081:8000/udp",
            "-p",
            "9000:9000",
            "--label",
            "dockfw.role=web",
            "--label",
            "team=ops team",
        ],
        &[
            (LabProto::Tcp, 8000),
            (LabProto::Udp, 8000),
            (LabProto::Tcp, 9000),
        ],
    )
    .unwrap();
    lab.run_echo("local", &["203.0.113.1:8082:8000"], &[(LabProto::Tcp, 8000)])
        .unwrap();
    lab.run_echo_with("quiet", &["--expose", "8000"], &[(LabProto::Tcp, 8000)])
        .unwrap();
    lab.docker(&[
        "network",
        "create",
        "--ipv6",
        "--subnet",
        "198.18.100.0/24",
        "--subnet",
        "2001:db8:d0d::/64",
        "backend",
    ])
    .unwrap();
    lab.run_echo_with(
        "multi",
        &["--network", "backend", "-p", "8443:8443"],
        &[(LabProto::Tcp, 8443)],
    )
    .unwrap();
    lab.docker(&["network", "connect", "bridge", "multi"]).unwrap();
    // Stopped containers are not listed.
    lab.docker(&["create", "--name", "idle", "-p", "7000:7000", lab.image(), "true"])
        .unwrap();

    let all = list_containers(Some(&host), TIMEOUT).unwrap();
    let names: Vec<&str> = all.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["local", "multi", "quiet", "web"], "running ones, sorted");

    // Ports and addresses as the docker CLI sees them.
    for container in &all {
        let name = container.name.as_str();
        let ports: BTreeSet<PortBinding> = container.ports.iter().copied().collect();
        assert_eq!(ports, docker_port(&lab, name), "ports of {name}");
        assert_eq!(ports.len(), container.ports.len(), "no duplicates in {name}");
        let addresses: BTreeSet<IpAddr> = container.addresses().into_iter().collect();
        assert_eq!(addresses, docker_addresses(&lab, name), "addresses of {name}");
        let id = lab.docker(&["inspect", "--format", "{{.Id}}", name]).unwrap();
        assert_eq!(container.id, id);
    }

    let web = by_name(&all, "web");
    // Both families of each published port, as Docker 20.10 reports them.
    assert_eq!(web.ports.len(), 6, "{:?}", web.ports);
    let labels: BTreeMap<String, String> = [("dockfw.role", "web"), ("team", "ops team")]
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    let everywhere = |host_port, container_port, proto| PublishedPort {
        host_addr: None,
        host_port,
        container_port,
        proto,
    };
    assert_eq!(
        web.to_container(),
        Container {
            name: "web".into(),
            labels,
            published: vec![
                everywhere(8081, 8000, Proto::Tcp),
                everywhere(9000, 9000, Proto::Tcp),
                everywhere(8081, 8000, Proto::Udp),
            ],
            addresses: web.addresses(),
        }
    );
    let bridge = &web.networks[0];
    assert_eq!(bridge.name, "bridge");
    assert!(
        bridge.ipv4.is_some_and(|a| a.octets()[..3] == [198, 18, 0]),
        "{bridge:?}"
    );
    assert!(
        bridge
            .ipv6
            .is_some_and(|a| a.segments()[..3] == [0x2001, 0xdb8, 0xd0c]),
        "{bridge:?}"
    );

    assert_eq!(
        Container::from(by_name(&all, "local")).published,
        [PublishedPort {
            host_addr: Some(ip("203.0.113.1")),
            host_port: 8082,
            container_port: 8000,
            proto: Proto::Tcp,
        }]
    );
    assert!(
        by_name(&all, "quiet").ports.is_empty(),
        "exposed is not published"
    );
    let multi = by_name(&all, "multi");
    let networks: Vec<&str> = multi.networks.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(networks, ["backend", "bridge"]);
    assert!(
        multi.addresses().contains(&ip("198.18.100.2")),
        "{:?}",
        multi.addresses()
    );
    assert!(
        multi.addresses().contains(&ip("2001:db8:d0d::2")),
        "{:?}",
        multi.addresses()
    );

    // The async client agrees, speaking the daemon's API version.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let daemon_api = lab
        .docker(&["version", "--format", "{{.Server.APIVersion}}"])
        .unwrap();
    runtime.block_on(async {
        let client = Client::connect(Some(&host), TIMEOUT).await.unwrap();
        assert_eq!(client.api_version(), daemon_api);
        assert_eq!(client.containers().await.unwrap(), all);
    });

    // A stopped daemon: unreachable, promptly.
    lab.stop_dockerd().unwrap();
    let start = Instant::now();
    let e = list_containers(Some(&host), TIMEOUT).unwrap_err();
    assert!(e.is_unreachable(), "{e:?}");
    assert!(e.to_string().contains(&host), "{e}");
    assert!(start.elapsed() < TIMEOUT, "{:?}", start.elapsed());
}

/// Waits for the next event of `kind` for container `id`, skipping others.
fn wait_for(
    events: &mut dockfw_docker::BlockingEvents,
    kind: EventKind,
    id: &str,
) -> dockfw_docker::ContainerEvent {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        match events.next_timeout(Duration::from_millis(500)) {
            Ok(Some(event)) if event.kind == kind && event.container_id == id => return event,
            Ok(Some(other)) => seen.push(other),
            Ok(None) => {}
            Err(e) => panic!("event stream failed waiting for {kind} of {id}: {e} (saw {seen:?})"),
        }
    }
    panic!("no {kind} event for {id}; saw {seen:?}");
}

#[test]
#[ignore = "needs root and the Docker lab"]
fn events_follow_container_start_stop_and_removal() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = dockfw_e2e::up_for_test(LabConfig::for_test("dfwt-dockev").unwrap());
    let host = lab.docker_host();
    let mut events = subscribe(Some(&host), TIMEOUT).unwrap();
    assert_eq!(events.host(), host);
    // Nothing happens yet.
    assert_eq!(events.next_timeout(Duration::from_millis(200)).unwrap(), None);

    let id = lab
        .run_echo("svc", &["8081:8000"], &[(LabProto::Tcp, 8000)])
        .unwrap();
    let connect = wait_for(&mut events, EventKind::NetworkConnect, &id);
    assert_eq!(connect.network.as_deref(), Some("bridge"));
    let start = wait_for(&mut events, EventKind::Start, &id);
    assert_eq!(start.container_name.as_deref(), Some("svc"));

    lab.docker(&["rename", "svc", "svc2"]).unwrap();
    let rename = wait_for(&mut events, EventKind::Rename, &id);
    assert_eq!(rename.container_name.as_deref(), Some("svc2"));

    lab.docker(&["stop", "--time", "1", "svc2"]).unwrap();
    let die = wait_for(&mut events, EventKind::Die, &id);
    assert_eq!(die.container_name.as_deref(), Some("svc2"));
    lab.docker(&["rm", "svc2"]).unwrap();
    wait_for(&mut events, EventKind::Destroy, &id);

    // The async stream sees the same, from its creation on.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use futures_util::StreamExt;
        let client = Client::connect(Some(&host), TIMEOUT).await.unwrap();
        let mut stream = client.events();
        // Started before the stream is first polled: replayed by the daemon.
        let id = lab
            .run_echo("late", &["8082:8000"], &[(LabProto::Tcp, 8000)])
            .unwrap();
        let first_start = loop {
            let next = tokio::time::timeout(Duration::from_secs(20), stream.next()).await;
            let event = next.expect("an event in time").expect("stream open").unwrap();
            if event.kind == EventKind::Start {
                break event;
            }
        };
        assert_eq!(first_start.container_id, id);
    });

    // dockerd goes away: the stream says so instead of hanging.
    lab.stop_dockerd().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let error: Error = loop {
        assert!(
            Instant::now() < deadline,
            "the event stream did not notice dockerd stop"
        );
        match events.next_timeout(Duration::from_millis(500)) {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    assert!(error.is_unreachable(), "{error:?}");
    assert!(events.next().is_none(), "ended");
}
