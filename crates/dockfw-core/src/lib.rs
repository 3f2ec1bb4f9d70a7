//! dockfw-core: the policy language of dockfw-nft and its compiler.
//!
//! Data flows one way: a TOML policy is [parsed and validated](parse()) into a
//! [`Policy`], [compiled](compile()) into a backend-neutral [`Ruleset`] laid
//! out as [`layout`] describes, which a backend (the `dockfw-nft` crate)
//! installs, or which [`render()`] prints as an nft script. [`evaluate`] says
//! which rule decides a connection, on any [`Via`] into a container (Docker's
//! DNAT, docker-proxy, routed). [`containers`] relates a policy to the running
//! containers: which containers each rule reaches, and warnings about ports
//! nobody publishes.
//!
//! # Where a policy field goes
//!
//! Follow one field (say a rule's `ports`) through the workspace:
//!
//! | step | file | symbols |
//! |---|---|---|
//! | the model | `src/policy.rs` | `Policy`, `Guard`, `Rule` (`Rule::selected` for `container`/`labels`) |
//! | parsed, with file:line:column errors | `src/parse.rs` (the TOML walk), `src/values.rs` (address, port, rate, interface syntax), `src/sets.rs` (set sources, list files, origins) | [`parse()`], [`Draft`], `read_rule`, `read_ports`, `read_addresses`, `read_labels`, `read_sets`; `parse_port_range`, `parse_ip_range`, [`sets::parse_list`] |
//! | validated | `src/parse.rs` (errors), `src/names.rs` (what nft accepts), `src/lint.rs` (warnings) | `check_rule_name`, `check_table_name`, `lint` |
//! | compiled | `src/compile.rs` → `src/ruleset.rs` (the backend-neutral `Ruleset`), in the chains of `src/layout.rs` | [`compile()`], `dialled_targets`; `Match::DialledPort`, `Match::DialledAddrIn`, `Match::SourceIn`, [`Match::set`](ruleset::Match::set); `layout::rule_chain`, `layout::rule_counter` |
//! | rendered as nft text | `src/render.rs` | [`render()`], `render_table`, `render_rule` |
//! | evaluated | `src/eval.rs` (on the policy, and by running the `Ruleset`); `src/revoke.rs` (tracked connections) | [`evaluate`], `explain`, [`evaluate_ruleset`], `simulate_packet`; `revoke::judge` |
//! | against running containers | `src/containers.rs` | `containers::resolve`, `containers::diagnose` |
//! | encoded for the kernel | `crates/dockfw-nft/src/encode.rs`; read back by `decode.rs`; changes planned by `plan.rs` | `match_exprs`, `statement_exprs`, `verdict_expr`; `decode::rule`, `decode::set`; `plan` |
//! | tested | `tests/parse.rs`, `tests/compile.rs`, `tests/containers.rs`, `tests/agreement.rs` (policy and ruleset agree), `tests/nft_accepts_plan.rs` (nft loads every plan); kernel round trips in `crates/dockfw-nft/tests/`, the command in `crates/dockfw-cli/tests/`, real traffic in `tests/` | |
//!
//! `[[outbound]]` and `[[between]]` rules ([`ContainerRule`]) take the
//! same road: parsed by `read_container_rule` (`read_selector` for a
//! between rule's `from`/`to`), linted per direction
//! (`lint_container_rules`), compiled by `Compiler::container_chains` into
//! the chains [`layout`] describes, evaluated by [`explain_container`] and
//! by running the ruleset ([`evaluate_ruleset_container`]), re-judged by
//! [`revoke::judge_from_container`]. `[guard] mode = "audit"` changes only
//! how decision chains end (`decision_rules`).
//!
//! A rule's `container` and `labels` name no address: at compile time
//! `Rule::selected` picks the running containers they match, and
//! `dialled_targets` turns what those containers publish into the addresses
//! and ports a client dials (each host address a port is bound to, with
//! containers' own addresses excluded, for Docker's DNAT and docker-proxy;
//! the container's own address and container port for routed traffic).
//! Those addresses become the rule's own address sets, matched by
//! `Match::DialledAddrIn`, with the ports in `Match::DialledPort`; with no
//! such container running, the rule matches nothing. So a container starting
//! or stopping changes the compiled ruleset, which `watch` applies again.
//!
//! No I/O happens here: callers read files and talk to Docker. A policy
//! whose sets have sources outside it (list files, URLs, DNS names) is read
//! in two steps: [`Draft::parse`], then the caller loads each of
//! [`Draft::external_sources`] into a [`sets::Loaded`] and calls
//! [`Draft::resolve`], which reads lists with [`sets::parse_list`] and keeps
//! each set entry's origin ([`sets`]). [`parse()`] is both steps with
//! nothing loaded. With the
//! feature `proptest`, the `testing` module offers strategies for random
//! policies, containers and connections.
//!
//! ```
//! use dockfw_core::{Action, Connection, Decision, Proto};
//!
//! let text = r#"
//!     [guard]
//!     interfaces = ["eth0"]
//!     default = "drop"
//!
//!     [sets]
//!     office = ["198.51.100.0/24", "2001:db8:10::/48"]
//!
//!     [[rule]]
//!     name = "office ssh"
//!     from = ["@office"]
//!     ports = ["2222/tcp"]
//! "#;
//! let parsed = dockfw_core::parse("policy.toml", text).expect("valid policy");
//! let ruleset = dockfw_core::compile(&parsed.policy, &[]);
//! assert!(dockfw_core::render(&ruleset).contains("chain forward"));
//!
//! let connection = Connection {
//!     interface: "eth0".into(),
//!     source: "198.51.100.7".parse().unwrap(),
//!     dialled: None,
//!     port: 2222,
//!     proto: Proto::Tcp,
//! };
//! let decision = dockfw_core::evaluate(&parsed.policy, &[], &connection);
//! assert_eq!(decision, Decision::Rule { name: "office ssh".into(), action: Action::Allow });
//! // The compiled ruleset agrees.
//! assert_eq!(dockfw_core::evaluate_ruleset(&ruleset, &connection), decision);
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod compile;
pub mod containers;
mod diag;
pub mod eval;
pub mod interval;
pub mod layout;
mod lint;
pub mod names;
mod nft_keywords;
mod parse;
pub mod policy;
pub mod render;
pub mod revoke;
pub mod ruleset;
pub mod sets;
#[cfg(feature = "proptest")]
pub mod testing;
pub mod values;

pub use compile::{compile, compile_with_bridges};
pub use diag::{Diagnostic, Location, PolicyError, Severity};
pub use eval::{
    Connection, ContainerConnection, Decision, Explanation, Miss, Via, evaluate, evaluate_container,
    evaluate_ruleset, evaluate_ruleset_container, evaluate_ruleset_via, evaluate_via, explain,
    explain_container, explain_via,
};
pub use parse::{Draft, Parsed, parse, parse_bytes};
pub use policy::{Action, Container, ContainerRule, Direction, Mode, Policy, PublishedPort, Rule};
pub use render::render;
pub use ruleset::{Proto, Ruleset};

/// The README's Rust examples run as doctests, so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
