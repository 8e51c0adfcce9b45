#!/usr/bin/env bash
# bench/server/run.sh SERVER [SECONDS] [RUNS] - requests/s of sluice-server
# over loopback, with and without sluice, measured by wrk, and the server's
# CPU time per request (user + system from /proc over the wrk run, so the
# client's share of the cores does not count): the median of RUNS runs
# (default 3) of SECONDS (default 5) each, per configuration. The server
# and wrk run with the same thread and connection counts (SERVER_THREADS,
# WRK_THREADS, WRK_CONNECTIONS; default 1, 1, 32). SERVER_CPUS and WRK_CPUS
# (taskset lists, e.g. 0-1 and 2-3) pin them to separate cores where there
# are enough; on a 2-core machine the server and wrk share the cores: the
# figures are a comparison, not a capacity.
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

# Server CPU time (user + system) so far, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# run_once NAME TOKENS SERVER-ARGS...: a fresh server, one wrk run; appends
# the requests/s to $tmp/NAME.
run_once() {
	local name=$1 tokens=$2
	shift 2
	# shellcheck disable=SC2086 # empty or "taskset -c LIST"
	${SERVER_CPUS:+taskset -c $SERVER_CPUS} "$server" --listen 127.0.0.1:0 --threads "$st" "$@" \
		>"$tmp/out" 2>/dev/null &
	pid=$!
	local port=
	for _ in $(seq 1 200); do
		port=$(sed -n 's/^sluice-server: listening on 127\.0\.0\.1:\([0-9]*\),.*/\1/p' "$tmp/out")
		[ -n "$port" ] && break
		sleep 0.05
	done
	# shellcheck disable=SC2086
	local cpu0
	cpu0=$(cpu_ticks "$pid")
	TOKENS=$tokens ${WRK_CPUS:+taskset -c $WRK_CPUS} "${WRK:-wrk}" -t"$wt" -c"$wc" -d"${secs}s" -s "$here/wrk_tokens.lua" \
		"http://127.0.0.1:$port/v1/items" >"$tmp/wrk"
	local rps non total us
	us=$(( ($(cpu_ticks "$pid") - cpu0) * 1000000 / $(getconf CLK_TCK) ))
	rps=$(sed -n 's/^Requests\/sec: *\([0-9.]*\)/\1/p' "$tmp/wrk")
	non=$(sed -n 's/^ *Non-2xx or 3xx responses: *\([0-9]*\)/\1/p' "$tmp/wrk")
	total=$(sed -n 's/^ *\([0-9]*\) requests in .*/\1/p' "$tmp/wrk")
	echo "  $name: $rps req/s, non-2xx: ${non:-0}, server CPU $us us for $total requests" >&2
	echo "$rps" >>"$tmp/$name"
	awk -v u="$us" -v n="$total" 'BEGIN { printf "%.2f\n", u / n }' >>"$tmp/$name.cpu"
	kill -TERM "$pid"
	wait "$pid" || true
	pid=
}

median() { sort -n "$tmp/$1" | sed -n "$(((runs + 1) / 2))p"; }

echo "server threads $st${SERVER_CPUS:+ on CPUs $SERVER_CPUS}, wrk${WRK_CPUS:+ on CPUs $WRK_CPUS} -t$wt -c$wc -d${secs}s, median of $runs (configurations interleaved)"
# Interleaved rounds, the order rotated each round, so that drifting
# background load hits every configuration alike.
configs=(no-limit admitted refused)
for r in $(seq 0 $((runs - 1))); do
	for k in 0 1 2; do
		case ${configs[$(((r + k) % 3))]} in
		no-limit) run_once no-limit 10000 --no-limit ;;
		admitted) run_once admitted 10000 --policy "$policy" ;;
		refused) run_once refused 1 --policy "$policy" ;;
		esac
	done
done
base=$(median no-limit)
cbase=$(median no-limit.cpu)
for name in no-limit admitted refused; do
	awk -v n="$name" -v m="$(median "$name")" -v b="$base" -v all="$(tr '\n' ' ' <"$tmp/$name")" \
		-v c="$(median "$name.cpu")" -v cb="$cbase" \
		'BEGIN { printf "%-9s %8.0f req/s  %.3fx no-limit   server CPU %.2f us/request (%.2fx)   runs: %s\n",
			 n, m, m / b, c, c / cb, all }'
done
