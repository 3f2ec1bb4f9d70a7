//! Containers as Docker reports them, and as the policy compiler needs them.

use bollard::models::{ContainerSummary, EndpointSettings, PortSummary, PortSummaryTypeEnum};
use dockfw_core::{Container, Proto, PublishedPort};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A running container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerInfo {
    /// Full container id.
    pub id: String,
    /// Container name, without Docker's leading '/'.
    pub name: String,
    /// Container labels.
    pub labels: BTreeMap<String, String>,
    /// Networks the container is attached to, by name.
    pub networks: Vec<NetworkInfo>,
    /// Published ports, one entry per host binding as Docker reports them
    /// (so `-p 8081:8000` is usually two: 0.0.0.0 and ::), sorted, exact
    /// duplicates removed. Exposed but unpublished ports are not here.
    pub ports: Vec<PortBinding>,
}

/// A container's attachment to one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetworkInfo {
    /// Network name (`bridge`, `host`, a user network).
    pub name: String,
    /// The container's IPv4 address on it, if any.
    pub ipv4: Option<Ipv4Addr>,
    /// The container's global IPv6 address on it, if any.
    pub ipv6: Option<Ipv6Addr>,
}

/// A Docker network on a Linux bridge (driver `bridge`), and the bridge's
/// interface: the name given with `-o com.docker.network.bridge.name=…`,
/// else Docker's own (`br-` and the network id's first 12 characters; the
/// default network `bridge` names `docker0` that way).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BridgeNetwork {
    /// Network name (`bridge`, a user network).
    pub name: String,
    /// The bridge's interface on the host.
    pub interface: String,
}

/// The network option naming a bridge network's interface.
const BRIDGE_NAME_OPTION: &str = "com.docker.network.bridge.name";

impl BridgeNetwork {
    pub(crate) fn from_network(network: &bollard::models::Network) -> Option<Self> {
        if network.driver.as_deref() != Some("bridge") {
            return None;
        }
        let name = network.name.clone().filter(|n| !n.is_empty())?;
        let named = network
            .options
            .as_ref()
            .and_then(|options| options.get(BRIDGE_NAME_OPTION))
            .filter(|n| !n.is_empty())
            .cloned();
        let interface = named.or_else(|| {
            let id = network.id.as_deref().filter(|id| id.len() >= 12)?;
            Some(format!("br-{}", &id[..12]))
        })?;
        Some(Self { name, interface })
    }
}

/// One host binding of a published port, as Docker reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct PortBinding {
    /// The host address bound: 0.0.0.0 is every IPv4 address, :: every
    /// IPv6 address; `None` when Docker reported none (every address).
    pub host_ip: Option<IpAddr>,
    /// The host port clients dial.
    pub host_port: u16,
    /// The container's own port.
    pub container_port: u16,
    /// Transport protocol.
    pub proto: Proto,
}

impl ContainerInfo {
    /// The container's addresses on all its networks (IPv4 first, then IPv6
    /// per network), without repeats.
    pub fn addresses(&self) -> Vec<IpAddr> {
        let mut out: Vec<IpAddr> = Vec::new();
        for network in &self.networks {
            let addrs = [network.ipv4.map(IpAddr::V4), network.ipv6.map(IpAddr::V6)];
            for addr in addrs.into_iter().flatten() {
                if !out.contains(&addr) {
                    out.push(addr);
                }
            }
        }
        out
    }

    /// The published ports for the policy compiler. Docker's bindings are
    /// kept, except that one port bound on both 0.0.0.0 and :: (Docker's
    /// report of a plain `-p HOST:CONTAINER`) becomes one port with
    /// `host_addr: None` (every address), and bindings a broader one covers
    /// are dropped. A port bound on only one family's unspecified address
    /// keeps it: `Some(0.0.0.0)` means every IPv4 address and none of IPv6,
    /// which is how `dockfw_core` reads it.
    pub fn published(&self) -> Vec<PublishedPort> {
        let same_port = |a: &PortBinding, b: &PortBinding| {
            a.host_port == b.host_port && a.container_port == b.container_port && a.proto == b.proto
        };
        let mut out: Vec<PublishedPort> = Vec::new();
        for binding in &self.ports {
            let host_addr = match binding.host_ip {
                Some(ip) if ip.is_unspecified() => {
                    let other_family_too = self.ports.iter().any(|other| {
                        same_port(binding, other)
                            && other
                                .host_ip
                                .is_some_and(|o| o.is_unspecified() && o.is_ipv4() != ip.is_ipv4())
                    });
                    (!other_family_too).then_some(ip)
                }
                ip => ip,
            };
            let port = PublishedPort {
                host_addr,
                host_port: binding.host_port,
                container_port: binding.container_port,
                proto: binding.proto,
            };
            if !out.contains(&port) {
                out.push(port);
            }
        }
        let everywhere: Vec<PublishedPort> = out.iter().filter(|p| p.host_addr.is_none()).copied().collect();
        out.retain(|p| {
            p.host_addr.is_none()
                || !everywhere.iter().any(|e| {
                    e.host_port == p.host_port && e.container_port == p.container_port && e.proto == p.proto
                })
        });
        out
    }

    /// The container as the policy compiler sees it.
    pub fn to_container(&self) -> Container {
        Container {
            name: self.name.clone(),
            labels: self.labels.clone(),
            published: self.published(),
            addresses: self.addresses(),
        }
    }

    /// Reads one entry of `GET /containers/json`; `None` without an id.
    pub(crate) fn from_summary(summary: &ContainerSummary) -> Option<Self> {
        let id = summary.id.clone().filter(|id| !id.is_empty())?;
        let name = container_name(summary.names.as_deref().unwrap_or_default())
            .unwrap_or_else(|| id.chars().take(12).collect());
        let labels = summary
            .labels
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut networks: Vec<NetworkInfo> = summary
            .network_settings
            .iter()
            .flat_map(|settings| settings.networks.iter().flatten())
            .map(|(name, endpoint)| NetworkInfo::from_endpoint(name, endpoint))
            .collect();
        networks.sort_by(|a, b| a.name.cmp(&b.name));
        let mut ports: Vec<PortBinding> = summary
            .ports
            .iter()
            .flatten()
            .filter_map(PortBinding::from_summary)
            .collect();
        ports.sort_by_key(|p| (p.proto, p.host_port, p.container_port, p.host_ip));
        ports.dedup();
        Some(Self {
            id,
            name,
            labels,
            networks,
            ports,
        })
    }
}

impl From<&ContainerInfo> for Container {
    fn from(info: &ContainerInfo) -> Self {
        info.to_container()
    }
}

impl From<ContainerInfo> for Container {
    fn from(info: ContainerInfo) -> Self {
        info.to_container()
    }
}

impl NetworkInfo {
    fn from_endpoint(name: &str, endpoint: &EndpointSettings) -> Self {
        Self {
            name: name.into(),
            ipv4: parse_addr(endpoint.ip_address.as_deref()),
            ipv6: parse_addr(endpoint.global_ipv6_address.as_deref()),
        }
    }
}

impl PortBinding {
    /// A published binding; `None` for an exposed-only port (no host port)
    /// and for SCTP, which dockfw does not guard.
    fn from_summary(port: &PortSummary) -> Option<Self> {
        let host_port = port.public_port.filter(|&p| p != 0)?;
        let proto = match port.typ {
            // Docker's default protocol.
            None | Some(PortSummaryTypeEnum::EMPTY | PortSummaryTypeEnum::TCP) => Proto::Tcp,
            Some(PortSummaryTypeEnum::UDP) => Proto::Udp,
            Some(PortSummaryTypeEnum::SCTP) => return None,
        };
        Some(Self {
            // An empty or unreadable address binds every address, as in Docker.
            host_ip: parse_addr(port.ip.as_deref()),
            host_port,
            container_port: port.private_port,
            proto,
        })
    }
}

/// The container's own name among Docker's names: legacy links add names
/// like `/other/alias`; the real one has only the leading '/'.
fn container_name(names: &[String]) -> Option<String> {
    let plain = names
        .iter()
        .map(|n| n.strip_prefix('/').unwrap_or(n))
        .find(|n| !n.is_empty() && !n.contains('/'));
    plain
        .or_else(|| names.first().and_then(|n| n.rsplit('/').next()))
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
}

fn parse_addr<A: std::str::FromStr>(text: Option<&str>) -> Option<A> {
    text.map(str::trim).filter(|t| !t.is_empty())?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `GET /v1.41/containers/json` from docker.io 20.10.24 (see tests/fixtures/README.md).
    const LIST_20_10: &str = include_str!("../tests/fixtures/containers-20.10.json");

    fn fixture() -> Vec<ContainerInfo> {
        let summaries: Vec<ContainerSummary> = serde_json::from_str(LIST_20_10).expect("fixture parses");
        summaries.iter().filter_map(ContainerInfo::from_summary).collect()
    }

    fn by_name<'a>(all: &'a [ContainerInfo], name: &str) -> &'a ContainerInfo {
        all.iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no container {name}"))
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_bridge_network_names_its_interface_by_option_or_by_id() {
        // As `GET /networks` answers (docker.io 20.10 and 26), cut to what is read.
        let list: Vec<bollard::models::Network> = serde_json::from_str(
            r#"[
              {"Name": "bridge", "Id": "5b1c6d0a2e7f8c9d0e1f2a3b4c5d6e7f", "Driver": "bridge",
               "Options": {"com.docker.network.bridge.default_bridge": "true",
                           "com.docker.network.bridge.name": "docker0"}},
              {"Name": "web", "Id": "0123456789abcdef0123", "Driver": "bridge", "Options": {}},
              {"Name": "custom", "Id": "fedcba9876543210fedc", "Driver": "bridge",
               "Options": {"com.docker.network.bridge.name": "dmz0"}},
              {"Name": "host", "Id": "aaaaaaaaaaaaaaaa", "Driver": "host", "Options": {}},
              {"Name": "none", "Id": "bbbbbbbbbbbbbbbb", "Driver": "null"},
              {"Name": "overlay", "Id": "cccccccccccccccc", "Driver": "overlay"}
            ]"#,
        )
        .unwrap();
        let bridges: Vec<(String, String)> = list
            .iter()
            .filter_map(BridgeNetwork::from_network)
            .map(|b| (b.name, b.interface))
            .collect();
        assert_eq!(
            bridges,
            [
                ("bridge".to_string(), "docker0".to_string()),
                ("web".to_string(), "br-0123456789ab".to_string()),
                ("custom".to_string(), "dmz0".to_string()),
            ]
        );
    }

    fn binding(host_ip: &str, host_port: u16, container_port: u16, proto: Proto) -> PortBinding {
        PortBinding {
            host_ip: Some(ip(host_ip)),
            host_port,
            container_port,
            proto,
        }
    }

    fn published(
        host_addr: Option<&str>,
        host_port: u16,
        container_port: u16,
        proto: Proto,
    ) -> PublishedPort {
        PublishedPort {
            host_addr: host_addr.map(ip),
            host_port,
            container_port,
            proto,
        }
    }

    #[test]
    fn names_without_slash_and_all_running_containers() {
        let mut names: Vec<String> = fixture().into_iter().map(|c| c.name).collect();
        names.sort();
        assert_eq!(names, ["hostnet", "local", "multi", "quiet", "web"]);
        let web = by_name(&fixture(), "web").clone();
        assert_eq!(web.id.len(), 64);
        assert!(web.id.starts_with("d2bb00166b30"));
    }

    #[test]
    fn both_families_of_one_port_are_kept_then_merged() {
        let all = fixture();
        let web = by_name(&all, "web");
        use Proto::*;
        assert_eq!(
            web.ports,
            [
                binding("0.0.0.0", 8081, 8000, Tcp),
                binding("::", 8081, 8000, Tcp),
                binding("0.0.0.0", 9000, 9000, Tcp),
                binding("::", 9000, 9000, Tcp),
                binding("0.0.0.0", 8081, 8000, Udp),
                binding("::", 8081, 8000, Udp),
            ]
        );
        assert_eq!(
            web.published(),
            [
                published(None, 8081, 8000, Tcp),
                published(None, 9000, 9000, Tcp),
                published(None, 8081, 8000, Udp),
            ]
        );
    }

    #[test]
    fn labels_are_kept() {
        let all = fixture();
        let web = by_name(&all, "web");
        let want: BTreeMap<String, String> = [("com.example.team", "ops team"), ("dockfw.role", "web")]
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        assert_eq!(web.labels, want);
        assert!(by_name(&all, "multi").labels.is_empty());
    }

    #[test]
    fn a_port_bound_to_one_host_address_keeps_it() {
        let all = fixture();
        let local = by_name(&all, "local");
        assert_eq!(
            local.ports,
            [
                binding("203.0.113.1", 8082, 8000, Proto::Tcp),
                binding("2001:db8:1::2", 8083, 8000, Proto::Udp),
            ]
        );
        assert_eq!(
            local.to_container().published,
            [
                published(Some("203.0.113.1"), 8082, 8000, Proto::Tcp),
                published(Some("2001:db8:1::2"), 8083, 8000, Proto::Udp),
            ]
        );
    }

    #[test]
    fn exposed_ports_are_not_published() {
        let all = fixture();
        let quiet = by_name(&all, "quiet");
        assert!(quiet.ports.is_empty());
        assert!(quiet.to_container().published.is_empty());
        let hostnet = by_name(&all, "hostnet");
        assert!(hostnet.ports.is_empty());
    }

    #[test]
    fn two_networks_with_both_families() {
        let all = fixture();
        let multi = by_name(&all, "multi");
        assert_eq!(
            multi.networks,
            [
                NetworkInfo {
                    name: "backend".into(),
                    ipv4: Some("198.18.100.2".parse().unwrap()),
                    ipv6: Some("2001:db8:d0d::2".parse().unwrap()),
                },
                NetworkInfo {
                    name: "bridge".into(),
                    ipv4: Some("198.18.0.5".parse().unwrap()),
                    ipv6: Some("2001:db8:d0c::242:c612:5".parse().unwrap()),
                },
            ]
        );
        assert_eq!(
            multi.to_container(),
            Container {
                name: "multi".into(),
                labels: BTreeMap::new(),
                published: vec![published(None, 8443, 8443, Proto::Tcp)],
                addresses: [
                    "198.18.100.2",
                    "2001:db8:d0d::2",
                    "198.18.0.5",
                    "2001:db8:d0c::242:c612:5"
                ]
                .map(ip)
                .into(),
            }
        );
    }

    #[test]
    fn host_network_has_no_addresses() {
        let all = fixture();
        let hostnet = by_name(&all, "hostnet");
        assert_eq!(
            hostnet.networks,
            [NetworkInfo {
                name: "host".into(),
                ipv4: None,
                ipv6: None
            }]
        );
        assert!(hostnet.addresses().is_empty());
    }

    #[test]
    fn one_family_only_stays_that_family() {
        let info = ContainerInfo {
            id: "x".into(),
            name: "x".into(),
            labels: BTreeMap::new(),
            networks: vec![],
            ports: vec![
                binding("0.0.0.0", 80, 8080, Proto::Tcp),
                // Different host ports per family (Docker 20.10 can do that
                // for `-p 8080`): no merging.
                binding("0.0.0.0", 32768, 9000, Proto::Tcp),
                binding("::", 32769, 9000, Proto::Tcp),
                PortBinding {
                    host_ip: None,
                    host_port: 53,
                    container_port: 53,
                    proto: Proto::Udp,
                },
                binding("127.0.0.1", 53, 53, Proto::Udp),
            ],
        };
        assert_eq!(
            info.published(),
            [
                published(Some("0.0.0.0"), 80, 8080, Proto::Tcp),
                published(Some("0.0.0.0"), 32768, 9000, Proto::Tcp),
                published(Some("::"), 32769, 9000, Proto::Tcp),
                published(None, 53, 53, Proto::Udp),
            ]
        );
    }

    #[test]
    fn odd_entries_do_not_panic() {
        let json = r#"[
            {"Id": "", "Names": ["/nameless"]},
            {"Id": "abcdef0123456789", "Names": null, "Ports": [
                {"IP": "not-an-ip", "PrivatePort": 1, "PublicPort": 2, "Type": "tcp"},
                {"PrivatePort": 3, "PublicPort": 4, "Type": "sctp"},
                {"IP": "0.0.0.0", "PrivatePort": 5, "PublicPort": 0, "Type": "udp"},
                {"IP": "0.0.0.0", "PrivatePort": 6, "PublicPort": 6, "Type": "udp"},
                {"IP": "0.0.0.0", "PrivatePort": 6, "PublicPort": 6, "Type": "udp"}
            ], "NetworkSettings": {"Networks": {"n": {"IPAddress": "bogus"}}}},
            {"Id": "linked", "Names": ["/app/db", "/db"]}
        ]"#;
        let summaries: Vec<ContainerSummary> = serde_json::from_str(json).unwrap();
        let all: Vec<ContainerInfo> = summaries.iter().filter_map(ContainerInfo::from_summary).collect();
        assert_eq!(all.len(), 2, "no id, no container");
        assert_eq!(all[0].name, "abcdef012345");
        assert_eq!(
            all[0].ports,
            [
                PortBinding {
                    host_ip: None,
                    host_port: 2,
                    container_port: 1,
                    proto: Proto::Tcp
                },
                binding("0.0.0.0", 6, 6, Proto::Udp),
            ]
        );
        assert!(all[0].addresses().is_empty());
        assert_eq!(all[1].name, "db");
    }

    #[test]
    fn container_names() {
        let names = |list: &[&str]| container_name(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(names(&["/web"]).as_deref(), Some("web"));
        assert_eq!(names(&["/app/web", "/web"]).as_deref(), Some("web"));
        assert_eq!(names(&["/app/web"]).as_deref(), Some("web"));
        assert_eq!(names(&[]), None);
        assert_eq!(names(&["/"]), None);
    }
}
