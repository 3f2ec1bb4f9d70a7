//! The guard as a Docker Swarm global service, in the lab (issue 17): a
//! one-node Swarm in the lab's dockerd runs the image `cargo xtask dist`
//! builds (here from the debug binary) as README's "Fleet: Docker Swarm"
//! says, with the policy from a Swarm config; packets show it enforced,
//! then an updated config rolled out with `docker service update`, then a
//! broken one refused while the old table stays in force. The routing
//! mesh: Docker's own where the kernel has IPVS, else a stand-in for its
//! rules (see `mesh_stand_in`). Needs root:
//! `#[ignore]`d, run by `cargo xtask test` as root.

use dockfw_e2e::{Client, Lab, LabConfig, Ns, Probe, ProbeResult, Proto, addr};
use std::net::IpAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

const V1_ALLOWED: IpAddr = IpAddr::V4(addr::INET_SOURCES[1]);
const V2_ALLOWED: IpAddr = IpAddr::V4(addr::INET_SOURCES[0]);
/// Allowed by no policy of the test.
const NEVER: IpAddr = IpAddr::V4(addr::INET_SOURCES[2]);
const HOST: IpAddr = IpAddr::V4(addr::HOST_INET_A);
/// Published in host mode (`--publish mode=host`): Docker DNATs it on this
/// node to the task, as for `docker run -p`.
const HOST_MODE_PORT: u16 = 8081;
/// Published through the routing mesh (ingress, the default mode).
const INGRESS_PORT: u16 = 8082;
const SERVICE: &str = "dockfw-nft";

/// Policy v1: one source may reach both published ports, named by port.
fn policy_v1() -> String {
    format!(
        r#"[guard]
interfaces = ["eth0"]
default = "drop"

[[rule]]
name = "web"
ports = [{HOST_MODE_PORT}, {INGRESS_PORT}]
from = ["{V1_ALLOWED}"]
"#
    )
}

/// Policy v2: another source, to what the tasks of service `web` publish
/// (Swarm labels every task's container with its service's name).
fn policy_v2() -> String {
    format!(
        r#"[guard]
interfaces = ["eth0"]
default = "drop"

[[rule]]
name = "web"
labels = {{ "com.docker.swarm.service.name" = "web" }}
from = ["{V2_ALLOWED}"]
"#
    )
}

/// Does not parse: a node must refuse it and keep what it enforces.
const BROKEN: &str =
    "[guard]\ninterfaces = [\"eth0\"]\ndefault = \"accept\"\n\n[[rule]]\nname = \"web\"\nports = [8081\n";

fn probe(src: IpAddr, port: u16) -> Probe {
    Probe {
        from: Client::Internet,
        src,
        dst: HOST,
        port,
        proto: Proto::Tcp,
    }
}

/// The lab's daemon as a one-node Swarm; leaves it when dropped (also when
/// the test fails), before the lab itself goes.
struct Swarm {
    lab: Lab,
    dir: std::path::PathBuf,
}

impl Drop for Swarm {
    fn drop(&mut self) {
        let _ = self
            .lab
            .docker_cmd(["swarm", "leave", "--force"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Swarm {
    fn docker(&self, args: &[&str]) -> String {
        self.lab
            .docker(args)
            .unwrap_or_else(|e| panic!("docker {}: {e}", args.join(" ")))
    }

    fn config(&self, name: &str, text: &str) {
        let path = self.dir.join(name);
        std::fs::write(&path, text).unwrap();
        self.docker(&["config", "create", name, path.to_str().unwrap()]);
    }

    fn expect(&self, cases: &[(Probe, ProbeResult)]) {
        for &(p, want) in cases {
            let got = self.lab.probe_until(p, want, Duration::from_secs(20)).unwrap();
            assert_eq!(got, want, "{p}");
        }
    }

    /// Our table without counters, or `None`.
    fn table(&self) -> Option<String> {
        let out = self
            .lab
            .ns_cmd(Ns::DockerHost, "nft")
            .args(["-s", "list", "table", "inet", "dockfw"])
            .stderr(Stdio::null())
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8(out.stdout).unwrap())
    }

    fn service_logs(&self) -> String {
        let out = self
            .lab
            .docker_cmd(["service", "logs", "--raw", SERVICE])
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// Waits until the service's one task runs with `config` and is healthy
    /// (`docker service update` returns once the service converged, or
    /// rolled back).
    fn until_running_with(&self, config: &str) {
        let started = Instant::now();
        loop {
            let configs = self.docker(&[
                "service",
                "inspect",
                SERVICE,
                "--format",
                "{{range .Spec.TaskTemplate.ContainerSpec.Configs}}{{.ConfigName}} {{end}}",
            ]);
            let health = self.docker(&[
                "ps",
                "--filter",
                &format!("label=com.docker.swarm.service.name={SERVICE}"),
                "--format",
                "{{.Status}}",
            ]);
            if configs.trim() == config && health.lines().count() == 1 && health.contains("(healthy)") {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "service not running with {config}: configs {configs:?}, containers {health:?}\n{}",
                self.service_logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// README's `docker service create` for the guard, with the lab's
/// differences: the lab's Docker socket (DOCKER_HOST, under /run, which
/// the service mounts), the test's image tag, and a 2 s health interval
/// instead of the image's 30 s so the test does not wait.
fn create_guard_service(swarm: &Swarm, docker_host: &str, image: &str) {
    let env = format!("DOCKER_HOST={docker_host}");
    swarm.docker(&[
        "service",
        "create",
        "--name",
        SERVICE,
        "--mode",
        "global",
        "--network",
        "host",
        "--cap-add",
        "NET_ADMIN",
        "--init",
        "--mount",
        "type=bind,source=/run,target=/run,bind-nonrecursive=true",
        "--config",
        "source=dockfw-policy-v1,target=/etc/dockfw/policy.toml",
        "--update-parallelism",
        "1",
        "--update-order",
        "stop-first",
        "--update-failure-action",
        "rollback",
        "--update-monitor",
        "15s",
        "--rollback-parallelism",
        "1",
        "--rollback-order",
        "stop-first",
        "--no-resolve-image",
        "--env",
        &env,
        "--health-interval",
        "2s",
        image,
    ]);
}

/// Where the kernel has no IPVS, Docker writes no routing-mesh rules; this
/// writes in their place what carries a connection to the task with IPVS:
/// on the node, Docker's DNAT of the published port to the ingress sandbox's
/// address on docker_gwbridge (its `DOCKER-INGRESS` rule); in the sandbox,
/// a DNAT to the task's address on the ingress network and a SNAT to the
/// sandbox's (IPVS's balancing, in NAT mode, and Docker's SNAT there).
fn mesh_stand_in(lab: &Lab) {
    let task = lab
        .docker(&[
            "ps",
            "--filter",
            "label=com.docker.swarm.service.name=web",
            "--format",
            "{{.ID}}",
        ])
        .unwrap();
    let ingress = |container: &str| {
        lab.docker(&[
            "inspect",
            container,
            "--format",
            "{{(index .NetworkSettings.Networks \"ingress\").IPAddress}}",
        ])
        .unwrap()
    };
    let task_addr = ingress(&task);
    let sandbox = lab
        .docker(&[
            "network",
            "inspect",
            "ingress",
            "--format",
            "{{(index .Containers \"ingress-sbox\").IPv4Address}}",
        ])
        .unwrap();
    let sandbox_addr = sandbox.split('/').next().unwrap().to_string();
    let sandbox_gw = lab
        .dockerd_ns_cmd("ingress_sbox", "ip")
        .args(["-4", "-o", "addr", "show", "eth1"])
        .output()
        .unwrap();
    let sandbox_gw = String::from_utf8(sandbox_gw.stdout).unwrap();
    let sandbox_gw = sandbox_gw
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .unwrap_or_else(|| panic!("no address on the ingress sandbox's eth1: {sandbox_gw:?}"))
        .to_string();
    lab.nft(&format!(
        "table ip mesh-stand-in {{
           chain prerouting {{ type nat hook prerouting priority dstnat; fib daddr type local tcp dport {INGRESS_PORT} dnat to {sandbox_gw}:{INGRESS_PORT}; }}
         }}"
    ))
    .unwrap();
    let run = |command: &mut std::process::Command, stdin: &str| {
        use std::io::Write;
        let mut child = command.stdin(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        assert!(child.wait().unwrap().success(), "{command:?}");
    };
    // IPVS takes connections in the sandbox's input hook; a DNAT forwards.
    run(
        lab.dockerd_ns_cmd("ingress_sbox", "sysctl")
            .args(["-q", "-w", "net.ipv4.ip_forward=1"]),
        "",
    );
    run(
        lab.dockerd_ns_cmd("ingress_sbox", "nft").args(["-f", "-"]),
        &format!(
            "table ip mesh-stand-in {{
               chain prerouting {{ type nat hook prerouting priority dstnat; tcp dport {INGRESS_PORT} dnat to {task_addr}:8000; }}
               chain postrouting {{ type nat hook postrouting priority srcnat; ip daddr {task_addr} snat to {sandbox_addr}; }}
             }}"
        ),
    );
}

#[test]
#[ignore = "needs root and the Docker lab"]
fn swarm_global_service_enforces_a_config_and_rolls_out_updates() {
    let lab = dockfw_e2e::up_for_test(LabConfig::for_test("dfwt-swarm").unwrap());
    let dir = std::env::temp_dir().join(format!("dfwt-swarm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let swarm = Swarm { lab, dir };
    let lab = &swarm.lab;
    swarm.docker(&[
        "swarm",
        "init",
        "--advertise-addr",
        &addr::HOST_INET_A.to_string(),
    ]);

    // The image, as `cargo xtask dist` builds it, from the debug binary.
    let image =
        dockfw_e2e::oci::guard_image(&assert_cmd::cargo::cargo_bin("dockfw-nft"), "swarm-test", "test")
            .unwrap();
    let tarball = swarm.dir.join("image.tar");
    std::fs::write(&tarball, &image.tarball).unwrap();
    let loaded = swarm.docker(&["load", "-i", tarball.to_str().unwrap()]);
    assert!(loaded.contains(&image.reference), "{loaded}");

    // A web service publishing one port on the node, one through the mesh.
    swarm.docker(&[
        "service",
        "create",
        "--name",
        "web",
        "--no-resolve-image",
        "--publish",
        &format!("mode=host,published={HOST_MODE_PORT},target=8000"),
        "--publish",
        &format!("published={INGRESS_PORT},target=8000"),
        lab.image(),
        "/bin/lab-echo",
        "tcp:8000",
    ]);
    // Without the guard Docker lets everyone in.
    swarm.expect(&[
        (probe(V1_ALLOWED, HOST_MODE_PORT), ProbeResult::Open),
        (probe(NEVER, HOST_MODE_PORT), ProbeResult::Open),
    ]);

    // The guard, with policy v1 from a Swarm config.
    swarm.config("dockfw-policy-v1", &policy_v1());
    create_guard_service(&swarm, &lab.docker_host(), &image.reference);
    swarm.until_running_with("dockfw-policy-v1");
    swarm.expect(&[
        (probe(V1_ALLOWED, HOST_MODE_PORT), ProbeResult::Open),
        (probe(V2_ALLOWED, HOST_MODE_PORT), ProbeResult::TimedOut),
        (probe(NEVER, HOST_MODE_PORT), ProbeResult::TimedOut),
    ]);
    let logs = swarm.service_logs();
    assert!(
        logs.contains("applied /etc/dockfw/policy.toml to table inet dockfw"),
        "{logs}"
    );

    // The routing mesh: IPVS balances it inside the ingress sandbox. Where
    // the kernel has none, Docker programs no ingress port at all.
    let ipvs = Path::new("/proc/net/ip_vs").exists();
    let ingress_chain = lab
        .ns_cmd(Ns::DockerHost, "nft")
        .args(["list", "chain", "ip", "nat", "DOCKER-INGRESS"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    if ipvs {
        // Judged where it enters: Docker DNATs it to the ingress sandbox
        // (a `ct status dnat` path), the dialled port is the published one.
        assert!(ingress_chain, "IPVS but no DOCKER-INGRESS chain");
        swarm.expect(&[
            (probe(V1_ALLOWED, INGRESS_PORT), ProbeResult::Open),
            (probe(NEVER, INGRESS_PORT), ProbeResult::TimedOut),
        ]);
        println!("routing mesh (IPVS present): port {INGRESS_PORT} judged by the policy");
    } else {
        assert!(!ingress_chain, "no IPVS, yet Docker wrote DOCKER-INGRESS");
        // Nothing forwards the port: the host itself refuses it, allowed or not.
        swarm.expect(&[
            (probe(V1_ALLOWED, INGRESS_PORT), ProbeResult::Refused),
            (probe(NEVER, INGRESS_PORT), ProbeResult::Refused),
        ]);
        println!(
            "routing mesh: this kernel has no IPVS (/proc/net/ip_vs missing); Docker programs no \
             DOCKER-INGRESS rule and port {INGRESS_PORT} is refused by the host for everyone"
        );
        // A stand-in for what Docker writes with IPVS: on the node, the
        // published port DNATed to the ingress sandbox (as DOCKER-INGRESS
        // does); in the sandbox, a DNAT to the task (for IPVS's balancing).
        mesh_stand_in(lab);
        swarm.expect(&[
            (probe(V1_ALLOWED, INGRESS_PORT), ProbeResult::Open),
            (probe(NEVER, INGRESS_PORT), ProbeResult::TimedOut),
        ]);
        println!("routing mesh stand-in: port {INGRESS_PORT} judged where it enters, by the policy");
    }

    // Policy v2 rolled out: the task is replaced (stop-first); a source no
    // policy admits never gets through meanwhile.
    swarm.config("dockfw-policy-v2", &policy_v2());
    let during = lab
        .probe_loop(&[probe(NEVER, HOST_MODE_PORT)], Duration::from_millis(20))
        .unwrap();
    swarm.docker(&[
        "service",
        "update",
        "--config-rm",
        "dockfw-policy-v1",
        "--config-add",
        "source=dockfw-policy-v2,target=/etc/dockfw/policy.toml",
        SERVICE,
    ]);
    swarm.until_running_with("dockfw-policy-v2");
    swarm.expect(&[
        (probe(V2_ALLOWED, HOST_MODE_PORT), ProbeResult::Open),
        (probe(V1_ALLOWED, HOST_MODE_PORT), ProbeResult::TimedOut),
        (probe(NEVER, HOST_MODE_PORT), ProbeResult::TimedOut),
        // A mesh port is the service's, not a task container's: v2's
        // `labels` rule does not admit it.
        (probe(V2_ALLOWED, INGRESS_PORT), ProbeResult::TimedOut),
    ]);
    let tally = during.stop().unwrap();
    assert!(tally[0].all(ProbeResult::TimedOut), "{:#}", tally[0]);
    println!("during the update to v2: {}", tally[0]);

    // A broken policy: the new task exits 2 without touching the table, the
    // update rolls back to v2; meanwhile v2 is enforced throughout.
    let before = swarm.table().expect("table installed");
    swarm.config("dockfw-policy-v3", BROKEN);
    let during = lab
        .probe_loop(
            &[probe(V2_ALLOWED, HOST_MODE_PORT), probe(NEVER, HOST_MODE_PORT)],
            Duration::from_millis(20),
        )
        .unwrap();
    // Whether the CLI reports the rollback by its exit status differs
    // between Docker versions; the service's state says it.
    let _ = lab
        .docker_cmd([
            "service",
            "update",
            "--config-rm",
            "dockfw-policy-v2",
            "--config-add",
            "source=dockfw-policy-v3,target=/etc/dockfw/policy.toml",
            SERVICE,
        ])
        .output()
        .unwrap();
    let started = Instant::now();
    let state = loop {
        let state = swarm.docker(&[
            "service",
            "inspect",
            SERVICE,
            "--format",
            "{{.UpdateStatus.State}}",
        ]);
        if state == "rollback_completed" || started.elapsed() > Duration::from_secs(90) {
            break state;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(state, "rollback_completed", "{}", swarm.service_logs());
    swarm.until_running_with("dockfw-policy-v2");
    let tally = during.stop().unwrap();
    assert!(tally[0].all(ProbeResult::Open), "{:#}", tally[0]);
    assert!(tally[1].all(ProbeResult::TimedOut), "{:#}", tally[1]);
    println!("during the refused update to v3: {}; {}", tally[0], tally[1]);
    assert_eq!(swarm.table().as_deref(), Some(before.as_str()), "table changed");
    let tasks = swarm.docker(&["service", "ps", SERVICE, "--no-trunc", "--format", "{{.Error}}"]);
    assert!(tasks.contains("task: non-zero exit (2)"), "{tasks}");
    let logs = swarm.service_logs();
    assert!(
        logs.contains("error: /etc/dockfw/policy.toml has 1 error; nothing was changed"),
        "{logs}"
    );
    swarm.expect(&[
        (probe(V2_ALLOWED, HOST_MODE_PORT), ProbeResult::Open),
        (probe(V1_ALLOWED, HOST_MODE_PORT), ProbeResult::TimedOut),
    ]);

    // Removing the service stops the guard; the table stays in force.
    swarm.docker(&["service", "rm", SERVICE]);
    let started = Instant::now();
    while !swarm
        .docker(&[
            "ps",
            "-q",
            "--filter",
            &format!("label=com.docker.swarm.service.name={SERVICE}"),
        ])
        .is_empty()
    {
        assert!(started.elapsed() < Duration::from_secs(30), "guard still running");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(swarm.table().as_deref(), Some(before.as_str()));
    swarm.expect(&[(probe(NEVER, HOST_MODE_PORT), ProbeResult::TimedOut)]);
}
