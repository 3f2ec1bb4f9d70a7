//! `cargo xtask dist`: a release tarball a sysadmin can install by hand, and
//! a Debian package.
//!
//! TARGET/dist/dockfw-nft-VERSION-ARCH-linux/ (TARGET: cargo's target directory) holds the release binary, its
//! man pages and shell completions (generated from the clap definition by the
//! binary itself), the systemd units, the fail2ban action, the example policies and the README; the
//! directory is also packed as a .tar.gz beside it. TARGET/dist/dockfw-nft_VERSION-1_ARCH.deb
//! is the same binary as a Debian package (see deb.rs), and
//! TARGET/dist/dockfw-nft-VERSION-ARCH-image.tar the guard's container image
//! (`docker load -i`; written without Docker, see dockfw_e2e::oci).

use anyhow::{Context, Result, bail};
use std::fs;
use std::path::Path;
use std::process::Command;

pub fn run(root: &Path) -> Result<()> {
    // The package's Depends come from dpkg-shlibdeps; strip is binutils'.
    crate::packages::ensure_these(&["dpkg-dev", "binutils"])?;
    crate::run("cargo", &["build", "--release", "--locked", "-p", "dockfw-cli"])?;
    let target = crate::target_dir()?;
    let binary = target.join("release/dockfw-nft");
    let version = output(&binary, &["--version"])?;
    let version = version
        .trim()
        .rsplit(' ')
        .next()
        .context("no version in --version")?
        .to_string();
    let name = format!("dockfw-nft-{version}-{}-linux", std::env::consts::ARCH);
    let dist = target.join("dist");
    let out = dist.join(&name);
    if out.exists() {
        fs::remove_dir_all(&out).with_context(|| format!("cannot clear {}", out.display()))?;
    }
    fs::create_dir_all(out.join("completions"))?;
    fs::create_dir_all(out.join("examples"))?;
    fs::create_dir_all(out.join("fail2ban"))?;

    copy(&binary, &out.join("dockfw-nft"))?;
    let status = Command::new(&binary)
        .arg("manpages")
        .arg(out.join("man"))
        .status()?;
    if !status.success() {
        bail!("dockfw-nft manpages failed ({status})");
    }
    for (shell, file) in [
        ("bash", "dockfw-nft.bash"),
        ("zsh", "_dockfw-nft"),
        ("fish", "dockfw-nft.fish"),
    ] {
        let script = output(&binary, &["completions", shell])?;
        fs::write(out.join("completions").join(file), script)?;
    }
    for unit in crate::deb::UNITS {
        copy(&root.join("packaging").join(unit), &out.join(unit))?;
    }
    copy(
        &root.join("packaging/fail2ban/action.d/dockfw-nft.conf"),
        &out.join("fail2ban/dockfw-nft.conf"),
    )?;
    copy(&root.join("README.md"), &out.join("README.md"))?;
    for entry in fs::read_dir(root.join("examples"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "toml") {
            copy(&path, &out.join("examples").join(path.file_name().unwrap()))?;
        }
    }
    let tarball = format!("{name}.tar.gz");
    let status = Command::new("tar")
        .args(["czf", &tarball, &name])
        .current_dir(&dist)
        .status()
        .context("cannot run tar")?;
    if !status.success() {
        bail!("tar failed ({status})");
    }
    eprintln!("xtask: wrote {}", dist.join(&tarball).display());
    let deb = crate::deb::build(root, &binary, &version, &dist)?;
    eprintln!("xtask: wrote {}", deb.display());
    let image = image(&binary, &version, &dist)?;
    eprintln!("xtask: wrote {image} (docker load -i)");
    Ok(())
}

/// The guard's container image: the binary stripped as the package's is,
/// the shared libraries it links from this machine, `watch` as the command
/// (see dockfw_e2e::oci). Written as a file; no Docker needed.
fn image(binary: &Path, version: &str, dist: &Path) -> Result<String> {
    let work = tempfile::Builder::new()
        .prefix("dockfw-image-")
        .tempdir_in(dist)
        .context("cannot create a staging directory")?;
    let stripped = work.path().join("dockfw-nft");
    crate::deb::strip(binary, &stripped)?;
    let image = dockfw_e2e::oci::guard_image(&stripped, version, version)?;
    let name = format!("dockfw-nft-{version}-{}-image.tar", std::env::consts::ARCH);
    let path = dist.join(&name);
    fs::write(&path, &image.tarball).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(format!(
        "{} as {} ({})",
        path.display(),
        image.reference,
        image.id
    ))
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    fs::copy(from, to).with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    Ok(())
}

fn output(program: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {}", program.display()))?;
    if !out.status.success() {
        bail!("{} {} failed ({})", program.display(), args.join(" "), out.status);
    }
    String::from_utf8(out.stdout).context("output is not UTF-8")
}
