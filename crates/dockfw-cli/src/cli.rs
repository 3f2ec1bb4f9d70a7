//! The command line, as clap sees it. Man page and completions are generated
//! from this definition (`dockfw-nft completions`, `cargo xtask dist`).

use clap::{ArgAction, Args, Parser, Subcommand};
use std::net::IpAddr;
use std::path::PathBuf;

pub const EXIT_CODES: &str = "\
Exit status:
  0  success (diff, status: installed table matches the policy)
  1  differences (diff, status: not installed, not matching the policy, or not dockfw's table)
  2  usage or policy error, incl. a policy file that cannot be read, or the table is not
     dockfw's (apply, remove); nothing was changed
  3  kernel or lock error, incl. no permission to change the firewall (the ruleset already
     installed stays as it was, unless the message says what was committed)
  4  Docker unreachable where Docker is required (--require-docker; watch)
set: 1 when the table or the set is not installed (apply first); 2 when NAME is not a
dynamic set of the policy, or an argument is not one address";

/// The whole command line: parse it with [`clap::Parser`] and hand it to
/// [`run`](crate::run). Its help text comes from the `about` attributes, not
/// from this comment.
#[derive(Debug, Parser)]
#[command(
    name = "dockfw-nft",
    version,
    about = "Guard Docker-published ports with one nftables policy",
    long_about = "Guard Docker-published ports with one nftables policy.\n\n\
        dockfw-nft compiles a TOML policy (which sources may reach which published ports, \
        containers and host addresses, on which interfaces) into its own nftables table, \
        hooked before Docker's chains, and installs it in one atomic transaction.",
    after_help = EXIT_CODES,
    propagate_version = true
)]
pub struct Cli {
    /// The options every subcommand takes (policy file, table, namespace,
    /// Docker, output).
    #[command(flatten)]
    pub global: Global,
    /// The subcommand and its own options.
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Policy file.
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "DOCKFW_CONFIG",
        default_value = dockfw_core::policy::DEFAULT_PATH,
        value_name = "FILE"
    )]
    pub config: PathBuf,
    /// nftables table (family inet) to work on [default: the policy's guard.table, else "dockfw"].
    #[arg(long, global = true, value_name = "NAME", value_parser = table_name)]
    pub table: Option<String>,
    /// Work inside this network namespace: a name from `ip netns` or a path.
    #[arg(long, global = true, value_name = "NAME|PATH")]
    pub netns: Option<String>,
    /// Docker Engine API address [default: $DOCKER_HOST, else unix:///var/run/docker.sock].
    #[arg(long, global = true, value_name = "URL")]
    pub docker_host: Option<String>,
    /// How long one exchange with Docker (connect, list, subscribe) may take
    /// before Docker counts as unreachable: raise it for a daemon that is
    /// slow to answer (a loaded host, hundreds of containers, Podman's
    /// service).
    #[arg(
        long,
        global = true,
        value_name = "DURATION",
        env = "DOCKFW_DOCKER_TIMEOUT",
        default_value = "5s",
        value_parser = docker_timeout
    )]
    pub docker_timeout: std::time::Duration,
    /// Do not ask Docker: `container` and `labels` rules match nothing.
    #[arg(long, global = true, conflicts_with = "require_docker")]
    pub no_docker: bool,
    /// Fail (exit 4) when Docker cannot be reached, instead of warning.
    #[arg(long, global = true)]
    pub require_docker: bool,
    /// Where downloaded lists (`url` sources) and resolved names are kept, for
    /// when the next download or lookup fails.
    #[arg(
        long,
        global = true,
        env = "DOCKFW_CACHE_DIR",
        default_value = crate::sources::DEFAULT_CACHE_DIR,
        value_name = "DIR"
    )]
    pub cache_dir: PathBuf,
    /// Set for `watch`, which requires Docker whatever the options say.
    #[arg(skip)]
    pub watching: bool,
    /// Print data as JSON (check, plan, apply, diff, status, explain, remove, set; log: one object a line).
    #[arg(long, global = true)]
    pub json: bool,
    /// Say more (repeat for more detail).
    #[arg(short, long, global = true, action = ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Print only errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate, compile and install the policy atomically; verify it; print a summary.
    ///
    /// A policy error or a kernel error leaves what was installed untouched. When the
    /// installed table already matches, nothing is changed (counters keep counting).
    /// A table of that name that dockfw did not create is left alone (exit 2) unless
    /// --adopt is given.
    Apply {
        /// Reinstall even when the installed table already matches; apply even
        /// while a `watch` guards the table (it then puts its own policy back).
        #[arg(long)]
        force: bool,
        /// Replace the table even if dockfw did not create it (its contents are lost).
        #[arg(long)]
        adopt: bool,
    },
    /// Print the nft script `apply` would install. Needs no privilege.
    Plan,
    /// Compare the installed table with the policy (exit 0 equal, 1 different).
    Diff,
    /// Is the table installed and current; packets and bytes each rule decided.
    ///
    /// `--format prometheus` prints the counters in Prometheus' text format,
    /// for node_exporter's textfile collector (same exit status).
    Status {
        /// How to print it (`--json` prints JSON).
        #[arg(long, value_enum, default_value_t = StatusFormat::Text)]
        format: StatusFormat,
    },
    /// Validate the policy and print its warnings. Needs no privilege.
    ///
    /// Reads the sets' list files; downloads `url` sources and resolves `names`
    /// only with --fetch.
    Check {
        /// Also download the sets' URLs and resolve their names.
        #[arg(long)]
        fetch: bool,
    },
    /// Say which rule decides a connection, and why the rules before it did not match.
    Explain(ExplainArgs),
    /// Delete dockfw's table (and nothing else).
    ///
    /// A table of that name that dockfw did not create is left alone (exit 2) unless
    /// --foreign is given.
    Remove {
        /// Delete the table even if dockfw did not create it.
        #[arg(long)]
        foreign: bool,
    },
    /// Apply; repair the table whenever anything else changes it; re-apply whenever
    /// Docker's containers change (runs until stopped).
    ///
    /// Repairs any change another program commits to dockfw's table (deleted, flushed,
    /// made dormant, a rule or element added or deleted) within milliseconds, logging
    /// what changed and by whom; a program that keeps changing it is backed off (at
    /// most 5 s between repairs). Keeps `container` and `labels` rules and the
    /// docker-proxy guard in step with what runs. Needs Docker (exit 4 when it cannot
    /// be reached at start); if Docker goes away later, repairs go on with the
    /// containers last known and following resumes when it is back. SIGHUP re-reads
    /// the policy (one with errors is refused; the running one stays); SIGTERM or
    /// SIGINT ends it (exit 0), leaving the table in force. Downloads
    /// `url` sets and resolves `names` sets again at their `refresh` (default 1d
    /// and 5m), and reads list files again when they change; applies only when a
    /// set's addresses changed, and keeps what a set held when its source fails
    /// or has errors. Speaks
    /// systemd's notify protocol (READY, STATUS, watchdog) when NOTIFY_SOCKET is set.
    Watch {
        /// Wait this long after the last event of a burst before applying.
        #[arg(long, default_value = "1s", value_name = "DURATION")]
        settle: humantime::Duration,
        /// Serve Prometheus metrics at http://ADDR:PORT/metrics (e.g. 127.0.0.1:9817):
        /// per-rule counters, repairs, revoked connections, apply durations.
        #[arg(long, value_name = "ADDR:PORT")]
        metrics: Option<std::net::SocketAddr>,
    },
    /// Follow what the guard logs (`log = true`, [guard] log, audit mode): who was
    /// just blocked, and by which rule (runs until stopped).
    ///
    /// Binds the policy's NFLOG group ([guard] log_group, default 23) in the network
    /// namespace and prints one line per logged packet: time, what was decided and by
    /// which rule, protocol, source, the address and port the client dialled, the
    /// interfaces and the container. --json prints one JSON object per line. Rules are
    /// named from the policy when it can be read, else from the log prefix. Only one
    /// process can follow a group (exit 3 when ulogd or another one holds it); while
    /// none does, the lines are lost. Stops on SIGINT or SIGTERM, or when its
    /// output's reader goes away (exit 0). Packets others log to the group (a
    /// prefix that is not dockfw's, or a rule the policy does not have) are
    /// counted and skipped unless --all.
    Log {
        /// The NFLOG group to follow [default: the policy's guard.log_group, else 23].
        #[arg(long, value_name = "N")]
        group: Option<u16>,
        /// Also show packets logged to the group by others, marked `foreign`.
        #[arg(long)]
        all: bool,
    },
    /// List, add, delete and flush the addresses of the policy's dynamic sets
    /// (`dynamic = true`), e.g. for fail2ban or a script.
    ///
    /// NAME is the set's name in the policy; its addresses live in the kernel sets
    /// set-NAME-v4 and set-NAME-v6 of dockfw's table, which `apply` creates and never
    /// empties. Each change is one transaction; adding an address already there, or
    /// deleting one that is not, is no error. The kernel removes an address when its
    /// timeout runs out. Exit 1 when the table (or the set) is not installed: run
    /// `dockfw-nft apply` first.
    Set {
        /// What to do.
        #[command(subcommand)]
        command: SetCommand,
    },
    /// Print a shell completion script.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write man pages into a directory (used by `cargo xtask dist`).
    #[command(hide = true)]
    Manpages {
        /// Directory to write dockfw-nft.1 and dockfw-nft-COMMAND.1 into.
        dir: PathBuf,
    },
}

/// `dockfw-nft set ...`.
#[derive(Debug, Subcommand)]
pub enum SetCommand {
    /// The addresses in one dynamic set (or in each), with the time each has left.
    List {
        /// The set's name in the policy [default: every dynamic set].
        name: Option<String>,
    },
    /// Add addresses (IPv4 or IPv6, mixed) to a dynamic set.
    Add {
        /// The set's name in the policy.
        name: String,
        /// The addresses.
        #[arg(required = true, value_name = "ADDR")]
        addresses: Vec<String>,
        /// How long they stay: a duration (10m, 1h30m) or seconds (600, as fail2ban's
        /// <bantime> gives); a negative number (fail2ban's permanent bantime = -1) gives
        /// them no timeout of their own [default: the set's timeout, if any].
        #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
        timeout: Option<String>,
    },
    /// Delete addresses from a dynamic set (one not in it is skipped).
    Del {
        /// The set's name in the policy.
        name: String,
        /// The addresses.
        #[arg(required = true, value_name = "ADDR")]
        addresses: Vec<String>,
    },
    /// Delete every address of a dynamic set.
    Flush {
        /// The set's name in the policy.
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Client address (with --to-container: the address a container's
    /// connection comes from).
    #[arg(
        long,
        value_name = "ADDR",
        required_unless_present_any = ["from_container", "to_container"],
        conflicts_with = "from_container"
    )]
    pub from: Option<IpAddr>,
    /// A container's own new connection, from this running container (its
    /// address, from Docker): to --to ADDR outside (outbound rules), or to
    /// --to-container NAME (between rules).
    #[arg(long, value_name = "NAME")]
    pub from_container: Option<String>,
    /// A connection to this running container from another one (between
    /// rules): from --from-container NAME, or from --from ADDR.
    #[arg(long, value_name = "NAME", conflicts_with = "to")]
    pub to_container: Option<String>,
    /// Port the client dials, PORT or PORT/PROTO (tcp or udp; default tcp).
    #[arg(long, value_name = "PORT[/PROTO]")]
    pub port: String,
    /// Interface the connection arrives on [default: the first guarded interface].
    #[arg(long = "in", value_name = "IFACE")]
    pub interface: Option<String>,
    /// Address the client dials: the host's (published, proxied) or a container's (routed);
    /// with --from-container, where the container's connection goes (outbound, or between
    /// when it is a running container's address).
    #[arg(long, value_name = "ADDR")]
    pub to: Option<IpAddr>,
    /// The way in: DNAT by Docker to a container (published), Docker's userland
    /// proxy on the host (proxied, e.g. IPv6 clients of an IPv4-only Docker), or
    /// routed to a container's address without NAT (routed) [default: published].
    /// With --from-container, `proxied` is a container dialling a port the host
    /// publishes (--to the host's address), which docker-proxy answers.
    #[arg(long, value_enum)]
    pub via: Option<ViaArg>,
    /// Which rules judge the connection [default: inbound with --from ADDR;
    /// with --from-container, outbound or between by where it goes]. Give
    /// it to ask about a container's connection by address, e.g. without
    /// Docker: --from ADDR --to ADDR --direction outbound.
    #[arg(long, value_enum)]
    pub direction: Option<DirectionArg>,
}

/// The three directions a policy judges (see `dockfw_core::Direction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DirectionArg {
    Inbound,
    Outbound,
    Between,
}

impl From<DirectionArg> for dockfw_core::Direction {
    fn from(direction: DirectionArg) -> Self {
        match direction {
            DirectionArg::Inbound => Self::Inbound,
            DirectionArg::Outbound => Self::Outbound,
            DirectionArg::Between => Self::Between,
        }
    }
}

/// How `status` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusFormat {
    /// A table for people.
    Text,
    /// Prometheus' text format (node_exporter's textfile collector).
    Prometheus,
}

/// The way a connection reaches a container (see `dockfw_core::Via`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ViaArg {
    Published,
    Proxied,
    Routed,
}

impl From<ViaArg> for dockfw_core::Via {
    fn from(via: ViaArg) -> Self {
        match via {
            ViaArg::Published => Self::Published,
            ViaArg::Proxied => Self::Proxied,
            ViaArg::Routed => Self::Routed,
        }
    }
}

/// `--table` goes into the nft text and the kernel like the policy's
/// `guard.table`, so it is checked the same way (clap exits 2).
fn table_name(name: &str) -> Result<String, String> {
    dockfw_core::names::check_table_name(name)
        .map(|()| name.to_string())
        .map_err(|error| format!("{}; {}", error.problem, error.hint))
}

/// `--docker-timeout`: a humantime duration (`5s`, `1m`), not zero.
fn docker_timeout(text: &str) -> Result<std::time::Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| format!("{e} (e.g. 5s, 30s, 1m)"))?;
    if duration.is_zero() {
        return Err("must be more than zero (e.g. 5s)".into());
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_timeout_takes_a_duration_and_refuses_zero_and_words() {
        assert_eq!(docker_timeout("30s"), Ok(std::time::Duration::from_secs(30)));
        assert_eq!(docker_timeout("1m"), Ok(std::time::Duration::from_secs(60)));
        assert!(docker_timeout("0s").unwrap_err().contains("more than zero"));
        assert!(docker_timeout("soon").unwrap_err().contains("e.g. 5s"));
    }
}
