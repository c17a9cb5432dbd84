#!/usr/bin/env bash
# bench.sh: the headless plugin side by side with the stock kubernetes plugin,
# on this machine, against a real kube-apiserver (kube-testenv).
#
# It builds kube-testenv, the custom CoreDNS and the load generator; starts a
# control plane in a temporary directory; fills it with SERVICES headless
# Services (3-pod StatefulSet-shaped EndpointSlices) and CLUSTERIP_SERVICES
# ClusterIP Services (3-endpoint controller slices); then
#
#   1. runs ONE CoreDNS with two server blocks on two loopback ports, block A
#      with headless alone and block B with kubernetes alone, checks that both
#      give the same answers, and sends each the same load (same duration,
#      concurrency and names, alternating which goes first) for service A,
#      pod A, SRV, PTR and NXDOMAIN names;
#   2. runs each plugin alone in its own CoreDNS (one after the other), and
#      reports its RSS and Go heap once synced and after a mixed load.
#
# Every process it starts is stopped on exit; every query goes to 127.0.0.1.
#
# Sizes and load are set by environment variables:
#   SERVICES=1000 CLUSTERIP_SERVICES=2000 NAMESPACES=20
#   DURATION=10s WARMUP=1s CONCURRENCY=8 COMPARE_NAMES=0 (0: compare all names)
#
# Usage: bash test/bench.sh        (from anywhere; needs go, curl and jq)
set -euo pipefail

SERVICES="${SERVICES:-1000}"
CLUSTERIP_SERVICES="${CLUSTERIP_SERVICES:-2000}"
NAMESPACES="${NAMESPACES:-20}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-1s}"
CONCURRENCY="${CONCURRENCY:-8}"
COMPARE_NAMES="${COMPARE_NAMES:-0}"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"

missing=()
for tool in curl jq; do
	command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})) && [ "$(id -u)" = 0 ]; then
	echo "bench.sh: installing ${missing[*]}" >&2
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
for tool in go curl jq; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "bench.sh: needs $tool" >&2
		exit 1
	fi
done

work="$(mktemp -d "${TMPDIR:-/tmp}/headless-bench.XXXXXX")"
pids=() # every process started, stopped in reverse order on exit

# alive PID: the process exists and is not a zombie.
alive() {
	[[ -r "/proc/$1/stat" ]] && [[ "$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null)" != Z ]]
}

# stop PID: SIGTERM, up to 10s to exit, then SIGKILL; reaps it and forgets
# it, so that a later recycled PID is never signalled.
stop() {
	local pid="$1" i
	for i in "${!pids[@]}"; do
		[[ "${pids[i]}" == "$pid" ]] && unset 'pids[i]'
	done
	pids=("${pids[@]}")
	if alive "$pid"; then
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 100); do
			alive "$pid" || break
			sleep 0.1
		done
		if alive "$pid"; then
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	wait "$pid" 2>/dev/null || true
}

cleanup() {
	local status=$?
	set +e
	while ((${#pids[@]} > 0)); do
		stop "${pids[-1]}"
	done
	if [[ $status -ne 0 ]]; then
		for log in "$work"/*/coredns.log; do
			[[ -s "$log" ]] || continue
			echo "--- last lines of $log" >&2
			tail -n 20 "$log" >&2
		done
	fi
	rm -rf "$work"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

log() { printf '[%3ds] %s\n' "$SECONDS" "$*" >&2; }

# --- build ---------------------------------------------------------------
log "building kube-testenv, CoreDNS (cmd/coredns) and the load generator"
testenv="$(bash "$here/testenv.sh")"
(cd "$root" && go build -o "$work/coredns" ./cmd/coredns)
(cd "$here" && go build -o "$work/" ./loadgen ./loadgen/populate)
loadgen="$work/loadgen"

# --- control plane ---------------------------------------------------------
log "starting kube-testenv"
mkdir -p "$work/cp"
"$testenv" -dir "$work/cp" -watch-stdin=false >"$work/cp.out" 2>"$work/cp.err" </dev/null &
pids+=($!)
testenv_pid=$!
kubeconfig=""
for _ in $(seq 1800); do
	kubeconfig="$(head -n1 "$work/cp.out")"
	[[ -n "$kubeconfig" ]] && break
	if ! alive "$testenv_pid"; then
		cat "$work/cp.err" >&2
		echo "bench.sh: kube-testenv exited before it was ready" >&2
		exit 1
	fi
	sleep 0.1
done
if [[ -z "$kubeconfig" ]]; then
	echo "bench.sh: kube-testenv not ready after 3 minutes" >&2
	exit 1
fi

log "creating $SERVICES headless and $CLUSTERIP_SERVICES ClusterIP services in $NAMESPACES namespaces"
"$work/populate" -kubeconfig "$kubeconfig" -services "$SERVICES" -clusterip-services "$CLUSTERIP_SERVICES" \
	-namespaces "$NAMESPACES" -names-dir "$work/names"

# --- CoreDNS ----------------------------------------------------------------
block_headless="headless cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $kubeconfig
    }"
block_kubernetes="kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $kubeconfig
    }"

# server PORT READY METRICS BLOCK: one server block on 127.0.0.1:PORT.
server() {
	cat <<EOF
.:$1 {
    bind 127.0.0.1
    ready 127.0.0.1:$2
    prometheus 127.0.0.1:$3
    $4
}
EOF
}

# start_coredns NAME READY_PORT COREFILE DNS_PORT...: starts CoreDNS, waits
# for ready and for each DNS port to answer, and sets coredns_pid and
# ready_ms (from start to ready).
start_coredns() {
	local name="$1" ready="$2" dir="$work/$1"
	mkdir -p "$dir"
	printf '%s' "$3" >"$dir/Corefile"
	local t0
	t0="$(date +%s%N)"
	"$work/coredns" -conf "$dir/Corefile" >"$dir/coredns.log" 2>&1 </dev/null &
	coredns_pid=$!
	pids+=("$coredns_pid")
	for _ in $(seq 1200); do
		if curl -sf --max-time 1 "http://127.0.0.1:$ready/ready" >/dev/null 2>&1; then
			ready_ms=$((($(date +%s%N) - t0) / 1000000))
			# ready can answer before the DNS listeners are up.
			local dns
			for dns in "${@:4}"; do
				"$loadgen" -server "127.0.0.1:$dns" -name cluster.local -type SOA -wait 30s -compare "127.0.0.1:$dns" >/dev/null
			done
			return 0
		fi
		if ! alive "$coredns_pid"; then
			echo "bench.sh: CoreDNS ($name) exited:" >&2
			cat "$dir/coredns.log" >&2
			exit 1
		fi
		sleep 0.05
	done
	echo "bench.sh: CoreDNS ($name) not ready after 60s" >&2
	exit 1
}

rss_mib() { awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
# metric PORT NAME: a metric's value (summed over its label sets).
metric() {
	{ curl -sf --max-time 5 "http://127.0.0.1:$1/metrics" || true; } |
		awk -v m="$2" '$1 == m || index($1, m "{") == 1 { s += $2; found = 1 } END { if (found) printf "%.0f", s; else print "n/a" }'
}
# mib PORT METRIC [DIVISOR]: a byte metric in MiB.
mib() {
	local v
	v="$(metric "$1" "$2")"
	if [[ "$v" == n/a ]]; then
		echo n/a
	else
		awk -v v="$v" -v d="${3:-1}" 'BEGIN { printf "%.1f", v / d / 1048576 }'
	fi
}
heap_mib() { mib "$1" go_memstats_heap_inuse_bytes; }
# The GC's goal is about twice the heap that was live at the last GC (GOGC=100).
live_mib() { mib "$1" go_memstats_next_gc_bytes 2; }

kinds=(svc-a pod-a srv ptr nx)
declare -A kind_title=(
	[svc-a]="service A"
	[pod-a]="pod A (sts-N-K.sts-N.ns.svc)"
	[srv]="SRV _web._tcp"
	[ptr]="PTR (pod IPs)"
	[nx]="NXDOMAIN"
	[mix]="mix of all five"
)

mapfile -t free < <("$loadgen" -free-ports 4)
port_a="${free[0]}" port_b="${free[1]}" ready_port="${free[2]}" metrics_port="${free[3]}"
declare -A port=([headless]="$port_a" [kubernetes]="$port_b")

log "starting one CoreDNS: block A (headless) on 127.0.0.1:$port_a, block B (kubernetes) on 127.0.0.1:$port_b"
start_coredns both "$ready_port" "$(
	server "$port_a" "$ready_port" "$metrics_port" "$block_headless"
	server "$port_b" "$ready_port" "$metrics_port" "$block_kubernetes"
)" "$port_a" "$port_b"
both_pid="$coredns_pid"
log "both plugins synced after ${ready_ms}ms; headless publishes $(metric "$metrics_port" coredns_headless_services) services, $(metric "$metrics_port" coredns_headless_endpoints) endpoints"

# --- answers agree? -----------------------------------------------------------
log "comparing answers of block A (headless, first) and block B (kubernetes, second)"
compare_report="$work/compare.txt"
: >"$compare_report"
for kind in "${kinds[@]}"; do
	"$loadgen" -server "127.0.0.1:$port_a" -compare "127.0.0.1:$port_b" -names "$work/names/$kind.txt" \
		-compare-limit "$COMPARE_NAMES" >"$work/compare-$kind.txt"
	ndiff="$(grep -c '^DIFF ' "$work/compare-$kind.txt" || true)"
	{
		printf '%-30s %s\n' "${kind_title[$kind]}:" "$(tail -n1 "$work/compare-$kind.txt" | sed 's/ (first .*//')"
		grep -v '^compared ' "$work/compare-$kind.txt" | sed -n '1,12s/^/    /p' || true
		if ((ndiff > 0)) && (($(grep -vc '^compared ' "$work/compare-$kind.txt" || true) > 12)); then
			echo "    ... ($ndiff names differ in all; first lines only)"
		fi
	} >>"$compare_report"
done

# --- load ---------------------------------------------------------------------
mkdir -p "$work/results"
loadgen_args=(-duration "$DURATION" -warmup "$WARMUP" -concurrency "$CONCURRENCY" -json)
for i in "${!kinds[@]}"; do
	kind="${kinds[i]}"
	order=(headless kubernetes)
	if ((i % 2)); then order=(kubernetes headless); fi
	for plugin in "${order[@]}"; do
		"$loadgen" -server "127.0.0.1:${port[$plugin]}" -names "$work/names/$kind.txt" "${loadgen_args[@]}" \
			>"$work/results/$plugin-$kind.json"
		log "$(printf '%-10s %-8s %s' "$plugin" "$kind" "$(jq -r '"\(.qps|floor) QPS, p50 \(.latency_us.p50)µs, p99 \(.latency_us.p99)µs, \(.timeouts) timeouts, \(.errors) errors"' "$work/results/$plugin-$kind.json")")"
	done
done
both_rss="$(rss_mib "$both_pid")"
both_heap="$(heap_mib "$metrics_port")"
stop "$both_pid"

# --- memory, each plugin alone -------------------------------------------------
declare -A mem
measure_alone() {
	local plugin="$1" block="$2" dns ready metrics
	mapfile -t free < <("$loadgen" -free-ports 3)
	dns="${free[0]}" ready="${free[1]}" metrics="${free[2]}"
	log "starting CoreDNS with $plugin alone on 127.0.0.1:$dns"
	start_coredns "$plugin-alone" "$ready" "$(server "$dns" "$ready" "$metrics" "$block")" "$dns"
	mem[$plugin:ready_ms]="$ready_ms"
	sleep 3
	mem[$plugin:rss_sync]="$(rss_mib "$coredns_pid")"
	mem[$plugin:heap_sync]="$(heap_mib "$metrics")"
	mem[$plugin:live_sync]="$(live_mib "$metrics")"
	"$loadgen" -server "127.0.0.1:$dns" -names "$work/names/mix.txt" "${loadgen_args[@]}" >"$work/results/$plugin-alone-mix.json"
	mem[$plugin:rss_load]="$(rss_mib "$coredns_pid")"
	mem[$plugin:heap_load]="$(heap_mib "$metrics")"
	mem[$plugin:live_load]="$(live_mib "$metrics")"
	mem[$plugin:qps]="$(jq -r '.qps|floor' "$work/results/$plugin-alone-mix.json")"
	stop "$coredns_pid"
}
measure_alone baseline "whoami"
measure_alone headless "$block_headless"
measure_alone kubernetes "$block_kubernetes"

# --- report -------------------------------------------------------------------
cell() { # cell FILE: "QPS p50 p99 problems rcodes"
	jq -r '[(.qps|floor), .latency_us.p50, .latency_us.p99, (.timeouts + .errors + .malformed),
		(.rcodes | to_entries | sort_by(.key) | map("\(.key)") | join("+"))] | @tsv' "$1"
}

echo
echo "=== headless vs kubernetes: one CoreDNS process, two server blocks ==="
echo "machine: $(nproc) CPUs ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), $(go version | cut -d' ' -f3)"
echo "cluster: $SERVICES headless services x 3 pods, $CLUSTERIP_SERVICES ClusterIP services x 3 endpoints, $NAMESPACES namespaces"
echo "load:    closed loop, $CONCURRENCY UDP sockets with one query outstanding each, $WARMUP warm-up + $DURATION per cell,"
echo "         round-robin over every name of the kind; no cache plugin. The load generator and CoreDNS share"
echo "         the $(nproc) CPUs, for both plugins alike, so QPS is of this whole machine, not of CoreDNS alone."
echo "         Cells run one after the other against the same process, alternating which plugin goes first."
echo "command: loadgen -server 127.0.0.1:PORT -names KIND.txt ${loadgen_args[*]}"
echo
printf '%-30s | %6s | %-31s | %-31s | %s\n' "" "" "  headless (block A)" "  kubernetes (block B)" "QPS ratio"
printf '%-30s | %6s | %9s %7s %7s %5s | %9s %7s %7s %5s | %s\n' \
	"query kind" "names" "QPS" "p50 µs" "p99 µs" "errs" "QPS" "p50 µs" "p99 µs" "errs" "hl/k8s, rcode"
printf -- '-%.0s' {1..118}
echo
for kind in "${kinds[@]}"; do
	IFS=$'\t' read -r hq hp50 hp99 herr hrc < <(cell "$work/results/headless-$kind.json")
	IFS=$'\t' read -r kq kp50 kp99 kerr krc < <(cell "$work/results/kubernetes-$kind.json")
	ratio="$(awk -v a="$hq" -v b="$kq" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "n/a" }')"
	rc="$hrc"
	[[ "$hrc" == "$krc" ]] || rc="headless $hrc, kubernetes $krc"
	printf '%-30s | %6s | %9s %7s %7s %5s | %9s %7s %7s %5s | %s %s\n' \
		"${kind_title[$kind]}" "$(jq -r .names "$work/results/headless-$kind.json")" \
		"$hq" "$hp50" "$hp99" "$herr" "$kq" "$kp50" "$kp99" "$kerr" "$ratio" "$rc"
done
echo "(errs: timeouts + send/receive errors + malformed replies)"
echo
echo "=== answers: block A (headless) vs block B (kubernetes), every record compared (TTLs included) ==="
cat "$compare_report"
echo
echo "=== memory: each plugin alone in its own CoreDNS process (same binary, ready + prometheus + the plugin) ==="
printf '%-12s | %12s | %-26s | %-26s | %s\n' "" "" "  synced (+3s)" "  after the $DURATION mix load" "mix QPS"
printf '%-12s | %12s | %8s %8s %8s | %8s %8s %8s | %s\n' "process" "ready after" "RSS" "heap" "live" "RSS" "heap" "live" "(alone)"
printf -- '-%.0s' {1..100}
echo
for plugin in baseline headless kubernetes; do
	label="$plugin"
	[[ $plugin == baseline ]] && label="no plugin"
	printf '%-12s | %10sms | %8s %8s %8s | %8s %8s %8s | %s\n' "$label" "${mem[$plugin:ready_ms]}" \
		"${mem[$plugin:rss_sync]}" "${mem[$plugin:heap_sync]}" "${mem[$plugin:live_sync]}" \
		"${mem[$plugin:rss_load]}" "${mem[$plugin:heap_load]}" "${mem[$plugin:live_load]}" "${mem[$plugin:qps]}"
done
echo "(MiB. RSS: VmRSS of /proc/PID/status; heap: go_memstats_heap_inuse_bytes, which includes garbage not yet"
echo " collected, so it moves with GC timing; live: go_memstats_next_gc_bytes / 2, about the heap live at the"
echo " last GC. 'no plugin' serves whoami only: the binary's own cost. 'ready after': process start to /ready 200,"
echo " polled every 50ms."
echo " The one process holding both plugins had RSS $both_rss MiB, heap $both_heap MiB after its load.)"
log "done"
