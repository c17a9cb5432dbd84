#!/usr/bin/env bash
# Builds test/kube-testenv if needed and prints the absolute path of the
# binary on stdout. Progress messages go to stderr. Works from any directory.
#
# The binary is cached as ${XDG_CACHE_HOME:-$HOME/.cache}/headless/kube-testenv-<hash>,
# where <hash> covers test/go.mod, test/go.sum, the non-test sources of
# test/kube-testenv, `go version` and the ldflags.
set -euo pipefail

# stop_ticker ends the "still building" reporter and its sleep, quietly.
stop_ticker() {
	pkill -P "$ticker" 2>/dev/null || true
	kill "$ticker" 2>/dev/null || true
	wait "$ticker" 2>/dev/null || true
}

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="$here/kube-testenv"

# The apiserver reports this version; clients refuse to talk to a server
# whose version they cannot parse, so it must be stamped at build time.
k8s_version="$(grep -oE 'k8s\.io/kubernetes v[0-9]+\.[0-9]+\.[0-9]+[^[:space:]]*' "$here/go.mod" | head -n1 | cut -d' ' -f2)"
if [[ -z "$k8s_version" ]]; then
	echo "testenv.sh: cannot find the k8s.io/kubernetes version in $here/go.mod" >&2
	exit 1
fi
k8s_minor="$(cut -d. -f2 <<<"$k8s_version")"
k8s_major="$(cut -d. -f1 <<<"${k8s_version#v}")"
ldflags="-X k8s.io/component-base/version.gitVersion=$k8s_version -X k8s.io/component-base/version.gitMajor=$k8s_major -X k8s.io/component-base/version.gitMinor=$k8s_minor"

hash="$(
	cd "$here"
	{
		for f in go.mod go.sum $(ls kube-testenv/*.go | grep -v '_test\.go$' | LC_ALL=C sort); do
			printf '== %s\n' "$f"
			cat "$f"
		done
		printf '== go version\n'
		go version
		printf '== ldflags\n%s\n' "$ldflags"
	} | sha256sum | cut -c1-16
)"

cache="${XDG_CACHE_HOME:-$HOME/.cache}/headless"
bin="$cache/kube-testenv-$hash"
if [[ -x "$bin" ]]; then
	echo "$bin"
	exit 0
fi

mkdir -p "$cache"
# Serialise concurrent builds (several test processes may start at once).
exec 9>"$cache/.kube-testenv.lock"
if command -v flock >/dev/null 2>&1; then
	flock 9
fi
if [[ ! -x "$bin" ]]; then
	echo "building kube-testenv (first build takes ~5 minutes)..." >&2
	tmp="$bin.tmp.$$"
	trap 'rm -f "$tmp"' EXIT
	start=$SECONDS
	# A cold build is long and silent: say every 20s that it is still going.
	(while sleep 20; do echo "  ... still building kube-testenv ($((SECONDS - start))s)" >&3; done) 3>&2 2>/dev/null >/dev/null 9>&- &
	ticker=$!
	trap 'stop_ticker; rm -f "$tmp"' EXIT
	(cd "$here" && go build -buildvcs=false -ldflags "$ldflags" -o "$tmp" ./kube-testenv)
	stop_ticker
	mv -f "$tmp" "$bin"
	trap - EXIT
	echo "built $bin in $((SECONDS - start))s" >&2
fi
echo "$bin"
