//! Every task and flag of `cargo xtask`, in one place: `cargo xtask --help`
//! and `cargo xtask <task> --help` are generated from these definitions.

use crate::vm::{AccelChoice, Distro};
use clap::{Args, Parser, Subcommand, ValueEnum};
use dockfw_e2e::Proto;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Project tasks for dockfw-nft.
#[derive(Debug, Parser)]
#[command(name = "xtask", bin_name = "cargo xtask")]
pub(crate) struct Xtask {
    #[command(subcommand)]
    pub task: Task,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Task {
    /// Formatting check, clippy with warnings denied, every test, then the
    /// demo. As root it also runs the privileged tests (marked `#[ignore =
    /// "needs root…"]`); without root it runs the rest and says how many it
    /// left out, or fails when CI=true.
    #[command(override_usage = "cargo xtask test [CARGO_TEST_ARGS]... [-- <TEST_BINARY_ARGS>...]")]
    Test(Test),
    /// dockfw-nft at work in a throwaway Docker lab (the README's "see it
    /// work"; needs root).
    Demo,
    /// The Docker lab by hand (see tests/README.md; needs root).
    Lab(Lab),
    /// Run the end-to-end and privileged tests inside throwaway Debian VMs
    /// (see tests/README.md).
    VmTest(VmTest),
    /// Benchmarks, written into docs/benchmarks.md (with charts in docs/);
    /// without a subcommand, all of them (needs root).
    Bench(Bench),
    /// Release tarball (binary, man pages, completions, systemd units), Debian package and container image.
    Dist,
}

#[derive(Debug, Args)]
pub(crate) struct Test {
    /// Passed on to `cargo test --workspace`: a package, a test target, a
    /// name filter…
    #[arg(
        allow_hyphen_values = true,
        value_terminator = "--",
        value_name = "CARGO_TEST_ARGS"
    )]
    pub cargo_test_args: Vec<String>,
    /// Passed on to every test binary (after `--`): `--nocapture`,
    /// `--exact`…
    #[arg(allow_hyphen_values = true, value_name = "TEST_BINARY_ARGS")]
    pub test_binary_args: Vec<String>,
}

impl Test {
    /// The whole `cargo test` command line. As root the ignored tests run
    /// too (the privileged ones) unless the arguments already choose
    /// (`--ignored`, `--include-ignored`); the `manual::` tests never do.
    pub fn cargo_test(&self, root: bool) -> Vec<String> {
        let mut args = vec!["test".to_string(), "--workspace".to_string()];
        args.extend(self.cargo_test_args.iter().cloned());
        args.push("--".into());
        let chooses = self
            .test_binary_args
            .iter()
            .any(|a| a == "--ignored" || a == "--include-ignored");
        if root && !chooses {
            args.push("--include-ignored".into());
        }
        args.extend(["--skip".to_string(), crate::MANUAL_TESTS.to_string()]);
        args.extend(self.test_binary_args.iter().cloned());
        args
    }
}

#[derive(Debug, Args)]
pub(crate) struct Bench {
    /// A reduced set (fewer sizes and runs) that finishes in a few minutes;
    /// without a subcommand it runs only `compare`.
    #[arg(long, global = true)]
    pub quick: bool,
    #[command(subcommand)]
    pub part: Option<BenchPart>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum BenchPart {
    /// Applying rulesets over netlink, against `nft -f` (release build; needs
    /// root: each size runs in a fresh network namespace).
    Apply,
    /// Parsing and compiling policies (no privilege needed).
    Compile,
    /// dockfw against `nft -f`, iptables rules in DOCKER-USER and ipset, in
    /// network namespaces: load time, kernel time, peak RSS; new connections
    /// per second and throughput through a published port (release build;
    /// needs root; installs ipset and iperf3).
    Compare,
    /// `watch`'s repair time after each kind of tampering, at 10 to 100,000
    /// entries (release build; needs root).
    Heal,
    /// Runs a command inside a network namespace and prints its wall time,
    /// kernel CPU time and peak RSS (used by `compare`).
    #[command(hide = true)]
    Measure {
        #[arg(long)]
        netns: String,
        /// Kill the command after this long (e.g. 90s).
        #[arg(long, value_parser = humantime::parse_duration)]
        timeout: Option<Duration>,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub(crate) struct Lab {
    /// The lab's name: its namespaces, dockerd and files derive from it.
    #[arg(
        long,
        global = true,
        value_name = "P",
        env = "DOCKFW_LAB_PREFIX",
        default_value = "dfw"
    )]
    pub prefix: String,
    #[command(subcommand)]
    pub command: LabCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum LabCommand {
    /// Build the lab, or complete one that is partly there.
    Up {
        /// Run the lab's dockerd without IPv6.
        #[arg(long)]
        no_ipv6: bool,
        /// Also start an echo container publishing 8081->8000/tcp,
        /// 8081->8000/udp and 8443->8443/tcp.
        #[arg(long)]
        demo: bool,
    },
    /// Remove everything the lab made, also after a crash.
    Down,
    /// Show what exists.
    Status,
    /// Connect from a client namespace and print what happened (Open,
    /// TimedOut, Refused).
    Probe {
        /// The namespace to connect from.
        #[arg(value_enum)]
        from: ProbeClient,
        /// Source address (one of the client namespace's addresses).
        src: IpAddr,
        /// Destination address.
        dst: IpAddr,
        /// Destination port.
        port: u16,
        /// tcp or udp.
        #[arg(value_name = "PROTO")]
        proto: Proto,
    },
}

/// The lab's client namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ProbeClient {
    /// The internet side (also `internet`).
    #[value(alias = "internet")]
    Inet,
    /// The LAN side.
    Lan,
    /// The Docker host itself.
    Host,
}

#[derive(Debug, Args)]
pub(crate) struct VmTest {
    /// Debian release to test on (repeatable); default: all of them.
    #[arg(long = "distro", value_enum, value_name = "DISTRO")]
    pub distros: Vec<Distro>,
    /// Only this integration-test target (repeatable), e.g. `lab`, `packets`.
    #[arg(long = "test", value_name = "NAME")]
    pub tests: Vec<String>,
    /// Stop each VM boot after this long (e.g. 90s, 20m).
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// CPU virtualisation: KVM when /dev/kvm works (falling back to TCG if
    /// KVM cannot boot the guest), or force one.
    #[arg(long, value_enum, default_value_t = AccelChoice::Auto)]
    pub accel: AccelChoice,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 3072)]
    pub memory_mib: u32,
    /// Guest CPUs (default: host CPUs, at most 4).
    #[arg(long)]
    pub cpus: Option<u32>,
    /// Test binaries each VM runs side by side.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=8))]
    pub lanes: u32,
    /// Only the package boot (the Debian package under systemd), no tests.
    #[arg(long, conflicts_with_all = ["tests", "test_args"])]
    pub package_only: bool,
    /// Run the distros' VMs one after another instead of side by side
    /// (each VM takes --memory-mib).
    #[arg(long)]
    pub one_at_a_time: bool,
    /// Debian mirror for debootstrap (default: the one apt uses here).
    #[arg(long)]
    pub mirror: Option<String>,
    /// Image cache (default: ~/.cache/dockfw-vm).
    #[arg(long, env = "DOCKFW_VM_CACHE")]
    pub cache_dir: Option<PathBuf>,
    /// Build the images afresh even when the cached ones match the recipe
    /// (to pick up new Debian packages).
    #[arg(long)]
    pub rebuild_image: bool,
    /// Passed to every test binary: a name filter, `--exact`, `--nocapture`…
    #[arg(last = true, value_name = "TEST_ARGS")]
    pub test_args: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Task {
        Xtask::try_parse_from(std::iter::once("xtask").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
            .task
    }

    #[test]
    fn definition_is_consistent() {
        Xtask::command().debug_assert();
    }

    #[test]
    fn test_passes_its_arguments_on_to_cargo_test() {
        for (args, cargo_test, test_binary) in [
            (&[][..], &[][..], &[][..]),
            (
                &["-p", "dockfw-core", "--test", "parse"],
                &["-p", "dockfw-core", "--test", "parse"],
                &[],
            ),
            (&["--", "--include-ignored"], &[], &["--include-ignored"]),
            (&["ports", "--", "--nocapture"], &["ports"], &["--nocapture"]),
            (&["--", "--help"], &[], &["--help"]),
            (
                &["-p", "dockfw-nft", "--", "--include-ignored", "--exact", "x"],
                &["-p", "dockfw-nft"],
                &["--include-ignored", "--exact", "x"],
            ),
        ] {
            let with_task: Vec<&str> = std::iter::once("test").chain(args.iter().copied()).collect();
            let Task::Test(test) = parse(&with_task) else {
                panic!("{args:?}")
            };
            assert_eq!(test.cargo_test_args, cargo_test, "{args:?}");
            assert_eq!(test.test_binary_args, test_binary, "{args:?}");
            // Passed on as given, around what xtask adds after `--`.
            assert_eq!(
                test.cargo_test(false),
                [
                    &["test", "--workspace"][..],
                    cargo_test,
                    &["--", "--skip", crate::MANUAL_TESTS],
                    test_binary,
                ]
                .concat()
            );
        }
    }

    #[test]
    fn as_root_test_includes_the_ignored_tests_but_never_the_manual_ones() {
        let Task::Test(test) = parse(&["test", "-p", "dockfw-nft", "--", "--nocapture"]) else {
            panic!()
        };
        let skip = ["--skip", crate::MANUAL_TESTS];
        assert_eq!(
            test.cargo_test(true),
            [
                &[
                    "test",
                    "--workspace",
                    "-p",
                    "dockfw-nft",
                    "--",
                    "--include-ignored"
                ][..],
                &skip,
                &["--nocapture"],
            ]
            .concat()
        );
        assert_eq!(
            test.cargo_test(false),
            [
                &["test", "--workspace", "-p", "dockfw-nft", "--"][..],
                &skip,
                &["--nocapture"]
            ]
            .concat()
        );
        let Task::Test(test) = parse(&["test", "--", "--ignored"]) else {
            panic!()
        };
        assert_eq!(
            test.cargo_test(true),
            [&["test", "--workspace", "--"][..], &skip, &["--ignored"]].concat()
        );
    }

    #[test]
    fn lab_prefix_goes_before_or_after_the_command() {
        for args in [
            ["lab", "--prefix", "p", "up", "--demo"],
            ["lab", "up", "--demo", "--prefix", "p"],
        ] {
            let Task::Lab(lab) = parse(&args) else {
                panic!("{args:?}")
            };
            assert_eq!(lab.prefix, "p");
            assert!(matches!(
                lab.command,
                LabCommand::Up {
                    demo: true,
                    no_ipv6: false
                }
            ));
        }
    }

    #[test]
    fn lab_probe_parses_its_operands() {
        let Task::Lab(lab) = parse(&[
            "lab",
            "probe",
            "internet",
            "198.51.100.10",
            "203.0.113.1",
            "8081",
            "udp",
        ]) else {
            panic!()
        };
        let LabCommand::Probe {
            from, port, proto, ..
        } = lab.command
        else {
            panic!()
        };
        assert_eq!((from, port, proto), (ProbeClient::Inet, 8081, Proto::Udp));
        assert!(Xtask::try_parse_from(["xtask", "lab", "probe", "wan", "::1", "::1", "1", "tcp"]).is_err());
        assert!(Xtask::try_parse_from(["xtask", "lab", "probe", "lan", "::1", "::1", "1", "sctp"]).is_err());
    }

    #[test]
    fn vm_test_arguments_parse() {
        let Task::VmTest(a) = parse(&[
            "vm-test",
            "--distro",
            "trixie",
            "--test",
            "lab",
            "--timeout",
            "90s",
            "--",
            "ports",
        ]) else {
            panic!()
        };
        assert_eq!(a.distros, [Distro::Trixie]);
        assert_eq!(a.tests, ["lab"]);
        assert_eq!(a.timeout, Duration::from_secs(90));
        assert_eq!(a.test_args, ["ports"]);
        assert!(Xtask::try_parse_from(["xtask", "vm-test", "--distro", "sid"]).is_err());
    }

    #[test]
    fn every_task_has_help() {
        for task in ["test", "demo", "lab", "vm-test", "bench", "dist"] {
            let err = Xtask::try_parse_from(["xtask", task, "--help"]).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::DisplayHelp, "{task}");
        }
    }

    #[test]
    fn bench_runs_everything_or_one_part() {
        let Task::Bench(all) = parse(&["bench"]) else {
            panic!()
        };
        assert!(all.part.is_none() && !all.quick);
        let Task::Bench(quick) = parse(&["bench", "--quick"]) else {
            panic!()
        };
        assert!(quick.part.is_none() && quick.quick);
        let Task::Bench(apply) = parse(&["bench", "apply"]) else {
            panic!()
        };
        assert!(matches!(apply.part, Some(BenchPart::Apply)));
        let Task::Bench(compare) = parse(&["bench", "compare", "--quick"]) else {
            panic!()
        };
        assert!(matches!(compare.part, Some(BenchPart::Compare)) && compare.quick);
        let Task::Bench(measure) = parse(&["bench", "measure", "--netns", "n", "--", "nft", "-f", "x"])
        else {
            panic!()
        };
        let Some(BenchPart::Measure {
            netns,
            command,
            timeout: None,
        }) = measure.part
        else {
            panic!()
        };
        assert_eq!(
            (netns.as_str(), command),
            ("n", vec!["nft".to_string(), "-f".into(), "x".into()])
        );
    }

    #[test]
    fn a_task_is_required() {
        assert!(Xtask::try_parse_from(["xtask"]).is_err());
        assert!(Xtask::try_parse_from(["xtask", "lab"]).is_err());
    }
}
