//! Reading a network namespace's sysctls (`/proc/sys/net/...`): the
//! command warns when one it relies on is off (`bridge-nf-call-iptables`
//! for judging connections between containers on one bridge), and the
//! namespace's interface names (it warns of other engines' bridges).

use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

/// The value of the sysctl at `key` (a path under `/proc/sys`, like
/// `net/bridge/bridge-nf-call-iptables`) in the network namespace at
/// `netns` (`None`: the caller's), trimmed. A sysctl that does not exist
/// (its module not loaded) is an error of kind [`io::ErrorKind::NotFound`].
///
/// `/proc/sys/net` shows the namespace of the thread that opens it, so a
/// helper thread enters `netns` and reads it there; the caller's threads
/// stay put.
pub fn read_sysctl(netns: Option<&Path>, key: &str) -> io::Result<String> {
    let path = Path::new("/proc/sys").join(key);
    in_netns(netns, || {
        std::fs::read_to_string(&path).map(|text| text.trim().to_string())
    })
}

/// The names of the network interfaces in the namespace at `netns`
/// (`None`: the caller's), sorted, read from `/proc/sys/net/ipv4/conf`
/// (one entry per interface, besides `all` and `default`).
pub fn interface_names(netns: Option<&Path>) -> io::Result<Vec<String>> {
    in_netns(netns, || {
        let mut names = Vec::new();
        for entry in std::fs::read_dir("/proc/sys/net/ipv4/conf")? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if name != "all" && name != "default" {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    })
}

/// Runs `read` in the network namespace at `netns`: `/proc/sys/net` shows
/// the namespace of the thread that opens it, so a helper thread enters
/// `netns` and reads there; the caller's threads stay put.
fn in_netns<T: Send>(netns: Option<&Path>, read: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    let Some(netns) = netns else {
        return read();
    };
    let ns = std::fs::File::open(netns)?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: setns(2) on a namespace fd we hold; it changes only
                // this short-lived helper thread.
                if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(io::Error::last_os_error());
                }
                read()
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("netns helper thread panicked")))
    })
}
