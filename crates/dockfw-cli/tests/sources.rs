//! Sets' sources outside the policy, with real components and no internet:
//! a list served over HTTP by a small server on the loopback (here), over
//! HTTPS by `openssl s_server` with a certificate authority made for the
//! test (trusted through SSL_CERT_FILE, as rustls-native-certs reads it),
//! names answered by dnsmasq inside a test namespace (`ip netns exec` gives
//! the command that namespace's /etc/netns/NAME/resolv.conf), and `watch`
//! downloading, resolving and reading list files again as they change.
//!
//! The tests without a namespace need no privilege; the others are
//! `#[ignore]`d and run as root by `cargo xtask test`.

mod common;
#[path = "../../dockfw-nft/tests/common/lab.rs"]
mod lab;

use common::fake_docker::FakeDocker;
use dockfw_nft::testing::TestNetns;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A list server: answers every GET with the status and body last given.
struct ListServer {
    url: String,
    served: Arc<Mutex<(u16, Vec<u8>)>>,
    requests: Arc<AtomicUsize>,
    stopped: Arc<AtomicBool>,
}

impl ListServer {
    /// Serves on `listener` (bound in whatever namespace the test needs).
    fn start(listener: TcpListener) -> Self {
        let url = format!("http://{}/ips", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        let served = Arc::new(Mutex::new((404, Vec::new())));
        let requests = Arc::new(AtomicUsize::new(0));
        let stopped = Arc::new(AtomicBool::new(false));
        let (body, count, stop) = (Arc::clone(&served), Arc::clone(&requests), Arc::clone(&stopped));
        std::thread::spawn(move || {
            // Dropping the listener when stopped: connections are then refused.
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        count.fetch_add(1, Ordering::SeqCst);
                        let answer = body.lock().unwrap().clone();
                        answer_request(stream, &answer);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self {
            url,
            served,
            requests,
            stopped,
        }
    }

    fn serve(&self, status: u16, body: impl Into<Vec<u8>>) {
        *self.served.lock().unwrap() = (status, body.into());
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        // The accept loop checks every few milliseconds.
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for ListServer {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
    }
}

fn answer_request(stream: TcpStream, (status, body): &(u16, Vec<u8>)) {
    stream.set_nonblocking(false).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap_or(0) > 2 {
        line.clear();
    }
    let mut out = stream;
    let _ = write!(
        out,
        "HTTP/1.1 {status} Whatever\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = out.write_all(body);
}

/// What one run of the command gave.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn finish(command: &mut Command) -> Run {
    let out = command.output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// `dockfw-nft --no-docker -c policy.toml --cache-dir CACHE ARGS` in `dir`.
fn dockfw(dir: &Path, cache: &str, args: &[&str]) -> Command {
    let mut command = Command::new(assert_cmd::cargo::cargo_bin("dockfw-nft"));
    command
        .env_remove("DOCKFW_CONFIG")
        .env_remove("CLICOLOR_FORCE")
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("ALL_PROXY")
        .current_dir(dir)
        .args(["--no-docker", "-c", "policy.toml", "--cache-dir", cache])
        .args(args);
    command
}

fn run(dir: &Path, args: &[&str]) -> Run {
    finish(&mut dockfw(dir, "cache", args))
}

fn cdn_policy(url: &str) -> String {
    format!(
        r#"
[guard]
interfaces = ["eth0"]

[sets]
cdn = {{ url = "{url}" }}

[[rule]]
from = "@cdn"
ports = [443]
"#
    )
}

const LIST: &str = "# the CDN's ranges\n192.0.2.0/24\n2001:db8:c::/48\n";

#[test]
fn a_url_is_downloaded_kept_and_its_copy_used_when_the_server_fails() {
    let dir = common::tempdir("sources-url");
    let server = ListServer::start(TcpListener::bind("127.0.0.1:0").unwrap());
    let url = server.url.clone();
    server.serve(200, LIST);
    std::fs::write(dir.join("policy.toml"), cdn_policy(&url)).unwrap();

    // check does not download; check --fetch does.
    let check = run(&dir, &["check"]);
    assert_eq!(check.code, 0, "{check:?}");
    assert_eq!(
        check.stderr,
        "policy.toml:6:15: warning: set \"cdn\": its url was not downloaded (`check --fetch` downloads it)\n"
    );
    assert_eq!(server.requests(), 0);
    let fetch = run(&dir, &["check", "--fetch"]);
    assert_eq!((fetch.code, fetch.stderr.as_str()), (0, ""), "{fetch:?}");
    assert_eq!(server.requests(), 1);

    // plan: the list's entries; a copy kept, readable by root alone.
    let plan = run(&dir, &["plan"]);
    assert_eq!((plan.code, plan.stderr.as_str()), (0, ""), "{plan:?}");
    assert!(
        plan.stdout.contains("elements = { 192.0.2.0/24 }"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("elements = { 2001:db8:c::/48 }"),
        "{}",
        plan.stdout
    );
    let cache = dir.join("cache");
    let mode = std::fs::metadata(&cache).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    let copies: Vec<PathBuf> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(std::fs::read_to_string(&copies[0]).unwrap(), LIST);

    // explain says where an address came from.
    let explain = run(&dir, &["explain", "--from", "192.0.2.9", "--port", "443"]);
    assert!(
        explain
            .stdout
            .contains(&format!("192.0.2.9 is in @cdn, from {url} line 2")),
        "{explain:?}"
    );

    // The server fails: the copy, with its age.
    server.serve(503, "busy");
    let plan = run(&dir, &["plan"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    let warning = format!(
        "policy.toml:6:15: warning: set \"cdn\": cannot download {url} (the server answered HTTP 503): \
         using the copy downloaded "
    );
    assert!(plan.stderr.starts_with(&warning), "{}", plan.stderr);
    assert!(plan.stderr.ends_with(" s ago\n"), "{}", plan.stderr);
    assert!(plan.stdout.contains("192.0.2.0/24"), "{}", plan.stdout);

    // A page that is no list: errors at the URL's lines, and the good copy
    // is not replaced by it.
    server.serve(200, "<html>\n<p>down for maintenance</p>\n</html>\n");
    let refused = run(&dir, &["plan"]);
    assert_eq!((refused.code, refused.stdout.as_str()), (2, ""), "{refused:?}");
    assert!(
        refused.stderr.starts_with(&format!(
            "{url}:1:1: error: set \"cdn\": \"<html>\" is not an IP address"
        )),
        "{}",
        refused.stderr
    );
    assert_eq!(std::fs::read_to_string(&copies[0]).unwrap(), LIST);

    // Larger than the cap: not read past it.
    server.serve(200, vec![b'#'; (64 << 20) + 1]);
    let plan = run(&dir, &["plan"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    assert!(
        plan.stderr.contains(&format!(
            "cannot download {url} (it is larger than 64 MiB, the largest list dockfw-nft reads): \
             using the copy downloaded "
        )),
        "{}",
        plan.stderr
    );

    // The server is gone: the copy still.
    server.stop();
    let plan = run(&dir, &["plan"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    assert!(
        plan.stderr.contains(&format!(
            "cannot download {url} (Connection refused (os error 111)): using the copy downloaded "
        )),
        "{}",
        plan.stderr
    );
    assert!(plan.stdout.contains("192.0.2.0/24"), "{}", plan.stdout);

    // No copy at all: refused, never an empty set.
    let refused = finish(&mut dockfw(&dir, "empty-cache", &["plan"]));
    assert_eq!((refused.code, refused.stdout.as_str()), (2, ""), "{refused:?}");
    assert!(
        refused.stderr.starts_with(&format!(
            "policy.toml:6:15: error: set \"cdn\": cannot download {url} (Connection refused (os error 111)), \
             and no earlier copy is kept\n"
        )),
        "{}",
        refused.stderr
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `openssl ARGS` in `dir`; panics if it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (Debian package openssl) makes the test's certificates");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running program, killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn https_trusts_the_systems_certificates_only() {
    let dir = common::tempdir("sources-https");
    let p256 = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &dir,
        &[
            &["req", "-x509"][..],
            &p256,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=dockfw test CA",
            ],
        ]
        .concat(),
    );
    openssl(
        &dir,
        &[
            &["req"][..],
            &p256,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
    let www = dir.join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::write(www.join("ips"), LIST).unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _server = Killed(
        Command::new("openssl")
            .args([
                "s_server",
                "-quiet",
                "-WWW",
                "-accept",
                &format!("127.0.0.1:{port}"),
            ])
            .args(["-cert", "../server.pem", "-key", "../server.key"])
            .current_dir(&www)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "openssl s_server never listened"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let url = format!("https://127.0.0.1:{port}/ips");
    std::fs::write(dir.join("policy.toml"), cdn_policy(&url)).unwrap();

    // The test's authority is not in the system's store: refused.
    let refused = run(&dir, &["plan"]);
    assert_eq!((refused.code, refused.stdout.as_str()), (2, ""), "{refused:?}");
    assert!(
        refused.stderr.starts_with(&format!(
            "policy.toml:6:15: error: set \"cdn\": cannot download {url} (invalid peer certificate: UnknownIssuer), \
             and no earlier copy is kept\n"
        )),
        "{}",
        refused.stderr
    );
    // Trusted through SSL_CERT_FILE, as by other programs using the system store.
    let plan = finish(dockfw(&dir, "cache", &["plan"]).env("SSL_CERT_FILE", dir.join("ca.pem")));
    assert_eq!((plan.code, plan.stderr.as_str()), (0, ""), "{plan:?}");
    assert!(
        plan.stdout.contains("elements = { 192.0.2.0/24 }"),
        "{}",
        plan.stdout
    );
    // Without it again, the server's certificate is refused, and the copy
    // kept from the good download is used.
    let plan = run(&dir, &["plan"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    assert!(
        plan.stderr.contains(&format!(
            "cannot download {url} (invalid peer certificate: UnknownIssuer): using the copy downloaded "
        )),
        "{}",
        plan.stderr
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `ip netns exec NS PROGRAM`: unlike `nsenter`, it puts the namespace's
/// /etc/netns/NS/resolv.conf and hosts in place of /etc's.
fn netns_exec(netns: &TestNetns, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new("ip");
    command.args(["netns", "exec", netns.name()]).arg(program);
    command
}

/// `dockfw-nft --no-docker ARGS` run inside the namespace (not `--netns`:
/// downloads and lookups happen there too).
fn dockfw_in(netns: &TestNetns, dir: &Path, args: &[&str]) -> Run {
    let mut command = netns_exec(netns, assert_cmd::cargo::cargo_bin("dockfw-nft"));
    command
        .env_remove("DOCKFW_CONFIG")
        .env_remove("CLICOLOR_FORCE")
        .current_dir(dir)
        .args(["--no-docker", "-c", "policy.toml"])
        .args(args);
    finish(&mut command)
}

/// `nft -s list table inet dockfw` (no counters) in the namespace, or "" without one.
fn table(netns: &TestNetns) -> String {
    let out = netns
        .command("nft")
        .args(["-s", "list", "table", "inet", "dockfw"])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

/// A namespace with its loopback up.
fn namespace() -> TestNetns {
    let netns = TestNetns::new().unwrap();
    netns.exec("ip", ["link", "set", "lo", "up"]);
    netns
}

/// A list server on the namespace's loopback.
fn server_in(netns: &TestNetns) -> ListServer {
    let listener = netns.run(|| TcpListener::bind("127.0.0.1:0")).unwrap().unwrap();
    ListServer::start(listener)
}

#[test]
#[ignore = "needs root"]
fn apply_installs_a_downloaded_list_and_never_an_empty_set() {
    let netns = namespace();
    let dir = common::tempdir("sources-apply");
    let server = server_in(&netns);
    server.serve(200, LIST);
    std::fs::write(dir.join("policy.toml"), cdn_policy(&server.url)).unwrap();
    let applied = dockfw_in(&netns, &dir, &["--cache-dir", "cache", "apply"]);
    assert_eq!(applied.code, 0, "{applied:?}");
    let installed = table(&netns);
    assert!(installed.contains("192.0.2.0/24"), "{installed}");
    assert!(installed.contains("2001:db8:c::/48"), "{installed}");

    // Another list that cannot be downloaded, and no copy of it: refused,
    // the table untouched.
    let other = server.url.replace("/ips", "/other");
    server.serve(404, "not found");
    std::fs::write(dir.join("policy.toml"), cdn_policy(&other)).unwrap();
    let refused = dockfw_in(&netns, &dir, &["--cache-dir", "cache", "apply"]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(
        refused.stderr.starts_with(&format!(
            "policy.toml:6:15: error: set \"cdn\": cannot download {other} (the server answered HTTP 404), \
             and no earlier copy is kept\n"
        )),
        "{}",
        refused.stderr
    );
    assert_eq!(table(&netns), installed);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// dnsmasq answering for `*.test` on the namespace's loopback, from a hosts
/// file the test rewrites; the namespace's resolv.conf points at it.
struct Dns {
    _dnsmasq: Killed,
    pid: u32,
    hosts: PathBuf,
    etc: PathBuf,
}

impl Dns {
    fn start(netns: &TestNetns, dir: &Path, records: &str) -> Self {
        let etc = Path::new("/etc/netns").join(netns.name());
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(etc.join("resolv.conf"), "nameserver 127.0.0.1\n").unwrap();
        // Names are asked of DNS, not of the host's own /etc/hosts.
        std::fs::write(etc.join("hosts"), "127.0.0.1 localhost\n").unwrap();
        let hosts = dir.join("dns-hosts");
        std::fs::write(&hosts, records).unwrap();
        // A name that is always there, to know when dnsmasq answers.
        let ready = dir.join("dns-ready");
        std::fs::write(&ready, "127.0.0.1 ready.test\n").unwrap();
        let child = netns
            .command("dnsmasq")
            .args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
            ])
            .args([
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--local=/test/",
            ])
            .args(["--user=root", "--local-ttl=0"])
            .arg(format!("--addn-hosts={}", hosts.display()))
            .arg(format!("--addn-hosts={}", ready.display()))
            .arg(format!("--pid-file={}", dir.join("dnsmasq.pid").display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq (Debian package dnsmasq-base) answers the test's names");
        let dns = Self {
            pid: child.id(),
            _dnsmasq: Killed(child),
            hosts,
            etc,
        };
        // Ready when it answers (through the namespace's resolver).
        let started = Instant::now();
        loop {
            let answered = netns_exec(netns, "getent")
                .args(["hosts", "ready.test"])
                .stdout(Stdio::null())
                .status()
                .unwrap();
            if answered.success() {
                break dns;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "dnsmasq never answered"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Replaces the records; dnsmasq reads them again on SIGHUP.
    fn records(&self, records: &str) {
        std::fs::write(&self.hosts, records).unwrap();
        let status = Command::new("kill")
            .args(["-HUP", &self.pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.etc);
    }
}

fn partners_policy(names: &str) -> String {
    format!(
        r#"
[guard]
interfaces = ["eth0"]

[sets]
partners = {{ names = [{names}] }}

[[rule]]
from = "@partners"
ports = [443]
"#
    )
}

const PARTNER: &str = "198.18.0.10 api.partner.test\n2001:db8:1::10 api.partner.test\n";

#[test]
#[ignore = "needs root"]
fn names_resolve_through_the_hosts_resolver() {
    let netns = namespace();
    let dir = common::tempdir("sources-names");
    let dns = Dns::start(&netns, &dir, PARTNER);
    std::fs::write(
        dir.join("policy.toml"),
        partners_policy(r#""api.partner.test", "gone.partner.test""#),
    )
    .unwrap();
    // A and AAAA; a name that does not resolve is a warning.
    let applied = dockfw_in(&netns, &dir, &["--cache-dir", "cache", "apply"]);
    assert_eq!(applied.code, 0, "{applied:?}");
    assert!(
        applied
            .stderr
            .contains("warning: set \"partners\": gone.partner.test resolved to no address\n"),
        "{}",
        applied.stderr
    );
    let installed = table(&netns);
    assert!(installed.contains("198.18.0.10"), "{installed}");
    assert!(installed.contains("2001:db8:1::10"), "{installed}");

    // No name resolves, nothing known of them: refused, the table untouched.
    std::fs::write(dir.join("policy.toml"), partners_policy(r#""gone.partner.test""#)).unwrap();
    let refused = dockfw_in(&netns, &dir, &["--cache-dir", "cache", "apply"]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(
        refused.stderr.starts_with(
            "policy.toml:6:22: error: set \"partners\": gone.partner.test did not resolve (Name or service not known), \
             and no earlier addresses are kept\n"
        ),
        "{}",
        refused.stderr
    );
    assert_eq!(table(&netns), installed);

    // DNS fails for names resolved before: what they resolved to then,
    // with its age.
    std::fs::write(
        dir.join("policy.toml"),
        partners_policy(r#""api.partner.test", "gone.partner.test""#),
    )
    .unwrap();
    dns.records("");
    let applied = dockfw_in(&netns, &dir, &["--cache-dir", "cache", "apply"]);
    assert_eq!(applied.code, 0, "{applied:?}");
    assert!(
        applied.stderr.contains(
            "warning: set \"partners\": none of its names resolved (api.partner.test: Name or service not known; \
             gone.partner.test: Name or service not known): using the addresses resolved "
        ),
        "{}",
        applied.stderr
    );
    assert_eq!(table(&netns), installed);
    drop(dns);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A running `dockfw-nft watch` (killed on drop) and its log.
struct Watch {
    _child: Killed,
    log: PathBuf,
    seen: usize,
}

impl Watch {
    fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for `needle` in the log after what was seen; returns its line.
    fn wait_for(&mut self, needle: &str) -> String {
        let start = Instant::now();
        loop {
            let text = self.text();
            if let Some(at) = text[self.seen.min(text.len())..].find(needle) {
                let at = self.seen + at;
                let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
                let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i);
                self.seen = line_end;
                return text[line_start..line_end].to_string();
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "watch never said {needle:?}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn applies(&self) -> usize {
        self.text().matches("applying (").count()
    }
}

/// Waits until the namespace's table holds (or lacks) `text`.
fn until_table(netns: &TestNetns, text: &str, holds: bool) {
    let start = Instant::now();
    while table(netns).contains(text) != holds {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the table never {} {text}:\n{}",
            if holds { "held" } else { "lost" },
            table(netns)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
#[ignore = "needs root"]
fn watch_downloads_resolves_and_reads_files_again_as_they_change() {
    let netns = namespace();
    let dir = common::tempdir("sources-watch");
    let server = server_in(&netns);
    server.serve(200, LIST);
    let dns = Dns::start(&netns, &dir, PARTNER);
    let docker = FakeDocker::start(&dir.join("docker.sock"));
    std::fs::create_dir(dir.join("sets")).unwrap();
    std::fs::write(dir.join("sets/blocked.txt"), "198.51.100.0/24\n").unwrap();
    std::fs::write(
        dir.join("policy.toml"),
        format!(
            r#"
[guard]
interfaces = ["eth0"]

[sets]
cdn = {{ url = "{}", refresh = "1s" }}
partners = {{ names = ["api.partner.test"], refresh = "1s" }}
blocked = {{ file = "sets/blocked.txt" }}

[[rule]]
from = "@blocked"
action = "drop"

[[rule]]
from = ["@cdn", "@partners"]
ports = [443]
"#,
            server.url
        ),
    )
    .unwrap();
    let log = dir.join("watch.log");
    let file = std::fs::File::create(&log).unwrap();
    let child = netns_exec(&netns, assert_cmd::cargo::cargo_bin("dockfw-nft"))
        .env_remove("DOCKFW_CONFIG")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("CLICOLOR_FORCE")
        .current_dir(&dir)
        .args([
            "-c",
            "policy.toml",
            "--cache-dir",
            "cache",
            "--docker-host",
            &docker.host(),
            "watch",
        ])
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut watch = Watch {
        _child: Killed(child),
        log,
        seen: 0,
    };
    watch.wait_for("applying (start)");
    watch.wait_for("table inet dockfw");
    for address in ["192.0.2.0/24", "198.18.0.10", "2001:db8:1::10", "198.51.100.0/24"] {
        until_table(&netns, address, true);
    }

    // Downloaded again every second, applied only when the list changed.
    let applies = watch.applies();
    std::thread::sleep(Duration::from_millis(2500));
    assert!(server.requests() >= 3, "{} downloads", server.requests());
    assert_eq!(watch.applies(), applies, "{}", watch.text());
    server.serve(200, format!("{LIST}203.0.113.0/25\n"));
    let line = watch.wait_for("set cdn:");
    assert_eq!(
        line,
        format!("set cdn: 1 added, 0 removed ({} downloaded again)", server.url)
    );
    watch.wait_for("applying (set cdn changed)");
    until_table(&netns, "203.0.113.0/25", true);

    // The name's records change.
    dns.records("198.18.0.20 api.partner.test\n2001:db8:1::20 api.partner.test\n");
    let line = watch.wait_for("set partners:");
    assert_eq!(line, "set partners: 2 added, 2 removed (names resolved again)");
    until_table(&netns, "198.18.0.20", true);
    until_table(&netns, "198.18.0.10", false);

    // The name stops resolving: its last addresses stay.
    dns.records("");
    watch.wait_for("policy.toml:7:22: warning: set \"partners\": api.partner.test did not resolve");
    assert!(table(&netns).contains("198.18.0.20"));

    // The server goes away: the list downloaded last stays.
    server.stop();
    watch.wait_for(&format!(
        "set \"cdn\": cannot download {} (Connection refused (os error 111)): using the copy downloaded ",
        server.url
    ));
    assert!(table(&netns).contains("203.0.113.0/25"));

    // The list file is replaced as editors do (a new file renamed over it).
    std::fs::write(
        dir.join("sets/.blocked.txt.swp"),
        "198.51.100.0/24\n203.0.113.128/25\n",
    )
    .unwrap();
    std::fs::rename(dir.join("sets/.blocked.txt.swp"), dir.join("sets/blocked.txt")).unwrap();
    let line = watch.wait_for("set blocked:");
    assert_eq!(line, "set blocked: 1 added, 0 removed (sets/blocked.txt changed)");
    until_table(&netns, "203.0.113.128/25", true);

    // A bad line: refused like a policy with errors; the table stays.
    let before = table(&netns);
    std::fs::write(dir.join("sets/blocked.txt"), "198.51.100.0/24\n203.0.113.300\n").unwrap();
    watch.wait_for("sets/blocked.txt:2:1: error: set \"blocked\": \"203.0.113.300\" is not an IP address");
    watch.wait_for("sets/blocked.txt changed, with errors: the sets keep what they held");
    assert_eq!(table(&netns), before);
    // Fixed: followed again.
    std::fs::write(dir.join("sets/blocked.txt"), "198.51.100.0/24\n").unwrap();
    let line = watch.wait_for("set blocked:");
    assert_eq!(line, "set blocked: 0 added, 1 removed (sets/blocked.txt changed)");
    until_table(&netns, "203.0.113.128/25", false);

    println!("watch's log:\n{}", watch.text());
    drop(watch);
    drop(dns);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The lab's router guards `ext0`; only the clients a source names may
/// reach the published port (8080, DNAT to the server's port 80).
fn lab_policy(set: &str) -> String {
    format!(
        r#"
[guard]
interfaces = ["ext0"]
default = "drop"

[sets]
clients = {set}

[[rule]]
name = "clients"
from = "@clients"
"#
    )
}

/// Probes from the lab's allowed and denied clients, both families:
/// whether each was served.
fn served(lab: &lab::Lab) -> Vec<(&'static str, bool)> {
    [lab::V4, lab::V6]
        .iter()
        .flat_map(|family| [(family.allowed, family.router), (family.denied, family.router)])
        .map(|(client, router)| {
            (
                client,
                lab.probe(client, router, 8080).0 == lab::ProbeResult::Served,
            )
        })
        .collect()
}

#[test]
#[ignore = "needs root"]
fn clients_a_list_file_a_downloaded_list_or_a_resolved_name_admits_are_served_and_no_others() {
    use lab::{V4, V6};
    let lab = lab::Lab::new();
    lab.router.exec("ip", ["link", "set", "lo", "up"]);
    let dir = common::tempdir("sources-packets");

    // A list file beside the policy.
    std::fs::write(
        dir.join("clients.txt"),
        format!("{}\n{}  # the allowed one\n", V4.allowed, V6.allowed),
    )
    .unwrap();
    std::fs::write(dir.join("policy.toml"), lab_policy(r#"{ file = "clients.txt" }"#)).unwrap();
    let applied = dockfw_in(&lab.router, &dir, &["--cache-dir", "cache", "apply"]);
    assert_eq!(applied.code, 0, "{applied:?}");
    assert_eq!(
        served(&lab),
        [
            (V4.allowed, true),
            (V4.denied, false),
            (V6.allowed, true),
            (V6.denied, false)
        ]
    );

    // A list downloaded from a server (on the router's loopback here).
    let server = server_in(&lab.router);
    server.serve(200, format!("# clients\n{}\n{}\n", V4.allowed, V6.allowed));
    std::fs::write(
        dir.join("policy.toml"),
        lab_policy(&format!("{{ url = \"{}\" }}", server.url)),
    )
    .unwrap();
    let applied = dockfw_in(&lab.router, &dir, &["--cache-dir", "cache", "apply"]);
    assert_eq!(applied.code, 0, "{applied:?}");
    assert_eq!(
        served(&lab),
        [
            (V4.allowed, true),
            (V4.denied, false),
            (V6.allowed, true),
            (V6.denied, false)
        ]
    );
    // The list names the other client too: served after the next apply.
    server.serve(200, format!("{}\n{}\n{}\n", V4.allowed, V6.allowed, V4.denied));
    let applied = dockfw_in(&lab.router, &dir, &["--cache-dir", "cache", "apply"]);
    assert_eq!(applied.code, 0, "{applied:?}");
    assert_eq!(
        served(&lab),
        [
            (V4.allowed, true),
            (V4.denied, true),
            (V6.allowed, true),
            (V6.denied, false)
        ]
    );
    server.stop();

    // A name resolved through the host's resolver (dnsmasq here).
    let _dns = Dns::start(
        &lab.router,
        &dir,
        &format!("{} client.test\n{} client.test\n", V4.allowed, V6.allowed),
    );
    std::fs::write(
        dir.join("policy.toml"),
        lab_policy(r#"{ names = ["client.test"] }"#),
    )
    .unwrap();
    let applied = dockfw_in(&lab.router, &dir, &["--cache-dir", "cache", "apply"]);
    assert_eq!(applied.code, 0, "{applied:?}");
    assert_eq!(
        served(&lab),
        [
            (V4.allowed, true),
            (V4.denied, false),
            (V6.allowed, true),
            (V6.denied, false)
        ]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
