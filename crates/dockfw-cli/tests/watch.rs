//! `dockfw-nft watch` as a guard, against the real kernel in a network
//! namespace of its own: every kind of tampering is repaired (the time each
//! took is printed), a program that keeps fighting is backed off, SIGHUP
//! reloads the policy, and systemd's notify protocol is spoken.
//!
//! Docker is not the point here, so a stand-in daemon on a unix socket
//! answers the few requests watch makes (version, an empty container list,
//! an event stream that stays open until the stand-in stops); the real
//! dockerd is in `docker_lab.rs`. Needs root: `#[ignore]`d, run by `cargo xtask test` as root.

mod common;

use common::fake_docker::FakeDocker;
use dockfw_nft::testing::TestNetns;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const POLICY: &str = r#"
[guard]
interfaces = ["eth0"]
default = "drop"

[sets]
admins = ["203.0.113.10", "2001:db8:a::/64"]

[[rule]]
name = "website"
ports = ["80/tcp", "443/tcp"]

[[rule]]
name = "admin panel"
from = ["@admins"]
ports = ["8443/tcp"]
"#;

/// Generous: repairs take milliseconds; this only catches "never".
const REPAIRED_WITHIN: Duration = Duration::from_secs(5);

/// Runs `nft ARGS` inside the namespace; whether it succeeded.
fn nft(netns: &TestNetns, args: &[&str]) -> bool {
    netns
        .command("nft")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// Our table as `nft -s` lists it (without counter values), or `None`.
fn table(netns: &TestNetns) -> Option<String> {
    let out = netns
        .command("nft")
        .args(["-s", "list", "table", "inet", "dockfw"])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8(out.stdout).unwrap())
}

/// A running `dockfw-nft watch`, killed on drop; its output in `log`.
struct Watch {
    child: Child,
    log: PathBuf,
    /// How much of the log has been looked at by `wait_for_new`.
    seen: usize,
}

impl Watch {
    fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log once it has not grown for `quiet` (at most a minute).
    fn settled_text(&self, quiet: Duration) -> String {
        let start = Instant::now();
        let mut text = self.text();
        let mut since = Instant::now();
        while since.elapsed() < quiet && start.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(50));
            let now = self.text();
            if now.len() != text.len() {
                text = now;
                since = Instant::now();
            }
        }
        text
    }

    /// Waits for `needle` in the log after what was seen so far; returns the
    /// line holding it and moves past it.
    fn wait_for_new(&mut self, needle: &str, within: Duration) -> String {
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
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("watch ended ({status}) before saying {needle:?}:\n{text}");
            }
            assert!(
                start.elapsed() < within,
                "watch never said {needle:?} within {within:?}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Setup {
    netns: TestNetns,
    dir: PathBuf,
    docker: FakeDocker,
}

fn setup(test: &str) -> Setup {
    let netns = TestNetns::new().unwrap();
    let dir = common::tempdir(&format!("watch-{test}"));
    std::fs::write(dir.join("policy.toml"), POLICY).unwrap();
    let docker = FakeDocker::start(&dir.join("docker.sock"));
    Setup { netns, dir, docker }
}

impl Setup {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(assert_cmd::cargo::cargo_bin("dockfw-nft"));
        command
            .env_remove("DOCKFW_CONFIG")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("CLICOLOR_FORCE")
            .current_dir(&self.dir)
            .args(["--netns", self.netns.name(), "--docker-host", &self.docker.host()])
            .args(["-c", "policy.toml"])
            .args(args);
        command
    }

    /// Starts watch and waits for its first apply.
    fn watch(&self, env: &[(&str, &str)]) -> Watch {
        self.watch_with(&[], env)
    }

    /// Starts `watch ARGS` and waits for its first apply.
    fn watch_with(&self, args: &[&str], env: &[(&str, &str)]) -> Watch {
        let log = self.dir.join("watch.log");
        let file = std::fs::File::create(&log).unwrap();
        let mut command = self.command(&["watch"]);
        command.args(args);
        command.envs(env.iter().copied());
        let child = command
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let mut watch = Watch { child, log, seen: 0 };
        watch.wait_for_new("applying (start)", REPAIRED_WITHIN);
        // "applied ..." or "up to date: table inet dockfw already matches ...".
        watch.wait_for_new("table inet dockfw", REPAIRED_WITHIN);
        watch
    }

    /// Waits until the table is `whole` again; how long that took.
    fn until_whole(&self, whole: &str, started: Instant) -> Duration {
        loop {
            if table(&self.netns).as_deref() == Some(whole) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < REPAIRED_WITHIN,
                "not repaired within {REPAIRED_WITHIN:?}; the table now:\n{:?}",
                table(&self.netns)
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn done(self) {
        std::fs::remove_dir_all(&self.dir).unwrap();
    }
}

#[test]
#[ignore = "needs root"]
fn every_kind_of_tampering_is_repaired() {
    let setup = setup("tamper");
    let whole = {
        let _watch = setup.watch(&[]);
        table(&setup.netns).expect("installed")
    };
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "table deleted",
            &["delete", "table", "inet", "dockfw"],
            "table deleted, by nft (pid ",
        ),
        (
            "rule inserted",
            &["insert", "rule", "inet", "dockfw", "forward", "accept"],
            "1 rule added in chain forward, by nft (pid ",
        ),
        (
            "chain flushed",
            &["flush", "chain", "inet", "dockfw", "rules"],
            "rules deleted in chain rules, by nft (pid ",
        ),
        (
            "element deleted",
            &[
                "delete",
                "element",
                "inet",
                "dockfw",
                "set-admins-v4",
                "{ 203.0.113.10 }",
            ],
            "deleted from set set-admins-v4, by nft (pid ",
        ),
        (
            "ruleset flushed",
            &["flush", "ruleset"],
            "table deleted, by nft (pid ",
        ),
        (
            "table made dormant",
            &["add", "table", "inet", "dockfw", "{ flags dormant; }"],
            "table flags changed (e.g. dormant), by nft (pid ",
        ),
    ];
    for (name, tamper, said) in cases {
        // A watcher of its own for each, so none is delayed by backing off
        // (more than three repairs in 10 s; tested below).
        let mut watch = setup.watch(&[]);
        assert!(nft(&setup.netns, tamper), "nft {tamper:?}");
        let started = Instant::now();
        let took = setup.until_whole(&whole, started);
        let line = watch.wait_for_new("repaired table inet dockfw", REPAIRED_WITHIN);
        println!("{name}: whole again {took:.1?} after nft returned; watch says: {line}");
        assert!(line.contains(said), "{name}: {line}");
    }
    let watch = setup.watch(&[]);
    // A change to someone else's table is not ours to repair.
    assert!(nft(&setup.netns, &["add", "table", "inet", "theirs"]));
    assert!(nft(&setup.netns, &["add", "chain", "inet", "theirs", "c"]));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !watch.text()[watch.seen..].contains("repaired"),
        "{}",
        watch.text()
    );
    assert!(nft(&setup.netns, &["list", "chain", "inet", "theirs", "c"]));
    drop(watch);
    setup.done();
}

/// How many repairs the documented backoff makes during `fight` of non-stop
/// tampering: 3 at once, then one after each delay (250 ms doubling, at most 5 s).
fn backoff_repairs_within(fight: Duration) -> usize {
    let (mut repairs, mut spent, mut delay) = (3, Duration::ZERO, Duration::from_millis(250));
    // A repair is due at the end of each delay that starts within the fight.
    while spent < fight {
        spent += delay;
        repairs += 1;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
    repairs
}

#[test]
#[ignore = "needs root"]
fn a_program_that_keeps_fighting_is_backed_off() {
    let setup = setup("fight");
    let mut watch = setup.watch(&[]);
    let whole = table(&setup.netns).expect("installed");
    let start = Instant::now();
    let (mut attempts, mut deletions) = (0, 0);
    // At least 3 s and 20 attempts: a slow machine fights longer, not less.
    while start.elapsed() < Duration::from_secs(3) || attempts < 20 {
        attempts += 1;
        // Fails while the table is gone: the guard is backing off.
        if nft(&setup.netns, &["delete", "table", "inet", "dockfw"]) {
            deletions += 1;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let stopped = Instant::now();
    let fought = stopped.duration_since(start);
    // Whole within the backoff (at most 5 s) after the fight ends.
    let took = setup.until_whole(&whole, stopped);
    // The last repair's line is written after its commit: on a slow machine
    // after the table is seen whole. Read the log once it has settled.
    let text = watch.settled_text(Duration::from_secs(1));
    let repairs = text.matches("repaired table inet dockfw").count();
    println!(
        "{attempts} attempts to delete in 3 s, {deletions} found the table, {repairs} repairs; \
         whole {took:.1?} after the loop stopped"
    );
    watch.wait_for_new("keeps changing table inet dockfw", Duration::ZERO);
    assert!(text.contains("backing off: next repair in 250 ms"), "{text}");
    // 3 at once, then one after each delay of 250 ms, 500 ms, 1 s, 2 s, ...
    // (at most 5 s): not one repair per deletion.
    // The one due when the fight ends comes after it: one more.
    let allowed = backoff_repairs_within(fought) + 1;
    assert!(
        repairs <= allowed && repairs < attempts && deletions <= repairs + 1,
        "{repairs} repairs for {attempts} attempts in {fought:?} (the backoff allows {allowed}): \
         not backing off\n{text}"
    );
    // The table stays whole once the fight is over.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(table(&setup.netns).as_deref(), Some(whole.as_str()));
    drop(watch);
    setup.done();
}

#[test]
#[ignore = "needs root"]
fn sighup_applies_a_good_policy_and_refuses_a_bad_one() {
    let setup = setup("hup");
    let mut watch = setup.watch(&[]);
    let edited = format!("{POLICY}\n[[rule]]\nname = \"added by reload\"\nports = [\"9000/tcp\"]\n");
    std::fs::write(setup.dir.join("policy.toml"), &edited).unwrap();
    watch.signal("-HUP");
    watch.wait_for_new("reloading policy.toml (SIGHUP)", REPAIRED_WITHIN);
    watch.wait_for_new("applied policy.toml", REPAIRED_WITHIN);
    let reloaded = table(&setup.netns).expect("installed");
    assert!(reloaded.contains("\"added by reload\""), "{reloaded}");

    // A policy with an error: said with file:line:column, the table stays.
    std::fs::write(
        setup.dir.join("policy.toml"),
        edited.replace(
            "ports = [\"9000/tcp\"]",
            "ports = [\"9000/tcp\"]\nfrm = [\"1.2.3.4\"]",
        ),
    )
    .unwrap();
    watch.signal("-HUP");
    watch.wait_for_new("reload refused", REPAIRED_WITHIN);
    let text = watch.text();
    assert!(text.contains("policy.toml:"), "{text}");
    let position = text
        .lines()
        .find(|l| l.starts_with("policy.toml:") && l.contains("error"))
        .unwrap_or_else(|| panic!("no file:line:column error in\n{text}"));
    let mut fields = position.split(':').skip(1);
    assert!(fields.next().unwrap().parse::<u32>().is_ok(), "{position}");
    assert!(fields.next().unwrap().parse::<u32>().is_ok(), "{position}");
    assert_eq!(table(&setup.netns).as_deref(), Some(reloaded.as_str()));
    // Still guarding what runs: the previous policy is what gets repaired.
    assert!(nft(&setup.netns, &["delete", "table", "inet", "dockfw"]));
    setup.until_whole(&reloaded, Instant::now());
    drop(watch);
    setup.done();
}

/// `systemctl reload dockfw-nft` after an edit runs a one-shot `apply`: a
/// running watch follows the edited policy file instead of undoing it, and
/// from then on repairs to it.
#[test]
#[ignore = "needs root"]
fn a_one_shot_apply_of_the_edited_policy_is_followed_not_undone() {
    let setup = setup("oneshot");
    let mut watch = setup.watch(&[]);
    let edited = format!("{POLICY}\n[[rule]]\nname = \"added by apply\"\nports = [\"9000/tcp\"]\n");
    std::fs::write(setup.dir.join("policy.toml"), &edited).unwrap();
    let output = setup.command(&["apply"]).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    watch.wait_for_new("following policy.toml", REPAIRED_WITHIN);
    // Long enough for a wrong repair back to the old policy to have happened.
    std::thread::sleep(Duration::from_millis(500));
    let applied = table(&setup.netns).expect("installed");
    assert!(
        applied.contains("\"added by apply\""),
        "{applied}\n{}",
        watch.text()
    );
    assert!(!watch.text().contains("repaired"), "{}", watch.text());
    // Guarding the edited policy now.
    assert!(nft(&setup.netns, &["delete", "table", "inet", "dockfw"]));
    setup.until_whole(&applied, Instant::now());
    drop(watch);
    setup.done();
}

#[test]
#[ignore = "needs root"]
fn a_reload_the_kernel_refuses_keeps_the_repair_that_was_due() {
    let setup = setup("hupdue");
    let mut watch = setup.watch(&[]);
    let whole = table(&setup.netns).expect("installed");
    // Backing off: a repair waits 2 s; tampering meanwhile is due then.
    let start = Instant::now();
    while !watch.text()[watch.seen..].contains("backing off: next repair in 2 s") {
        assert!(nft(
            &setup.netns,
            &["insert", "rule", "inet", "dockfw", "forward", "accept"]
        ));
        assert!(start.elapsed() < Duration::from_secs(10), "{}", watch.text());
        std::thread::sleep(Duration::from_millis(50));
    }
    watch.wait_for_new("backing off: next repair in 2 s", Duration::ZERO);
    assert!(nft(
        &setup.netns,
        &[
            "insert",
            "rule",
            "inet",
            "dockfw",
            "forward",
            "ip",
            "saddr",
            "192.0.2.66",
            "accept"
        ]
    ));
    // A policy the kernel side refuses: its table is someone else's.
    assert!(nft(&setup.netns, &["add", "table", "inet", "theirs"]));
    let policy = setup.dir.join("policy.toml");
    std::fs::write(&policy, POLICY.replace("[guard]", "[guard]\ntable = \"theirs\"")).unwrap();
    watch.signal("-HUP");
    watch.wait_for_new("reload refused", REPAIRED_WITHIN);
    std::fs::write(&policy, POLICY).unwrap();
    // The tampering seen before the reload is still repaired (at the end of the delay).
    let took = setup.until_whole(&whole, Instant::now());
    println!("whole {took:.1?} after the refused reload");
    drop(watch);
    setup.done();
}

#[test]
#[ignore = "needs root"]
fn guards_on_while_docker_is_away() {
    let setup = setup("away");
    let mut watch = setup.watch(&[]);
    let whole = table(&setup.netns).expect("installed");
    setup.docker.stop();
    watch.wait_for_new("lost Docker", REPAIRED_WITHIN);
    assert!(nft(&setup.netns, &["flush", "ruleset"]));
    let took = setup.until_whole(&whole, Instant::now());
    println!("repaired in {took:.1?} with Docker away");
    watch.wait_for_new("repaired table inet dockfw: table deleted", REPAIRED_WITHIN);
    drop(watch);
    setup.done();
}

#[test]
#[ignore = "needs root"]
fn without_docker_at_start_watch_exits_4() {
    let setup = setup("nodock");
    setup.docker.stop();
    let out = setup.command(&["watch"]).output().unwrap();
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert_eq!(table(&setup.netns), None, "nothing applied");
    setup.done();
}

#[test]
#[ignore = "needs root"]
fn a_second_watch_of_the_same_table_is_refused() {
    let setup = setup("second");
    let _first = setup.watch(&[]);
    let whole = table(&setup.netns).expect("installed");
    // Two guards with different policies would undo each other's applies.
    std::fs::write(
        setup.dir.join("policy.toml"),
        POLICY.replace("[guard]\n", "[guard]\nlog = true\n"),
    )
    .unwrap();
    let out = setup.command(&["watch"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("another dockfw-nft watch (pid ")
            && stderr.contains("already guards table inet dockfw"),
        "{stderr}"
    );
    assert_eq!(
        table(&setup.netns).as_deref(),
        Some(whole.as_str()),
        "the second changed nothing"
    );
    setup.done();
}

/// A stand-in for systemd's notify socket: what watch sends, line by line.
struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
    received: Vec<String>,
}

impl NotifySocket {
    fn bind(dir: &Path) -> Self {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        Self {
            socket,
            path,
            received: Vec::new(),
        }
    }

    /// Waits for a line starting with `prefix`; returns it.
    fn wait_for(&mut self, prefix: &str) -> String {
        let start = Instant::now();
        let mut buf = [0u8; 4096];
        loop {
            if let Some(i) = self.received.iter().position(|l| l.starts_with(prefix)) {
                return self.received.drain(..=i).next_back().unwrap();
            }
            assert!(
                start.elapsed() < REPAIRED_WITHIN,
                "no {prefix:?} from watch; got {:?}",
                self.received
            );
            if let Ok(n) = self.socket.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).to_string();
                self.received.extend(text.lines().map(String::from));
            }
        }
    }
}

#[test]
#[ignore = "needs root"]
fn speaks_systemds_notify_protocol() {
    let setup = setup("notify");
    let mut notify = NotifySocket::bind(&setup.dir);
    let path = notify.path.to_str().unwrap().to_string();
    let mut watch = setup.watch(&[("NOTIFY_SOCKET", &path), ("WATCHDOG_USEC", "300000")]);
    notify.wait_for("READY=1");
    let status = notify.wait_for("STATUS=");
    assert!(
        status.starts_with("STATUS=guarding table inet dockfw"),
        "{status}"
    );
    // Fed while healthy: several times within a second at 300 ms.
    for _ in 0..3 {
        notify.wait_for("WATCHDOG=1");
    }
    assert!(nft(&setup.netns, &["delete", "table", "inet", "dockfw"]));
    watch.wait_for_new("repaired", REPAIRED_WITHIN);
    let status = notify.wait_for("STATUS=");
    assert!(
        status.contains("repaired (table deleted, by nft (pid"),
        "{status}"
    );
    watch.signal("-HUP");
    notify.wait_for("RELOADING=1");
    notify.wait_for("READY=1");
    drop(watch);
    setup.done();
}

#[test]
#[ignore = "needs root"]
fn addresses_coming_and_going_in_dynamic_sets_are_not_repaired() {
    let setup = setup("dynamic");
    let policy = POLICY.replace(
        "[sets]\n",
        "[sets]\nbanned = { dynamic = true, timeout = \"1h\" }\n",
    ) + "\n[[rule]]\nname = \"bans\"\nfrom = \"@banned\"\naction = \"drop\"\n";
    std::fs::write(setup.dir.join("policy.toml"), policy).unwrap();
    let mut watch = setup.watch(&[]);
    let set = |args: &[&str]| {
        let status = setup.command(&[&["set"], args].concat()).status().unwrap();
        assert!(status.success(), "set {args:?}");
    };
    // By the command (a dockfw-nft commit, which watch would otherwise
    // follow as an edited policy), by nft, and by the kernel's timeout.
    set(&["add", "banned", "192.0.2.7", "2001:db8::7", "--timeout", "1s"]);
    set(&["add", "banned", "192.0.2.9"]);
    assert!(nft(
        &setup.netns,
        &[
            "add",
            "element",
            "inet",
            "dockfw",
            "set-banned-v4",
            "{ 192.0.2.8 timeout 1m }"
        ]
    ));
    assert!(nft(
        &setup.netns,
        &[
            "delete",
            "element",
            "inet",
            "dockfw",
            "set-banned-v4",
            "{ 192.0.2.8 }"
        ]
    ));
    set(&["del", "banned", "2001:db8::7"]);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(nft(
        &setup.netns,
        &["flush", "set", "inet", "dockfw", "set-banned-v6"]
    ));
    std::thread::sleep(Duration::from_millis(300));
    let said = &watch.text()[watch.seen..];
    for needle in ["repaired", "changed table", "applying"] {
        assert!(!said.contains(needle), "{needle:?} in:\n{said}");
    }
    // Real tampering is still repaired, and the run-time addresses stay.
    assert!(nft(
        &setup.netns,
        &[
            "add",
            "element",
            "inet",
            "dockfw",
            "set-admins-v4",
            "{ 192.0.2.99 }"
        ]
    ));
    let line = watch.wait_for_new("repaired table inet dockfw", REPAIRED_WITHIN);
    assert!(line.contains("added to set set-admins-v4"), "{line}");
    let listed = setup.command(&["set", "list", "banned"]).output().unwrap();
    let listed = String::from_utf8(listed.stdout).unwrap();
    assert!(listed.contains("192.0.2.9  expires in"), "{listed}");
    assert!(!listed.contains("192.0.2.7"), "expired: {listed}");
    drop(watch);
    setup.done();
}
/// `GET PATH` from the server at `address`: the status code and the body.
fn http_get(address: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(REPAIRED_WITHIN)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
    if head
        .lines()
        .any(|l| l.eq_ignore_ascii_case("transfer-encoding: chunked"))
    {
        panic!("a chunked response; read it as such:\n{head}");
    }
    (status, body.to_string())
}

/// The value of the sample `series` (name and labels, as written) in `text`.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

#[test]
#[ignore = "needs root"]
fn serves_metrics_that_follow_the_guard() {
    let setup = setup("metrics");
    let mut watch = setup.watch_with(&["--metrics", "127.0.0.1:0"], &[]);
    let line = watch.wait_for_new("serving metrics at http://", REPAIRED_WITHIN);
    let address = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("{line}"))
        .to_string();
    let (status, text) = http_get(&address, "/metrics");
    assert_eq!(status, 200, "{text}");
    let installed = "dockfw_table_installed{table=\"dockfw\"}";
    assert_eq!(sample(&text, installed), 1.0);
    for rule in ["website", "admin panel"] {
        let series = format!(
            "dockfw_rule_packets_total{{table=\"dockfw\",rule=\"{rule}\",action=\"allow\",direction=\"inbound\"}}"
        );
        assert_eq!(sample(&text, &series), 0.0, "{rule}");
    }
    let default = "dockfw_default_packets_total{table=\"dockfw\",action=\"drop\",direction=\"inbound\"}";
    assert_eq!(sample(&text, default), 0.0);
    assert_eq!(
        sample(&text, "dockfw_untracked_dropped_packets_total{table=\"dockfw\"}"),
        0.0
    );
    assert_eq!(sample(&text, "dockfw_docker_reachable"), 1.0);
    assert_eq!(sample(&text, "dockfw_repairs_total{cause=\"tampering\"}"), 0.0);
    assert_eq!(sample(&text, "dockfw_revoked_connections_total"), 0.0);
    assert_eq!(sample(&text, "dockfw_apply_failures_total"), 0.0);
    assert_eq!(sample(&text, "dockfw_apply_duration_seconds_count"), 1.0);
    assert_eq!(
        sample(&text, "dockfw_apply_duration_seconds_bucket{le=\"+Inf\"}"),
        1.0
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let applied = sample(&text, "dockfw_last_apply_success_timestamp_seconds");
    assert!(
        applied > now - 60.0 && applied <= now + 1.0,
        "{applied} vs now {now}"
    );

    // Tampering: counted once repaired, with the repair's apply.
    assert!(nft(&setup.netns, &["delete", "table", "inet", "dockfw"]));
    watch.wait_for_new("repaired table inet dockfw", REPAIRED_WITHIN);
    let (_, text) = http_get(&address, "/metrics");
    assert_eq!(sample(&text, "dockfw_repairs_total{cause=\"tampering\"}"), 1.0);
    assert_eq!(sample(&text, "dockfw_apply_duration_seconds_count"), 2.0);
    assert_eq!(sample(&text, installed), 1.0);
    // Each scrape reads the kernel: a table deleted is seen at once, as
    // not installed, before (or whether or not) it is repaired.
    assert!(nft(&setup.netns, &["delete", "table", "inet", "dockfw"]));
    let (_, text) = http_get(&address, "/metrics");
    let seen = sample(&text, installed);
    watch.wait_for_new("repaired table inet dockfw", REPAIRED_WITHIN);
    let (_, text) = http_get(&address, "/metrics");
    assert_eq!(sample(&text, "dockfw_repairs_total{cause=\"tampering\"}"), 2.0);
    println!("installed while deleted: {seen} (0 unless the repair came first)");

    assert_eq!(http_get(&address, "/nope").0, 404);
    drop(watch);
    setup.done();
}

/// A one-shot `apply` of another policy file than the one a watch of the
/// same table follows would be undone within milliseconds: refused (exit 2,
/// naming the watch and what to do), unless --force, which warns. An apply
/// of the watch's own file (which the watch follows), or one that changes
/// nothing, goes through.
#[test]
#[ignore = "needs root"]
fn apply_beside_a_guarding_watch_is_refused_unless_forced() {
    let setup = setup("applyguarded");
    let mut watch = setup.watch(&[]);
    let apply = |config: &str, extra: &[&str]| {
        let out = Command::new(assert_cmd::cargo::cargo_bin("dockfw-nft"))
            .env_remove("DOCKFW_CONFIG")
            .current_dir(&setup.dir)
            .args([
                "--netns",
                setup.netns.name(),
                "--docker-host",
                &setup.docker.host(),
            ])
            .args(["-c", config, "apply"])
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let other = POLICY.replace("\"website\"", "\"website v2\"");
    // Another file with the policy the watch applied: nothing to change,
    // nothing refused (as when nftables.service's reload propagates to
    // dockfw-nft.service).
    std::fs::write(setup.dir.join("copy.toml"), POLICY).unwrap();
    let (code, stderr) = apply("copy.toml", &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("guards table"), "{stderr}");

    // Another file, another policy: refused, the table unchanged.
    let before = table(&setup.netns).expect("installed");
    std::fs::write(setup.dir.join("other.toml"), &other).unwrap();
    let (code, stderr) = apply("other.toml", &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "dockfw-nft watch (pid {}) guards table inet dockfw",
            watch.child.id()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was applied"), "{stderr}");
    assert!(stderr.contains("SIGHUP"), "{stderr}");
    assert!(stderr.contains("systemctl stop dockfw-nft-watch"), "{stderr}");
    assert_eq!(table(&setup.netns).as_ref(), Some(&before), "unchanged");

    // --force: applied, with a warning (and undone by the watch).
    let (code, stderr) = apply("other.toml", &["--force"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("warning: dockfw-nft watch (pid ") && stderr.contains("applying anyway (--force)"),
        "{stderr}"
    );
    watch.wait_for_new("repaired table inet dockfw", REPAIRED_WITHIN);

    // The watch's own file, edited (systemctl reload dockfw-nft): applied,
    // and the watch follows it.
    std::fs::write(setup.dir.join("policy.toml"), &other).unwrap();
    let (code, stderr) = apply("policy.toml", &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("guards table"), "{stderr}");
    watch.wait_for_new("following policy.toml as it is now", REPAIRED_WITHIN);
    assert!(table(&setup.netns).unwrap().contains("website v2"));

    // The watch gone, nothing is refused.
    drop(watch);
    std::fs::write(setup.dir.join("other.toml"), POLICY).unwrap();
    let (code, stderr) = apply("other.toml", &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("guards table"), "{stderr}");
    setup.done();
}

/// The exit status of `child` once it ends; a panic if it runs on past a
/// generous bound (a hang, not slowness).
fn ended(child: &mut Child) -> std::process::ExitStatus {
    for _ in 0..300 {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    panic!("watch still runs after the signal");
}

fn signal(pid: u32, name: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{name} {pid}");
}

/// SIGTERM and SIGINT end watch cleanly: exit 0, the table left in force;
/// also as PID 1 of a PID namespace (a container without --init), where
/// the kernel delivers only the signals a process handles.
#[test]
#[ignore = "needs root"]
fn sigterm_and_sigint_end_watch_with_exit_0_leaving_the_table() {
    let setup = setup("signals");
    for name in ["TERM", "INT"] {
        let mut watch = setup.watch(&[]);
        let installed = table(&setup.netns).expect("installed");
        signal(watch.child.id(), name);
        let status = ended(&mut watch.child);
        assert_eq!(status.code(), Some(0), "SIG{name}: {status}\n{}", watch.text());
        assert!(
            watch.text().contains(&format!(
                "stopping on SIG{name}; table inet dockfw stays in force"
            )),
            "{}",
            watch.text()
        );
        assert_eq!(table(&setup.netns), Some(installed), "SIG{name}: the table stays");
    }

    // PID 1 of its own PID namespace, as in a container.
    let log = setup.dir.join("pid1.log");
    let file = std::fs::File::create(&log).unwrap();
    let inner = setup.command(&["watch"]);
    let mut unshare = Command::new("unshare");
    unshare
        .args(["--pid", "--fork", "--"])
        .arg(inner.get_program())
        .args(inner.get_args())
        .current_dir(&setup.dir)
        .env_remove("NOTIFY_SOCKET")
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .stdin(Stdio::null());
    let mut child = unshare.spawn().unwrap();
    let mut watch_pid = None;
    for _ in 0..100 {
        let children =
            std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id())).unwrap_or_default();
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(pid) = children.split_whitespace().next()
            && text.contains("applying (start)")
        {
            watch_pid = Some(pid.parse::<u32>().unwrap());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let watch_pid =
        watch_pid.unwrap_or_else(|| panic!("no watch: {}", std::fs::read_to_string(&log).unwrap()));
    let status = std::fs::read_to_string(format!("/proc/{watch_pid}/status")).unwrap();
    assert!(
        status.contains("NSpid:\t")
            && status
                .lines()
                .any(|l| l.starts_with("NSpid:") && l.ends_with("\t1")),
        "{status}"
    );
    signal(watch_pid, "TERM");
    let status = ended(&mut child);
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(0), "{status}\n{text}");
    assert!(text.contains("stopping on SIGTERM"), "{text}");
    assert!(table(&setup.netns).is_some(), "the table stays");
    setup.done();
}

/// The address `watch --metrics` says it serves at.
fn metrics_address(watch: &mut Watch) -> String {
    let line = watch.wait_for_new("serving metrics at http://", REPAIRED_WITHIN);
    line.split("http://")
        .nth(1)
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("{line}"))
        .to_string()
}

/// Out of file descriptors (the attack: idle connections up to the fd
/// limit), the endpoint says so and keeps listening: once the connections
/// are gone, scrapes are served again, under the same limit.
#[test]
#[ignore = "needs root"]
fn the_metrics_endpoint_survives_running_out_of_file_descriptors() {
    let setup = setup("metricsfds");
    let mut watch = setup.watch_with(&["--metrics", "127.0.0.1:0"], &[]);
    let address = metrics_address(&mut watch);
    assert_eq!(http_get(&address, "/metrics").0, 200);
    let pid = watch.child.id().to_string();
    let open = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    // Room for two more connections, no more (the soft limit only).
    let limit = format!("--nofile={}:", open + 2);
    let status = Command::new("prlimit")
        .args(["--pid", &pid, &limit])
        .status()
        .unwrap();
    assert!(status.success(), "prlimit {limit}: {status}");
    let clients: Vec<_> = (0..40)
        .map(|_| std::net::TcpStream::connect(&address).unwrap())
        .collect();
    watch.wait_for_new("metrics: cannot accept a connection", REPAIRED_WITHIN);
    drop(clients);
    assert_eq!(http_get(&address, "/metrics").0, 200, "{}", watch.text());
    drop(watch);
    setup.done();
}

#[test]
#[ignore = "needs root"]
fn a_metrics_address_in_use_ends_watch_before_it_applies() {
    let setup = setup("metricsbusy");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let out = setup.command(&["watch", "--metrics", &address]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot serve metrics on {address}")),
        "{stderr}"
    );
    assert_eq!(table(&setup.netns), None, "nothing applied");
    drop(taken);
    setup.done();
}
