//! The Debian package `cargo xtask dist` builds beside the tarball:
//! `dockfw-nft_VERSION-1_ARCH.deb`.
//!
//! Staged here and packed with `dpkg-deb --build --root-owner-group`, not
//! with cargo-deb: the tree is a dozen files, dpkg-deb and dpkg-shlibdeps are
//! Debian's own tools (dpkg-dev, on every Debian build host), and cargo-deb
//! would be one more program to build from source whose output we would
//! check with lintian all the same. Depends come from `dpkg-shlibdeps` on
//! the binary, as debhelper computes them.
//!
//! What goes where (Debian's places):
//! - `/usr/bin/dockfw-nft`, stripped as dh_strip does. Not /usr/sbin:
//!   `check`, `plan` and `explain` need no privilege, and policy authors
//!   run them as themselves (/usr/sbin is not in a user's PATH on Debian);
//! - man pages (gzipped) in `/usr/share/man/man1`; completions for bash,
//!   zsh and fish in their vendor directories;
//! - both systemd units in `/usr/lib/systemd/system` (lintian's canonical
//!   place; the same directory as /lib/systemd/system on merged-/usr
//!   systems, bookworm and trixie), running `/usr/bin/dockfw-nft`;
//! - `/etc/dockfw/policy.toml`, a conffile that denies nothing
//!   (packaging/debian/policy.toml), and the fail2ban action when the tree
//!   has one (`packaging/fail2ban/action.d/dockfw-nft.conf`), a conffile too;
//! - the README and the example policies, the copyright file (with the
//!   Rust crates linked into the binary) and changelog.Debian.gz.
//!
//! Maintainer scripts (packaging/debian/) are debhelper's systemd snippets
//! written out by hand: units enabled but not started on installation,
//! restarted on upgrade if running (unless the new binary's `check` refuses
//! the policy: then left running as they are), stopped on removal (which leaves the
//! table in force: the units have no ExecStop), and `purge` removes
//! /etc/dockfw and /var/lib/dockfw but never the kernel's table.

use anyhow::{Context, Result, bail};
use cargo_metadata::{DependencyKind, MetadataCommand, PackageId};
use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Debian revision: the packaging is part of the source tree, so every
/// build of one upstream version is revision 1.
const REVISION: &str = "1";
/// Where the package installs the command (the units refer to it).
pub(crate) const BINARY: &str = "usr/bin/dockfw-nft";
/// The path the units in packaging/ (for the tarball) run.
const TARBALL_BINARY: &str = "/usr/local/bin/dockfw-nft";
pub(crate) const UNITS: [&str; 2] = ["dockfw-nft.service", "dockfw-nft-watch.service"];
pub(crate) const UNIT_DIR: &str = "usr/lib/systemd/system";
pub(crate) const POLICY: &str = "etc/dockfw/policy.toml";
/// The fail2ban action, where the source tree has it, and where it goes.
const FAIL2BAN_SOURCE: &str = "packaging/fail2ban/action.d/dockfw-nft.conf";
pub(crate) const FAIL2BAN: &str = "etc/fail2ban/action.d/dockfw-nft.conf";
const DOC: &str = "usr/share/doc/dockfw-nft";
/// Debian's DEBEMAIL and DEBFULLNAME name the maintainer when set.
const DEFAULT_MAINTAINER: (&str, &str) = ("dockfw-nft maintainers", "dockfw-nft@example.org");

/// Builds the package of `binary` (version `version`, the upstream one) from
/// the source tree at `root`, into `out_dir`; returns its path.
/// Writes `binary` stripped as dh_strip does to `to` (mode 0755): what the
/// package and the container image ship.
pub(crate) fn strip(binary: &Path, to: &Path) -> Result<()> {
    run(Command::new("strip")
        .args([
            "--remove-section=.comment",
            "--remove-section=.note",
            "--strip-unneeded",
            "-o",
        ])
        .arg(to)
        .arg(binary))?;
    set_mode(to, 0o755)
}

pub(crate) fn build(root: &Path, binary: &Path, version: &str, out_dir: &Path) -> Result<PathBuf> {
    let arch = text_output(Command::new("dpkg").arg("--print-architecture"))?
        .trim()
        .to_string();
    let version = format!("{version}-{REVISION}");
    fs::create_dir_all(out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    let work = tempfile::Builder::new()
        .prefix("dockfw-deb-")
        .tempdir_in(out_dir)
        .context("cannot create a staging directory")?;
    // Where debhelper stages it, so dpkg-shlibdeps finds the binary in its
    // package's directory.
    let tree = work.path().join("debian/dockfw-nft");
    let stage = Stage { tree: &tree };

    let installed = stage.path(BINARY)?;
    strip(binary, &installed)?;

    let man = work.path().join("man");
    run(Command::new(binary).arg("manpages").arg(&man))?;
    let mut pages: Vec<PathBuf> = fs::read_dir(&man)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    pages.sort();
    for page in pages {
        let name = page
            .file_name()
            .context("man page name")?
            .to_string_lossy()
            .to_string();
        stage.gzipped(&format!("usr/share/man/man1/{name}.gz"), &fs::read(&page)?)?;
    }
    for (shell, place) in [
        ("bash", "usr/share/bash-completion/completions/dockfw-nft"),
        ("zsh", "usr/share/zsh/vendor-completions/_dockfw-nft"),
        ("fish", "usr/share/fish/vendor_completions.d/dockfw-nft.fish"),
    ] {
        let script = text_output(Command::new(binary).args(["completions", shell]))?;
        stage.file(place, script.as_bytes(), 0o644)?;
    }
    for unit in UNITS {
        let text = read(&root.join("packaging").join(unit))?;
        if !text.contains(TARBALL_BINARY) {
            bail!("packaging/{unit} no longer runs {TARBALL_BINARY}: update deb.rs");
        }
        let text = text.replace(TARBALL_BINARY, &format!("/{BINARY}"));
        stage.file(&format!("{UNIT_DIR}/{unit}"), text.as_bytes(), 0o644)?;
    }
    let mut conffiles = vec![POLICY];
    stage.file(
        POLICY,
        &fs::read(root.join("packaging/debian/policy.toml"))?,
        0o644,
    )?;
    let fail2ban = root.join(FAIL2BAN_SOURCE);
    if fail2ban.exists() {
        stage.file(FAIL2BAN, &fs::read(&fail2ban)?, 0o644)?;
        conffiles.push(FAIL2BAN);
    }

    stage.gzipped(&format!("{DOC}/README.md.gz"), &fs::read(root.join("README.md"))?)?;
    let mut examples: Vec<PathBuf> = fs::read_dir(root.join("examples"))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    examples.retain(|p| p.extension().is_some_and(|e| e == "toml"));
    examples.sort();
    for example in examples {
        let name = example
            .file_name()
            .context("example name")?
            .to_string_lossy()
            .to_string();
        stage.file(&format!("{DOC}/examples/{name}"), &fs::read(&example)?, 0o644)?;
    }
    let maintainer = maintainer();
    stage.file(&format!("{DOC}/copyright"), copyright(root)?.as_bytes(), 0o644)?;
    stage.gzipped(
        &format!("{DOC}/changelog.Debian.gz"),
        changelog(root, &version, &maintainer)?.as_bytes(),
    )?;

    // The control area.
    let md5sums = md5sums(&tree)?;
    let installed_size = installed_size(&tree)?;
    let control_dir = tree.join("DEBIAN");
    fs::create_dir_all(&control_dir)?;
    set_mode(&control_dir, 0o755)?;
    // postinst tells the shipped policy from one the admin had by its md5sum.
    let shipped_md5 = text_output(Command::new("md5sum").arg(root.join("packaging/debian/policy.toml")))?;
    let shipped_md5 = shipped_md5
        .split_whitespace()
        .next()
        .context("md5sum said nothing")?;
    for script in ["postinst", "prerm", "postrm"] {
        let text =
            read(&root.join("packaging/debian").join(script))?.replace("@SHIPPED_POLICY_MD5@", shipped_md5);
        stage.file(&format!("DEBIAN/{script}"), text.as_bytes(), 0o755)?;
    }
    let conffiles: String = conffiles.iter().map(|c| format!("/{c}\n")).collect();
    stage.file("DEBIAN/conffiles", conffiles.as_bytes(), 0o644)?;
    stage.file("DEBIAN/md5sums", md5sums.as_bytes(), 0o644)?;
    let depends = shlib_depends(work.path(), &installed)?;
    let control = control(&Control {
        version: &version,
        arch: &arch,
        maintainer: &maintainer,
        installed_size,
        depends: &depends,
        fail2ban: fail2ban.exists(),
    });
    stage.file("DEBIAN/control", control.as_bytes(), 0o644)?;

    let deb = out_dir.join(format!("dockfw-nft_{version}_{arch}.deb"));
    run(Command::new("dpkg-deb")
        .args(["--build", "--root-owner-group"])
        .arg(&tree)
        .arg(&deb))?;
    Ok(deb)
}

/// What dpkg does with the package, as a shell script run as root: `sh -c
/// PACKAGE_CHECKS sh ROOT OLD.deb NEW.deb` installs OLD (version 0.0.1) in
/// the system at ROOT (chroot; `/` in a throwaway VM), upgrades to NEW
/// (0.0.2) keeping the admin's edit of the conffile (and, over a policy
/// with errors, says that it restarts nothing), removes and purges it,
/// checking each step: the units enabled, nothing applied by installing,
/// the shipped policy checked and applied, the table left in the kernel by
/// remove and purge, /etc/dockfw and /var/lib/dockfw gone after purge. Run
/// it in a network namespace of its own: it applies the shipped policy.
pub(crate) const PACKAGE_CHECKS: &str = r##"
set -eu
root=$1
cp "$2" "$root/tmp/old.deb"
cp "$3" "$root/tmp/new.deb"
in_root() { chroot "$root" "$@" </dev/null; }
fail() { echo "FAIL: $*" >&2; exit 1; }
table() { in_root nft list table inet dockfw >/dev/null 2>&1; }
export DEBIAN_FRONTEND=noninteractive

# A clean start: no files of a tarball installation (the root is a
# throwaway overlay or VM).
rm -f "$root/usr/local/bin/dockfw-nft" "$root/usr/local/sbin/dockfw-nft" \
    "$root/etc/systemd/system/dockfw-nft.service" "$root/etc/systemd/system/dockfw-nft-watch.service"

echo "== install"
said=$(in_root dpkg -i /tmp/old.deb 2>&1) || { echo "$said"; fail "install"; }
echo "$said"
echo "$said" | grep -q "as shipped it denies nothing" || fail "no word on the shipped policy"
echo "$said" | grep -q "tarball" && fail "a warning about tarball files that are not there"
[ -x "$root/usr/bin/dockfw-nft" ] || fail "no /usr/bin/dockfw-nft"
[ -f "$root/etc/dockfw/policy.toml" ] || fail "no /etc/dockfw/policy.toml"
for link in multi-user.target.wants/dockfw-nft.service docker.service.wants/dockfw-nft.service \
    docker.service.wants/dockfw-nft-watch.service; do
    [ -L "$root/etc/systemd/system/$link" ] || fail "not enabled: $link"
done
table && fail "installing applied something"
in_root dockfw-nft --no-docker check
in_root dockfw-nft --no-docker apply
table || fail "apply of the shipped policy installed no table"

echo "== upgrade, keeping the admin's edit"
echo "# edited by the admin" >> "$root/etc/dockfw/policy.toml"
said=$(in_root dpkg -i /tmp/new.deb 2>&1) || { echo "$said"; fail "upgrade"; }
echo "$said"
[ "$(in_root dpkg-query -W -f='${Version}' dockfw-nft)" = 0.0.2-1 ] || fail "not upgraded"
grep -q "edited by the admin" "$root/etc/dockfw/policy.toml" || fail "the upgrade lost the edit"
[ -L "$root/etc/systemd/system/multi-user.target.wants/dockfw-nft.service" ] || fail "upgrade disabled"
echo "$said" | grep -q "not restarted" && fail "a policy that checks called broken"

echo "== upgrade over a policy with errors: the units are not restarted, and why"
cp "$root/etc/dockfw/policy.toml" "$root/tmp/policy.toml"
echo 'ports = [' >> "$root/etc/dockfw/policy.toml"
said=$(in_root dpkg -i /tmp/new.deb 2>&1) || { echo "$said"; fail "reinstall over a policy with errors"; }
echo "$said"
echo "$said" | grep -q "/etc/dockfw/policy.toml:[0-9]*:[0-9]*: error" || fail "no file:line:column of the error"
echo "$said" | grep -q "the units were not restarted" || fail "no word that the units were not restarted"
cp "$root/tmp/policy.toml" "$root/etc/dockfw/policy.toml"

echo "== remove"
in_root dpkg -r dockfw-nft
[ ! -e "$root/usr/bin/dockfw-nft" ] || fail "the binary is left"
[ -f "$root/etc/dockfw/policy.toml" ] || fail "remove deleted the conffile"
table || fail "remove deleted the table"

echo "== purge"
mkdir -p "$root/var/lib/dockfw/sets" "$root/etc/dockfw/sets"
: > "$root/var/lib/dockfw/sets/cached" && : > "$root/etc/dockfw/sets/list.netset"
in_root dpkg -P dockfw-nft
[ ! -e "$root/etc/dockfw" ] || fail "purge left /etc/dockfw"
[ ! -e "$root/var/lib/dockfw" ] || fail "purge left /var/lib/dockfw"
for link in multi-user.target.wants/dockfw-nft.service docker.service.wants/dockfw-nft-watch.service \
    dockfw-nft.service dockfw-nft-watch.service; do
    [ ! -e "$root/etc/systemd/system/$link" ] && [ ! -L "$root/etc/systemd/system/$link" ] \
        || fail "purge left $link"
done
table || fail "purge deleted the table"

echo "== install over a tarball installation"
cp "$root/bin/true" "$root/usr/local/bin/dockfw-nft"
printf '[Service]\nExecStart=/usr/local/bin/dockfw-nft watch\n' >"$root/etc/systemd/system/dockfw-nft-watch.service"
mkdir -p "$root/etc/dockfw"
printf '[guard]\ninterfaces = ["eth0"]\ndefault = "drop"\n' >"$root/etc/dockfw/policy.toml"
said=$(in_root dpkg -i --force-confold /tmp/new.deb 2>&1) || { echo "$said"; fail "install over the tarball"; }
echo "$said"
echo "$said" | grep -q "warning: files of an earlier installation from the tarball take precedence over this package: /usr/local/bin/dockfw-nft /etc/systemd/system/dockfw-nft-watch.service" \
    || fail "no warning about the tarball's files"
echo "$said" | grep -q "as shipped" && fail "the admin's policy called the shipped one"
echo "$said" | grep -q "is the one that was there (kept)" || fail "no word on the kept policy"
grep -q 'default = "drop"' "$root/etc/dockfw/policy.toml" || fail "the admin's policy was replaced"
in_root dpkg -P dockfw-nft
rm -f "$root/usr/local/bin/dockfw-nft" "$root/etc/systemd/system/dockfw-nft-watch.service"
echo "== ok"
"##;

/// `sh SYSTEMD_CHECKS OLD.deb NEW.deb`, as root on a throwaway system that
/// runs systemd and Docker (vm-test's package boot): a container port
/// published by Docker is open to every client; installing the package
/// enables its units and changes nothing; once the admin writes a policy,
/// `systemctl start dockfw-nft` guards the port (the allowed client
/// connects, the other does not: real packets through Docker's DNAT from a
/// client namespace), dockfw-nft-watch repairs a deleted table, `reload`
/// applies edits, stopping the units and restarting Docker leave the guard
/// in force, a policy with errors fails both units' reloads and makes a
/// reinstall restart nothing, an upgrade restarts the watch, and removing the package
/// leaves the table until it is deleted by hand.
pub(crate) const SYSTEMD_CHECKS: &str = include_str!("../scripts/systemd-checks.sh");

/// Builds the two packages [`PACKAGE_CHECKS`] installs, from `binary`, into `out_dir`.
pub(crate) fn check_packages(root: &Path, binary: &Path, out_dir: &Path) -> Result<(PathBuf, PathBuf)> {
    Ok((
        build(root, binary, "0.0.1", out_dir)?,
        build(root, binary, "0.0.2", out_dir)?,
    ))
}

/// The package's file tree being staged.
struct Stage<'a> {
    tree: &'a Path,
}

impl Stage<'_> {
    /// The staged path of `place` (relative to /), its directories made (0755).
    fn path(&self, place: &str) -> Result<PathBuf> {
        let path = self.tree.join(place);
        let mut dir = path.parent().context("a file in a directory")?;
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        // Whatever the umask: every directory of the package is 0755.
        while dir.starts_with(self.tree) {
            set_mode(dir, 0o755)?;
            dir = dir.parent().context("the tree's parent")?;
        }
        Ok(path)
    }

    fn file(&self, place: &str, content: &[u8], mode: u32) -> Result<()> {
        let path = self.path(place)?;
        fs::write(&path, content).with_context(|| format!("cannot write {}", path.display()))?;
        set_mode(&path, mode)
    }

    /// `content` compressed as dh_compress does (`gzip -9n`: no name, no time).
    fn gzipped(&self, place: &str, content: &[u8]) -> Result<()> {
        let path = self.path(place)?;
        let raw = path.with_extension("");
        fs::write(&raw, content).with_context(|| format!("cannot write {}", raw.display()))?;
        run(Command::new("gzip").args(["-9nf"]).arg(&raw))?;
        set_mode(&path, 0o644)
    }
}

struct Control<'a> {
    version: &'a str,
    arch: &'a str,
    maintainer: &'a str,
    installed_size: u64,
    depends: &'a str,
    fail2ban: bool,
}

fn control(c: &Control) -> String {
    let suggests = if c.fail2ban {
        "docker.io | docker-ce, fail2ban"
    } else {
        "docker.io | docker-ce"
    };
    format!(
        "Package: dockfw-nft
Version: {version}
Architecture: {arch}
Maintainer: {maintainer}
Installed-Size: {size}
Depends: {depends}
Suggests: {suggests}
Section: net
Priority: optional
Description: guard Docker-published ports with one nftables policy
 Docker publishes container ports with its own firewall rules, which host
 firewalls never see. dockfw-nft compiles a TOML policy (which sources may
 reach which published ports, containers and host addresses, on which
 interfaces) into its own nftables table, hooked before Docker's chains,
 and installs it over netlink in atomic transactions. `dockfw-nft watch`
 repairs the table within milliseconds whenever another program changes
 it, and follows Docker's containers.
 .
 The units are enabled on installation but not started, and the shipped
 /etc/dockfw/policy.toml denies nothing until it is edited.
",
        version = c.version,
        arch = c.arch,
        maintainer = c.maintainer,
        size = c.installed_size,
        depends = c.depends,
    )
}

/// `Name <email>` from DEBFULLNAME and DEBEMAIL, as Debian's tools take it.
fn maintainer() -> String {
    let name = std::env::var("DEBFULLNAME").unwrap_or_else(|_| DEFAULT_MAINTAINER.0.to_string());
    let email = std::env::var("DEBEMAIL").unwrap_or_else(|_| DEFAULT_MAINTAINER.1.to_string());
    format!("{name} <{email}>")
}

/// The binary's shared-library dependencies, as dpkg-shlibdeps finds them
/// (it wants a debian/control naming the package: a stub in `work`).
fn shlib_depends(work: &Path, binary: &Path) -> Result<String> {
    let debian = work.join("debian");
    fs::create_dir_all(&debian)?;
    fs::write(
        debian.join("control"),
        "Source: dockfw-nft\n\nPackage: dockfw-nft\nArchitecture: any\n",
    )?;
    let mut command = Command::new("dpkg-shlibdeps");
    command
        .arg("-O")
        .arg(format!("-e{}", binary.display()))
        .current_dir(work);
    let out = text_output(&mut command)?;
    let depends = out
        .lines()
        .find_map(|line| line.strip_prefix("shlibs:Depends="))
        .context("dpkg-shlibdeps printed no shlibs:Depends")?;
    Ok(depends.trim().to_string())
}

/// `md5sums` of every file in the tree, as dh_md5sums writes it.
fn md5sums(tree: &Path) -> Result<String> {
    let files = files(tree)?;
    let mut command = Command::new("md5sum");
    command.current_dir(tree);
    for file in &files {
        command.arg(file.strip_prefix(tree)?);
    }
    text_output(&mut command)
}

/// Installed-Size in KiB, counting each file and directory as dpkg-gencontrol does.
fn installed_size(tree: &Path) -> Result<u64> {
    let mut size = 0;
    let mut dirs = vec![tree.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            size += meta.len().div_ceil(1024).max(1);
            if meta.is_dir() {
                dirs.push(entry.path());
            }
        }
    }
    Ok(size)
}

/// Every file under `dir`, sorted.
fn files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                dirs.push(entry.path());
            } else {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The copyright file (machine-readable format): dockfw-nft's licence, and
/// the Rust crates linked into the binary with theirs.
fn copyright(root: &Path) -> Result<String> {
    let mut text = format!(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: dockfw-nft

Files: *
Copyright: {years} dockfw-nft contributors
License: MIT or Apache-2.0
Comment: The binary links these Rust crates statically (name version: licence):
",
        years = commit_years(root)
    );
    for (name, version, license) in linked_crates(root)? {
        let _ = writeln!(text, " {name} {version}: {license}");
    }
    text.push_str(
        "
License: MIT
 Permission is hereby granted, free of charge, to any person obtaining a copy
 of this software and associated documentation files (the \"Software\"), to deal
 in the Software without restriction, including without limitation the rights
 to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
 copies of the Software, and to permit persons to whom the Software is
 furnished to do so, subject to the following conditions:
 .
 The above copyright notice and this permission notice shall be included in
 all copies or substantial portions of the Software.
 .
 THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
 IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
 FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
 AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
 LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
 OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN
 THE SOFTWARE.

License: Apache-2.0
 On Debian systems, the complete text of the Apache License, Version 2.0,
 can be found in /usr/share/common-licenses/Apache-2.0.
",
    );
    Ok(text)
}

/// (name, version, licence) of every crate dockfw-cli links on this host:
/// its normal dependencies, transitively, outside the workspace.
fn linked_crates(root: &Path) -> Result<Vec<(String, String, String)>> {
    let host = text_output(Command::new("rustc").arg("-vV"))?
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .context("rustc -vV names no host")?;
    let metadata = MetadataCommand::new()
        .manifest_path(root.join("Cargo.toml"))
        .other_options(vec!["--filter-platform".to_string(), host])
        .exec()
        .context("cargo metadata failed")?;
    let resolve = metadata
        .resolve
        .as_ref()
        .context("cargo metadata gave no dependency graph")?;
    let nodes: HashMap<&PackageId, _> = resolve.nodes.iter().map(|n| (&n.id, n)).collect();
    let cli = metadata
        .packages
        .iter()
        .find(|p| p.name.as_str() == "dockfw-cli")
        .context("no dockfw-cli package")?;
    let mut linked: BTreeSet<&PackageId> = BTreeSet::new();
    let mut queue = vec![&cli.id];
    while let Some(id) = queue.pop() {
        let node = nodes.get(id).context("a package outside the graph")?;
        for dep in &node.deps {
            let normal = dep.dep_kinds.iter().any(|k| k.kind == DependencyKind::Normal);
            if normal && linked.insert(&dep.pkg) {
                queue.push(&dep.pkg);
            }
        }
    }
    let mut crates: Vec<(String, String, String)> = metadata
        .packages
        .iter()
        .filter(|p| linked.contains(&p.id) && p.source.is_some())
        .map(|p| {
            let license = p.license.clone().unwrap_or_else(|| "see the crate".to_string());
            (p.name.to_string(), p.version.to_string(), license)
        })
        .collect();
    crates.sort();
    Ok(crates)
}

/// `2025` or `2025-2026`: the years of the tree's commits (empty without git).
fn commit_years(root: &Path) -> String {
    let years = text_output(
        Command::new("git")
            .args(["log", "--format=%ad", "--date=format:%Y"])
            .current_dir(root),
    )
    .unwrap_or_default();
    let (Some(first), Some(last)) = (years.lines().min(), years.lines().max()) else {
        return String::new();
    };
    if first == last {
        first.to_string()
    } else {
        format!("{first}-{last}")
    }
}

/// One changelog entry for this build, dated by the last commit.
fn changelog(root: &Path, version: &str, maintainer: &str) -> Result<String> {
    let date = text_output(
        Command::new("git")
            .args(["log", "-1", "--format=%aD"])
            .current_dir(root),
    )
    .or_else(|_| text_output(Command::new("date").arg("-R")))?;
    Ok(format!(
        "dockfw-nft ({version}) unstable; urgency=medium\n\n  \
         * Built by `cargo xtask dist` from the dockfw-nft source tree.\n\n \
         -- {maintainer}  {date}\n",
        date = date.trim()
    ))
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {}", path.display()))
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn describe(command: &Command) -> String {
    let mut words = vec![command.get_program().to_string_lossy().to_string()];
    words.extend(command.get_args().map(|a| a.to_string_lossy().to_string()));
    words.join(" ")
}

fn run(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot run {}", describe(command)))?;
    if !status.success() {
        bail!("{} failed ({status})", describe(command));
    }
    Ok(())
}

fn text_output(command: &mut Command) -> Result<String> {
    let out = command
        .output()
        .with_context(|| format!("cannot run {}", describe(command)))?;
    if !out.status.success() {
        bail!(
            "{} failed ({}): {}",
            describe(command),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8(out.stdout).with_context(|| format!("{} printed no UTF-8", describe(command)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn have(program: &str) -> bool {
        Command::new(program).arg("--version").output().is_ok()
    }

    /// The debug build of the command (made by `cargo test --workspace`, as
    /// `cargo xtask test` runs it), once the tools `programs` are there.
    fn debug_binary(programs: &[&str]) -> PathBuf {
        for program in programs {
            assert!(
                have(program),
                "{program} cannot run: apt-get install dpkg-dev lintian binutils"
            );
        }
        let binary = crate::target_dir().unwrap().join("debug/dockfw-nft");
        assert!(
            binary.exists(),
            "{} is missing: cargo build -p dockfw-cli",
            binary.display()
        );
        binary
    }

    /// The package of the debug build, its `dpkg-deb --info` and
    /// `--contents`. Needs dpkg-dev and lintian (.ci/packages).
    #[test]
    #[ignore = "needs dpkg-dev, lintian and the debug dockfw-nft binary"]
    fn the_package_holds_what_debian_expects_and_lintian_finds_no_error() {
        let binary = debug_binary(&["dpkg-shlibdeps", "lintian", "strip"]);
        let root = crate::workspace_root();
        let out = tempfile::tempdir().unwrap();
        let deb = build(&root, &binary, "0.0.1", out.path()).unwrap();
        let name = deb.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            name.starts_with("dockfw-nft_0.0.1-1_") && name.ends_with(".deb"),
            "{name}"
        );

        let info = text_output(Command::new("dpkg-deb").arg("--info").arg(&deb)).unwrap();
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.trim_start().strip_prefix(&format!("{name}: ")))
                .unwrap_or_else(|| panic!("no {name} in\n{info}"))
                .to_string()
        };
        let depends = field("Depends");
        for library in ["libc6 (>= ", "libnftnl11 (>= "] {
            assert!(depends.contains(library), "Depends: {depends}");
        }
        // libmnl0 comes with libnftnl11, unless the binary calls it itself.
        let needed = text_output(Command::new("readelf").arg("-d").arg(&binary)).unwrap();
        assert_eq!(
            depends.contains("libmnl0 (>= "),
            needed.contains("[libmnl.so.0]"),
            "Depends: {depends}\n{needed}"
        );
        assert_eq!(field("Package"), "dockfw-nft");
        // `1565 bytes, 36 lines * postinst #!/bin/sh`: `*` for executable.
        for script in ["postinst", "prerm", "postrm"] {
            assert!(
                info.lines().any(|l| {
                    let words: Vec<&str> = l.split_whitespace().collect();
                    words.windows(2).any(|w| w == ["*", script])
                }),
                "no executable {script} in\n{info}"
            );
        }
        let control = out.path().join("control");
        run(Command::new("dpkg-deb").arg("--control").arg(&deb).arg(&control)).unwrap();
        let listed = read(&control.join("conffiles")).unwrap();
        assert!(listed.lines().any(|l| l == format!("/{POLICY}")), "{listed}");

        let contents = text_output(Command::new("dpkg-deb").arg("--contents").arg(&deb)).unwrap();
        let has = |path: &str, mode: &str| {
            contents.lines().any(|line| {
                line.starts_with(mode) && line.contains(" root/root ") && line.ends_with(&format!("./{path}"))
            })
        };
        let expected = [
            (BINARY, "-rwxr-xr-x"),
            ("usr/share/man/man1/dockfw-nft.1.gz", "-rw-r--r--"),
            ("usr/share/man/man1/dockfw-nft-watch.1.gz", "-rw-r--r--"),
            ("usr/share/bash-completion/completions/dockfw-nft", "-rw-r--r--"),
            ("usr/share/zsh/vendor-completions/_dockfw-nft", "-rw-r--r--"),
            (
                "usr/share/fish/vendor_completions.d/dockfw-nft.fish",
                "-rw-r--r--",
            ),
            ("usr/lib/systemd/system/dockfw-nft.service", "-rw-r--r--"),
            ("usr/lib/systemd/system/dockfw-nft-watch.service", "-rw-r--r--"),
            (POLICY, "-rw-r--r--"),
            ("usr/share/doc/dockfw-nft/copyright", "-rw-r--r--"),
            ("usr/share/doc/dockfw-nft/changelog.Debian.gz", "-rw-r--r--"),
            ("usr/share/doc/dockfw-nft/examples/full.toml", "-rw-r--r--"),
        ];
        for (path, mode) in expected {
            assert!(has(path, mode), "no {mode} root/root ./{path} in\n{contents}");
        }
        let fail2ban = root.join(FAIL2BAN_SOURCE).exists();
        assert_eq!(has(FAIL2BAN, "-rw-r--r--"), fail2ban, "{contents}");
        assert_eq!(listed.contains(FAIL2BAN), fail2ban, "{listed}");

        // The units run the packaged binary.
        let data = out.path().join("data");
        run(Command::new("dpkg-deb").arg("--extract").arg(&deb).arg(&data)).unwrap();
        for unit in UNITS {
            let text = read(&data.join(UNIT_DIR).join(unit)).unwrap();
            assert!(text.contains("ExecStart=/usr/bin/dockfw-nft "), "{text}");
            assert!(!text.contains("/usr/local"), "{text}");
        }
        let copyright = read(&data.join(DOC).join("copyright")).unwrap();
        assert!(copyright.contains("\n nftnl "), "{copyright}");

        let lintian = Command::new("lintian")
            .args(["--fail-on", "error", "--display-info", "--tag-display-limit", "0"])
            .arg(&deb)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&lintian.stdout);
        println!("lintian:\n{said}{}", String::from_utf8_lossy(&lintian.stderr));
        assert!(lintian.status.success(), "lintian found errors:\n{said}");
        assert!(!said.lines().any(|l| l.starts_with("E: ")), "{said}");
    }

    /// An overlay of the host's own file system as the root (its writes
    /// land in a temporary directory), in the mount and network namespaces
    /// of `unshare`, so neither the host's files, its dpkg database nor its
    /// firewall change; then [`PACKAGE_CHECKS`]. No systemd runs there (nor
    /// on CI): the maintainer scripts skip systemctl, as they do in a
    /// chroot, and deb-systemd-helper still enables the units.
    const OVERLAY_ROOT: &str = r#"
set -eu
tmp=$3
mkdir -p "$tmp/upper" "$tmp/work" "$tmp/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$tmp/upper,workdir=$tmp/work" "$tmp/root"
mount -t proc proc "$tmp/root/proc"
set -- "$tmp/root" "$1" "$2"
"#;

    #[test]
    #[ignore = "needs root, dpkg-dev and the debug dockfw-nft binary"]
    fn the_package_installs_upgrades_removes_and_purges_in_a_throwaway_root() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "needs root: mounts an overlay in a namespace of its own"
        );
        let binary = debug_binary(&["dpkg-shlibdeps", "strip", "unshare", "nft"]);
        let root = crate::workspace_root();
        let out = tempfile::tempdir().unwrap();
        let (old, new) = check_packages(&root, &binary, out.path()).unwrap();
        let output = Command::new("unshare")
            .args([
                "--mount",
                "--net",
                "--propagation",
                "private",
                "sh",
                "-c",
                &format!("{OVERLAY_ROOT}{PACKAGE_CHECKS}"),
                "sh",
            ])
            .arg(&old)
            .arg(&new)
            .arg(out.path().join("overlay"))
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        println!("{said}");
        assert!(output.status.success(), "{said}");
        assert!(said.contains("== ok"), "{said}");
    }
}
