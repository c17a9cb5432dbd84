# Shell habits shared by the project's scripts; source it:
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# Messages go to stderr, so that a script's stdout stays its result.

# note MESSAGE...: one line on stderr.
note() { printf '%s\n' "$*" >&2; }

# ensure_tools COMMAND:PACKAGE...: installs the Debian PACKAGE of each
# COMMAND that is missing (as root, with apt-get), or says what to install
# and fails.
ensure_tools() {
	local pair missing=()
	for pair in "$@"; do
		command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
	done
	((${#missing[@]})) || return 0
	if [ "$(id -u)" != 0 ]; then
		note "missing: ${missing[*]} (sudo apt-get install ${missing[*]})"
		return 1
	fi
	note "installing ${missing[*]} (Debian packages)"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# start_ticker WHAT [COUNT_FILE]: says on stderr every 20s that WHAT is
# still going, with the number of lines of COUNT_FILE if given (go build -v
# writes one line per package it compiles). stop_ticker ends it.
ticker_pid=
start_ticker() {
	local what="$1" count_file="${2:-}" started=$SECONDS
	(
		trap 'exit 0' TERM
		while sleep 20 & wait $!; do
			if [ -n "$count_file" ]; then
				note "  ... still building $what ($((SECONDS - started))s, $(wc -l <"$count_file" 2>/dev/null || echo 0) packages compiled)"
			else
				note "  ... still building $what ($((SECONDS - started))s)"
			fi
		done
	) 9>&- </dev/null >/dev/null &
	ticker_pid=$!
}
stop_ticker() {
	[ -n "$ticker_pid" ] || return 0
	pkill -P "$ticker_pid" 2>/dev/null || true # its sleep
	kill "$ticker_pid" 2>/dev/null || true
	wait "$ticker_pid" 2>/dev/null || true
	ticker_pid=
}

# alive PID: the process exists and is not a zombie.
alive() {
	[[ -r "/proc/$1/stat" ]] && [[ "$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null)" != Z ]]
}

# stop_pid PID [SECONDS]: SIGTERM, up to SECONDS (default 10) to exit, then
# SIGKILL; reaps it when it is our child.
stop_pid() {
	local pid="$1" limit="${2:-10}" i name
	if alive "$pid"; then
		name="$(cat "/proc/$pid/comm" 2>/dev/null || echo "?")"
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < limit * 10; i++)); do
			alive "$pid" || break
			sleep 0.1
		done
		if alive "$pid"; then
			note "$name (pid $pid) still there ${limit}s after SIGTERM: SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	wait "$pid" 2>/dev/null || true
}
