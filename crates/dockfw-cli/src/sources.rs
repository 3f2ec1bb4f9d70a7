//! Loading the sets' sources that live outside the policy: list files, URLs
//! (downloaded, and cached for when the next download fails) and DNS names
//! (resolved through the host's resolver, with a deadline, and cached too).
//!
//! * **URLs** are fetched over HTTP or HTTPS ([`ureq`], rustls with the
//!   system's certificate store: `SSL_CERT_FILE` / `SSL_CERT_DIR` choose
//!   another), within [`FETCH_TIMEOUT`] and at most [`MAX_POLICY_BYTES`].
//!   Each good download is written to the cache directory (`--cache-dir`,
//!   [`DEFAULT_CACHE_DIR`]); when a download fails, the cached copy is used
//!   with a warning saying how old it is, and with no copy the source fails
//!   (the policy is refused: never a silently empty set).
//! * **Names** are resolved with `getaddrinfo` (so /etc/hosts, nsswitch and
//!   resolv.conf apply), each on a thread of its own, given up after
//!   [`RESOLVE_TIMEOUT`]. When no name of a source resolves, the addresses
//!   they last resolved to (kept in the cache directory) are used, with a
//!   warning; with none known, the source fails.

use crate::policy_file::{self, MAX_POLICY_BYTES};
use dockfw_core::sets::{Content, SetSource};
use dockfw_core::{Diagnostic, Severity};
use std::io::{self, Write};
use std::net::{IpAddr, ToSocketAddrs};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, mpsc};
use std::time::{Duration, SystemTime};

/// Where downloaded lists and resolved names are cached, unless
/// `--cache-dir` says otherwise.
pub const DEFAULT_CACHE_DIR: &str = "/var/lib/dockfw/sets";
/// Longest a download may take, from connecting to the last byte.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest the names of one source may take to resolve.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often watch downloads a URL again when the set gives no `refresh`.
pub const DEFAULT_URL_REFRESH: Duration = Duration::from_secs(24 * 3600);
/// How often watch resolves names again when the set gives no `refresh`.
pub const DEFAULT_NAMES_REFRESH: Duration = Duration::from_secs(5 * 60);
/// The shortest `refresh` watch honours: a shorter one is taken as this.
pub const MIN_REFRESH: Duration = Duration::from_secs(1);

/// How often watch loads `source` again, if it does (`url` and `names`).
pub fn refresh_interval(source: &SetSource) -> Option<Duration> {
    let (refresh, default) = match source {
        SetSource::Url { refresh, .. } => (refresh, DEFAULT_URL_REFRESH),
        SetSource::Names { refresh, .. } => (refresh, DEFAULT_NAMES_REFRESH),
        _ => return None,
    };
    Some(refresh.unwrap_or(default).max(MIN_REFRESH))
}

/// One external source of a set, as loaded: what [`Draft::resolve`] reads,
/// and what watch keeps to resolve the policy again when one source changes.
///
/// [`Draft::resolve`]: dockfw_core::Draft::resolve
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The set's name.
    pub set: String,
    /// The source's index among the set's sources.
    pub index: usize,
    /// The source as written.
    pub source: SetSource,
    /// What it holds.
    pub content: Content,
    /// Problems that did not stop it (a failed download replaced by an
    /// older copy): warnings at the source.
    pub warnings: Vec<String>,
}

impl Fetched {
    pub fn new(set: &str, index: usize, source: &SetSource, content: Content) -> Self {
        Self {
            set: set.to_string(),
            index,
            source: source.clone(),
            content,
            warnings: Vec::new(),
        }
    }

    /// Whether `other` loads the same thing (the same file, URL or names),
    /// wherever the policy writes it.
    pub fn same_target(&self, set: &str, other: &SetSource) -> bool {
        self.set == set
            && match (&self.source, other) {
                (SetSource::File { path: a, .. }, SetSource::File { path: b, .. }) => a == b,
                (SetSource::Url { url: a, .. }, SetSource::Url { url: b, .. }) => a == b,
                (SetSource::Names { names: a, .. }, SetSource::Names { names: b, .. }) => a == b,
                _ => false,
            }
    }

    /// The warnings, as diagnostics at the source.
    pub fn diagnostics(&self) -> impl Iterator<Item = Diagnostic> + '_ {
        self.warnings.iter().map(|warning| Diagnostic {
            severity: Severity::Warning,
            location: Some(self.source.location().clone()),
            rule: None,
            message: format!("set \"{}\": {warning}", self.set),
            hint: None,
        })
    }
}

/// Reads a list file (`file = "..."`; relative to the policy's directory).
pub fn read_file(policy_dir: &Path, path: &str) -> Content {
    let path = policy_dir.join(path);
    match policy_file::read_list(&path) {
        Ok(bytes) => Content::List {
            name: path.display().to_string(),
            bytes,
        },
        Err(error) => Content::Failed {
            problem: format!("cannot read {}: {error}", path.display()),
            hint: None,
        },
    }
}

/// Where downloads and resolutions are kept for when the next one fails.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The cache file for `kind` ("url", "names") and `key` (the URL, the
    /// names): a readable part and a hash, so two keys never share one.
    fn path(&self, kind: &str, key: &str) -> PathBuf {
        let readable: String = key
            .split_once("://")
            .map_or(key, |(_, rest)| rest)
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .take(60)
            .collect();
        self.dir
            .join(format!("{kind}-{readable}-{:016x}.list", fnv1a(key.as_bytes())))
    }

    /// The copy kept for `key`, and when it was written; `Err` when there
    /// is one that cannot be read.
    fn read(&self, kind: &str, key: &str) -> io::Result<Option<(Vec<u8>, SystemTime)>> {
        let path = self.path(kind, key);
        match policy_file::read_list(&path) {
            Ok(bytes) => {
                let written = std::fs::metadata(&path)?.modified()?;
                Ok(Some((bytes, written)))
            }
            Err(policy_file::ReadError::Io(error)) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(policy_file::ReadError::Io(error)) => Err(error),
            Err(error) => Err(io::Error::other(error.to_string())),
        }
    }

    /// Keeps `bytes` for `key`: written to a temporary file and renamed
    /// over the old copy, so a reader never sees half of it. The directory
    /// is made (mode 0700) if missing.
    fn write(&self, kind: &str, key: &str, bytes: &[u8]) -> io::Result<()> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        let path = self.path(kind, key);
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let temporary = self.dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let written = (|| {
            let mut file = std::fs::File::options()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&temporary)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            std::fs::rename(&temporary, &path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
        written
    }
}

/// FNV-1a, 64 bits: a stable hash for cache file names (std's hasher may
/// change between Rust releases, and the files outlive the binary).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// How long ago `then` was, in words: "40 s", "12 min", "5 h", "3 days".
fn age(then: SystemTime) -> String {
    let seconds = SystemTime::now()
        .duration_since(then)
        .unwrap_or_default()
        .as_secs();
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3600 => format!("{} min", seconds / 60),
        3600..172_800 => format!("{} h", seconds / 3600),
        _ => format!("{} days", seconds / 86_400),
    }
}

/// Downloads `url` (a list), keeping a good download in `cache`. When the
/// download fails: the cached copy with a warning, else [`Content::Failed`]
/// (watch then keeps what the set held).
pub fn load_url(url: &str, cache: &Cache) -> (Content, Vec<String>) {
    let mut warnings = Vec::new();
    let problem = match download(url) {
        Ok(bytes) => {
            // Only a list worth falling back on is kept (a list with bad
            // lines is refused anyway, and must not replace a good copy).
            if dockfw_core::sets::parse_list(&bytes).is_ok()
                && let Err(error) = cache.write("url", url, &bytes)
            {
                warnings.push(format!(
                    "cannot keep a copy of {url} in {}: {error} (should a later download fail, \
                     there is no copy to fall back on)",
                    cache.dir.display()
                ));
            }
            let content = Content::List {
                name: url.to_string(),
                bytes,
            };
            return (content, warnings);
        }
        Err(problem) => problem,
    };
    match cache.read("url", url) {
        Ok(Some((bytes, written))) => {
            warnings.push(format!(
                "cannot download {url} ({problem}): using the copy downloaded {} ago",
                age(written)
            ));
            return (
                Content::List {
                    name: url.to_string(),
                    bytes,
                },
                warnings,
            );
        }
        Ok(None) => {}
        Err(error) => warnings.push(format!(
            "cannot read the copy of {url} kept in {}: {error}",
            cache.dir.display()
        )),
    }
    let content = Content::Failed {
        problem: format!("cannot download {url} ({problem}), and no earlier copy is kept"),
        hint: Some(format!(
            "the set is not applied empty: the policy is refused until {url} can be downloaded once \
             (copies are kept in {})",
            cache.dir.display()
        )),
    };
    (content, warnings)
}

/// The one HTTP client: the system's root certificates are read once.
fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        let roots = rustls_native_certs::load_native_certs();
        let roots: Vec<ureq::tls::Certificate<'static>> = roots
            .certs
            .iter()
            .map(|der| ureq::tls::Certificate::from_der(der.as_ref()).to_owned())
            .collect();
        let tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            .root_certs(ureq::tls::RootCerts::Specific(Arc::new(roots)))
            .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .build();
        ureq::Agent::config_builder()
            .timeout_global(Some(FETCH_TIMEOUT))
            .user_agent(concat!("dockfw-nft/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls)
            .build()
            .new_agent()
    })
}

/// The body of a GET of `url`; the problem in words.
fn download(url: &str) -> Result<Vec<u8>, String> {
    let explain = |error: ureq::Error| match error {
        ureq::Error::StatusCode(code) => format!("the server answered HTTP {code}"),
        ureq::Error::Timeout(_) => format!("no complete answer within {} s", FETCH_TIMEOUT.as_secs()),
        ureq::Error::BodyExceedsLimit(_) => format!(
            "it is larger than {} MiB, the largest list dockfw-nft reads",
            MAX_POLICY_BYTES >> 20
        ),
        ureq::Error::Io(error) => error.to_string(),
        error => error.to_string(),
    };
    let mut response = agent().get(url).call().map_err(explain)?;
    response
        .body_mut()
        .with_config()
        .limit(MAX_POLICY_BYTES)
        .read_to_vec()
        .map_err(explain)
}

/// Resolves `names` (A and AAAA) through the host's resolver. When none
/// resolves: the cached resolution with a warning, else [`Content::Failed`]
/// giving each name's problem (watch then keeps what the set held). A name
/// that alone fails is left to [`Draft::resolve`](dockfw_core::Draft::resolve)'s
/// warning.
pub fn load_names(names: &[String], cache: &Cache) -> (Content, Vec<String>) {
    let mut warnings = Vec::new();
    let results = resolve_all(names, RESOLVE_TIMEOUT);
    let key = names.join(",");
    if results.iter().any(Result::is_ok) {
        let addresses: Vec<Vec<IpAddr>> = results.into_iter().map(Result::unwrap_or_default).collect();
        if let Err(error) = cache.write("names", &key, &names_file(names, &addresses)) {
            warnings.push(format!(
                "cannot keep what {} resolved to in {}: {error}",
                names.join(", "),
                cache.dir.display()
            ));
        }
        return (Content::Resolved(addresses), warnings);
    }
    let problem = |result: &Result<Vec<IpAddr>, String>| match result {
        Err(problem) => problem.clone(),
        Ok(_) => String::new(),
    };
    let failed = match (names, results.as_slice()) {
        ([name], [result]) => format!("{name} did not resolve ({})", problem(result)),
        _ => {
            let problems: Vec<String> = names
                .iter()
                .zip(&results)
                .map(|(name, result)| format!("{name}: {}", problem(result)))
                .collect();
            format!("none of its names resolved ({})", problems.join("; "))
        }
    };
    match cache.read("names", &key) {
        Ok(Some((bytes, written))) => {
            if let Some(addresses) = parse_names_file(&bytes, names) {
                warnings.push(format!(
                    "{failed}: using the addresses resolved {} ago",
                    age(written)
                ));
                return (Content::Resolved(addresses), warnings);
            }
        }
        Ok(None) => {}
        Err(error) => warnings.push(format!(
            "cannot read what {} resolved to before, kept in {}: {error}",
            names.join(", "),
            cache.dir.display()
        )),
    }
    let content = Content::Failed {
        problem: format!("{failed}, and no earlier addresses are kept"),
        hint: Some(
            "the set is not applied empty: check the names, and the resolver (/etc/resolv.conf)".to_string(),
        ),
    };
    (content, warnings)
}

/// Resolves each name on a thread of its own (getaddrinfo has no timeout),
/// waiting for all at most `timeout`; a lookup still running then is left
/// to finish on its own, its answer unused.
fn resolve_all(names: &[String], timeout: Duration) -> Vec<Result<Vec<IpAddr>, String>> {
    let (sender, answers) = mpsc::channel();
    let mut results: Vec<Result<Vec<IpAddr>, String>> = names
        .iter()
        .map(|_| Err(format!("no answer within {} s", timeout.as_secs())))
        .collect();
    let mut waiting = 0;
    for (position, name) in names.iter().enumerate() {
        let sender = sender.clone();
        let name = name.clone();
        let spawned = std::thread::Builder::new().name("resolve".into()).spawn(move || {
            let _ = sender.send((position, resolve(&name)));
        });
        match spawned {
            Ok(_) => waiting += 1,
            Err(error) => results[position] = Err(format!("cannot start a resolver thread: {error}")),
        }
    }
    let deadline = std::time::Instant::now() + timeout;
    while waiting > 0 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let Ok((position, result)) = answers.recv_timeout(left) else {
            break;
        };
        results[position] = result;
        waiting -= 1;
    }
    results
}

/// One name's addresses, IPv4 first, each once.
fn resolve(name: &str) -> Result<Vec<IpAddr>, String> {
    let mut addresses: Vec<IpAddr> = (name, 0)
        .to_socket_addrs()
        .map_err(|error| {
            // std says "failed to lookup address information: Name or service not known".
            let text = error.to_string();
            text.strip_prefix("failed to lookup address information: ")
                .unwrap_or(&text)
                .to_string()
        })?
        .map(|socket| socket.ip().to_canonical())
        .collect();
    addresses.sort_by_key(|address| (address.is_ipv6(), *address));
    addresses.dedup();
    if addresses.is_empty() {
        return Err("no address".to_string());
    }
    Ok(addresses)
}

/// The cache file of a resolution: "NAME ADDRESS" lines, "NAME" alone for a
/// name that resolved to nothing.
fn names_file(names: &[String], addresses: &[Vec<IpAddr>]) -> Vec<u8> {
    let mut text = String::from("# dockfw-nft: what these names resolved to\n");
    for (name, addresses) in names.iter().zip(addresses) {
        if addresses.is_empty() {
            text.push_str(&format!("{name}\n"));
        }
        for address in addresses {
            text.push_str(&format!("{name} {address}\n"));
        }
    }
    text.into_bytes()
}

/// Reads [`names_file`] back, in the order of `names`; `None` if it is not one.
fn parse_names_file(bytes: &[u8], names: &[String]) -> Option<Vec<Vec<IpAddr>>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut addresses = vec![Vec::new(); names.len()];
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let mut words = line.split_whitespace();
        let name = words.next()?;
        let position = names.iter().position(|n| n == name)?;
        if let Some(address) = words.next() {
            addresses[position].push(address.parse().ok()?);
        }
    }
    addresses.iter().any(|a| !a.is_empty()).then_some(addresses)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dockfw-sources-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn cache_files_are_named_by_their_key_and_written_whole() {
        let dir = scratch("cache");
        let cache = Cache::new(dir.join("sets"));
        let url = "https://www.example.com/ips-v4?x=1";
        assert!(cache.read("url", url).unwrap().is_none());
        cache.write("url", url, b"192.0.2.0/24\n").unwrap();
        cache.write("url", url, b"198.51.100.0/24\n").unwrap();
        let (bytes, _) = cache.read("url", url).unwrap().unwrap();
        assert_eq!(bytes, b"198.51.100.0/24\n");
        let name = cache.path("url", url);
        let name = name.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("url-www.example.com_ips-v4_x_1-"), "{name}");
        // Nothing but the copy: no temporary file left behind.
        assert_eq!(std::fs::read_dir(dir.join("sets")).unwrap().count(), 1);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("sets")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_resolution_reads_back_as_written() {
        let names = vec![
            "a.example".to_string(),
            "b.example".to_string(),
            "c.example".to_string(),
        ];
        let addresses = vec![
            vec!["192.0.2.1".parse().unwrap(), "2001:db8::1".parse().unwrap()],
            vec![],
            vec!["192.0.2.3".parse().unwrap()],
        ];
        let file = names_file(&names, &addresses);
        assert_eq!(parse_names_file(&file, &names), Some(addresses));
        // Other names (the policy changed): not this resolution.
        assert_eq!(parse_names_file(&file, &names[..1]), None);
    }

    #[test]
    fn ages_read_well() {
        let ago = |seconds| age(SystemTime::now() - Duration::from_secs(seconds));
        assert_eq!(ago(5), "5 s");
        assert_eq!(ago(150), "2 min");
        assert_eq!(ago(5 * 3600 + 10), "5 h");
        assert_eq!(ago(3 * 86_400), "3 days");
    }

    #[test]
    fn refresh_defaults_and_floor() {
        let at = dockfw_core::Location {
            file: String::new(),
            line: 1,
            column: 1,
        };
        let url = |refresh| SetSource::Url {
            url: "https://x.example/".into(),
            refresh,
            location: at.clone(),
        };
        assert_eq!(refresh_interval(&url(None)), Some(DEFAULT_URL_REFRESH));
        assert_eq!(
            refresh_interval(&url(Some(Duration::from_millis(10)))),
            Some(MIN_REFRESH)
        );
        let names = SetSource::Names {
            names: vec!["x.example".into()],
            refresh: None,
            location: at.clone(),
        };
        assert_eq!(refresh_interval(&names), Some(DEFAULT_NAMES_REFRESH));
        let file = SetSource::File {
            path: "x".into(),
            location: at,
        };
        assert_eq!(refresh_interval(&file), None);
    }
}
