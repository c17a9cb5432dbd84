#!/usr/bin/env bash
# make demo: a small local Kubernetes cluster (kube-testenv -cluster: etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler and three kwok
# nodes), the article's examples applied to it with kubectl, and the custom
# CoreDNS with the headless plugin answering on 127.0.0.1:1053 (and, for
# the system resolver, on 10.96.0.10:53 inside a network namespace set up
# as a pod's). Prints the article's commands with their real output, then
# stays up until Ctrl-C.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$root/test/lib.sh"

port="${DEMO_PORT:-1053}"
ready_port="${DEMO_READY_PORT:-8181}"
metrics_port="${DEMO_METRICS_PORT:-9153}"
state="$root/.demo"
bin="$root/bin"
# The resolver demo: a network namespace with a pod's resolv.conf, whose
# nameserver (the cluster DNS address kubelet writes, 10.96.0.10) is the
# host end of a veth pair where CoreDNS also listens, on port 53.
netns=headless-demo
dns_ip=10.96.0.10
client_ip=10.244.0.200 # in the control-plane node's pod range, where no pod runs
veth=hdemo0
mkdir -p "$state" "$bin"

step() { printf '\n== %s\n' "$*" >&2; }

ensure_tools dig:dnsutils
resolver_demo=1
if [ "$(id -u)" != 0 ]; then
	note "not root: the system resolver part (network namespace) is skipped"
	resolver_demo=0
elif ! ensure_tools ip:iproute2 python3:python3; then
	resolver_demo=0
fi

step "building the cluster's binaries: kube-testenv, kwok, kubectl (cached in ~/.cache/headless; the first build takes about 12 minutes on 2 cores)"
mapfile -t built < <(bash "$root/test/testenv.sh" all || echo FAILED)
if [[ ${#built[@]} -ne 3 || "${built[*]}" == *FAILED* ]]; then
	note "building the cluster's binaries failed"
	exit 1
fi
testenv="${built[0]}" kwok="${built[1]}" kubectl_bin="${built[2]}"
ln -sfn "$kubectl_bin" "$bin/kubectl"

step "building the custom CoreDNS with the headless plugin (bin/coredns)"
start_ticker CoreDNS
(cd "$root" && go build -o "$bin/coredns" ./cmd/coredns) || { stop_ticker; exit 1; }
stop_ticker

# A demo killed without a chance to clean up (kill -9) leaves its processes
# and its network namespace behind: clear them before starting again.
for pidfile in "$state"/*.pid; do
	[ -e "$pidfile" ] || continue
	pid="$(cat "$pidfile")"
	if [ -n "$pid" ] && grep -qa -e kube-testenv -e coredns "/proc/$pid/cmdline" 2>/dev/null; then
		note "stopping the previous demo's $(basename "$pidfile" .pid) (pid $pid)"
		stop_pid "$pid"
	fi
	rm -f "$pidfile"
done
remove_netns() {
	ip netns delete "$netns" 2>/dev/null || true
	ip link delete "$veth" 2>/dev/null || true
	rm -rf "/etc/netns/$netns"
}
((resolver_demo)) && remove_netns

pids=()
cleanup() {
	trap - EXIT INT TERM
	printf '\nstopping CoreDNS and the cluster...\n' >&2
	local i
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do stop_pid "${pids[i]}"; done
	rm -f "$state"/*.pid
	((resolver_demo)) && remove_netns
	note "stopped"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

step "starting the cluster (state and logs in .demo/cluster)"
rm -rf "$state/cluster" "$state/control-plane" "$state/kubeconfig.path"
# kube-testenv stops when its stdin closes: this script holds the only
# writer of that pipe, so the cluster ends with the script, however the
# script ends.
keepalive="$state/keepalive"
rm -f "$keepalive" && mkfifo "$keepalive"
exec 9<>"$keepalive"
"$testenv" -dir "$state/cluster" -cluster -kwok "$kwok" >"$state/kubeconfig.path" 2>"$state/kube-testenv.err" <"$keepalive" 9>&- &
pids+=($!)
echo "${pids[0]}" >"$state/kube-testenv.pid"
until [ -s "$state/kubeconfig.path" ]; do
	if ! kill -0 "${pids[0]}" 2>/dev/null; then
		cat "$state/kube-testenv.err" >&2
		exit 1
	fi
	sleep 0.2
done
export KUBECONFIG
KUBECONFIG="$(head -n1 "$state/kubeconfig.path")"
cat "$state/kube-testenv.err" >&2

# kubectl is the one built with the cluster, whatever else is on PATH.
kubectl() { "$kubectl_bin" "$@"; }
# quote ARG: ARG as it is written on a command line, in the article's
# style (jsonpath='{.spec.clusterIP}').
quote() {
	if [[ "$1" =~ ^[[:alnum:]_./:@,+=-]*$ ]]; then
		printf '%s' "$1"
	elif [[ "$1" =~ ^([[:alnum:]_.-]+=)(.*)$ ]]; then
		printf "%s'%s'" "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}"
	else
		printf "'%s'" "$1"
	fi
}
# show COMMAND...: the command as the article writes it, then its output.
show() {
	local line="" arg
	for arg in "$@"; do line+=" $(quote "$arg")"; done
	printf '\n$%s\n' "$line"
	"$@" 2>&1
}

step "the article's manifests, applied with kubectl"
cd "$root"
show kubectl apply -f examples/
kubectl rollout status statefulset/cassandra --timeout=120s >/dev/null

corefile_block="headless cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $KUBECONFIG
    }"
cat >"$state/Corefile" <<COREFILE
.:$port {
    bind 127.0.0.1
    errors
    ready 127.0.0.1:$ready_port
    prometheus 127.0.0.1:$metrics_port
    $corefile_block
}
COREFILE
if ((resolver_demo)); then
	# The pod side: an address of its own and a route to the DNS address,
	# nothing else. The host side holds the DNS address.
	ip netns add "$netns"
	ip link add "$veth" type veth peer name eth0 netns "$netns"
	ip addr add "$dns_ip/32" dev "$veth"
	ip link set "$veth" up
	ip route add "$client_ip/32" dev "$veth" src "$dns_ip"
	ip -n "$netns" link set lo up
	ip -n "$netns" addr add "$client_ip/32" dev eth0
	ip -n "$netns" link set eth0 up
	ip -n "$netns" route add "$dns_ip/32" dev eth0
	# What kubelet writes for a pod of namespace default (dnsPolicy
	# ClusterFirst); ip netns exec mounts it over /etc/resolv.conf.
	mkdir -p "/etc/netns/$netns"
	cat >"/etc/netns/$netns/resolv.conf" <<RESOLV
search default.svc.cluster.local svc.cluster.local cluster.local
nameserver $dns_ip
options ndots:5
RESOLV
	cat >>"$state/Corefile" <<COREFILE
.:53 {
    bind $dns_ip
    errors
    $corefile_block
}
COREFILE
fi

step "starting CoreDNS on 127.0.0.1:$port (Corefile: .demo/Corefile, log: .demo/coredns.log)"
"$bin/coredns" -conf "$state/Corefile" >"$state/coredns.log" 2>&1 </dev/null 9>&- &
pids+=($!)
echo "${pids[1]}" >"$state/coredns.pid"
q() { command dig @127.0.0.1 -p "$port" +time=1 +tries=1 "$@"; }
until [ -n "$(q +short cassandra.default.svc.cluster.local 2>/dev/null)" ]; do
	if ! kill -0 "${pids[1]}" 2>/dev/null; then
		cat "$state/coredns.log" >&2
		exit 1
	fi
	sleep 0.1
done

step "the cluster, as the article shows it"
show kubectl get svc cassandra
show kubectl get svc cassandra -o jsonpath='{.spec.clusterIP}'
echo
show kubectl get endpoints cassandra
show kubectl get pods -l app=cassandra -o wide
show kubectl get endpointslices -L endpointslice.kubernetes.io/managed-by

step "the article's names, answered by the headless plugin"
d() { show dig @127.0.0.1 -p "$port" +short "$@"; }
d cassandra.default.svc.cluster.local
pods=$(kubectl get pods -l app=cassandra -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}' | sort)
for pod in $pods; do
	d "$pod.cassandra.default.svc.cluster.local"
done
d SRV _cql._tcp.cassandra.default.svc.cluster.local
ips=$(q +short cassandra.default.svc.cluster.local | sort -t. -k1,1n -k2,2n -k3,3n -k4,4n)
for ip in $ips; do
	d -x "$ip"
done
d external-db.default.svc.cluster.local

printf '\nnslookup cassandra.default.svc.cluster.local, as the article shows it (from the A and PTR answers above):\n'
printf 'Server:    %s\nAddress 1: %s\n\nName:      cassandra.default.svc.cluster.local\n' "$dns_ip" "$dns_ip"
n=0
for ip in $ips; do
	n=$((n + 1))
	printf 'Address %d: %s %s\n' "$n" "$ip" "$(q +short -x "$ip" | sed 's/\.$//')"
done

if ((resolver_demo)); then
	step "the article's peer discovery, through the system resolver (glibc) of a pod"
	printf '\n$ cat /etc/resolv.conf   # in network namespace %s (address %s)\n' "$netns" "$client_ip"
	cat "/etc/netns/$netns/resolv.conf"
	printf '\n$ python3\n>>> import socket\n>>> peers = socket.getaddrinfo("cassandra.default.svc.cluster.local", 9042)\n'
	ip netns exec "$netns" python3 -c '
import socket
peers = socket.getaddrinfo("cassandra.default.svc.cluster.local", 9042)
print(">>> for p in peers: print(p)")
for p in peers:
    print(p)
print(">>> sorted({p[4][0] for p in peers})")
print(sorted({p[4][0] for p in peers}, key=socket.inet_aton))
'
fi

cat <<HELP

The cluster and CoreDNS stay up until Ctrl-C. In another shell:
  export KUBECONFIG=$KUBECONFIG
  PATH=$bin:\$PATH      # bin/kubectl is the cluster's own kubectl ($("$kubectl_bin" version --client | head -n1))
  kubectl get pods -o wide
  dig @127.0.0.1 -p $port cassandra.default.svc.cluster.local
Watch DNS follow the cluster (each change shows within a second):
  kubectl scale statefulset cassandra --replicas=5
  dig @127.0.0.1 -p $port +short SRV _cql._tcp.cassandra.default.svc.cluster.local
  kubectl delete pod cassandra-1
  dig @127.0.0.1 -p $port +short cassandra.default.svc.cluster.local
Mark a pod not ready, as a kubelet does when its readiness probe fails:
  kubectl patch pod cassandra-0 --subresource=status -p '{"status":{"conditions":[{"type":"Ready","status":"False"}]}}'
The nodes are simulated by kwok (nothing runs in the pods); logs are in .demo/cluster/*.log,
CoreDNS's in .demo/coredns.log, metrics on http://127.0.0.1:$metrics_port/metrics.
HELP
if ((resolver_demo)); then
	echo "  ip netns exec $netns python3   # the system resolver of a pod in default"
fi
echo "Stop with Ctrl-C."
wait "${pids[1]}"
