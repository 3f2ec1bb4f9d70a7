//! The policy's dynamic sets at run time: `dockfw-nft set list|add|del|flush`,
//! and reading what they hold for `explain` and revoke.
//!
//! A dynamic set `NAME` lives in the kernel as `set-NAME-v4` and
//! `set-NAME-v6` (`dockfw_core::layout::runtime_set_name`); `apply` creates
//! them and never touches their elements. The `set` commands read only the
//! policy's own text (not its list files: a ban must not fail because a
//! list file moved) to learn the table and which sets are dynamic.

use crate::Exit;
use crate::cli::SetCommand;
use crate::output::{self, DIM, GOOD, Verbosity, errln, outln, paint};
use crate::policy_file;
use crate::session::{PolicyInvalid, Session};
use anyhow::{Context, Result, bail};
use dockfw_core::layout::runtime_set_name;
use dockfw_core::ruleset::Family;
use dockfw_core::values::AddrSet;
use dockfw_core::{Draft, Policy};
use dockfw_nft::{RuntimeElement, RuntimeEntry};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

/// `dockfw-nft set ...`.
pub fn set(session: &Session, command: &SetCommand) -> Result<Exit> {
    let draft = draft(session)?;
    let table = session
        .global
        .table
        .clone()
        .unwrap_or_else(|| draft.guard().table.clone());
    let dynamic: Vec<&str> = draft
        .sets()
        .iter()
        .filter(|(_, set)| set.is_dynamic())
        .map(|(name, _)| name.as_str())
        .collect();
    match command {
        SetCommand::List { name } => {
            let names: Vec<&str> = match name {
                Some(name) => vec![dynamic_set(session, &draft, name)?],
                None => dynamic.clone(),
            };
            list(session, &draft, &table, &names)
        }
        SetCommand::Add {
            name,
            addresses,
            timeout,
        } => {
            let name = dynamic_set(session, &draft, name)?;
            let timeout = timeout.as_deref().map(parse_timeout).transpose()?.flatten();
            let addresses = parse_addresses(addresses)?;
            let entries = entries(name, &addresses, timeout);
            session
                .nft()?
                .add_runtime_elements(&table, &entries)
                .with_context(|| format!("cannot add to @{name} in table inet {table}"))?;
            let default = draft.sets()[name].dynamic_timeout();
            let lasting = match (timeout, default) {
                (Some(timeout), _) => format!("timeout {}", duration(timeout)),
                (None, Some(default)) => format!("the set's timeout, {}", duration(default)),
                (None, None) => "no timeout".to_string(),
            };
            report(
                session,
                &format!("added to @{name}: {} ({lasting})", joined(&addresses)),
                serde_json::json!({
                    "table": table,
                    "set": name,
                    "added": addresses,
                    "timeout_ms": timeout.or(default).map(|t| t.as_millis()),
                }),
            )
        }
        SetCommand::Del { name, addresses } => {
            let name = dynamic_set(session, &draft, name)?;
            let addresses = parse_addresses(addresses)?;
            let entries = entries(name, &addresses, None);
            session
                .nft()?
                .delete_runtime_elements(&table, &entries)
                .with_context(|| format!("cannot delete from @{name} in table inet {table}"))?;
            report(
                session,
                &format!("@{name} no longer holds {}", joined(&addresses)),
                serde_json::json!({ "table": table, "set": name, "deleted": addresses }),
            )
        }
        SetCommand::Flush { name } => {
            let name = dynamic_set(session, &draft, name)?;
            let kernel = kernel_sets(name);
            let sets: Vec<&str> = kernel.iter().map(String::as_str).collect();
            session
                .nft()?
                .flush_runtime_sets(&table, &sets)
                .with_context(|| format!("cannot empty @{name} in table inet {table}"))?;
            report(
                session,
                &format!("emptied @{name} ({})", kernel.join(", ")),
                serde_json::json!({ "table": table, "set": name, "flushed": true }),
            )
        }
    }
}

/// The policy's own text, read and checked (its list files are not read).
fn draft(session: &Session) -> Result<Draft> {
    let path = &session.global.config;
    let bytes =
        policy_file::read(path).with_context(|| format!("cannot read the policy {}", path.display()))?;
    Draft::parse_bytes(&session.config_name(), &bytes).map_err(|error| {
        if session.global.json {
            outln!(
                session,
                "{:#}",
                serde_json::json!({ "ok": false, "diagnostics": error.diagnostics })
            );
        } else {
            output::print_diagnostics(&session.console, &error.diagnostics);
        }
        PolicyInvalid {
            path: session.config_name(),
            errors: error.errors().count(),
        }
        .into()
    })
}

/// `name` if the policy has a dynamic set of that name; else why not (exit 2).
fn dynamic_set<'d>(session: &Session, draft: &'d Draft, name: &str) -> Result<&'d str> {
    let name = name.strip_prefix('@').unwrap_or(name);
    let dynamic: Vec<String> = draft
        .sets()
        .iter()
        .filter(|(_, set)| set.is_dynamic())
        .map(|(name, _)| format!("@{name}"))
        .collect();
    let known = if dynamic.is_empty() {
        "it has none; define one under [sets], like banned = { dynamic = true, timeout = \"1h\" }".to_string()
    } else {
        format!("its dynamic sets: {}", dynamic.join(", "))
    };
    match draft.sets().get_key_value(name) {
        Some((name, set)) if set.is_dynamic() => Ok(name),
        Some(_) => bail!(
            "set @{name} of {} is not dynamic: its addresses are the policy's, and only sets with \
             dynamic = true take addresses at run time ({known})",
            session.config_name()
        ),
        None => bail!("{} defines no set @{name} ({known})", session.config_name()),
    }
}

/// The kernel sets of dynamic set `name`, IPv4 then IPv6.
fn kernel_sets(name: &str) -> [String; 2] {
    [Family::Ipv4, Family::Ipv6].map(|family| runtime_set_name(name, family))
}

fn entries(name: &str, addresses: &[IpAddr], timeout: Option<Duration>) -> Vec<RuntimeEntry> {
    addresses
        .iter()
        .map(|&addr| RuntimeEntry {
            set: runtime_set_name(name, Family::of(addr)),
            addr,
            timeout,
        })
        .collect()
}

/// Each argument one address (IPv4 or IPv6); duplicates once.
fn parse_addresses(texts: &[String]) -> Result<Vec<IpAddr>> {
    let mut out = Vec::new();
    for text in texts {
        let addr = dockfw_core::values::parse_address(text).map_err(|error| match error.hint {
            Some(hint) => anyhow::anyhow!("{}; {hint}", error.message),
            None => anyhow::anyhow!("{}", error.message),
        })?;
        if !out.contains(&addr) {
            out.push(addr);
        }
    }
    Ok(out)
}

/// `--timeout`: a duration (`10m`), or seconds (`600`, as fail2ban's
/// `<bantime>`); negative (fail2ban's permanent `-1`): none of its own.
fn parse_timeout(text: &str) -> Result<Option<Duration>> {
    let text = text.trim();
    let timeout = match text.parse::<i64>() {
        Ok(seconds) if seconds < 0 => return Ok(None),
        Ok(seconds) => Duration::from_secs(seconds.unsigned_abs()),
        Err(_) => humantime::parse_duration(text).map_err(|_| {
            anyhow::anyhow!(
                "--timeout {text:?} is not a duration: write a number and a unit (30s, 10m, 1h), \
                 or seconds (600)"
            )
        })?,
    };
    if timeout.is_zero() {
        bail!("--timeout {text:?} must be longer than zero (a negative number: no timeout of its own)");
    }
    Ok(Some(timeout))
}

/// Prints what a change did (or its JSON).
fn report(session: &Session, text: &str, json: serde_json::Value) -> Result<Exit> {
    if session.global.json {
        outln!(session, "{json:#}");
    } else if session.verbosity > Verbosity::Quiet {
        outln!(session, "{}", paint(GOOD, text));
    }
    Ok(Exit::Success)
}

fn joined(addresses: &[IpAddr]) -> String {
    addresses
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A duration to the second, as people write them: `1h 30m`, `9m 59s`.
fn duration(duration: Duration) -> String {
    let seconds = duration.as_millis().div_ceil(1000);
    humantime::format_duration(Duration::from_secs(u64::try_from(seconds).unwrap_or(u64::MAX))).to_string()
}

/// One address of a dynamic set, as `set list --json` gives it.
#[derive(Serialize)]
struct Listed {
    /// `null` for a catch-all element (every address).
    address: Option<IpAddr>,
    timeout_ms: Option<u128>,
    expires_ms: Option<u128>,
}

#[derive(Serialize)]
struct ListedSet {
    name: String,
    kernel_sets: [String; 2],
    timeout_ms: Option<u128>,
    addresses: Vec<Listed>,
}

fn list(session: &Session, draft: &Draft, table: &str, names: &[&str]) -> Result<Exit> {
    let mut nft = session.nft()?;
    let mut sets = Vec::new();
    for name in names {
        let kernel = kernel_sets(name);
        let mut addresses: Vec<RuntimeElement> = Vec::new();
        for set in &kernel {
            addresses.extend(
                nft.runtime_elements(table, set)
                    .with_context(|| format!("cannot list @{name} in table inet {table}"))?,
            );
        }
        sets.push(ListedSet {
            name: name.to_string(),
            kernel_sets: kernel,
            timeout_ms: draft.sets()[*name].dynamic_timeout().map(|t| t.as_millis()),
            addresses: addresses
                .into_iter()
                .map(|element| Listed {
                    address: element.addr,
                    timeout_ms: element.timeout.map(|t| t.as_millis()),
                    expires_ms: element.expires.map(|t| t.as_millis()),
                })
                .collect(),
        });
    }
    if session.global.json {
        outln!(
            session,
            "{:#}",
            serde_json::json!({ "table": table, "sets": sets })
        );
        return Ok(Exit::Success);
    }
    if sets.is_empty() && session.verbosity > Verbosity::Quiet {
        errln!(
            session.console,
            "{} has no dynamic sets (a set with dynamic = true takes addresses at run time)",
            session.config_name()
        );
    }
    for set in &sets {
        let timeout = set.timeout_ms.map_or("no timeout".to_string(), |ms| {
            format!("timeout {}", duration(Duration::from_millis(ms as u64)))
        });
        let count = match set.addresses.len() {
            0 => "empty".to_string(),
            1 => "1 address".to_string(),
            n => format!("{n} addresses"),
        };
        outln!(
            session,
            "@{} {}: {count}",
            set.name,
            paint(DIM, format!("({}; {timeout})", set.kernel_sets.join(", "))),
        );
        let width = set
            .addresses
            .iter()
            .map(|a| a.address.map_or(1, |a| a.to_string().len()))
            .max()
            .unwrap_or(0);
        for listed in &set.addresses {
            let address = listed.address.map_or("*".to_string(), |a| a.to_string());
            let expires = listed.expires_ms.map_or("never expires".to_string(), |ms| {
                format!("expires in {}", duration(Duration::from_millis(ms as u64)))
            });
            let own = listed.timeout_ms.map_or(String::new(), |ms| {
                format!(" (timeout {})", duration(Duration::from_millis(ms as u64)))
            });
            let every = if listed.address.is_none() {
                " (every address)"
            } else {
                ""
            };
            outln!(session, "  {address:<width$}  {expires}{own}{every}");
        }
    }
    Ok(Exit::Success)
}

/// Gives each dynamic set of `policy` the addresses its kernel sets in
/// table `policy.guard.table` hold now, so `explain` and revoke judge with
/// them. A set that cannot be read stays unknown; the reason is returned
/// per set (e.g. no privilege, or the table not installed).
pub fn fill_runtime(session: &Session, policy: &mut Policy) -> BTreeMap<String, String> {
    let mut problems = BTreeMap::new();
    let names: Vec<String> = policy
        .sets
        .iter()
        .filter(|(_, set)| set.is_dynamic())
        .map(|(name, _)| name.clone())
        .collect();
    if names.is_empty() {
        return problems;
    }
    let mut nft = match session.nft() {
        Ok(nft) => nft,
        Err(error) => {
            for name in names {
                problems.insert(name, format!("{error:#}"));
            }
            return problems;
        }
    };
    let table = policy.guard.table.clone();
    for name in names {
        let mut addresses = Vec::new();
        let mut failed = None;
        for set in kernel_sets(&name) {
            match nft.runtime_elements(&table, &set) {
                Ok(elements) => addresses.extend(elements),
                Err(error) => {
                    failed = Some(error.to_string());
                    break;
                }
            }
        }
        match failed {
            Some(problem) => {
                problems.insert(name, problem);
            }
            None => {
                // A catch-all element holds every address.
                let addrs = if addresses.iter().any(|e| e.addr.is_none()) {
                    AddrSet::everything()
                } else {
                    AddrSet::from_addrs(addresses.iter().filter_map(|e| e.addr))
                };
                if let Some(set) = policy.sets.get_mut(&name) {
                    set.fill_runtime(addrs);
                }
            }
        }
    }
    problems
}
