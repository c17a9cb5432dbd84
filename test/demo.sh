#!/usr/bin/env bash
# make demo: a local Kubernetes control plane (real kube-apiserver + etcd),
# the article's examples applied to it, and the custom CoreDNS with the
# headless plugin answering on 127.0.0.1:1053. Prints the article's answers,
# then stays up until Ctrl-C.
set -euo pipefail

# stop_ticker ends the "still building" reporter and its sleep, quietly.
stop_ticker() {
	pkill -P "$ticker" 2>/dev/null || true
	kill "$ticker" 2>/dev/null || true
	wait "$ticker" 2>/dev/null || true
}

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
port="${DEMO_PORT:-1053}"
state="$root/.demo"
bin="$root/bin"
mkdir -p "$state" "$bin"

step() { printf '\n== %s\n' "$*" >&2; }

if ! command -v dig >/dev/null; then
	step "installing dig (Debian package dnsutils)"
	if [ "$(id -u)" = 0 ]; then
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dnsutils >/dev/null
	else
		echo "dig is missing: sudo apt-get install dnsutils" >&2
		exit 1
	fi
fi

step "building the local control plane, kube-testenv (the first build takes 5-8 minutes; later runs reuse it)"
testenv="$(bash "$root/test/testenv.sh")"

step "building the custom CoreDNS with the headless plugin (bin/coredns; a first build takes a few minutes)"
started=$SECONDS
(while sleep 20; do echo "  ... still building CoreDNS ($((SECONDS - started))s)" >&3; done) 3>&2 2>/dev/null >/dev/null &
ticker=$!
(cd "$root" && go build -o "$bin/coredns" ./cmd/coredns)
(cd "$root/test" && go build -o "$bin/kube-apply" ./kube-apply)
stop_ticker

# A demo killed without a chance to clean up (kill -9) leaves its processes
# behind: stop them before starting again.
for pidfile in "$state"/*.pid; do
	[ -e "$pidfile" ] || continue
	pid="$(cat "$pidfile")"
	if [ -n "$pid" ] && grep -qa -e kube-testenv -e coredns "/proc/$pid/cmdline" 2>/dev/null; then
		echo "stopping the previous demo's $(basename "$pidfile" .pid) (pid $pid)" >&2
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	fi
	rm -f "$pidfile"
done

pids=()
cleanup() {
	trap - EXIT INT TERM
	printf '\nstopping CoreDNS and the control plane...\n' >&2
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	rm -f "$state"/*.pid
	echo "stopped" >&2
}
trap cleanup EXIT
trap 'exit 0' INT TERM

step "starting kube-apiserver and etcd (state in .demo/)"
rm -f "$state/kubeconfig.path"
# kube-testenv stops when its stdin closes: this script holds the only
# writer of that pipe, so the control plane ends with the script, however
# the script ends.
keepalive="$state/keepalive"
rm -f "$keepalive" && mkfifo "$keepalive"
exec 9<>"$keepalive"
"$testenv" -dir "$state/control-plane" >"$state/kubeconfig.path" 2>"$state/kube-testenv.err" <"$keepalive" 9>&- &
pids+=($!)
echo "${pids[0]}" >"$state/kube-testenv.pid"
for _ in $(seq 1 600); do
	[ -s "$state/kubeconfig.path" ] && break
	if ! kill -0 "${pids[0]}" 2>/dev/null; then
		cat "$state/kube-testenv.err" >&2
		exit 1
	fi
	sleep 0.2
done
kubeconfig="$(head -n1 "$state/kubeconfig.path")"
[ -n "$kubeconfig" ] || { echo "kube-testenv did not become ready" >&2; exit 1; }
echo "API server ready; kubeconfig: $kubeconfig" >&2

step "applying examples/ (cassandra headless Service, StatefulSet and its pods' EndpointSlice; selectorless external-db)"
"$bin/kube-apply" "$kubeconfig" "$root"/examples/*.yaml

cat >"$state/Corefile" <<COREFILE
.:$port {
    bind 127.0.0.1
    errors
    ready 127.0.0.1:${DEMO_READY_PORT:-8181}
    prometheus 127.0.0.1:${DEMO_METRICS_PORT:-9153}
    headless cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $kubeconfig
    }
}
COREFILE

step "starting CoreDNS on 127.0.0.1:$port (Corefile: .demo/Corefile, log: .demo/coredns.log)"
"$bin/coredns" -conf "$state/Corefile" >"$state/coredns.log" 2>&1 </dev/null 9>&- &
pids+=($!)
echo "${pids[1]}" >"$state/coredns.pid"
q() { dig @127.0.0.1 -p "$port" +time=1 +tries=1 "$@"; }
for _ in $(seq 1 300); do
	q +short cassandra.default.svc.cluster.local >/dev/null 2>&1 && [ -n "$(q +short cassandra.default.svc.cluster.local)" ] && break
	if ! kill -0 "${pids[1]}" 2>/dev/null; then
		cat "$state/coredns.log" >&2
		exit 1
	fi
	sleep 0.1
done

show() {
	printf '\n$ dig @127.0.0.1 -p %s +short %s\n' "$port" "$*"
	q +short "$@"
}
step "the article's names, answered by the headless plugin"
show cassandra.default.svc.cluster.local
for i in 0 1 2; do show "cassandra-$i.cassandra.default.svc.cluster.local"; done
show SRV _cql._tcp.cassandra.default.svc.cluster.local
show external-db.default.svc.cluster.local

printf '\nPTR, as nslookup shows them:\n'
for ip in $(q +short cassandra.default.svc.cluster.local | sort -t. -k3,3n); do
	printf '  %s → %s\n' "$ip" "$(q +short -x "$ip" | sed 's/\.$//')"
done

cat <<HELP

CoreDNS with the headless plugin is answering on 127.0.0.1:$port. Try:
  dig @127.0.0.1 -p $port cassandra.default.svc.cluster.local
  dig @127.0.0.1 -p $port SRV _cql._tcp.cassandra.default.svc.cluster.local
  dig @127.0.0.1 -p $port -x 10.244.2.8
  curl -s 127.0.0.1:${DEMO_METRICS_PORT:-9153}/metrics | grep coredns_headless
Change the cluster and watch DNS follow:
  bin/kube-apply $kubeconfig examples/*.yaml   (after editing them)
Stop with Ctrl-C.
HELP
wait "${pids[1]}"
