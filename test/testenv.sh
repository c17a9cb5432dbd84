#!/usr/bin/env bash
# Builds what the local cluster needs, once, and prints the absolute path of
# each binary asked for on stdout, one a line, in the order asked. Progress
# goes to stderr. Works from any directory.
#
#   testenv.sh                        kube-testenv (as before: one path)
#   testenv.sh all                    kube-testenv, kwok and kubectl
#   testenv.sh kubectl kube-testenv   those two, in that order
#
# kube-testenv is etcd + kube-apiserver, plus kube-controller-manager and
# kube-scheduler run as its children with -cluster (test/kube-testenv);
# kwok simulates the nodes' kubelets (sigs.k8s.io/kwok, its own module,
# built with go install); kubectl comes from the same k8s.io/kubernetes as
# kube-testenv (test/go.mod's tool line).
#
# Each binary is cached in ${XDG_CACHE_HOME:-$HOME/.cache}/headless as
#   kube-testenv-<hash>  hash of test/go.mod, test/go.sum, the non-test
#                        sources of test/kube-testenv, go version, ldflags
#   kubectl-<hash>       hash of test/go.mod, test/go.sum, go version, ldflags
#   kwok-<version>-<hash>  hash of go version
# and rebuilt only when its hash changes (the three newest of each are kept).
# Cold builds on 2 cores (measured with an empty Go build cache, modules
# already downloaded): kube-testenv 9 minutes, kwok 2.5, kubectl 40 seconds
# after kube-testenv (2.5 minutes alone); later runs find them in the cache.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
. "$here/lib.sh"

KWOK_VERSION=v0.8.0
cache="${XDG_CACHE_HOME:-$HOME/.cache}/headless"

# Clients refuse a server whose version they cannot parse, and kubectl
# reports its own: both are stamped at build time.
k8s_version="$(grep -oE 'k8s\.io/kubernetes v[0-9]+\.[0-9]+\.[0-9]+[^[:space:]]*' "$here/go.mod" | head -n1 | cut -d' ' -f2)"
if [[ -z "$k8s_version" ]]; then
	note "testenv.sh: cannot find the k8s.io/kubernetes version in $here/go.mod"
	exit 1
fi
k8s_minor="$(cut -d. -f2 <<<"$k8s_version")"
k8s_major="$(cut -d. -f1 <<<"${k8s_version#v}")"
ldflags="-X k8s.io/component-base/version.gitVersion=$k8s_version -X k8s.io/component-base/version.gitMajor=$k8s_major -X k8s.io/component-base/version.gitMinor=$k8s_minor -X k8s.io/component-base/version.gitTreeState=clean"
go_version="$(go version)"

# hash_of FILE...: a short hash of the files' names and contents, the go
# version and the ldflags.
hash_of() {
	(
		cd "$here"
		for f in "$@"; do
			printf '== %s\n' "$f"
			cat "$f"
		done
		printf '== go version\n%s\n== ldflags\n%s\n' "$go_version" "$ldflags"
	) | sha256sum | cut -c1-16
}

# cached NAME FILE BUILD...: prints FILE, running BUILD first (with $tmp,
# the file to write, and $build_log, where go build -v lists what it
# compiles) unless FILE exists. Concurrent callers build once.
cached() {
	local name="$1" bin="$2"
	shift 2
	if [[ -x "$bin" ]]; then
		echo "$bin"
		return
	fi
	mkdir -p "$cache"
	(
		exec 9>"$cache/.$name.lock"
		command -v flock >/dev/null 2>&1 && flock 9
		if [[ ! -x "$bin" ]]; then
			note "building $name (not in $cache yet; the first build takes minutes)..."
			tmp="$bin.tmp.$$"
			build_log="$(mktemp)"
			trap 'stop_ticker; rm -f "$tmp" "$build_log"' EXIT
			started=$SECONDS
			start_ticker "$name" "$build_log"
			if ! "$@" 2>"$build_log"; then
				stop_ticker
				# The error lines, not the package names.
				grep -vE '^[[:alnum:]._/@-]+$' "$build_log" >&2 || true
				note "building $name failed"
				exit 1
			fi
			stop_ticker
			mv -f "$tmp" "$bin"
			note "built $name in $((SECONDS - started))s: $bin"
			# Keep the three newest of this name.
			ls -1t "$cache/$name"-* 2>/dev/null | grep -v '\.tmp\.' | tail -n +4 | xargs -r rm -f
		fi
	)
	echo "$bin"
}

build_testenv() {
	(cd "$here" && go build -v -buildvcs=false -ldflags "$ldflags" -o "$tmp" ./kube-testenv)
}
build_kubectl() {
	(cd "$here" && go build -v -buildvcs=false -ldflags "$ldflags" -o "$tmp" k8s.io/kubernetes/cmd/kubectl)
}
build_kwok() {
	# go install into a directory of its own, outside any module.
	local gobin
	gobin="$(mktemp -d)"
	(cd "$gobin" && GOWORK=off GOFLAGS=-buildvcs=false GOBIN="$gobin" go install -v "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION") &&
		mv "$gobin/kwok" "$tmp"
	local status=$?
	rm -rf "$gobin"
	return $status
}

component() {
	case "$1" in
	kube-testenv)
		cached kube-testenv "$cache/kube-testenv-$(hash_of go.mod go.sum $(cd "$here" && ls kube-testenv/*.go | grep -v '_test\.go$' | LC_ALL=C sort))" build_testenv
		;;
	kubectl)
		cached kubectl "$cache/kubectl-$(hash_of go.mod go.sum)" build_kubectl
		;;
	kwok)
		cached kwok "$cache/kwok-$KWOK_VERSION-$(printf '%s\n' "$go_version" | sha256sum | cut -c1-8)" build_kwok
		;;
	*)
		note "testenv.sh: unknown binary $1 (kube-testenv, kwok, kubectl or all)"
		exit 2
		;;
	esac
}

names=("$@")
if ((${#names[@]} == 0)); then
	names=(kube-testenv)
elif [[ "${names[*]}" == all ]]; then
	names=(kube-testenv kwok kubectl)
fi
for name in "${names[@]}"; do
	component "$name"
done
