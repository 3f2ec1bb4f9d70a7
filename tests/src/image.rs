//! The lab image: busybox-static plus the static `lab-echo` helper, imported
//! with `docker import` because no registry is reachable.

use crate::error::{LabError, Result, io_err};
use std::process::Command;

/// The static echo helper built by build.rs (empty if that failed).
pub(crate) const LAB_ECHO: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/lab-echo"));
const LAB_ECHO_ERR: &str = include_str!(concat!(env!("OUT_DIR"), "/lab-echo.err"));

/// Where busybox-static installs its binary on Debian.
pub(crate) const BUSYBOX: &str = "/bin/busybox";

/// Repository name of the lab image; the tag is a content hash, so a changed
/// helper or busybox yields a new image and `up` stays idempotent.
pub const IMAGE_REPO: &str = "dockfw-lab/busybox";

/// Builds the image tarball and its tag.
pub(crate) fn tarball() -> Result<(Vec<u8>, String)> {
    if LAB_ECHO.is_empty() {
        return Err(LabError::NoEchoHelper(LAB_ECHO_ERR.trim().to_string()));
    }
    let busybox = std::fs::read(BUSYBOX).map_err(io_err(format!(
        "cannot read {BUSYBOX} (apt-get install busybox-static)"
    )))?;
    let list = crate::cmd::run(Command::new(BUSYBOX).arg("--list"))?;
    let applets: Vec<&str> = list
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox" && !a.contains('/'))
        .collect();

    let mut builder = tar::Builder::new(Vec::new());
    let mut dir = |path: &str, mode: u32| -> Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(mode);
        h.set_size(0);
        h.set_mtime(0);
        builder
            .append_data(&mut h, path, std::io::empty())
            .map_err(io_err("tar"))
    };
    for (path, mode) in [("bin", 0o755), ("tmp", 0o1777), ("www", 0o755), ("etc", 0o755)] {
        dir(path, mode)?;
    }
    let mut file = |path: &str, mode: u32, data: &[u8]| -> Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(0);
        builder.append_data(&mut h, path, data).map_err(io_err("tar"))
    };
    file("bin/busybox", 0o755, &busybox)?;
    file("bin/lab-echo", 0o755, LAB_ECHO)?;
    file("www/index.html", 0o644, b"dockfw-lab\n")?;
    file(
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )?;
    file("etc/group", 0o644, b"root:x:0:\nnogroup:x:65534:\n")?;
    for applet in &applets {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        h.set_mtime(0);
        builder
            .append_link(&mut h, format!("bin/{applet}"), "busybox")
            .map_err(io_err("tar"))?;
    }
    let data = builder.into_inner().map_err(io_err("tar"))?;
    let tag = format!(
        "{IMAGE_REPO}:{:016x}",
        fnv1a(&[&busybox, LAB_ECHO, list.as_bytes()])
    );
    Ok((data, tag))
}

/// FNV-1a: a dependency-free content hash, good enough for a cache tag.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}
