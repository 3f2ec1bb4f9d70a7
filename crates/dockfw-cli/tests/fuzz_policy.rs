//! Fuzzing the policy reader: arbitrary bytes and mutated example policies
//! go through what `dockfw-nft check` and `plan` do with a policy file — the
//! CLI's own reader (`src/policy_file.rs`), `dockfw_core::parse_bytes`
//! (decode, parse, validate, lint), `compile` and `render` — and must never
//! panic, and every error must say where it is (file:line:column).
//!
//! Bounded by the case count (2,048 per property unless PROPTEST_CASES says), so it runs
//! with the other tests in `cargo test` and `cargo xtask test`. To fuzz longer:
//!
//! ```text
//! PROPTEST_CASES=100000 cargo test --release -p dockfw-cli --test fuzz_policy
//! ```
//!
//! A failure is shrunk to a small input and saved in
//! `fuzz_policy.proptest-regressions`, replayed first on every later run.

#[path = "../src/policy_file.rs"]
#[allow(dead_code)]
mod policy_file;

use dockfw_core::Severity;
use dockfw_core::testing::containers;
use proptest::prelude::*;
use std::path::PathBuf;

const EXAMPLES: [&str; 5] = [
    include_str!("../../../examples/full.toml"),
    include_str!("../../../examples/public-web-admin.toml"),
    include_str!("../../../examples/lan-per-interface.toml"),
    include_str!("../../../examples/database-never-exposed.toml"),
    include_str!("../../../examples/office-only-container.toml"),
];

/// Fragments worth splicing in: the language's keys and values, edge values,
/// and bytes that trip readers up.
const TOKENS: &[&str] = &[
    "[[rule]]\n",
    "[guard]\n",
    "[sets]\n",
    "name",
    "from",
    "to",
    "ports",
    "interfaces",
    "container",
    "labels",
    "action",
    "limit",
    "max_connections",
    "table",
    "priority",
    "default",
    "log",
    "version",
    " = ",
    "\"",
    "'",
    "[",
    "]",
    "{",
    "}",
    ",",
    ".",
    "\n",
    "#",
    "=",
    "@",
    "@a",
    "any",
    "0",
    "-1",
    "65535",
    "65536",
    "99999999999999999999",
    "1.2.3.4",
    "::ffff:1.2.3.4",
    "10.0.0.0/8",
    "10.0.0.1/8",
    "::/0",
    "1-2",
    "80/udp",
    "80-79",
    "wg*",
    "*",
    "eth0",
    "\"drop\"",
    "\"allow\"",
    "true",
    "1e3",
    "\u{e9}",
    "\u{feff}",
    "\0",
    "\r\n",
    "\t",
];

#[derive(Debug, Clone)]
enum Mutation {
    /// Remove `len` bytes at a position (fractions of the length: any size).
    Delete { at: f64, len: usize },
    /// Insert a token.
    Insert { at: f64, token: usize },
    /// Insert arbitrary bytes.
    Bytes { at: f64, bytes: Vec<u8> },
    /// Copy one line over another.
    Line { from: f64, to: f64 },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (0.0..1.0, 1..16usize).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (0.0..1.0, 0..TOKENS.len()).prop_map(|(at, token)| Mutation::Insert { at, token }),
        (0.0..1.0, prop::collection::vec(any::<u8>(), 1..6))
            .prop_map(|(at, bytes)| Mutation::Bytes { at, bytes }),
        (0.0..1.0, 0.0..1.0).prop_map(|(from, to)| Mutation::Line { from, to }),
    ]
}

fn position(len: usize, at: f64) -> usize {
    ((len as f64 * at) as usize).min(len)
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for mutation in mutations {
        match mutation {
            Mutation::Delete { at, len } => {
                let start = position(bytes.len(), *at);
                let end = (start + len).min(bytes.len());
                bytes.drain(start..end);
            }
            Mutation::Insert { at, token } => {
                let at = position(bytes.len(), *at);
                bytes.splice(at..at, TOKENS[*token].bytes());
            }
            Mutation::Bytes { at, bytes: new } => {
                let at = position(bytes.len(), *at);
                bytes.splice(at..at, new.iter().copied());
            }
            Mutation::Line { from, to } => {
                let lines: Vec<&[u8]> = bytes.split_inclusive(|&b| b == b'\n').collect();
                if lines.is_empty() {
                    continue;
                }
                let mut lines = lines.into_iter().map(<[u8]>::to_vec).collect::<Vec<_>>();
                let (from, to) = (position(lines.len() - 1, *from), position(lines.len() - 1, *to));
                lines[to] = lines[from].clone();
                bytes = lines.concat();
            }
        }
    }
    bytes
}

/// A file per test thread, rewritten for every case.
fn scratch_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dockfw-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// What the CLI does with a policy file, short of the kernel: read, parse,
/// validate, lint, compile, render. Fails the case on an unlocated error.
fn read_like_the_cli(
    path: &std::path::Path,
    bytes: &[u8],
    running: &[dockfw_core::Container],
) -> Result<(), TestCaseError> {
    std::fs::write(path, bytes).unwrap();
    let read = policy_file::read(path).map_err(|e| TestCaseError::fail(format!("read: {e}")))?;
    prop_assert_eq!(&read, bytes);
    match dockfw_core::parse_bytes("policy.toml", &read) {
        Ok(parsed) => {
            let ruleset = dockfw_core::compile(&parsed.policy, running);
            let script = dockfw_core::render(&ruleset);
            prop_assert!(script.contains("table inet"), "{}", script);
        }
        Err(error) => {
            prop_assert!(
                error.errors().count() > 0,
                "a refused policy names an error: {}",
                error
            );
            for diagnostic in error.errors() {
                prop_assert!(
                    diagnostic.location.is_some(),
                    "error without a place: {}",
                    diagnostic
                );
                prop_assert_eq!(diagnostic.severity, Severity::Error);
            }
        }
    }
    Ok(())
}

/// 2,048 cases a property (well under a second in a debug build), or
/// PROPTEST_CASES.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(2048);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic_and_every_error_is_located(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        read_like_the_cli(&scratch_file("bytes.toml"), &bytes, &[])?;
    }

    #[test]
    fn mutated_examples_never_panic_and_every_error_is_located(
        example in 0..EXAMPLES.len(),
        mutations in prop::collection::vec(mutation(), 1..6),
        running in containers(),
    ) {
        let bytes = mutate(EXAMPLES[example].as_bytes().to_vec(), &mutations);
        read_like_the_cli(&scratch_file("mutated.toml"), &bytes, &running)?;
    }
}
