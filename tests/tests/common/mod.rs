//! Shared by the end-to-end test files: one dockerd at a time, policies
//! installed the way the CLI installs them, and probe tables.
// Each test file uses a different part of this module.
#![allow(dead_code)]

use dockfw_core::layout::CounterAt;
use dockfw_core::ruleset::Ruleset;
use dockfw_core::{Container, PolicyError};
use dockfw_e2e::{Client, Lab, LabConfig, Probe, ProbeResult, Proto};
use dockfw_nft::{Nft, RuleCounter};
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One lab (one dockerd) at a time within a test binary: the machine has
/// two cores, and a busy machine makes probe timing unreliable.
static SERIAL: Mutex<()> = Mutex::new(());

/// Takes the lab lock and brings a fresh lab up (panics when it cannot, see
/// [`dockfw_e2e::up_for_test`]). Keep the guard as long as the lab.
pub fn lab(prefix: &str) -> (MutexGuard<'static, ()>, Lab) {
    lab_with(LabConfig::for_test(prefix).expect("valid prefix"))
}

/// Like [`lab`] with a configuration of the caller's.
pub fn lab_with(config: LabConfig) -> (MutexGuard<'static, ()>, Lab) {
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    (serial, dockfw_e2e::up_for_test(config))
}

/// The firewall of a lab's docker host, driven as the CLI drives it:
/// parse, compile against the running containers, apply.
pub struct Firewall {
    nft: Nft,
    /// What Docker runs, for `container` and `labels` rules. Empty until
    /// those rules are tested: fill it from the Docker API then.
    pub containers: Vec<Container>,
    /// The last ruleset applied successfully.
    pub applied: Option<Ruleset>,
}

impl Firewall {
    /// Connects to nf_tables in the lab's docker-host namespace.
    pub fn new(lab: &Lab) -> Self {
        Self {
            nft: Nft::in_netns(lab.netns_path()).expect("open nf_tables in the lab"),
            containers: Vec::new(),
            applied: None,
        }
    }

    /// Parses and compiles `toml`; panics with the diagnostics when the
    /// policy is invalid.
    pub fn compile(&self, toml: &str) -> Ruleset {
        let parsed = parse(toml).unwrap_or_else(|e| panic!("invalid test policy:\n{e}\n{toml}"));
        dockfw_core::compile(&parsed.policy, &self.containers)
    }

    /// Installs the policy `toml`, returning the ruleset it compiled to.
    pub fn apply(&mut self, toml: &str) -> Ruleset {
        let ruleset = self.compile(toml);
        self.apply_ruleset(&ruleset)
            .unwrap_or_else(|e| panic!("apply failed: {e}\n{toml}"));
        ruleset
    }

    /// Installs a ruleset as it is.
    pub fn apply_ruleset(&mut self, ruleset: &Ruleset) -> Result<(), dockfw_nft::Error> {
        self.nft.apply(ruleset)?;
        self.applied = Some(ruleset.clone());
        Ok(())
    }

    /// What the kernel holds in `table`.
    pub fn installed(&mut self, table: &str) -> Option<Ruleset> {
        self.nft.installed(table).expect("read the table")
    }

    /// Counters of every rule in the table applied last.
    pub fn counters(&mut self) -> Vec<RuleCounter> {
        let table = self.table();
        self.nft.counters(&table).expect("read counters")
    }

    /// Packets counted by the counter at `at` (a rule's, the default
    /// fate's: see [`dockfw_core::layout`]): every packet it decided.
    pub fn decided(&mut self, at: &CounterAt) -> u64 {
        let counters = self.counters();
        counters
            .iter()
            .find(|c| at.is(&c.chain, c.index))
            .unwrap_or_else(|| panic!("no counter at {at:?}: {counters:#?}"))
            .packets
    }

    /// Removes the table applied last (Docker's behaviour comes back).
    pub fn remove(&mut self) -> bool {
        let table = self.table();
        self.nft.remove(&table).expect("remove the table")
    }

    /// The table applied last (`dockfw` before any).
    pub fn table(&self) -> String {
        self.applied
            .as_ref()
            .map_or_else(|| "dockfw".to_string(), |r| r.table.clone())
    }
}

/// Parses a test policy as the CLI would read it from a file.
pub fn parse(toml: &str) -> Result<dockfw_core::Parsed, PolicyError> {
    dockfw_core::parse("e2e-policy.toml", toml)
}

/// A TCP probe.
pub fn tcp(from: Client, src: impl Into<IpAddr>, dst: impl Into<IpAddr>, port: u16) -> Probe {
    probe(from, src, dst, port, Proto::Tcp)
}

/// A UDP probe.
pub fn udp(from: Client, src: impl Into<IpAddr>, dst: impl Into<IpAddr>, port: u16) -> Probe {
    probe(from, src, dst, port, Proto::Udp)
}

/// A probe.
pub fn probe(from: Client, src: impl Into<IpAddr>, dst: impl Into<IpAddr>, port: u16, proto: Proto) -> Probe {
    Probe {
        from,
        src: src.into(),
        dst: dst.into(),
        port,
        proto,
    }
}

/// Runs the probes of `cases` at once and asserts each outcome; the panic
/// lists every wrong one under the heading `what`.
pub fn check(lab: &Lab, what: &str, cases: &[(Probe, ProbeResult)]) {
    let start = Instant::now();
    let wrong = lab.wrong_outcomes(cases).expect("probes run");
    let took = start.elapsed();
    assert!(
        wrong.is_empty(),
        "{what}: {} of {} probes wrong:\n  {}\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n  "),
        network_state(lab)
    );
    // Concurrent: the batch takes about one probe timeout, so a drop
    // (TimedOut) cannot be confused with a slow machine.
    assert!(took < Duration::from_secs(3), "{what}: probes took {took:?}");
}

/// Neighbour tables and address states of the lab's namespaces, to tell a
/// failing probe caused by the lab's own network from one caused by the
/// firewall.
pub fn network_state(lab: &Lab) -> String {
    let mut out = String::from("lab network state:");
    for ns in [Client::DockerHost, Client::Internet, Client::Lan] {
        for args in [&["neigh"][..], &["-6", "neigh"], &["-6", "-br", "addr"]] {
            let text = lab.exec(ns, "ip", args).unwrap_or_else(|e| format!("({e})"));
            out.push_str(&format!(
                "\n  {ns:?} ip {}:\n    {}",
                args.join(" "),
                text.replace('\n', "\n    ")
            ));
        }
    }
    out
}

/// The cases of `probes`, each expecting `outcome`.
pub fn expect(probes: impl IntoIterator<Item = Probe>, outcome: ProbeResult) -> Vec<(Probe, ProbeResult)> {
    probes.into_iter().map(|p| (p, outcome)).collect()
}
