//! The VM images: a Debian root file system made with `debootstrap` from the
//! mirror this machine's apt uses, packed into a raw ext4 image, with the
//! distribution's own kernel and initrd copied out beside it.
//!
//! Images are cached in a directory named after the distro and a hash of
//! the recipe (packages, mirror, init script…): a matching one is reused,
//! a stale one is replaced. `--rebuild-image` forces fresh packages.

use super::Distro;
use super::guest;
use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Bump when the way images are built changes in a way the recipe text
/// does not show.
const RECIPE_VERSION: u32 = 2;

/// Apparent size of the (sparse) root image: the system takes about 1 GiB;
/// the rest is room for dockerd's data and logs during a run.
const IMAGE_BYTES: u64 = 6 << 30;

/// Packages every image has besides those of .ci/packages (the list CI
/// installs): the kernel, tini as the job's reaper, the runtime libraries
/// of the test binaries, and curl (crates/dockfw-nft/tests/packets.rs runs
/// it; CI machines happen to have it).
const VM_PACKAGES: &[&str] = &[
    "linux-image-amd64",
    "initramfs-tools",
    "kmod",
    "tini",
    "libnftnl11",
    "libmnl0",
    "curl",
];

/// The Debian packages listed in `.ci/packages` (words; `#` starts a
/// comment), so the VM has what the CI machine has.
pub(crate) fn ci_packages(root: &Path) -> Result<Vec<String>> {
    let path = root.join(".ci/packages");
    let text = fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(parse_package_list(&text))
}

fn parse_package_list(text: &str) -> Vec<String> {
    text.lines()
        .map(|line| line.split('#').next().unwrap_or_default())
        .flat_map(str::split_whitespace)
        .map(str::to_owned)
        .collect()
}

/// A cached, complete image.
#[derive(Debug)]
pub(crate) struct Image {
    dir: PathBuf,
}

impl Image {
    pub(crate) fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs.img")
    }
    pub(crate) fn kernel(&self) -> PathBuf {
        self.dir.join("vmlinuz")
    }
    pub(crate) fn initrd(&self) -> PathBuf {
        self.dir.join("initrd.img")
    }
    fn is_complete(&self) -> bool {
        [self.rootfs(), self.kernel(), self.initrd()]
            .iter()
            .all(|p| p.is_file())
    }
}

/// Everything that decides an image's content.
#[derive(Debug)]
pub(crate) struct Recipe {
    pub distro: Distro,
    pub mirror: String,
    /// From [`ci_packages`].
    pub ci_packages: Vec<String>,
}

impl Recipe {
    fn packages(&self) -> Vec<String> {
        let mut packages: Vec<String> = VM_PACKAGES
            .iter()
            .chain(self.distro.extra_packages())
            .map(|p| (*p).to_owned())
            .chain(self.ci_packages.iter().cloned())
            .collect();
        packages.sort();
        packages.dedup();
        packages
    }

    /// The recipe as text: written beside the image and hashed for its name.
    fn text(&self) -> String {
        format!(
            "recipe version: {RECIPE_VERSION}\ndistro: {}\nmirror: {}\npackages: {}\nimage bytes: {IMAGE_BYTES}\ninit ({}):\n{}",
            self.distro.name(),
            self.mirror,
            self.packages().join(" "),
            guest::INIT_PATH,
            guest::INIT,
        )
    }

    /// `DISTRO-HASH`: the cache directory name.
    fn id(&self) -> String {
        let digest = Sha256::digest(self.text().as_bytes());
        let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        format!("{}-{hex}", self.distro.name())
    }
}

/// Returns the cached image for `recipe`, building it first when missing
/// (or when `rebuild` is set).
pub(crate) fn ensure(cache: &Path, recipe: &Recipe, rebuild: bool) -> Result<Image> {
    let image = Image {
        dir: cache.join(recipe.id()),
    };
    if !rebuild && image.is_complete() {
        eprintln!("vm-test: using cached image {}", image.dir.display());
        return Ok(image);
    }
    check_build_prerequisites()?;
    fs::create_dir_all(cache).with_context(|| format!("cannot create {}", cache.display()))?;
    let _lock = lock_cache(cache)?;
    if !rebuild && image.is_complete() {
        // Another run built it while we waited for the lock.
        return Ok(image);
    }
    let partial = cache.join(format!("{}.partial", recipe.id()));
    remove_tree(&partial)?;
    let built = build(recipe, &partial);
    if let Err(e) = built {
        // Keep the debootstrap log for a look; drop the rest.
        let _ = remove_tree(&partial.join("root"));
        return Err(e.context(format!("building the {} image failed", recipe.distro.name())));
    }
    remove_tree(&image.dir)?;
    fs::rename(&partial, &image.dir)
        .with_context(|| format!("cannot move the new image to {}", image.dir.display()))?;
    prune_stale(cache, recipe)?;
    Ok(image)
}

/// Holds an exclusive lock on the cache while an image is built, so two
/// runs never debootstrap into the same directory.
fn lock_cache(cache: &Path) -> Result<fs::File> {
    let path = cache.join(".lock");
    let file = fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    file.lock()
        .with_context(|| format!("cannot lock {}", path.display()))?;
    Ok(file)
}

fn build(recipe: &Recipe, dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let root = dir.join("root");
    debootstrap(recipe, &root, &dir.join("debootstrap.log"))?;
    configure_rootfs(&root)?;
    copy_kernel(&root, dir)?;
    make_ext4(&root, &dir.join("rootfs.img"))?;
    remove_tree(&root)?;
    fs::write(dir.join("recipe.txt"), recipe.text()).context("cannot write recipe.txt")?;
    Ok(())
}

fn check_build_prerequisites() -> Result<()> {
    if !nix_is_root() {
        bail!(
            "building a VM image needs root (debootstrap, device nodes): run `cargo xtask vm-test` as root once; later runs reuse the cached image"
        );
    }
    super::install_program("debootstrap", "debootstrap")?;
    super::install_program("mkfs.ext4", "e2fsprogs")?;
    let keyring = Path::new("/usr/share/keyrings/debian-archive-keyring.gpg");
    if !keyring.is_file() {
        bail!(
            "{} is missing: apt-get install debian-archive-keyring",
            keyring.display()
        );
    }
    Ok(())
}

fn nix_is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A minimal Debian from `debootstrap`, then the recipe's packages with
/// apt inside it: debootstrap's own resolver cannot configure a long
/// `--include` list in order (bookworm's fail2ban, perl modules and
/// firewalld fail there), apt can.
fn debootstrap(recipe: &Recipe, root: &Path, log_path: &Path) -> Result<()> {
    eprintln!(
        "vm-test: debootstrap {} from {} (log: {})",
        recipe.distro.name(),
        recipe.mirror,
        log_path.display()
    );
    let log = fs::File::create(log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
    let logged = |command: &mut Command| -> Result<std::process::ExitStatus> {
        command
            .stdout(log.try_clone().context("dup log")?)
            .stderr(log.try_clone().context("dup log")?)
            .status()
            .with_context(|| format!("cannot run {command:?}"))
    };
    let failed = |what: &str, status: std::process::ExitStatus| {
        let text = fs::read_to_string(log_path).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        anyhow::anyhow!("{what} failed ({status}):\n{}", tail.join("\n"))
    };
    let status = logged(
        Command::new("debootstrap")
            .arg("--variant=minbase")
            .arg(recipe.distro.name())
            .arg(root)
            .arg(&recipe.mirror),
    )?;
    if !status.success() {
        return Err(failed("debootstrap", status));
    }
    // No service starts while the packages are installed (there is no
    // init in the chroot; this makes sure of it).
    let policy = root.join("usr/sbin/policy-rc.d");
    write_file(&policy, "#!/bin/sh\nexit 101\n")?;
    fs::set_permissions(&policy, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot chmod {}", policy.display()))?;
    let proc_dir = root.join("proc");
    nix::mount::mount(
        Some("proc"),
        &proc_dir,
        Some("proc"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .with_context(|| format!("cannot mount proc on {}", proc_dir.display()))?;
    let apt = |args: &[&str]| -> Result<()> {
        let status = logged(
            Command::new("chroot")
                .arg(root)
                .arg("apt-get")
                .args(["-q", "-y", "-o", "Dpkg::Use-Pty=0"])
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        )?;
        if status.success() {
            Ok(())
        } else {
            Err(failed(&format!("apt-get {}", args[0]), status))
        }
    };
    let packages = recipe.packages();
    let mut install = vec!["install", "--no-install-recommends"];
    install.extend(packages.iter().map(String::as_str));
    let installed = apt(&["update"])
        .and_then(|()| apt(&install))
        .and_then(|()| apt(&["clean"]));
    let unmounted = nix::mount::umount2(&proc_dir, nix::mount::MntFlags::MNT_DETACH)
        .with_context(|| format!("cannot unmount {}", proc_dir.display()));
    installed?;
    unmounted?;
    fs::remove_file(&policy).with_context(|| format!("cannot remove {}", policy.display()))
}

/// Installs our init and the few files a booted system expects, and drops
/// the downloaded packages.
fn configure_rootfs(root: &Path) -> Result<()> {
    let init = root.join(guest::INIT_PATH.trim_start_matches('/'));
    write_file(&init, guest::INIT)?;
    fs::set_permissions(&init, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot chmod {}", init.display()))?;
    write_file(&root.join("etc/hostname"), "dockfw-vm\n")?;
    write_file(&root.join("etc/fstab"), "/dev/vda / ext4 rw 0 1\n")?;
    let archives = root.join("var/cache/apt/archives");
    for entry in fs::read_dir(&archives).with_context(|| format!("cannot list {}", archives.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "deb") {
            fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
        }
    }
    Ok(())
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Copies /boot/vmlinuz-* and /boot/initrd.img-* (exactly one kernel).
fn copy_kernel(root: &Path, dir: &Path) -> Result<()> {
    for (prefix, dest) in [("vmlinuz-", "vmlinuz"), ("initrd.img-", "initrd.img")] {
        let src = single_boot_file(&root.join("boot"), prefix)?;
        let dest = dir.join(dest);
        fs::copy(&src, &dest).with_context(|| format!("cannot copy {}", src.display()))?;
        // Debian ships vmlinuz 0600; nothing in it is secret, and a user
        // other than the builder may boot it.
        fs::set_permissions(&dest, fs::Permissions::from_mode(0o644))
            .with_context(|| format!("cannot chmod {}", dest.display()))?;
    }
    Ok(())
}

fn single_boot_file(boot: &Path, prefix: &str) -> Result<PathBuf> {
    let mut found = Vec::new();
    for entry in fs::read_dir(boot).with_context(|| format!("cannot list {}", boot.display()))? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(prefix) {
            found.push(entry.path());
        }
    }
    match found.as_slice() {
        [one] => Ok(one.clone()),
        _ => bail!(
            "expected one {prefix}* in {}, found {}",
            boot.display(),
            found.len()
        ),
    }
}

/// A sparse raw file holding an ext4 file system filled from `root`
/// (`mkfs.ext4 -d`: no loop device or mount needed).
fn make_ext4(root: &Path, image: &Path) -> Result<()> {
    let file = fs::File::create(image).with_context(|| format!("cannot create {}", image.display()))?;
    file.set_len(IMAGE_BYTES)
        .with_context(|| format!("cannot size {}", image.display()))?;
    drop(file);
    let status = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "dockfw-vm", "-d"])
        .arg(root)
        .arg(image)
        .status()
        .context("cannot run mkfs.ext4")?;
    if !status.success() {
        bail!("mkfs.ext4 -d {} failed ({status})", root.display());
    }
    Ok(())
}

/// Removes older images of the same distro.
fn prune_stale(cache: &Path, recipe: &Recipe) -> Result<()> {
    let keep = recipe.id();
    let prefix = format!("{}-", recipe.distro.name());
    for entry in fs::read_dir(cache).with_context(|| format!("cannot list {}", cache.display()))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.starts_with(&prefix) && name != keep && !name.ends_with(".partial") {
            eprintln!("vm-test: removing stale image {name}");
            remove_tree(&cache.join(&name))?;
        }
    }
    Ok(())
}

/// Removes a directory tree, first unmounting anything mounted below it
/// (an interrupted debootstrap can leave /proc, /sys or a bind-mounted /dev
/// in its target: deleting through those would be a disaster).
fn remove_tree(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", dir.display()))?;
    for mount_point in mounts_below(&dir)?.iter().rev() {
        nix::mount::umount2(mount_point, nix::mount::MntFlags::MNT_DETACH)
            .with_context(|| format!("cannot unmount {}", mount_point.display()))?;
    }
    if let Some(left) = mounts_below(&dir)?.first() {
        bail!(
            "{} is still mounted; not deleting {}",
            left.display(),
            dir.display()
        );
    }
    fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))
}

/// Mount points at or below `dir`, in mount order.
fn mounts_below(dir: &Path) -> Result<Vec<PathBuf>> {
    let table = fs::read_to_string("/proc/self/mountinfo").context("cannot read /proc/self/mountinfo")?;
    Ok(parse_mount_points(&table)
        .into_iter()
        .filter(|p| p.starts_with(dir))
        .collect())
}

/// The mount point column (5th) of mountinfo, octal escapes undone.
fn parse_mount_points(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_octal(field)))
        .collect()
}

/// Undoes the kernel's `\ooo` escapes (space, tab, newline, backslash).
fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|s| u8::from_str_radix(s, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The Debian mirror apt uses on this machine: the URI of the first enabled
/// `deb` source that serves the host's own release (VERSION_CODENAME), from
/// /etc/apt/sources.list and /etc/apt/sources.list.d/ (both formats).
pub(crate) fn host_mirror() -> Result<String> {
    let os_release = fs::read_to_string("/etc/os-release").unwrap_or_default();
    let codename = os_release
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|c| c.trim_matches('"').to_owned())
        .context("no VERSION_CODENAME in /etc/os-release: pass --mirror URL")?;
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        more.sort();
        files.extend(more);
    }
    for file in files {
        let Ok(text) = fs::read_to_string(&file) else {
            continue;
        };
        let sources = match file.extension().and_then(|e| e.to_str()) {
            Some("sources") => parse_deb822(&text),
            Some("list") | None => parse_one_line(&text),
            _ => continue,
        };
        if let Some(uri) = sources
            .into_iter()
            .find(|s| s.suites.contains(&codename))
            .map(|s| s.uri)
        {
            return Ok(uri);
        }
    }
    bail!("no apt source for {codename} in /etc/apt/sources.list*: pass --mirror URL")
}

/// A `deb` source: one URI and its suites.
#[derive(Debug, PartialEq, Eq)]
struct Source {
    uri: String,
    suites: Vec<String>,
}

/// `deb [options] URI SUITE COMPONENT…` lines.
fn parse_one_line(text: &str) -> Vec<Source> {
    text.lines()
        .filter_map(|line| {
            let line = line.split('#').next()?.trim();
            let rest = line.strip_prefix("deb ")?.trim_start();
            let rest = match rest.strip_prefix('[') {
                Some(opts) => opts.split_once(']')?.1.trim_start(),
                None => rest,
            };
            let mut words = rest.split_whitespace();
            let uri = words.next()?.to_owned();
            let suite = words.next()?.to_owned();
            Some(Source {
                uri,
                suites: vec![suite],
            })
        })
        .collect()
}

/// deb822 stanzas (`Types:`, `URIs:`, `Suites:`, `Enabled:`), blank-line
/// separated.
fn parse_deb822(text: &str) -> Vec<Source> {
    let mut sources = Vec::new();
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|l| {
                let (key, value) = l.split_once(':')?;
                key.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| value.trim().to_owned())
            })
        };
        let is_deb = field("Types").is_some_and(|t| t.split_whitespace().any(|t| t == "deb"));
        let enabled = field("Enabled").is_none_or(|e| !e.eq_ignore_ascii_case("no"));
        let (Some(uris), Some(suites)) = (field("URIs"), field("Suites")) else {
            continue;
        };
        if !is_deb || !enabled {
            continue;
        }
        let suites: Vec<String> = suites.split_whitespace().map(str::to_owned).collect();
        for uri in uris.split_whitespace() {
            sources.push(Source {
                uri: uri.to_owned(),
                suites: suites.clone(),
            });
        }
    }
    sources
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb822_sources_give_uri_and_suites() {
        let text = "Types: deb\n# a comment\nURIs: http://deb.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n\
                    Types: deb\nURIs: http://deb.example/debian-security\nSuites: bookworm-security\n\n\
                    Types: deb-src\nURIs: http://src.example\nSuites: bookworm\n\n\
                    Types: deb\nEnabled: no\nURIs: http://off.example\nSuites: bookworm\n";
        let sources = parse_deb822(text);
        assert_eq!(sources.len(), 2);
        assert_eq!(sources[0].uri, "http://deb.example/debian");
        assert_eq!(sources[0].suites, ["bookworm", "bookworm-updates"]);
        assert_eq!(sources[1].suites, ["bookworm-security"]);
    }

    #[test]
    fn one_line_sources_skip_options_and_comments() {
        let text = "# deb http://old.example bookworm main\n\
                    deb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main\n\
                    deb-src http://m.example/debian bookworm main\n\
                    deb https://packages.example/apt cloud-sdk-bookworm main\n";
        assert_eq!(
            parse_one_line(text),
            [
                Source {
                    uri: "http://m.example/debian".into(),
                    suites: vec!["bookworm".into()]
                },
                Source {
                    uri: "https://packages.example/apt".into(),
                    suites: vec!["cloud-sdk-bookworm".into()]
                },
            ]
        );
    }

    #[test]
    fn mount_points_are_unescaped() {
        let info = "36 25 0:32 / /tmp/a\\040b rw,relatime shared:1 - tmpfs tmpfs rw\n\
                    37 25 0:33 / /proc rw - proc proc rw\n";
        assert_eq!(
            parse_mount_points(info),
            [PathBuf::from("/tmp/a b"), PathBuf::from("/proc")]
        );
        assert_eq!(unescape_octal(r"a\134b\"), r"a\b\");
    }

    #[test]
    fn recipe_id_changes_with_the_mirror() {
        let recipe = |mirror: &str, ci: &[&str]| Recipe {
            distro: Distro::Bookworm,
            mirror: mirror.into(),
            ci_packages: ci.iter().map(|p| (*p).to_owned()).collect(),
        };
        let a = recipe("http://a", &["nftables"]);
        assert!(a.id().starts_with("bookworm-"));
        assert_eq!(a.id(), recipe("http://a", &["nftables"]).id());
        assert_ne!(a.id(), recipe("http://b", &["nftables"]).id());
        assert_ne!(a.id(), recipe("http://a", &["nftables", "jq"]).id());
    }

    #[test]
    fn package_list_words_without_comments_deduplicated_with_ours() {
        let ci = parse_package_list("# header\npkg-config libmnl-dev\n curl  nftables # why\n");
        assert_eq!(ci, ["pkg-config", "libmnl-dev", "curl", "nftables"]);
        let packages = Recipe {
            distro: Distro::Trixie,
            mirror: String::new(),
            ci_packages: ci,
        }
        .packages();
        assert_eq!(packages.iter().filter(|p| *p == "curl").count(), 1);
        assert!(packages.contains(&"docker-cli".to_owned()));
        assert!(packages.contains(&"linux-image-amd64".to_owned()));
    }
}
