//! `cargo xtask bench compare`: dockfw against what users would use instead
//! (`nft -f`, iptables rules in DOCKER-USER, ipset), in network namespaces:
//! control plane (load time, kernel time, peak RSS), data plane (new
//! connections per second and throughput through a DNAT'd published port),
//! and how fast `dockfw-nft watch` repairs a deleted table.

use super::load::{FakeDocker, Server, connection_rate};
use super::ns::{Netns, ok};
use super::stats::{Samples, apply_call_time, commit_time, markdown_table, repair_time, thousands};
use anyhow::{Context, Result, bail};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The client's address: last in every list.
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
const HOST: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 2);
/// The published port (DNAT'd to the server's port 80) and iperf3's.
const PUBLISHED: u16 = 8080;
const IPERF: u16 = 5201;

/// What one run measures; `quick` is the reduced set.
#[derive(Debug, Clone)]
pub struct Plan {
    pub entries: Vec<usize>,
    pub rules: Vec<usize>,
    /// iptables-restore of one rule per source: up to this many.
    pub iptables_cap: usize,
    /// a shell loop of `iptables -I`: up to this many.
    pub loop_cap: usize,
    pub data_entries: Vec<usize>,
    pub data_iptables_cap: usize,
    pub heal_entries: Vec<usize>,
    pub runs: usize,
    pub runs_large: usize,
    pub data_runs: usize,
    pub data_seconds: u64,
    pub heal_runs: usize,
    /// A command taking longer is killed and reported as such.
    pub timeout: Duration,
}

impl Plan {
    pub fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                entries: vec![10, 1_000, 10_000, 100_000],
                rules: vec![10, 100],
                iptables_cap: 10_000,
                loop_cap: 100,
                data_entries: vec![10, 1_000, 100_000],
                data_iptables_cap: 1_000,
                heal_entries: vec![10, 10_000],
                runs: 3,
                runs_large: 1,
                data_runs: 2,
                data_seconds: 1,
                heal_runs: 3,
                timeout: Duration::from_secs(30),
            }
        } else {
            Plan {
                entries: vec![10, 1_000, 10_000, 100_000, 1_000_000],
                rules: vec![10, 100, 1_000],
                iptables_cap: 100_000,
                loop_cap: 1_000,
                data_entries: vec![10, 1_000, 10_000, 100_000],
                data_iptables_cap: 10_000,
                heal_entries: vec![10, 10_000, 100_000],
                runs: 5,
                runs_large: 3,
                data_runs: 7,
                data_seconds: 2,
                heal_runs: 5,
                timeout: Duration::from_secs(60),
            }
        }
    }

    fn runs_for(&self, size: usize) -> usize {
        match size {
            1_000_000.. => 1,
            100_000.. => self.runs_large,
            _ => self.runs,
        }
    }
}

/// `n` source addresses, the client's last; none adjacent, so none merge.
/// `changed` replaces the first with an address outside the range.
fn sources(n: usize, changed: bool) -> Vec<Ipv4Addr> {
    let base = u32::from(Ipv4Addr::new(100, 64, 0, 0));
    let mut list: Vec<Ipv4Addr> = (0..n.saturating_sub(1) as u32)
        .map(|i| Ipv4Addr::from(base + 2 * i))
        .collect();
    if changed && !list.is_empty() {
        list[0] = Ipv4Addr::new(198, 18, 0, 1);
    }
    list.push(CLIENT);
    list
}

/// The dockfw policy: one allow rule for a set of `n` sources (the
/// `entries` axis), or `rules` rules of one source and one port each.
fn policy(shape: Shape, changed: bool) -> String {
    let mut text = String::from("[guard]\ninterfaces = [\"h0\"]\ndefault = \"drop\"\n\n");
    match shape {
        Shape::Entries(n) => {
            text.push_str("[sets]\nclients = [\n");
            for a in sources(n, changed) {
                let _ = writeln!(text, "\"{a}\",");
            }
            text.push_str("]\n\n[[rule]]\nname = \"clients\"\nfrom = [\"@clients\"]\n");
        }
        Shape::Rules(n) => {
            for (i, a) in sources(n, changed).iter().enumerate() {
                let _ = writeln!(
                    text,
                    "[[rule]]\nname = \"r{i}\"\nfrom = [\"{a}\"]\nports = [{}]\n",
                    port_of(i, n)
                );
            }
        }
    }
    text
}

/// Rule `i` of `n`'s port; the last (the client's) is the published one.
fn port_of(i: usize, n: usize) -> u16 {
    if i + 1 == n { PUBLISHED } else { 10_000 + i as u16 }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Shape {
    Entries(usize),
    Rules(usize),
}

impl Shape {
    fn size(self) -> usize {
        match self {
            Shape::Entries(n) | Shape::Rules(n) => n,
        }
    }
}

/// The filter table as a Docker host has it, with DOCKER-USER holding one
/// rule per source (as the how-tos write it) and a final drop; replies and
/// established connections return first. Ports after Docker's DNAT are the
/// container's, so the rules-axis rules match the server port.
fn iptables_rules(shape: Shape) -> String {
    let mut text = String::from(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:DOCKER-USER - [0:0]\n\
         -A FORWARD -j DOCKER-USER\n\
         -A DOCKER-USER -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN\n",
    );
    match shape {
        Shape::Entries(n) => {
            for a in sources(n, false) {
                let _ = writeln!(text, "-A DOCKER-USER -i h0 -s {a} -j RETURN");
            }
        }
        Shape::Rules(n) => {
            for (i, a) in sources(n, false).iter().enumerate() {
                let port = if i + 1 == n { 80 } else { port_of(i, n) };
                let _ = writeln!(
                    text,
                    "-A DOCKER-USER -i h0 -s {a} -p tcp --dport {port} -j RETURN"
                );
            }
        }
    }
    text.push_str("-A DOCKER-USER -i h0 -j DROP\nCOMMIT\n");
    text
}

/// The base filter table: DOCKER-USER jumped to, only the established rule.
const IPTABLES_BASE: &str = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
    :DOCKER-USER - [0:0]\n-A FORWARD -j DOCKER-USER\n\
    -A DOCKER-USER -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN\nCOMMIT\n";

/// `ipset restore` input: one hash:ip set of the sources.
fn ipset_script(n: usize) -> String {
    let mut text = format!("create clients hash:ip family inet maxelem {}\n", n.max(65_536));
    for a in sources(n, false) {
        let _ = writeln!(text, "add clients {a}");
    }
    text
}

const IPSET_RULE: &str = "iptables -A DOCKER-USER -i h0 -m set ! --match-set clients src -j DROP";

/// The recipe's shell loop: a final drop, then one insert per source (in
/// reverse, so that the client ends up last).
fn insert_loop(n: usize) -> String {
    let mut text = String::from("set -e\niptables -I DOCKER-USER -i h0 -j DROP\n");
    for a in sources(n, false).iter().rev() {
        let _ = writeln!(text, "iptables -I DOCKER-USER -i h0 -s {a} -j RETURN");
    }
    text
}

/// How the comparison is made, for docs/benchmarks.md.
pub const METHOD: &str = "Every measurement runs in network namespaces of its own; the host's \
ruleset is never touched. The allow-list is N IPv4 source addresses (none adjacent, so none merge) with \
the client's address last, the worst case for a linear chain. *dockfw* is the release `dockfw-nft` binary \
(`dockfw-nft -v --no-docker -c policy.toml apply`: one policy rule `from = [\"@clients\"]`), run as a \
child process in a fresh namespace: *create* is the first apply, *unchanged* applies the same policy \
again, *one entry changed* alternates between the policy and one with its first entry replaced. \
*`nft -f`* loads `dockfw-nft plan` of the same policy (the text of `dockfw_core::render`) into a fresh \
namespace. *iptables-restore* loads a filter table as a Docker host has it (FORWARD jumps to \
DOCKER-USER) with DOCKER-USER holding `-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN`, one \
`-i h0 -s ADDR -j RETURN` per source (as the how-tos write it) and a final `-i h0 -j DROP` \
(iptables-nft, as Debian ships it; the *rules* rows add `-p tcp --dport PORT`). *ipset restore + 1 rule* is \
`ipset restore` of a `hash:ip` set and one `iptables -A DOCKER-USER -i h0 -m set ! --match-set clients \
src -j DROP`, in a shell script, into a namespace that already has the DOCKER-USER chain. *iptables -I \
loop* is a shell script of one `iptables -I DOCKER-USER` per source, as the recipes write it. \
Each command runs under `cargo xtask bench measure`, which joins the namespace, runs it and reads \
`getrusage(RUSAGE_CHILDREN)`: *wall time* is from start to exit, *kernel CPU time* is its `ru_stime` \
(nf_tables does a transaction's work in the sending process, so this is most of the kernel's share), \
*peak RSS* its `ru_maxrss` (for the shell scripts, the largest of their processes; about 6 MiB is \
the floor: Linux counts the forked copy of the measuring process before `exec`). This kernel \
samples CPU time at the scheduler tick, so kernel times under ~10 ms are coarse (0 means less than a tick). Where a dockfw \
command's time goes is shown separately, from `apply -v`: the *apply call* (`Nft::apply`, what a library \
user calls with a compiled ruleset: the writer lock, reading the table, planning, encoding, the \
transactions, verifying and keeping the table's image in memory) and within it the *kernel commit* (sending the \
batches and reading every ack); the rest of the command is reading, checking and compiling the policy \
(TOML), asking conntrack what to revoke, writing the table's image file for the next command (on a thread \
of its own, beside the conntrack query, waited for before the command ends), and the process itself. \
The *rules* rows are the other axis: N policy rules of one source and one port each (iptables: one rule \
each). The data plane runs client namespace → host namespace (iptables-nft DNAT of port 8080 to the \
server's port 80, and of 5201 for iperf3, as Docker publishes a port; conntrack on) → server namespace: \
*new connections* is a Rust load generator in xtask (two threads connecting, each connection reset at \
once; bounded in time and count) against a server that accepts and closes; *throughput* is one iperf3 \
TCP stream.";

/// How [`heal`] measures, for the docs.
pub const HEAL_METHOD: &str = "Each run starts `dockfw-nft watch` in a fresh network namespace (with a \
stand-in Docker that has no containers) on the *entries* policy of the comparison, tampers with its table \
with one `nft` command (*table deleted*: `delete table inet dockfw`; *flush ruleset*; *rule inserted*: \
`insert rule inet dockfw forward accept`; *chain flushed*: `flush chain inet dockfw rules`; *element \
deleted*: the client's address deleted from the allow-list set), and waits for watch's `repaired` line: \
the time it states (from the foreign commit's notification to the table verified whole again), and the \
time from starting `nft` to the line appearing (an upper bound: `nft`'s own run and the log file's polling \
are included). A fresh watch each run, so its backoff never starts.";

/// One tool's measurements at one size.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub tool: &'static str,
    pub size: usize,
    pub wall_ms: Samples,
    pub sys_ms: Samples,
    pub rss_mib: Samples,
    pub commit_ms: Samples,
    /// The apply call (`Nft::apply`) within the command, from `apply -v`.
    pub apply_ms: Samples,
    /// A run was killed after [`Plan::timeout`].
    pub timed_out: bool,
}

pub const CREATE: &str = "dockfw create";
pub const UNCHANGED: &str = "dockfw unchanged";
pub const CHANGED: &str = "dockfw one entry changed";
pub const NFT: &str = "nft -f";
pub const RESTORE: &str = "iptables-restore";
pub const IPSET: &str = "ipset restore + 1 rule";
pub const LOOP: &str = "iptables -I loop";
pub const TOOLS: [&str; 7] = [CREATE, UNCHANGED, CHANGED, NFT, RESTORE, IPSET, LOOP];

/// Everything one run measured.
#[derive(Debug, Default)]
pub struct Results {
    pub entries: Vec<Row>,
    pub rules: Vec<Row>,
    pub data: Vec<DataRow>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct DataRow {
    pub guard: &'static str,
    pub size: usize,
    pub conns: Samples,
    pub gbits: Samples,
    /// Each round's rate as a share of no guard's in the same round.
    pub conns_share: Samples,
    pub gbits_share: Samples,
    pub failed: u64,
}

pub const NO_GUARD: &str = "no guard";
pub const DOCKFW: &str = "dockfw";
pub const DOCKER_USER: &str = "DOCKER-USER, 1 rule per source";
pub const IPSET_GUARD: &str = "ipset + 1 rule";

#[derive(Debug, Clone, Default)]
pub struct HealRow {
    pub tamper: &'static str,
    pub size: usize,
    pub stated_ms: Samples,
    pub observed_ms: Samples,
}

struct Files {
    dir: PathBuf,
    binary: PathBuf,
}

impl Files {
    fn write(&self, name: &str, text: &str) -> Result<PathBuf> {
        let path = self.dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    }

    fn dockfw(&self) -> String {
        self.binary.display().to_string()
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs the whole comparison.
pub fn run(binary: &Path, plan: &Plan) -> Result<Results> {
    let dir = tempfile::Builder::new().prefix("dockfw-bench-").tempdir()?;
    let files = Files {
        dir: dir.path().to_path_buf(),
        binary: binary.to_path_buf(),
    };
    let mut results = Results::default();
    for &n in &plan.entries {
        eprintln!("xtask: control plane, {} entries", thousands(n as i64));
        control(&files, plan, Shape::Entries(n), &mut results.entries)?;
    }
    for &n in &plan.rules {
        eprintln!("xtask: control plane, {n} rules");
        control(&files, plan, Shape::Rules(n), &mut results.rules)?;
    }
    eprintln!("xtask: data plane");
    results.data = data_plane(&files, plan)?;
    Ok(results)
}

/// Runs the repair-time measurement alone ([`heal`]).
pub fn run_heal(binary: &Path, plan: &Plan) -> Result<Vec<HealRow>> {
    let dir = tempfile::Builder::new().prefix("dockfw-bench-").tempdir()?;
    let files = Files {
        dir: dir.path().to_path_buf(),
        binary: binary.to_path_buf(),
    };
    heal(&files, plan)
}

/// The tampering [`heal`] measures: a name and the `nft` command.
fn tampering() -> Vec<(&'static str, Vec<String>)> {
    let words = |s: &str| s.split(' ').map(str::to_string).collect::<Vec<_>>();
    vec![
        ("table deleted", words("delete table inet dockfw")),
        ("flush ruleset", words("flush ruleset")),
        ("rule inserted", words("insert rule inet dockfw forward accept")),
        ("chain flushed", words("flush chain inet dockfw rules")),
        (
            "element deleted",
            words(&format!(
                "delete element inet dockfw set-clients-v4 {{ {CLIENT} }}"
            )),
        ),
    ]
}

fn control(files: &Files, plan: &Plan, shape: Shape, out: &mut Vec<Row>) -> Result<()> {
    let n = shape.size();
    let runs = plan.runs_for(n);
    let policy_a = files.write("policy.toml", &policy(shape, false))?;
    let policy_b = files.write("policy-changed.toml", &policy(shape, true))?;
    let dockfw = files.dockfw();
    let limit = plan.timeout;
    let apply = |ns: &Netns, policy: &Path| {
        ns.measured(
            limit,
            &dockfw,
            &["-v", "--no-docker", "-c", &policy.display().to_string(), "apply"],
        )
    };
    let row = |tool| Row {
        tool,
        size: n,
        ..Row::default()
    };
    let (mut create, mut unchanged, mut changed) = (row(CREATE), row(UNCHANGED), row(CHANGED));
    // Whether the run finished.
    let record = |row: &mut Row, (m, output): (super::stats::Measurement, String)| {
        if m.timed_out {
            row.timed_out = true;
            return false;
        }
        row.wall_ms.push(ms(m.wall));
        row.sys_ms.push(ms(m.system));
        row.rss_mib.push(m.max_rss_kib as f64 / 1024.0);
        if let (Some(commit), Some(call)) = (commit_time(&output), apply_call_time(&output)) {
            row.commit_ms.push(ms(commit));
            row.apply_ms.push(ms(call));
        }
        true
    };
    let mut last = None;
    for _ in 0..runs {
        let ns = Netns::new("cp")?;
        if record(&mut create, apply(&ns, &policy_a)?) {
            last = Some(ns);
        }
    }
    // Re-applies need a table that was created whole.
    if let Some(ns) = last {
        for run in 0..runs {
            // Each a real change: to the changed policy and back; then the
            // same policy again, unchanged.
            let target = if run % 2 == 0 { &policy_b } else { &policy_a };
            if !record(&mut changed, apply(&ns, target)?) {
                // Killed half-way: what is installed is unknown.
                break;
            }
            record(&mut unchanged, apply(&ns, target)?);
        }
    }
    out.extend([create, unchanged, changed]);

    let script =
        ok(Command::new(&dockfw).args(["--no-docker", "-c", &policy_a.display().to_string(), "plan"]))?;
    let script = files.write("ruleset.nft", &script)?;
    let mut nft = row(NFT);
    for _ in 0..runs {
        let ns = Netns::new("nft")?;
        record(
            &mut nft,
            ns.measured(limit, "nft", &["-f", &script.display().to_string()])?,
        );
    }
    out.push(nft);

    if n <= plan.iptables_cap {
        let rules = files.write("iptables.rules", &iptables_rules(shape))?;
        let mut restore = row(RESTORE);
        for _ in 0..runs {
            let ns = Netns::new("ipt")?;
            record(
                &mut restore,
                ns.measured(limit, "iptables-restore", &[&rules.display().to_string()])?,
            );
        }
        out.push(restore);
    }
    if let Shape::Entries(n) = shape {
        let base = files.write("iptables-base.rules", IPTABLES_BASE)?;
        let set = files.write("ipset.txt", &ipset_script(n))?;
        let script = format!("set -e\nipset restore -f {}\n{IPSET_RULE}\n", set.display());
        let script = files.write("ipset.sh", &script)?;
        let mut ipset = row(IPSET);
        for _ in 0..runs {
            let ns = Netns::new("ips")?;
            ns.exec("iptables-restore", &[&base.display().to_string()])?;
            record(
                &mut ipset,
                ns.measured(limit, "sh", &[&script.display().to_string()])?,
            );
        }
        out.push(ipset);
        if n <= plan.loop_cap {
            let script = files.write("loop.sh", &insert_loop(n))?;
            let mut insert = row(LOOP);
            for _ in 0..runs.min(3) {
                let ns = Netns::new("loop")?;
                ns.exec("iptables-restore", &[&base.display().to_string()])?;
                record(
                    &mut insert,
                    ns.measured(limit, "sh", &[&script.display().to_string()])?,
                );
            }
            out.push(insert);
        }
    }
    Ok(())
}

/// client → host (DNAT, as Docker publishes a port) → server.
struct Topology {
    client: Netns,
    host: Netns,
    server: Netns,
    iperf: std::process::Child,
    _accept: Server,
}

/// Long enough for the host's conntrack entries of the last run to expire
/// (their timeout is 1 s there) and be collected.
const CONNTRACK_EXPIRY: Duration = Duration::from_millis(1500);

impl Topology {
    fn new() -> Result<Topology> {
        let (client, host, server) = (Netns::new("c")?, Netns::new("h")?, Netns::new("s")?);
        ok(Command::new("ip").args([
            "link",
            "add",
            "c0",
            "netns",
            &client.name,
            "type",
            "veth",
            "peer",
            "name",
            "h0",
            "netns",
            &host.name,
        ]))?;
        ok(Command::new("ip").args([
            "link",
            "add",
            "h1",
            "netns",
            &host.name,
            "type",
            "veth",
            "peer",
            "name",
            "s0",
            "netns",
            &server.name,
        ]))?;
        for (ns, dev, addr) in [
            (&client, "c0", "10.1.0.2/24"),
            (&host, "h0", "10.1.0.1/24"),
            (&host, "h1", "10.2.0.1/24"),
            (&server, "s0", "10.2.0.2/24"),
        ] {
            ns.ip(&["addr", "add", addr, "dev", dev])?;
            ns.ip(&["link", "set", dev, "up"])?;
        }
        client.ip(&["route", "add", "default", "via", "10.1.0.1"])?;
        server.ip(&["route", "add", "default", "via", "10.2.0.1"])?;
        host.exec("sysctl", &["-qw", "net.ipv4.ip_forward=1"])?;
        // A run leaves a conntrack entry per connection (over 100,000), each
        // kept 10 s after its reset: the next run would meet a table full of
        // them, a different table each time. With 1 s, and a pause before
        // each run (see `measure_once`), every run starts from an empty one.
        host.exec(
            "sysctl",
            &["-qw", "net.netfilter.nf_conntrack_tcp_timeout_close=1"],
        )?;
        client.exec("sysctl", &["-qw", "net.ipv4.ip_local_port_range=1024 65000"])?;
        for (from, to) in [
            (PUBLISHED, format!("{SERVER}:80")),
            (IPERF, format!("{SERVER}:{IPERF}")),
        ] {
            host.exec(
                "iptables",
                &[
                    "-t",
                    "nat",
                    "-A",
                    "PREROUTING",
                    "-d",
                    &HOST.to_string(),
                    "-p",
                    "tcp",
                    "--dport",
                    &from.to_string(),
                    "-j",
                    "DNAT",
                    "--to-destination",
                    &to,
                ],
            )?;
        }
        let accept = Server::start(&server.path(), SocketAddr::from((SERVER, 80)))?;
        let iperf = server
            .cmd("iperf3")
            .args(["-s", "-p", &IPERF.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start iperf3 -s")?;
        Ok(Topology {
            client,
            host,
            server,
            iperf,
            _accept: accept,
        })
    }

    /// One run through the published port: new connections per second
    /// (and how many failed), then throughput in Gbit/s.
    fn measure_once(&self, plan: &Plan) -> Result<(f64, u64, f64)> {
        std::thread::sleep(CONNTRACK_EXPIRY);
        let target = SocketAddr::from((HOST, PUBLISHED));
        let (rate, failed) = connection_rate(
            &self.client.path(),
            target,
            Duration::from_secs(plan.data_seconds),
            2,
        )?;
        Ok((rate, failed, self.throughput(plan)?))
    }

    fn throughput(&self, plan: &Plan) -> Result<f64> {
        let mut last = String::new();
        for _ in 0..20 {
            let output = self
                .client
                .cmd("iperf3")
                .args(["-c", &HOST.to_string(), "-p", &IPERF.to_string(), "-J", "-t"])
                .arg(plan.data_seconds.to_string())
                .output()?;
            let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
            if let Some(bits) = json["end"]["sum_received"]["bits_per_second"].as_f64() {
                return Ok(bits / 1e9);
            }
            last = format!("{}", json["error"]);
            // The server may still be starting, or busy with the last test.
            std::thread::sleep(Duration::from_millis(250));
        }
        bail!("iperf3 gave no result: {last}")
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        let _ = self.iperf.kill();
        let _ = self.iperf.wait();
        let _ = &self.server;
    }
}

/// Every guard at every size, measured in rounds: each round installs and
/// measures all of them in turn, so that whatever the machine does
/// meanwhile (other load, clock changes) falls on all of them alike, and
/// each guard is also taken as a share of no guard in the same round (a
/// paired comparison, steadier than two medians). Each round starts one
/// guard further along the list, so that none is always measured right
/// after the same other.
fn data_plane(files: &Files, plan: &Plan) -> Result<Vec<DataRow>> {
    let topology = Topology::new()?;
    let host = &topology.host;
    let base = files.write("iptables-base.rules", IPTABLES_BASE)?;
    let base = base.display().to_string();
    host.exec("iptables-restore", &[&base])?;
    let dockfw = files.dockfw();
    let mut rows = vec![DataRow {
        guard: NO_GUARD,
        ..DataRow::default()
    }];
    for &n in &plan.data_entries {
        files.write(&format!("policy-{n}.toml"), &policy(Shape::Entries(n), false))?;
        files.write(&format!("ipset-{n}.txt"), &ipset_script(n))?;
        let mut guards = vec![DOCKFW];
        if n <= plan.data_iptables_cap {
            files.write(&format!("iptables-{n}.rules"), &iptables_rules(Shape::Entries(n)))?;
            guards.push(DOCKER_USER);
        }
        guards.push(IPSET_GUARD);
        rows.extend(guards.into_iter().map(|guard| DataRow {
            guard,
            size: n,
            ..DataRow::default()
        }));
    }
    let file = |name: String| files.dir.join(name).display().to_string();
    for round in 0..plan.data_runs {
        eprintln!("xtask:   data plane, round {} of {}", round + 1, plan.data_runs);
        let mut measured = vec![(0.0, 0, 0.0); rows.len()];
        for i in (0..rows.len()).map(|i| (i + round) % rows.len()) {
            let row = &rows[i];
            let n = row.size;
            let dockfw_args =
                |command: &str| {
                    let policy = file(format!("policy-{n}.toml"));
                    ok(Command::new(&dockfw).args([
                        "--netns",
                        &host.name,
                        "--no-docker",
                        "-c",
                        &policy,
                        command,
                    ]))
                };
            match row.guard {
                DOCKFW => {
                    dockfw_args("apply")?;
                }
                DOCKER_USER => {
                    host.exec("iptables-restore", &[&file(format!("iptables-{n}.rules"))])?;
                }
                IPSET_GUARD => {
                    host.exec("ipset", &["restore", "-f", &file(format!("ipset-{n}.txt"))])?;
                    host.exec("sh", &["-c", IPSET_RULE])?;
                }
                _ => {}
            }
            measured[i] = topology.measure_once(plan)?;
            match row.guard {
                DOCKFW => {
                    dockfw_args("remove")?;
                }
                DOCKER_USER => {
                    host.exec("iptables-restore", &[&base])?;
                }
                IPSET_GUARD => {
                    host.exec("iptables-restore", &[&base])?;
                    host.exec("ipset", &["destroy", "clients"])?;
                }
                _ => {}
            }
        }
        // rows[0] is no guard.
        let (baseline_conns, _, baseline_gbits) = measured[0];
        for (row, (conns, failed, gbits)) in rows.iter_mut().zip(measured) {
            row.conns.push(conns);
            row.gbits.push(gbits);
            row.conns_share.push(conns / baseline_conns);
            row.gbits_share.push(gbits / baseline_gbits);
            row.failed += failed;
        }
    }
    for row in &rows {
        eprintln!(
            "xtask:   {} {}: {} conn/s, {} Gbit/s",
            row.guard,
            row.size,
            row.conns.cell(""),
            row.gbits.cell("")
        );
    }
    Ok(rows)
}

/// `dockfw-nft watch` in a namespace; the table deleted (or the ruleset
/// flushed) with `nft`; the time until watch says it repaired it, as it
/// states it and as seen from here (from starting `nft` to the log line: an
/// upper bound, `nft`'s own start included).
/// A fresh watch each run, so that its backoff against a program that keeps
/// fighting never starts.
fn heal(files: &Files, plan: &Plan) -> Result<Vec<HealRow>> {
    let docker = FakeDocker::start(&files.dir.join("docker.sock"))?;
    let mut rows = Vec::new();
    for &n in &plan.heal_entries {
        let policy = files.write("policy.toml", &policy(Shape::Entries(n), false))?;
        for (tamper_name, tamper) in tampering() {
            let mut row = HealRow {
                tamper: tamper_name,
                size: n,
                ..HealRow::default()
            };
            for _ in 0..plan.heal_runs {
                let ns = Netns::new("heal")?;
                let log = files.dir.join("watch.log");
                let file = std::fs::File::create(&log)?;
                let mut watch = Command::new(files.dockfw())
                    .args(["--netns", &ns.name, "--docker-host", &docker.host(), "-c"])
                    .arg(&policy)
                    .arg("watch")
                    .stdout(file.try_clone()?)
                    .stderr(file)
                    .stdin(Stdio::null())
                    .spawn()
                    .context("cannot start dockfw-nft watch")?;
                let result = (|| -> Result<(f64, f64)> {
                    wait_for(&log, "table inet dockfw", 0, Duration::from_secs(120), &mut watch)?;
                    let seen = std::fs::read_to_string(&log)?.len();
                    let done = Instant::now();
                    ns.exec("nft", &tamper.iter().map(String::as_str).collect::<Vec<_>>())?;
                    let line = wait_for(&log, "repaired table", seen, Duration::from_secs(60), &mut watch)?;
                    let observed = done.elapsed();
                    let stated = repair_time(&line).with_context(|| format!("no time in {line:?}"))?;
                    Ok((ms(stated), ms(observed)))
                })();
                let _ = watch.kill();
                let _ = watch.wait();
                let (stated, observed) = result?;
                row.stated_ms.push(stated);
                row.observed_ms.push(observed);
            }
            eprintln!(
                "xtask:   heal {n}, {tamper_name}: stated {}, observed {}",
                row.stated_ms.cell("ms"),
                row.observed_ms.cell("ms")
            );
            rows.push(row);
        }
    }
    Ok(rows)
}

/// Waits for a line holding `needle` in the log after byte `from`.
fn wait_for(
    log: &Path,
    needle: &str,
    from: usize,
    within: Duration,
    child: &mut std::process::Child,
) -> Result<String> {
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text[from.min(text.len())..].lines().find(|l| l.contains(needle)) {
            return Ok(line.to_string());
        }
        if let Some(status) = child.try_wait()? {
            bail!("watch ended ({status}) before saying {needle:?}:\n{text}");
        }
        if started.elapsed() > within {
            bail!("watch never said {needle:?} within {within:?}:\n{text}");
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// The Markdown of a run.
pub fn report(results: &Results, plan: &Plan) -> String {
    let mut out = String::new();
    let control_table = |rows: &[Row], what: &str, pick: &dyn Fn(&Row) -> String| {
        let mut sizes: Vec<usize> = rows.iter().map(|r| r.size).collect();
        sizes.dedup();
        let tools: Vec<&str> = TOOLS
            .iter()
            .copied()
            .filter(|t| rows.iter().any(|r| r.tool == *t))
            .collect();
        let mut headers = vec![what];
        headers.extend(&tools);
        let body: Vec<Vec<String>> = sizes
            .iter()
            .map(|&size| {
                let mut cells = vec![thousands(size as i64)];
                for tool in &tools {
                    let row = rows.iter().find(|r| r.size == size && r.tool == *tool);
                    cells.push(match row {
                        None => "–".into(),
                        Some(r) if !r.timed_out => pick(r),
                        Some(r) => match pick(r) {
                            none if none == "–" => super::stats::timed_out_cell(plan.timeout),
                            some => format!("{some}; a run {}", super::stats::timed_out_cell(plan.timeout)),
                        },
                    });
                }
                cells
            })
            .collect();
        markdown_table(&headers, &body)
    };
    let _ = writeln!(out, "### Control plane: wall time (entries)\n");
    out.push_str(&control_table(&results.entries, "entries", &|r| {
        r.wall_ms.cell("ms")
    }));
    let _ = writeln!(out, "\n### Control plane: kernel CPU time (entries)\n");
    out.push_str(&control_table(&results.entries, "entries", &|r| {
        r.sys_ms.cell("ms")
    }));
    let _ = writeln!(
        out,
        "\n### dockfw: the command, its apply call and its kernel commit (entries; `apply -v`)\n"
    );
    out.push_str(&commit_table(&results.entries));
    let _ = writeln!(out, "\n### Memory: peak RSS (entries)\n");
    out.push_str(&control_table(&results.entries, "entries", &|r| {
        r.rss_mib.cell("MiB")
    }));
    let _ = writeln!(
        out,
        "\n### Control plane: wall time (rules, one source and one port each)\n"
    );
    out.push_str(&control_table(&results.rules, "rules", &|r| r.wall_ms.cell("ms")));
    let _ = writeln!(out, "\n### Memory: peak RSS (rules)\n");
    out.push_str(&control_table(&results.rules, "rules", &|r| {
        r.rss_mib.cell("MiB")
    }));

    let _ = writeln!(
        out,
        "\n### Data plane: new connections per second and throughput\n"
    );
    let body: Vec<Vec<String>> = results
        .data
        .iter()
        .map(|r| {
            vec![
                r.guard.to_string(),
                if r.guard == NO_GUARD {
                    "–".into()
                } else {
                    thousands(r.size as i64)
                },
                r.conns.cell("/s"),
                share(&r.conns_share),
                r.gbits.cell("Gbit/s"),
                share(&r.gbits_share),
                r.failed.to_string(),
            ]
        })
        .collect();
    out.push_str(&markdown_table(
        &[
            "guard",
            "entries",
            "new connections",
            "of no guard's",
            "throughput (iperf3)",
            "of no guard's",
            "failed connects",
        ],
        &body,
    ));

    let _ = writeln!(
        out,
        "\nRuns per cell: {} ({} at 100,000 entries, 1 at 1,000,000) for the control plane; {} rounds for the data plane \
         ({} s of connections and {} s of iperf3 each), each round measuring every guard in turn (installed, \
         measured, removed), each round starting one guard further along: *of no guard's* is the median (and range) of each round's rate \
         divided by no guard's in the same round.",
        plan.runs, plan.runs_large, plan.data_runs, plan.data_seconds, plan.data_seconds
    );
    for note in &results.notes {
        let _ = writeln!(out, "\n{note}");
    }
    out
}

/// A guard's rate as a share of no guard's in the same rounds: the median
/// and the range, in percent.
fn share(shares: &Samples) -> String {
    let percent = Samples(shares.0.iter().map(|s| s * 100.0).collect());
    match (percent.median(), percent.min(), percent.max()) {
        (Some(median), Some(min), Some(max)) if percent.0.len() > 1 => {
            format!("{median:.1} % ({min:.0}–{max:.0})")
        }
        (Some(median), ..) => format!("{median:.1} %"),
        _ => "–".into(),
    }
}

/// Where a dockfw create's time goes, beside `nft -f`: the whole command,
/// its apply call (`Nft::apply`: lock, read, plan, encode, commit, verify,
/// keep the image in memory; the image file is written after it, on a
/// thread of its own) and the kernel commit within it, with the two ratios the
/// targets are set in. The call-to-commit ratio is taken run by run (both
/// from the same run); the command-to-`nft -f` one from the two medians.
fn commit_table(rows: &[Row]) -> String {
    let find = |tool: &str, size: usize| rows.iter().find(|r| r.tool == tool && r.size == size);
    let mut sizes: Vec<usize> = rows.iter().map(|r| r.size).collect();
    sizes.dedup();
    let ratio = |value: Option<f64>| value.map_or("–".to_string(), |v| format!("{v:.2}×"));
    let body: Vec<Vec<String>> = sizes
        .iter()
        .filter_map(|&size| {
            let create = find(CREATE, size).filter(|r| !r.commit_ms.is_empty())?;
            let changed = find(CHANGED, size);
            let per_run = Samples(
                create
                    .apply_ms
                    .0
                    .iter()
                    .zip(&create.commit_ms.0)
                    .map(|(call, commit)| call / commit)
                    .collect(),
            );
            let against_nft =
                find(NFT, size).and_then(|nft| Some(create.wall_ms.median()? / nft.wall_ms.median()?));
            Some(vec![
                thousands(size as i64),
                create.wall_ms.cell("ms"),
                create.apply_ms.cell("ms"),
                create.commit_ms.cell("ms"),
                ratio(per_run.median()),
                ratio(against_nft),
                changed.map_or("–".into(), |r| r.apply_ms.cell("ms")),
                changed.map_or("–".into(), |r| r.commit_ms.cell("ms")),
            ])
        })
        .collect();
    markdown_table(
        &[
            "entries",
            "create: command",
            "create: apply call",
            "create: kernel commit",
            "apply call / commit",
            "command / `nft -f`",
            "one entry changed: apply call",
            "one entry changed: kernel commit",
        ],
        &body,
    )
}

/// The Markdown of [`run_heal`]'s rows.
pub fn heal_report(rows: &[HealRow], plan: &Plan) -> String {
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.tamper.to_string(),
                thousands(r.size as i64),
                r.stated_ms.cell("ms"),
                r.observed_ms.cell("ms"),
            ]
        })
        .collect();
    let mut out = markdown_table(
        &[
            "tampering",
            "entries",
            "repair time (watch's log line)",
            "seen from outside (nft started → log line)",
        ],
        &body,
    );
    let _ = writeln!(out, "\nRuns per cell: {}.", plan.heal_runs);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_is_last_and_changing_keeps_the_size() {
        let list = sources(5, false);
        assert_eq!(list.len(), 5);
        assert_eq!(list.last(), Some(&CLIENT));
        let changed = sources(5, true);
        assert_eq!(changed.len(), 5);
        assert_ne!(changed[0], list[0]);
        assert_eq!(changed[1..], list[1..]);
        assert_eq!(sources(1, true), [CLIENT]);
    }

    #[test]
    fn every_tool_gets_the_same_sources() {
        let n = 4;
        let rules = iptables_rules(Shape::Entries(n));
        let ipset = ipset_script(n);
        let looped = insert_loop(n);
        for a in sources(n, false) {
            assert!(rules.contains(&format!("-s {a} -j RETURN")), "{rules}");
            assert!(ipset.contains(&format!("add clients {a}\n")), "{ipset}");
            assert!(looped.contains(&format!("-s {a} -j RETURN")), "{looped}");
            assert!(policy(Shape::Entries(n), false).contains(&format!("\"{a}\"")));
        }
        // The client's rule is the last before the drop, in the file and
        // after the loop's inserts (the last inserted comes first).
        let last_rule = rules.lines().rev().nth(2).unwrap();
        assert!(last_rule.contains(&CLIENT.to_string()), "{rules}");
        let first_insert = looped.lines().nth(2).unwrap();
        assert!(first_insert.contains(&CLIENT.to_string()), "{looped}");
    }

    #[test]
    fn rules_shape_gives_the_client_the_published_port() {
        let text = policy(Shape::Rules(3), false);
        assert_eq!(text.matches("[[rule]]").count(), 3);
        assert!(
            text.ends_with(&format!("from = [\"{CLIENT}\"]\nports = [{PUBLISHED}]\n\n")),
            "{text}"
        );
        assert!(
            iptables_rules(Shape::Rules(3)).contains(&format!("-s {CLIENT} -p tcp --dport 80 -j RETURN"))
        );
    }

    #[test]
    fn report_tables_have_a_column_per_tool_and_a_row_per_size() {
        let row = |tool, size, wall: f64| Row {
            tool,
            size,
            wall_ms: Samples(vec![wall]),
            sys_ms: Samples(vec![1.0]),
            rss_mib: Samples(vec![3.0]),
            commit_ms: Samples(vec![]),
            apply_ms: Samples(vec![]),
            timed_out: false,
        };
        let results = Results {
            entries: vec![
                row(CREATE, 10, 2.0),
                row(NFT, 10, 20.0),
                row(CREATE, 1000, 4.0),
                Row {
                    timed_out: true,
                    ..Row {
                        wall_ms: Samples::default(),
                        ..row(NFT, 1000, 0.0)
                    }
                },
            ],
            data: vec![DataRow {
                guard: NO_GUARD,
                size: 0,
                conns: Samples(vec![80_000.0, 81_600.0, 82_000.0]),
                gbits: Samples(vec![20.0]),
                conns_share: Samples(vec![1.0, 1.0, 1.0]),
                gbits_share: Samples(vec![1.0]),
                failed: 0,
            }],
            ..Results::default()
        };
        let text = report(&results, &Plan::new(true));
        assert!(text.contains("| entries | dockfw create | nft -f |\n"), "{text}");
        assert!(text.contains("| 10 | 2.00 ms | 20.0 ms |\n"), "{text}");
        assert!(text.contains("| 1,000 | 4.00 ms | > 30 s (killed) |\n"), "{text}");
        assert!(
            text.contains(
                "| no guard | – | 81,600 /s (80,000–82,000) | 100.0 % (100–100) | 20.0 Gbit/s | 100.0 % | 0 |"
            ),
            "{text}"
        );
    }
}
