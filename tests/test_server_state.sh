#!/usr/bin/env bash
# tests/test_server_state.sh SERVER_BINARY - sluice-server's state file
# (docs/server.md, "State file"): a token's per-minute and daily
# consumption carried across a SIGTERM restart (exact header values), a
# SIGKILL restart losing at most what was admitted after the last periodic
# snapshot (the documented bound), and a corrupt file refused at start
# unless --state-fresh-on-error. Starts the server on 127.0.0.1 with a free
# port; every server started is killed on exit. Exits 77 (skipped, for
# ctest) when curl is missing. Prints "N passed, N failed".
set -u
server=${1:?usage: test_server_state.sh SERVER_BINARY}
if ! command -v curl >/dev/null 2>&1; then
	echo "test_server_state: curl not found (apt-get install -y curl); skipped"
	exit 77
fi
# The daily window resets at 00:00 UTC: too close to it, the daily values
# would reset during the test.
secs=$(( $(date -u +%s) % 86400 ))
if [ "$secs" -gt $((86400 - 120)) ]; then
	echo "test_server_state: within 2 minutes of 00:00 UTC; skipped"
	exit 77
fi

# shellcheck source=tests/server_test_lib.sh
. "$(dirname "$0")/server_test_lib.sh"

within() { # within WHAT LO HI ACTUAL
	if [ -n "$4" ] && [ "$4" -ge "$2" ] && [ "$4" -le "$3" ]; then ok
	else bad "$1: expected $2..$3, got '$4'"; fi
}

# A per-minute sliding log (exact within its minute: no refill to blur
# the values) and a daily quota, listed together by the draft-11 fields.
cat >"$tmp/policy" <<'POLICY'
policy "state"
headers draft-11 reset=delta retry-after=yes
scope token
limit token_minute per token sliding 100/1m
limit token_day    per token quota 1000/1d@utc
POLICY
state="$tmp/state"

# start_server ARGS...: start, wait for the "listening" line, set $port.
start_server() {
	${SLUICE_SERVER_EMULATOR:-} "$server" --listen 127.0.0.1:0 --policy "$tmp/policy" "$@" >"$tmp/out" 2>"$tmp/err" &
	pid=$!
	port=
	for _ in $(seq 1 100); do
		port=$(sed -n 's/^sluice-server: listening on 127\.0\.0\.1:\([0-9]*\),.*/\1/p' "$tmp/out")
		[ -n "$port" ] && return 0
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
	echo "test_server_state: the server did not start:"; cat "$tmp/err"
	exit 1
}

# spend N: N requests of token tok_1; the last one's remaining per limit
# in $minute and $day.
spend() {
	for _ in $(seq 1 "$1"); do
		line=$(curl -sS -m 5 -o /dev/null -D - -H "Authorization: Bearer tok_1" \
			"http://127.0.0.1:$port/v1/x" | tr -d '\r' | grep '^RateLimit:')
	done
	minute=$(sed -n 's/.*"token_minute";r=\([0-9]*\).*/\1/p' <<<"$line")
	day=$(sed -n 's/.*"token_day";r=\([0-9]*\).*/\1/p' <<<"$line")
}

# 1. SIGTERM: the snapshot at stop carries everything.
start_server --state-file "$state" --state-interval 1s
expect "first start" "sluice-server: state file $state: none yet; started empty" "$(head -n 1 "$tmp/err")"
spend 30
expect "minute remaining before SIGTERM" 70 "$minute"
expect "day remaining before SIGTERM" 970 "$day"
kill -TERM "$pid"
wait "$pid"
expect "exit status after SIGTERM" 0 "$?"
pid=
expect "saved at stop" 1 "$(grep -c "^sluice-server: state saved to $state: 2 keys" "$tmp/err")"

start_server --state-file "$state" --state-interval 1s
expect "restored" 1 "$(grep -c "state restored from $state: 2 keys loaded, 0 idle skipped, 2 limits kept, 0 dropped" "$tmp/err")"
spend 1
expect "minute remaining after the SIGTERM restart" 69 "$minute"
expect "day remaining after the SIGTERM restart" 969 "$day"

# 2. SIGKILL: what the last periodic snapshot held survives; at most the
# requests after it (one interval's) are lost.
spend 9                                  # 60 / 960
sleep 2.5                                # a periodic snapshot (1 s) takes them
spend 5                                  # 55 / 955, perhaps not in the file
kill -KILL "$pid"
wait "$pid" 2>/dev/null
pid=
start_server --state-file "$state" --state-interval 1s
spend 1
echo "after SIGKILL: minute remaining $minute, day remaining $day (54..59, 954..959 allowed)"
# Carried: at least the 31 + 9 before the sleep (<= 59 / 959 left after
# this request); never more than was spent (>= 54 / 954).
within "minute remaining after SIGKILL (the bound: one interval)" 54 59 "$minute"
within "day remaining after SIGKILL (the bound: one interval)" 954 959 "$day"
kill -TERM "$pid"
wait "$pid"
pid=

# 3. A corrupt file: refused at start; --state-fresh-on-error starts empty.
printf 'SLUICEEN not a snapshot at all, just bytes' >"$state"
${SLUICE_SERVER_EMULATOR:-} "$server" --listen 127.0.0.1:0 --policy "$tmp/policy" --state-file "$state" >"$tmp/out" 2>"$tmp/err"
expect "exit status with a corrupt state file" 1 "$?"
expect "the refusal says why" 1 "$(grep -c "state file $state: .*checksum\|state file $state: .*truncated\|state file $state: .*trailer" "$tmp/err")"
start_server --state-file "$state" --state-fresh-on-error
expect "fresh on error" 1 "$(grep -c "started empty (--state-fresh-on-error)" "$tmp/err")"
spend 1
expect "minute remaining after a fresh start" 99 "$minute"
kill -TERM "$pid"
wait "$pid"
pid=

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
