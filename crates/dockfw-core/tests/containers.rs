//! Docker awareness: evaluation on every path into a container, the
//! diagnostics against running containers, and what each rule resolves to.

use dockfw_core::containers::{Reached, diagnose, resolve};
use dockfw_core::{
    Action, Connection, Container, Decision, Proto, PublishedPort, Via, compile, evaluate_ruleset_via,
    evaluate_via, explain_via, parse,
};

fn published(host_addr: Option<&str>, host_port: u16, container_port: u16, proto: Proto) -> PublishedPort {
    PublishedPort {
        host_addr: host_addr.map(|a| a.parse().unwrap()),
        host_port,
        container_port,
        proto,
    }
}

fn containers() -> Vec<Container> {
    vec![
        Container {
            name: "django".into(),
            labels: [("tier".to_string(), "web".to_string())].into(),
            published: vec![published(None, 8081, 8000, Proto::Tcp)],
            addresses: vec!["172.17.0.2".parse().unwrap(), "fd00::2".parse().unwrap()],
        },
        Container {
            name: "db".into(),
            labels: [("tier".to_string(), "db".to_string())].into(),
            published: vec![published(Some("0.0.0.0"), 5432, 5432, Proto::Tcp)],
            addresses: vec!["172.17.0.3".parse().unwrap()],
        },
    ]
}

const POLICY: &str = r#"
[guard]
interfaces = ["eth0"]
default = "drop"

[[rule]]
name = "app"
container = "django"

[[rule]]
name = "web"
ports = [80]
action = "reject"
"#;

fn connection(source: &str, dialled: &str, port: u16) -> Connection {
    Connection {
        interface: "eth0".into(),
        source: source.parse().unwrap(),
        dialled: Some(dialled.parse().unwrap()),
        port,
        proto: Proto::Tcp,
    }
}

/// Evaluates on the policy and on the compiled ruleset; they must agree.
fn decide(connection: &Connection, path: Via) -> Decision {
    let policy = parse("p.toml", POLICY).unwrap().policy;
    let containers = containers();
    let by_policy = evaluate_via(&policy, &containers, connection, path);
    let by_ruleset = evaluate_ruleset_via(&compile(&policy, &containers), connection, path);
    assert_eq!(by_policy, by_ruleset, "{connection:?} on {path:?}");
    by_policy
}

fn rule(name: &str, action: Action) -> Decision {
    Decision::Rule {
        name: name.into(),
        action,
    }
}

const DEFAULT: Decision = Decision::Default { action: Action::Drop };

#[test]
fn a_container_rule_means_the_same_service_on_every_path() {
    let app = rule("app", Action::Allow);
    // Docker's DNAT, and docker-proxy (an IPv6 client of an IPv4-only Docker):
    // the host port on a host address.
    assert_eq!(
        decide(&connection("198.51.100.7", "203.0.113.5", 8081), Via::Published),
        app
    );
    assert_eq!(
        decide(&connection("2001:db8::7", "2001:db8::5", 8081), Via::Proxied),
        app
    );
    // Routed to the container's own address, without NAT: the container port.
    assert_eq!(
        decide(&connection("198.51.100.7", "172.17.0.2", 8000), Via::Routed),
        app
    );
    assert_eq!(
        decide(&connection("2001:db8::7", "fd00::2", 8000), Via::Routed),
        app
    );
    // Not the service: the host port at the container's address, the
    // container port at a host address, another container's address.
    assert_eq!(
        decide(&connection("198.51.100.7", "172.17.0.2", 8081), Via::Routed),
        DEFAULT
    );
    assert_eq!(
        decide(&connection("198.51.100.7", "203.0.113.5", 8000), Via::Published),
        DEFAULT
    );
    assert_eq!(
        decide(&connection("198.51.100.7", "172.17.0.3", 8000), Via::Routed),
        DEFAULT
    );
    // A plain rule matches what was dialled on any path: routed, the container port.
    assert_eq!(
        decide(&connection("198.51.100.7", "172.17.0.3", 80), Via::Routed),
        rule("web", Action::Reject)
    );
}

#[test]
fn the_docker_proxy_path_judges_only_published_ports() {
    // ssh on the host: no container publishes 22, docker-proxy is not involved.
    assert_eq!(
        decide(&connection("2001:db8::7", "2001:db8::5", 22), Via::Proxied),
        Decision::NotJudged
    );
    // db publishes 5432 on IPv4 only (0.0.0.0): an IPv6 5432 is the host's own.
    assert_eq!(
        decide(&connection("2001:db8::7", "2001:db8::5", 5432), Via::Proxied),
        Decision::NotJudged
    );
    assert_eq!(
        decide(&connection("198.51.100.7", "203.0.113.5", 5432), Via::Proxied),
        DEFAULT
    );
    // Same rules, same verdicts as the forward path.
    assert_eq!(
        decide(&connection("198.51.100.7", "203.0.113.5", 8081), Via::Proxied),
        decide(&connection("198.51.100.7", "203.0.113.5", 8081), Via::Published)
    );
    // Unguarded interfaces are never judged, on any path.
    let mut from_lan = connection("2001:db8::7", "2001:db8::5", 8081);
    from_lan.interface = "eth1".into();
    for path in [Via::Published, Via::Proxied, Via::Routed] {
        assert_eq!(decide(&from_lan, path), Decision::NotJudged);
    }
}

#[test]
fn explanations_say_why() {
    let policy = parse("p.toml", POLICY).unwrap().policy;
    let containers = containers();
    let ssh = explain_via(
        &policy,
        &containers,
        &connection("2001:db8::7", "2001:db8::5", 22),
        Via::Proxied,
    );
    assert_eq!(
        ssh.to_string(),
        "not judged by dockfw (no running container publishes port 22/tcp on that address: it is for the host itself)"
    );
    let mut from_lan = connection("198.51.100.7", "203.0.113.5", 8081);
    from_lan.interface = "eth1".into();
    let lan = explain_via(&policy, &containers, &from_lan, Via::Published);
    assert!(
        lan.not_judged
            .unwrap()
            .contains("eth1, which guard.interfaces does not list")
    );

    let routed = explain_via(
        &policy,
        &containers,
        &connection("198.51.100.7", "172.17.0.2", 8081),
        Via::Routed,
    );
    assert_eq!(routed.decision, DEFAULT);
    assert_eq!(
        routed.misses[0].reason,
        "django publishes no port 8081/tcp there (a host port on an address it is bound to, or a container port at the container's own address)"
    );
    let narrowed = parse(
        "p.toml",
        "[guard]\ninterfaces = \"eth0\"\n[[rule]]\nlabels = { tier = \"web\" }\nports = 9000\n[[rule]]\ncontainer = \"gone\"\n",
    )
    .unwrap()
    .policy;
    let misses = explain_via(
        &narrowed,
        &containers,
        &connection("198.51.100.7", "203.0.113.5", 8081),
        Via::Published,
    )
    .misses;
    assert_eq!(
        misses[0].reason,
        "port 8081/tcp of django is not among the rule's ports"
    );
    assert_eq!(
        misses[1].reason,
        "no running container has container \"gone\" (or Docker is not known)"
    );
}

#[test]
fn an_unknown_dialled_address_cannot_tell_published_from_routed() {
    // Containers with addresses: a container rule needs the dialled address
    // to tell a host address (published) from a container's (routed).
    let policy = parse("p.toml", POLICY).unwrap().policy;
    let mut unknown = connection("198.51.100.7", "203.0.113.5", 8081);
    unknown.dialled = None;
    assert_eq!(decide(&unknown, Via::Published), DEFAULT);
    let why = explain_via(&policy, &containers(), &unknown, Via::Published).misses;
    assert_eq!(
        why[0].reason,
        "django publishes port 8081/tcp, but which address was dialled decides (none given)"
    );
    // Without container addresses, the published port alone decides.
    let mut bare = containers();
    bare.iter_mut().for_each(|c| c.addresses.clear());
    assert_eq!(
        evaluate_via(&policy, &bare, &unknown, Via::Published),
        rule("app", Action::Allow)
    );
}

fn warnings(policy: &str, containers: &[Container]) -> Vec<String> {
    let policy = parse("policy.toml", policy).unwrap().policy;
    diagnose(&policy, containers)
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn a_container_port_in_ports_is_pointed_out() {
    let got = warnings(
        "[guard]\ninterfaces = \"eth0\"\n[[rule]]\nname = \"app\"\nports = [8081, 8000]\n",
        &containers(),
    );
    assert_eq!(
        got,
        [
            "policy.toml:5:16: warning: rule \"app\": 8000/tcp is django's container port; clients dial 8081\n  \
          hint: ports are what clients dial: the published host port (docker ps shows HOST:PORT->CONTAINER_PORT); \
          write 8081. A container port matches only clients routed to the container's own address, without NAT"
        ]
    );
    // In a range that holds no published port, too.
    let got = warnings(
        "[guard]\ninterfaces = \"eth0\"\n[[rule]]\nname = \"app\"\nports = \"7990-8010\"\n",
        &containers(),
    );
    assert_eq!(got.len(), 1);
    assert!(
        got[0].contains(
            "no running container publishes a port in 7990-8010/tcp, but it holds django's container port 8000 (clients dial 8081)"
        ),
        "{got:?}"
    );
    // 5432 is published as itself: nothing to say.
    assert!(
        warnings(
            "[guard]\ninterfaces = \"eth0\"\n[[rule]]\nports = [5432, \"8000-8100\"]\n",
            &containers()
        )
        .is_empty()
    );
}

#[test]
fn ports_nobody_publishes_are_pointed_out() {
    let got = warnings(
        "[guard]\ninterfaces = \"eth0\"\n[[rule]]\nname = \"a\"\nports = [\"9999\", \"53/udp\", \"8081/udp\"]\n\
         [[rule]]\nname = \"b\"\ncontainer = \"django\"\nports = [9999, 8081]\n",
        &containers(),
    );
    assert_eq!(got.len(), 4, "{got:#?}");
    assert!(
        got[0].starts_with(
            "policy.toml:5:10: warning: rule \"a\": no running container publishes port 9999/tcp"
        )
    );
    assert!(got[1].contains("no running container publishes port 53/udp"));
    assert!(
        got[2].contains("no running container publishes port 8081/udp"),
        "the protocol counts"
    );
    assert!(got[3].starts_with("policy.toml:9:10: warning: rule \"b\": django publishes no port 9999/tcp"));
    assert!(got[3].contains("hint: django publishes 8081/tcp"));
}

#[test]
fn selectors_that_select_nothing_are_pointed_out() {
    let got = warnings(
        "[guard]\ninterfaces = \"eth0\"\n\
         [[rule]]\nname = \"typo\"\ncontainer = \"djnago\"\nports = 1\n\
         [[rule]]\nname = \"gone\"\ncontainer = \"redis\"\n\
         [[rule]]\nname = \"labels\"\nlabels = { tier = \"cache\" }\n\
         [[rule]]\nname = \"both\"\ncontainer = \"django\"\nlabels = { tier = \"db\", env = \"prod\" }\n",
        &containers(),
    );
    assert_eq!(
        got,
        [
            "policy.toml:5:13: warning: rule \"typo\": container \"djnago\" is not running\n  hint: did you mean \"django\"?",
            "policy.toml:9:13: warning: rule \"gone\": container \"redis\" is not running\n  \
             hint: the rule matches nothing until it runs; running: django, db",
            "policy.toml:12:10: warning: rule \"labels\": no running container carries the label tier=\"cache\"\n  \
             hint: a container must carry all of them; running: tier=\"web\" on django and tier=\"db\" on db",
            "policy.toml:16:10: warning: rule \"both\": container \"django\" runs but does not carry the labels env=\"prod\", tier=\"db\"\n  \
             hint: it has no label \"env\" and tier=\"web\"; fix \"labels\" or \"container\"",
        ]
    );
    let got = warnings(
        "[guard]\ninterfaces = \"eth0\"\n[[rule]]\nlabels = { zone = \"eu\" }\n",
        &containers(),
    );
    assert!(
        got[0].ends_with(
            "hint: no running container has a label \"zone\"; the rule matches nothing until one runs"
        ),
        "{got:?}"
    );
    // Nothing runs at all.
    let got = warnings(
        "[guard]\ninterfaces = \"eth0\"\n[[rule]]\ncontainer = \"web\"\n",
        &[],
    );
    assert!(got[0].contains("no container is running"), "{got:?}");
}

#[test]
fn resolve_tells_which_containers_each_rule_reaches() {
    let policy = parse(
        "p.toml",
        "[guard]\ninterfaces = \"eth0\"\n\
         [[rule]]\nname = \"tiers\"\nlabels = { tier = \"db\" }\n\
         [[rule]]\nname = \"app 9000\"\ncontainer = \"django\"\nports = 9000\n\
         [[rule]]\nname = \"postgres\"\nports = 5432\n\
         [[rule]]\nname = \"everything\"\n\
         [[rule]]\nname = \"v4 host\"\nto = \"198.51.100.1\"\nports = 5432\n\
         [[rule]]\nname = \"v6 host\"\nto = \"2001:db8::1\"\nports = 5432\n",
    )
    .unwrap()
    .policy;
    let containers = containers();
    let resolved = resolve(&policy, &containers);
    let reached = |index: usize| -> Vec<(String, Vec<u16>)> {
        resolved[index]
            .containers
            .iter()
            .map(|Reached { name, published }| {
                (name.clone(), published.iter().map(|p| p.host_port).collect())
            })
            .collect()
    };
    assert_eq!(resolved.len(), 6);
    assert!(resolved[0].selects && !resolved[2].selects);
    assert_eq!(reached(0), [("db".to_string(), vec![5432])]);
    // Selected, though its ports leave every published port out.
    assert_eq!(reached(1), [("django".to_string(), vec![])]);
    assert_eq!(reached(2), [("db".to_string(), vec![5432])]);
    assert_eq!(
        reached(3),
        [("django".to_string(), vec![8081]), ("db".to_string(), vec![5432])]
    );
    // `to` must meet the address a port is bound to: db's 5432 answers on IPv4 only.
    assert_eq!(reached(4), [("db".to_string(), vec![5432])]);
    assert_eq!(reached(5), []);
    let json = serde_json::to_value(&resolved).unwrap();
    assert_eq!(json[0]["containers"][0]["name"], "db");
}
