#!/usr/bin/env bash
# bench/server/run.sh SERVER [SECONDS] [RUNS] - requests/s of sluice-server
# over loopback, with and without sluice, measured by wrk: the median of RUNS
# runs (default 3) of SECONDS (default 5) each, per configuration. The server
# and wrk run with the same thread and connection counts (SERVER_THREADS,
# WRK_THREADS, WRK_CONNECTIONS; default 1, 1, 32). On a 2-core machine the
# server and wrk share the cores: the figures are a comparison, not a
# capacity.
#   no-limit   --no-limit: HTTP only (the baseline)
#   admitted   seed 002, 10000 tokens x 10000 workspaces at random: every
#              request passes all five limits (a slot taken and released)
#   refused    seed 002, one token: after its 120 the 429 path
set -euo pipefail
server=${1:?usage: run.sh SERVER [SECONDS] [RUNS]}
secs=${2:-5}
runs=${3:-3}
here=$(cd "$(dirname "$0")" && pwd)
policy=$here/../../docs/policies/seed002.policy
st=${SERVER_THREADS:-1}
wt=${WRK_THREADS:-1}
wc=${WRK_CONNECTIONS:-32}
tmp=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT

measure() { # measure NAME TOKENS SERVER-ARGS...
	local name=$1 tokens=$2
	shift 2
	"$server" --listen 127.0.0.1:0 --threads "$st" "$@" >"$tmp/out" 2>/dev/null &
	pid=$!
	local port=
	for _ in $(seq 1 100); do
		port=$(sed -n 's/^sluice-server: listening on 127\.0\.0\.1:\([0-9]*\),.*/\1/p' "$tmp/out")
		[ -n "$port" ] && break
		sleep 0.05
	done
	local all=()
	for _ in $(seq 1 "$runs"); do
		TOKENS=$tokens wrk -t"$wt" -c"$wc" -d"${secs}s" -s "$here/wrk_tokens.lua" \
			"http://127.0.0.1:$port/v1/items" >"$tmp/wrk"
		all+=("$(sed -n 's/^Requests\/sec: *\([0-9.]*\)/\1/p' "$tmp/wrk")")
		non=$(sed -n 's/^ *Non-2xx or 3xx responses: *\([0-9]*\)/\1/p' "$tmp/wrk")
		echo "  $name run: ${all[-1]} req/s, non-2xx: ${non:-0}" >&2
	done
	kill -TERM "$pid"
	wait "$pid" || true
	pid=
	median=$(printf '%s\n' "${all[@]}" | sort -n | sed -n "$(((runs + 1) / 2))p")
	echo "$name $median ${all[*]}"
}

echo "server threads $st, wrk -t$wt -c$wc -d${secs}s, median of $runs"
measure no-limit 10000 --no-limit | tee "$tmp/base"
measure admitted 10000 --policy "$policy" | tee "$tmp/adm"
measure refused 1 --policy "$policy" | tee "$tmp/ref"
base=$(cut -d' ' -f2 "$tmp/base")
for f in adm ref; do
	read -r name med _ <"$tmp/$f"
	awk -v n="$name" -v m="$med" -v b="$base" 'BEGIN { printf "%s: %.0f req/s = %.3fx no-limit (%.0f)\n", n, m, m / b, b }'
done
