//! The guard's container image, written as a file: no Docker daemon, no
//! registry, no base image.
//!
//! One layer holds the `dockfw-nft` binary, the shared libraries `ldd` names
//! for it (copied from the machine that builds the image, so it runs where
//! that machine's binary runs), a minimal `/etc` and the directories the
//! guard uses. The tarball is at once an OCI image layout (`oci-layout`,
//! `index.json`, `blobs/sha256/…`, for skopeo, podman, containerd) and a
//! `docker save` archive (`manifest.json` naming the same blobs, which every
//! `docker load` since Docker 1.10 reads). `cargo xtask dist` writes it next
//! to the tarball and the .deb; the Swarm lab test builds it from the debug
//! binary.

use crate::error::{LabError, Result, io_err};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

/// Where the binary lives in the image.
pub const GUARD_BINARY: &str = "/usr/bin/dockfw-nft";

/// How often the image's healthcheck runs `dockfw-nft status`.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(30);

/// The CA bundle copied into the image when the building machine has one
/// (for `url` sources over HTTPS).
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A built image.
#[derive(Debug)]
pub struct GuardImage {
    /// The image tarball (`docker load -i`).
    pub tarball: Vec<u8>,
    /// The name it loads as: `dockfw-nft:VERSION`.
    pub reference: String,
    /// The image id `docker images` shows: `sha256:` and the config's digest.
    pub id: String,
}

/// Builds the guard's image from `binary`, tagged `dockfw-nft:{tag}`.
/// Timestamps come from `SOURCE_DATE_EPOCH` when set (else 0), so the same
/// binary and libraries give the same image id.
pub fn guard_image(binary: &Path, tag: &str, version: &str) -> Result<GuardImage> {
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let layer = layer(binary, epoch)?;
    let layer_digest = sha256(&layer);
    let created =
        humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + Duration::from_secs(epoch)).to_string();
    let reference = format!("dockfw-nft:{tag}");
    let config = json!({
        "architecture": oci_arch()?,
        "os": "linux",
        "created": created,
        "config": {
            "Entrypoint": [GUARD_BINARY],
            "Cmd": ["watch"],
            "Env": ["PATH=/usr/bin:/bin"],
            "WorkingDir": "/",
            // Docker's extension of the OCI config: healthy while the table
            // matches the policy (`status` exits 1 when it differs or is
            // missing). Exec form: the image has no shell.
            "Healthcheck": {
                "Test": ["CMD", GUARD_BINARY, "status"],
                "Interval": HEALTH_INTERVAL.as_nanos() as u64,
                "Timeout": Duration::from_secs(10).as_nanos() as u64,
                "StartPeriod": Duration::from_secs(30).as_nanos() as u64,
                "Retries": 3,
            },
            "Labels": {
                "org.opencontainers.image.title": "dockfw-nft",
                "org.opencontainers.image.description": "nftables firewall for Docker hosts: the live guard (dockfw-nft watch)",
                "org.opencontainers.image.version": version,
            },
        },
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{layer_digest}")] },
        "history": [{ "created": created, "created_by": "dockfw-nft: binary, its shared libraries (ldd), minimal /etc" }],
    });
    let config = serde_json::to_vec(&config).expect("JSON values serialise");
    let config_digest = sha256(&config);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": format!("sha256:{config_digest}"),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": format!("sha256:{layer_digest}"),
            "size": layer.len(),
        }],
    });
    let manifest = serde_json::to_vec(&manifest).expect("JSON values serialise");
    let manifest_digest = sha256(&manifest);
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{manifest_digest}"),
            "size": manifest.len(),
            "annotations": {
                "io.containerd.image.name": format!("docker.io/library/{reference}"),
                "org.opencontainers.image.ref.name": tag,
            },
        }],
    });
    let docker_manifest = json!([{
        "Config": format!("blobs/sha256/{config_digest}"),
        "RepoTags": [reference],
        "Layers": [format!("blobs/sha256/{layer_digest}")],
    }]);

    let mut out = Tar::new(epoch);
    out.dir("blobs")?;
    out.dir("blobs/sha256")?;
    out.file(&format!("blobs/sha256/{layer_digest}"), 0o644, &layer)?;
    out.file(&format!("blobs/sha256/{config_digest}"), 0o644, &config)?;
    out.file(&format!("blobs/sha256/{manifest_digest}"), 0o644, &manifest)?;
    out.file("oci-layout", 0o644, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    out.file("index.json", 0o644, &serde_json::to_vec(&index).expect("JSON"))?;
    out.file(
        "manifest.json",
        0o644,
        &serde_json::to_vec(&docker_manifest).expect("JSON"),
    )?;
    Ok(GuardImage {
        tarball: out.finish()?,
        reference,
        id: format!("sha256:{config_digest}"),
    })
}

/// The image's one layer (an uncompressed tar).
fn layer(binary: &Path, epoch: u64) -> Result<Vec<u8>> {
    let binary_data = std::fs::read(binary).map_err(io_err(format!("cannot read {}", binary.display())))?;
    let libraries = shared_libraries(binary)?;
    let mut files: Vec<(String, u32, Vec<u8>)> = vec![(GUARD_BINARY.to_string(), 0o755, binary_data)];
    for library in &libraries {
        // ldd names the path the loader uses; read through symlinks to the file.
        let data = std::fs::read(library).map_err(io_err(format!("cannot read {}", library.display())))?;
        files.push((library.display().to_string(), 0o755, data));
    }
    files.push((
        "/etc/passwd".into(),
        0o644,
        b"root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
            .to_vec(),
    ));
    files.push((
        "/etc/group".into(),
        0o644,
        b"root:x:0:\nnogroup:x:65534:\n".to_vec(),
    ));
    // `names` sources resolve through glibc: files, then DNS (Docker
    // provides /etc/hosts and /etc/resolv.conf).
    files.push(("/etc/nsswitch.conf".into(), 0o644, b"hosts: files dns\n".to_vec()));
    if let Ok(bundle) = std::fs::read(CA_BUNDLE) {
        files.push((CA_BUNDLE.into(), 0o644, bundle));
    }

    let mut dirs: BTreeSet<String> = ["/etc/dockfw", "/run", "/tmp", "/var/lib/dockfw", "/root"]
        .map(String::from)
        .into();
    for (path, _, _) in &files {
        let mut parent = Path::new(path).parent();
        while let Some(dir) = parent.filter(|d| *d != Path::new("/")) {
            dirs.insert(dir.display().to_string());
            parent = dir.parent();
        }
    }
    let mut tar = Tar::new(epoch);
    for dir in &dirs {
        let mode = if dir == "/tmp" { 0o1777 } else { 0o755 };
        tar.dir_mode(dir.trim_start_matches('/'), mode)?;
    }
    // Docker's socket is /var/run/docker.sock; /var/run is /run, as on the host.
    tar.symlink("var/run", "../run")?;
    files.sort_by(|a, b| a.0.cmp(&b.0));
    for (path, mode, data) in &files {
        tar.file(path.trim_start_matches('/'), *mode, data)?;
    }
    tar.finish()
}

/// The shared libraries and the program interpreter `binary` needs, as `ldd`
/// lists them (none for a static binary).
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let out = crate::cmd::output(Command::new("ldd").arg(binary), None)?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        if text.contains("not a dynamic executable")
            || String::from_utf8_lossy(&out.stderr).contains("not a dynamic")
        {
            return Ok(Vec::new());
        }
        return Err(LabError::Command {
            cmd: format!("ldd {}", binary.display()),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    let mut libraries = Vec::new();
    for line in text.lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or
        // "/lib64/ld-linux-x86-64.so.2 (0x…)"; the vDSO has no file.
        let line = line.trim();
        let path = match line.split_once("=>") {
            Some((name, rest)) => {
                let path = rest.split_whitespace().next().unwrap_or("");
                if path == "not" {
                    return Err(LabError::Command {
                        cmd: format!("ldd {}", binary.display()),
                        status: "a library is missing".into(),
                        stderr: format!("{} not found", name.trim()),
                    });
                }
                path
            }
            None => line.split_whitespace().next().unwrap_or(""),
        };
        if path.starts_with('/') {
            libraries.push(PathBuf::from(path));
        }
    }
    Ok(libraries)
}

/// The OCI name of the architecture this was built for (the binary's).
fn oci_arch() -> Result<&'static str> {
    match std::env::consts::ARCH {
        "x86_64" => Ok("amd64"),
        "aarch64" => Ok("arm64"),
        "arm" => Ok("arm"),
        "riscv64" => Ok("riscv64"),
        "s390x" => Ok("s390x"),
        "powerpc64" => Ok("ppc64le"),
        other => Err(LabError::Io {
            what: "image architecture".into(),
            source: std::io::Error::other(format!("no OCI name known for {other}")),
        }),
    }
}

fn sha256(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// A tar written in memory, with fixed owner and time.
struct Tar {
    builder: tar::Builder<Vec<u8>>,
    mtime: u64,
}

impl Tar {
    fn new(mtime: u64) -> Self {
        Self {
            builder: tar::Builder::new(Vec::new()),
            mtime,
        }
    }

    fn header(&self, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(size);
        header.set_mtime(self.mtime);
        header.set_uid(0);
        header.set_gid(0);
        header
    }

    fn dir(&mut self, path: &str) -> Result<()> {
        self.dir_mode(path, 0o755)
    }

    fn dir_mode(&mut self, path: &str, mode: u32) -> Result<()> {
        let mut header = self.header(tar::EntryType::Directory, mode, 0);
        self.builder
            .append_data(&mut header, format!("{path}/"), std::io::empty())
            .map_err(io_err(format!("tar: {path}")))
    }

    fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> Result<()> {
        let mut header = self.header(tar::EntryType::Regular, mode, data.len() as u64);
        self.builder
            .append_data(&mut header, path, data)
            .map_err(io_err(format!("tar: {path}")))
    }

    fn symlink(&mut self, path: &str, target: &str) -> Result<()> {
        let mut header = self.header(tar::EntryType::Symlink, 0o777, 0);
        self.builder
            .append_link(&mut header, path, target)
            .map_err(io_err(format!("tar: {path}")))
    }

    fn finish(self) -> Result<Vec<u8>> {
        self.builder.into_inner().map_err(io_err("tar"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::io::Read;

    fn entries(tarball: &[u8]) -> BTreeMap<String, (tar::EntryType, Vec<u8>, Option<String>)> {
        let mut archive = tar::Archive::new(tarball);
        let mut out = BTreeMap::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().display().to_string();
            let kind = entry.header().entry_type();
            let link = entry.link_name().unwrap().map(|l| l.display().to_string());
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            out.insert(path, (kind, data, link));
        }
        out
    }

    fn json(data: &[u8]) -> serde_json::Value {
        serde_json::from_slice(data).unwrap()
    }

    /// Built from this test's own (dynamically linked) executable: both
    /// indexes name blobs that exist with the digests they claim, and the
    /// layer holds the binary, its libraries and /var/run -> /run.
    #[test]
    fn image_is_an_oci_layout_and_a_docker_archive() {
        let binary = std::env::current_exe().unwrap();
        let image = guard_image(&binary, "t", "1.2.3").unwrap();
        assert_eq!(image.reference, "dockfw-nft:t");
        let files = entries(&image.tarball);
        for (path, (kind, data, _)) in &files {
            if let Some(digest) = path.strip_prefix("blobs/sha256/").filter(|d| !d.is_empty()) {
                assert_eq!(*kind, tar::EntryType::Regular);
                assert_eq!(sha256(data), digest, "{path}");
            }
        }
        let blob = |digest: &str| &files[&format!("blobs/{}", digest.replace(':', "/"))].1;

        assert_eq!(json(&files["oci-layout"].1)["imageLayoutVersion"], "1.0.0");
        let index = json(&files["index.json"].1);
        let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap();
        let manifest = json(blob(manifest_digest));
        let config_digest = manifest["config"]["digest"].as_str().unwrap();
        assert_eq!(image.id, config_digest);
        let layer_digest = manifest["layers"][0]["digest"].as_str().unwrap();
        let config = json(blob(config_digest));
        assert_eq!(config["rootfs"]["diff_ids"][0], layer_digest);
        assert_eq!(config["config"]["Entrypoint"][0], GUARD_BINARY);
        assert_eq!(config["config"]["Cmd"][0], "watch");
        assert_eq!(
            config["config"]["Labels"]["org.opencontainers.image.version"],
            "1.2.3"
        );

        let docker = json(&files["manifest.json"].1);
        assert_eq!(docker[0]["RepoTags"][0], "dockfw-nft:t");
        assert_eq!(
            docker[0]["Config"],
            format!("blobs/{}", config_digest.replace(':', "/"))
        );
        assert_eq!(
            docker[0]["Layers"][0],
            format!("blobs/{}", layer_digest.replace(':', "/"))
        );

        let layer = entries(blob(layer_digest));
        assert_eq!(layer["usr/bin/dockfw-nft"].1, std::fs::read(&binary).unwrap());
        assert_eq!(layer["var/run"].2.as_deref(), Some("../run"));
        for library in shared_libraries(&binary).unwrap() {
            let path = library.display().to_string();
            assert!(layer.contains_key(path.trim_start_matches('/')), "{path} missing");
        }
        assert!(layer.keys().any(|p| p.contains("libc.so")), "{:?}", layer.keys());
        assert!(layer.contains_key("etc/dockfw/"), "{:?}", layer.keys());
    }

    /// Same inputs, same image id (timestamps are fixed).
    #[test]
    fn image_is_reproducible() {
        let binary = std::env::current_exe().unwrap();
        let a = guard_image(&binary, "t", "1").unwrap();
        let b = guard_image(&binary, "t", "1").unwrap();
        assert_eq!(a.id, b.id);
        assert_eq!(a.tarball, b.tarball);
    }
}
