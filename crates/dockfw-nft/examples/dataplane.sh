#!/bin/sh
# Measures the new-connection rate through a published port, by hand:
#   client netns --> router netns (eth0; DNAT 8080 -> server:80, as Docker
#   does; the server-side link is called docker0) --> server netns.
# The client floods SYNs, each from another address of 10.99.128.0/17 and
# source port (a new conntrack entry each); the server counts (and drops)
# those that arrive. Prints SYNs arrived per second, one line per run.
# Usage (root): dataplane.sh ENTRIES [RUNS] [SECONDS]
# The allow-list holds ENTRIES entries, the clients' /17 last. The machine may
# be shared, so runs alternate between no guard (dockfw's table dormant: its
# hooks unregistered) and dockfw, and the medians are compared.
# Needs: cargo build --release -p dockfw-nft --example connect_rate; a dockfw-nft binary ($DOCKFW).
# Only namespaces it creates are touched; they are removed on exit.
set -eu
entries=$1 runs=${2:-5} secs=${3:-3}
root=$(cd "$(dirname "$0")/../../.." && pwd)
load=${LOAD:-$root/target/release/examples/connect_rate}
dockfw=${DOCKFW:-$root/target/debug/dockfw-nft}
c=dpb-client-$$ r=dpb-router-$$ s=dpb-server-$$
work=$(mktemp -d)
cleanup() {
    for ns in $c $r $s; do ip netns del $ns 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT INT TERM
for ns in $c $r $s; do ip netns add $ns; ip -n $ns link set lo up; done
ip link add dp-c netns $c type veth peer name eth0 netns $r
ip link add dp-s netns $s type veth peer name docker0 netns $r
ip -n $c addr add 10.99.1.2/24 dev dp-c; ip -n $c link set dp-c up
ip -n $r addr add 10.99.1.1/24 dev eth0; ip -n $r link set eth0 up
ip -n $r addr add 10.99.2.1/24 dev docker0; ip -n $r link set docker0 up
ip -n $s addr add 10.99.2.2/24 dev dp-s; ip -n $s link set dp-s up
ip -n $c route add default via 10.99.1.1
ip -n $s route add default via 10.99.2.1
ip -n $r route add 10.99.128.0/17 via 10.99.1.2
ip netns exec $r sysctl -qw net.ipv4.ip_forward=1
ip netns exec $s nft -f - <<NFT
table inet count {
    chain input {
        type filter hook input priority 0;
        tcp dport 80 counter drop
    }
}
NFT
ip netns exec $r nft -f - <<NFT
table ip nat {
    chain prerouting {
        type nat hook prerouting priority dstnat;
        tcp dport 8080 dnat to 10.99.2.2:80
    }
}
NFT
# Half-open entries go after a second, so the conntrack table never fills.
ip netns exec $r sysctl -qw net.netfilter.nf_conntrack_tcp_timeout_syn_sent=1
{
        printf '[guard]\ninterfaces = ["eth0"]\ndefault = "drop"\n[sets]\nallowed = [\n'
        # ENTRIES-1 non-adjacent addresses below the client's, then the client.
        awk -v n="$entries" 'BEGIN { for (i = 0; i < n - 1; i++) { a = 2 * i; printf "\"10.%d.%d.%d\",\n", int(a / 65536) % 256, int(a / 256) % 256, a % 256 } }'
        printf '"10.99.128.0/17"]\n[[rule]]\nname = "allow-list"\nfrom = "@allowed"\nports = "8080/tcp"\n'
} >"$work/policy.toml"
"$dockfw" --netns $r --no-docker -q -c "$work/policy.toml" apply
arrived() { ip netns exec $s nft list table inet count | sed -n 's/.*packets \([0-9]*\).*/\1/p'; }
run() {
    before=$(arrived)
    t0=$(date +%s.%N)
    ip netns exec $c "$load" syn 10.99.128.0/17 10.99.1.1:8080 "$secs" >/dev/null
    t1=$(date +%s.%N)
    after=$(arrived)
    echo "$before $after $t0 $t1" | awk '{ printf "%.0f\n", ($2 - $1) / ($4 - $3) }'
    sleep 1
}
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : int((v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
for i in $(seq "$runs"); do
    ip netns exec $r nft add table inet dockfw '{ flags dormant; }'
    run >>"$work/none"
    # Without flags, `add table` wakes the dormant table.
    ip netns exec $r nft add table inet dockfw
    run >>"$work/dockfw"
done
echo "no guard:            $(tr '\n' ' ' <"$work/none")-> median $(median <"$work/none") SYNs/s"
echo "dockfw ($entries entries): $(tr '\n' ' ' <"$work/dockfw")-> median $(median <"$work/dockfw") SYNs/s"
# Paired: each dockfw run against the no-guard run just before it.
echo "dockfw / no guard, median of pairs: $(paste "$work/dockfw" "$work/none" | awk '{ printf "%.3f\n", $1 / $2 }' | median)"
ip netns exec $r nft list chain inet dockfw rule-1 | grep -m1 counter
