# `sh systemd-checks.sh OLD.deb NEW.deb`: the Debian package under a real
# systemd beside a real dockerd (vm-test's package boot; as root, on a
# throwaway system). See SYSTEMD_CHECKS in xtask/src/deb.rs.
set -eu
old=$1 new=$2
export DEBIAN_FRONTEND=noninteractive
fail() {
    echo "FAIL: $*" >&2
    systemctl --no-pager status dockfw-nft.service dockfw-nft-watch.service docker.service >&2 || true
    journalctl --no-pager -b -u dockfw-nft.service -u dockfw-nft-watch.service | tail -n 40 >&2 || true
    nft list ruleset >&2 || true
    exit 1
}
active() { systemctl is-active --quiet "$1"; }
table() { nft list table inet dockfw >/dev/null 2>&1; }
# A new connection from client address $1 to the published port.
probe() { ip netns exec dockfw-client curl -s -o /dev/null --max-time 3 --interface "$1" http://10.213.0.1:8080/; }
reaches() { probe "$1" || fail "$1 cannot reach the published port $2"; }
blocked() { if probe "$1"; then fail "$1 reaches the published port $2"; fi; }
# Waits up to $2 seconds for client $1 to connect.
wait_reaches() {
    for _ in $(seq 1 "$2"); do
        if probe "$1"; then return 0; fi
        sleep 1
    done
    fail "$1 never reached the published port $3"
}
allowed=10.213.0.2 other=10.213.0.3

[ -d /run/systemd/system ] || fail "systemd is not running"
active docker.service || fail "Docker is not running"
echo "== $(systemctl --version | head -n 1), $(docker --version)"

echo "== a published port is open to every client"
rootfs=$(mktemp -d)
cp /bin/busybox "$rootfs/busybox"
mkdir "$rootfs/www"
echo hello >"$rootfs/www/index.html"
tar -C "$rootfs" -c . | docker import - dockfw-vm/busybox >/dev/null
# Unconfined: Debian's kernel enables AppArmor, and the VM image (packages
# installed without recommends) lacks apparmor_parser, which Docker 20.10
# then needs for its default profile.
docker run -d --name web --restart always --security-opt apparmor=unconfined \
    -p 8080:80 dockfw-vm/busybox /busybox httpd -f -p 80 -h /www >/dev/null
ip netns add dockfw-client
ip link add dfwc0 type veth peer name dfwc1 netns dockfw-client
ip addr add 10.213.0.1/24 dev dfwc0
ip link set dfwc0 up
ip -n dockfw-client addr add "$allowed/24" dev dfwc1
ip -n dockfw-client addr add "$other/24" dev dfwc1
ip -n dockfw-client link set dfwc1 up
ip -n dockfw-client link set lo up
wait_reaches "$allowed" 60 "(the container's server)"
reaches "$other" "before dockfw-nft is installed"

echo "== install: units enabled, nothing started or applied"
dpkg -i "$old"
for unit in dockfw-nft.service dockfw-nft-watch.service; do
    systemctl is-enabled --quiet "$unit" || fail "$unit is not enabled"
    if active "$unit"; then fail "installing started $unit"; fi
done
if table; then fail "installing applied a table"; fi
reaches "$other" "after installing (nothing is guarded until the policy is edited)"

echo "== the admin writes a policy; systemctl start dockfw-nft guards the port"
cat >/etc/dockfw/policy.toml <<POLICY
version = 1

[guard]
interfaces = ["dfwc0"]
default = "drop"

[[rule]]
name = "web from the office"
from = ["$allowed"]
ports = ["8080/tcp"]
POLICY
dockfw-nft check
systemctl start dockfw-nft.service
active dockfw-nft.service || fail "dockfw-nft.service is not active"
reaches "$allowed" "allowed by the policy"
blocked "$other" "the policy drops"
dockfw-nft status

echo "== dockfw-nft-watch repairs a deleted table"
systemctl start dockfw-nft-watch.service
active dockfw-nft-watch.service || fail "dockfw-nft-watch.service is not active"
nft delete table inet dockfw
repaired=no
for _ in $(seq 1 100); do
    if table; then
        repaired=yes
        break
    fi
    sleep 0.1
done
[ "$repaired" = yes ] || fail "the watch did not restore the deleted table"
blocked "$other" "after the repair"
reaches "$allowed" "after the repair"

echo "== reload applies an edit, and its undoing"
sed -i "s/from = \[\"$allowed\"\]/from = [\"$allowed\", \"$other\"]/" /etc/dockfw/policy.toml
grep -q "\"$other\"" /etc/dockfw/policy.toml || fail "the test's edit did not apply"
systemctl reload dockfw-nft.service
reaches "$other" "allowed after the reload"
sed -i "s/, \"$other\"//" /etc/dockfw/policy.toml
systemctl reload dockfw-nft.service
blocked "$other" "after the edit was undone"

echo "== stopping the units leaves the guard in force"
systemctl stop dockfw-nft-watch.service dockfw-nft.service
table || fail "stopping the units removed the table"
blocked "$other" "with the units stopped"

echo "== a policy with errors: both reloads fail, a reinstall restarts nothing"
systemctl start dockfw-nft.service dockfw-nft-watch.service
pid=$(systemctl show -p MainPID --value dockfw-nft-watch.service)
cp /etc/dockfw/policy.toml /root/policy.toml.good
echo 'ports = [' >>/etc/dockfw/policy.toml
if systemctl reload dockfw-nft.service; then fail "reload of dockfw-nft took a policy with errors"; fi
if systemctl reload dockfw-nft-watch.service; then fail "reload of dockfw-nft-watch took a policy with errors"; fi
said=$(dpkg -i "$old" 2>&1) || { echo "$said"; fail "reinstall over a policy with errors"; }
echo "$said"
echo "$said" | grep -q "the units were not restarted" || fail "no word that the units were not restarted"
active dockfw-nft.service || fail "dockfw-nft.service is not active after the refused reload and reinstall"
active dockfw-nft-watch.service || fail "the watch is not running after the reinstall over a policy with errors"
[ "$(systemctl show -p MainPID --value dockfw-nft-watch.service)" = "$pid" ] || fail "the watch was restarted over a policy with errors"
blocked "$other" "with a policy with errors on disk"
reaches "$allowed" "with a policy with errors on disk"
cp /root/policy.toml.good /etc/dockfw/policy.toml

echo "== upgrade with the guard running: the watch restarts on the new binary"
dpkg -i "$new"
[ "$(dpkg-query -W -f='${Version}' dockfw-nft)" = 0.0.2-1 ] || fail "not upgraded"
active dockfw-nft-watch.service || fail "the watch is not running after the upgrade"
[ "$(systemctl show -p MainPID --value dockfw-nft-watch.service)" != "$pid" ] || fail "the upgrade did not restart the watch"
grep -q "web from the office" /etc/dockfw/policy.toml || fail "the upgrade replaced the admin's policy"
blocked "$other" "after the upgrade"

echo "== Docker restarts: the guard holds"
systemctl restart docker.service
wait_reaches "$allowed" 90 "after Docker restarted (the container comes back)"
blocked "$other" "after Docker restarted"
active dockfw-nft-watch.service || fail "the watch stopped with Docker"

echo "== remove: units stopped, the table stays until deleted by hand"
dpkg -r dockfw-nft
if active dockfw-nft-watch.service; then fail "the watch runs after remove"; fi
table || fail "remove deleted the table"
blocked "$other" "after remove"
nft delete table inet dockfw
reaches "$other" "once the table is deleted by hand"
dpkg -P dockfw-nft
docker rm -f web >/dev/null
ip netns del dockfw-client
echo "== ok"
