//! The nf_tables features dockfw's tables use, checked with the kernel
//! before the first apply: a built-in policy using every one of them is
//! compiled and sent as a batch nf_tables checks and then aborts
//! ([`dockfw_nft::Nft::validate`]), so an old kernel is refused at start
//! with the features it lacks named, and nothing is changed.
//!
//! Against the kernel the answer is kept for the boot ([`passed_this_boot`]):
//! an aborted batch waits for an RCU grace period (10 to 30 ms on a busy
//! machine), which every later `apply` would pay again for the same answer.

use crate::backend::Tables;
use anyhow::{Result, anyhow};

/// Every kind of expression, set and statement the compiler emits, one
/// rule per feature, named after it (the kernel's refusal names the rule).
const PROBE: &str = r#"
[guard]
interfaces = ["eth0", "wg*"]
default = "reject"
log = true
outbound = "drop"
between = "reject"
table = "dockfw-feature-check"

[sets]
listed = ["192.0.2.0/24", "198.51.100.1-198.51.100.9", "2001:db8::/32"]
banned = { dynamic = true, timeout = "1h" }

[[rule]]
name = "interval sets, ct original addresses and ports"
from = ["@listed"]
to = ["203.0.113.1", "2001:db8:1::1"]
ports = ["8000-8100/tcp", "53/udp"]

[[rule]]
name = "dynamic sets with timeouts"
from = ["@banned"]
action = "drop"

[[rule]]
name = "per-source rate limits"
ports = [80]
limit = { rate = "10/second", burst = 20 }

[[rule]]
name = "per-source connection limits"
ports = [443]
max_connections = 10

[[rule]]
name = "logging and reject"
ports = [22]
action = "reject"
log = true

[[outbound]]
name = "outbound"
to = ["192.0.2.1"]
ports = [443]
"#;

/// The ruleset of [`PROBE`].
fn probe_ruleset() -> dockfw_core::Ruleset {
    let parsed =
        dockfw_core::parse("(built-in feature check)", PROBE).expect("the built-in feature check parses");
    dockfw_core::compile(&parsed.policy, &[])
}

/// Checks that the kernel accepts every kind of nf_tables object dockfw
/// writes; nothing is installed. An error names the kernel and what it
/// refused.
pub fn check(nft: &mut dyn Tables) -> Result<()> {
    match nft.validate(&probe_ruleset()) {
        Ok(()) => Ok(()),
        Err(error @ dockfw_nft::Error::Rejected { .. }) => {
            let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
            Err(anyhow!(
                "this kernel ({}) lacks nf_tables features dockfw-nft needs (nothing was changed; \
                 see README \"Kernel and nftables requirements\"): {error}",
                release.trim()
            ))
        }
        Err(error) => Err(error.into()),
    }
}

/// Where the kernel's acceptance of the probe is noted for the boot:
/// `/run` is emptied at every boot, and only root writes here.
const CHECKED: &str = "/run/dockfw-nft/features-checked";

/// What a passed check is noted under: this boot, this kernel, this
/// version of dockfw-nft and this probe (`ruleset`). `None` when the boot
/// cannot be told (then the kernel is asked every time).
pub fn boot_key(ruleset: &dockfw_core::Ruleset) -> Option<String> {
    use std::hash::{Hash, Hasher};
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    format!("{ruleset:?}").hash(&mut hasher);
    Some(format!(
        "{} {} {} {:016x}\n",
        boot_id.trim(),
        release.trim(),
        env!("CARGO_PKG_VERSION"),
        hasher.finish()
    ))
}

/// Whether the kernel accepted the probe of `key` earlier in this boot.
pub fn passed_this_boot(key: &str) -> bool {
    std::fs::read_to_string(CHECKED).is_ok_and(|noted| noted == key)
}

/// Notes that the kernel accepted the probe of `key`. Best effort: if it
/// cannot be written, the next run asks the kernel again.
pub fn note_passed(key: &str) {
    let path = std::path::Path::new(CHECKED);
    let Some(dir) = path.parent() else { return };
    let temporary = dir.join(format!("features-checked.{}", std::process::id()));
    let written = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&temporary, key))
        .and_then(|()| std::fs::rename(&temporary, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_probe_policy_compiles_without_warnings_and_uses_every_feature() {
        let parsed = dockfw_core::parse("probe", super::PROBE).unwrap();
        assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
        let text = dockfw_core::render(&super::probe_ruleset());
        for feature in [
            "ct original",
            "flags interval",
            "flags timeout",
            "limit rate",
            "ct count",
            "log prefix",
            "reject",
            "ct label set",
        ] {
            assert!(text.contains(feature), "{feature} not in the probe:\n{text}");
        }
    }
}
