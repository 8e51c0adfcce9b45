#!/usr/bin/env bash
# tests/test_server_admin.sh SERVER_BINARY SOURCE_DIR - sluice-server's admin
# listener (docs/server.md, "Admin listener"): starts the server with seed
# 002, a frozen clock and --admin 127.0.0.1:0, sends a known mix of requests
# on the traffic port (admitted, refused by the per-minute limit, a bad
# request), then checks that GET /metrics on the admin port is Prometheus
# text (every line a comment or `name{labels} value`), that its counters
# equal what was sent exactly, that GET /stats answers there, and that the
# traffic port answers /metrics and /stats as ordinary, limited routes
# (never the admin bodies). Exits 77 (skipped) when curl is missing.
# Prints "N passed, N failed".
set -u
server=${1:?usage: test_server_admin.sh SERVER_BINARY SOURCE_DIR}
src=${2:?usage: test_server_admin.sh SERVER_BINARY SOURCE_DIR}
if ! command -v curl >/dev/null 2>&1; then
	echo "test_server_admin: curl not found (apt-get install -y curl); skipped"
	exit 77
fi

# shellcheck source=tests/server_test_lib.sh
. "$(dirname "$0")/server_test_lib.sh"

# shellcheck disable=SC2086 # the emulator may be a command with arguments
${SLUICE_SERVER_EMULATOR:-} "$server" --listen 127.0.0.1:0 --admin 127.0.0.1:0 \
	--policy "$src/docs/policies/seed002.policy" --threads 2 --frozen-clock \
	>"$tmp/out" 2>"$tmp/err" &
pid=$!
wait_admin_server test_server_admin

# One curl per batch: N requests of token tok_a in workspace ws_1; the
# status of each, one a line.
batch() { # batch N PATH
	urls=()
	for _ in $(seq 1 "$1"); do urls+=(-o /dev/null "$traffic$2"); done
	curl -sS -m 20 -w '%{http_code}\n' -H 'Authorization: Bearer tok_a' \
		-H 'X-Workspace: ws_1' "${urls[@]}"
}

# 122 requests of one token: the per-minute sliding window (120/1m) admits
# 120 and refuses 2 (the clock is frozen: nothing leaves the window).
batch 122 /v1/items >"$tmp/codes"
expect "traffic: 200s" 120 "$(grep -c '^200$' "$tmp/codes")"
expect "traffic: 429s" 2 "$(grep -c '^429$' "$tmp/codes")"

# /metrics and /stats on the traffic port: ordinary routes of the policy,
# limited like any other (tok_b has its own minute; ws_1's minute has
# room), never the admin endpoints.
for p in /metrics /stats; do
	code=$(curl -sS -m 5 -o "$tmp/t.b" -D "$tmp/t.h" -w '%{http_code}' \
		-H 'Authorization: Bearer tok_b' -H 'X-Workspace: ws_1' "$traffic$p")
	expect "traffic $p: the policy's answer" 200 "$code"
	if tr -d '\r' <"$tmp/t.h" | grep -qi '^X-RateLimit-Limit: 120$'; then ok
	else bad "traffic $p: no rate-limit headers of the token's minute"; cat "$tmp/t.h"; fi
	if grep -q 'sluice_\|"requests"' "$tmp/t.b"; then bad "traffic $p: answered the admin body"; else ok; fi
	if tr -d '\r' <"$tmp/t.h" | grep -qi '^Content-Type: text/plain; version=0.0.4'; then
		bad "traffic $p: answered as the metrics endpoint"; else ok; fi
done
# tok_a's minute is spent: /stats on the traffic port is refused too.
code=$(curl -sS -m 5 -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer tok_a' \
	-H 'X-Workspace: ws_1' "$traffic/stats")
expect "traffic /stats: limited like any route" 429 "$code"

# A request the parser refuses (400) on the traffic port.
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'NOT HTTP\r\n\r\n' >&3
bad_status=$(head -n 1 <&3 | tr -d '\r' | cut -d' ' -f2)
exec 3<&-
expect "traffic: a malformed request" 400 "$bad_status"

# Sent: 122 + 2 + 1 (429) + 1 (400) = 126 requests; 200: 120 + 2; 429: 2 + 1.
code=$(curl -sS -m 5 -o "$tmp/m" -D "$tmp/m.h" -w '%{http_code}' "$admin/metrics")
expect "admin /metrics status" 200 "$code"
expect "admin /metrics content type" "Content-Type: text/plain; version=0.0.4; charset=utf-8" \
	"$(tr -d '\r' <"$tmp/m.h" | grep -i '^Content-Type:')"

# The exposition format 0.0.4: comments (# HELP name text, # TYPE name
# counter|gauge, the TYPE before the family's first sample) and samples
# `name{label="value",...} value`; counters end in _total.
bad_lines=$(awk '
	/^# HELP [a-zA-Z_:][a-zA-Z0-9_:]* / { next }
	/^# TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge)$/ {
		type[$3] = $4
		if ($4 == "counter" && $3 !~ /_total$/) print "counter without _total: " $0
		next
	}
	/^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*"(,[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*")*\})? [0-9]+$/ {
		name = $0; sub(/[{ ].*/, "", name)
		if (!(name in type)) print "sample before its TYPE: " $0
		n++
		next
	}
	{ print "not exposition text: " $0 }
	END { if (n == 0) print "no samples" }' "$tmp/m")
expect "/metrics parses as Prometheus text 0.0.4" "" "$bad_lines"

metric() { # metric 'name{labels}': its value
	awk -v k="$1" '$1 == k { print $2 }' "$tmp/m"
}
expect "sluice_http_requests_total" 126 "$(metric sluice_http_requests_total)"
expect "responses 200" 122 "$(metric 'sluice_http_responses_total{code="200"}')"
expect "responses 429" 3 "$(metric 'sluice_http_responses_total{code="429"}')"
expect "responses 400" 1 "$(metric 'sluice_http_responses_total{code="400"}')"
expect "responses 503" 0 "$(metric 'sluice_http_responses_total{code="503"}')"
# token_minute: tok_a 120 + tok_b 2 admitted, tok_a 3 refused.
expect "token_minute admitted" 122 "$(metric 'sluice_limit_admitted_total{limit="token_minute"}')"
expect "token_minute refused" 3 \
	"$(metric 'sluice_limit_refused_total{limit="token_minute",reason="rate"}')"
# No other limit refused anything, and none degraded (room for every key).
for l in token_day ws_minute ws_day; do
	expect "$l refused" 0 "$(metric "sluice_limit_refused_total{limit=\"$l\",reason=\"$(
		[ "${l#*_}" = day ] && echo quota || echo rate)\"}")"
done
expect "token_inflight refused" 0 \
	"$(metric 'sluice_limit_refused_total{limit="token_inflight",reason="concurrency"}')"
# The limits after token_minute in evaluation order saw only the admitted.
expect "ws_minute admitted" 122 "$(metric 'sluice_limit_admitted_total{limit="ws_minute"}')"
expect "token_day admitted" 122 "$(metric 'sluice_limit_admitted_total{limit="token_day"}')"
for l in token_minute token_day ws_minute ws_day token_inflight; do
	expect "$l degraded" 0 "$(metric "sluice_limit_degraded_total{limit=\"$l\"}")"
done
# Live keys: two tokens, one workspace.
expect "token_minute live keys" 2 "$(metric 'sluice_limit_live_keys{limit="token_minute"}')"
expect "ws_day live keys" 1 "$(metric 'sluice_limit_live_keys{limit="ws_day"}')"

# /stats on the admin port: the traffic totals (neither admin request counts).
code=$(curl -sS -m 5 -o "$tmp/s" -w '%{http_code}' "$admin/stats")
expect "admin /stats status" 200 "$code"
expect "admin /stats" '{"requests":126,"ok":122,"limited":3,"errors":1,"connections":' \
	"$(sed -n 's/^\({"requests":[0-9]*,"ok":[0-9]*,"limited":[0-9]*,"errors":[0-9]*,"connections":\).*/\1/p' "$tmp/s")"
# The admin port serves nothing else, and only GET/HEAD.
expect "admin: a traffic path" 404 "$(curl -sS -m 5 -o /dev/null -w '%{http_code}' "$admin/v1/items")"
expect "admin: POST /metrics" 405 \
	"$(curl -sS -m 5 -o /dev/null -w '%{http_code}' -X POST "$admin/metrics")"
expect "admin: HEAD /metrics" 200 "$(curl -sS -m 5 -I -o /dev/null -w '%{http_code}' "$admin/metrics")"
# Still 126: the admin requests were not traffic.
curl -sS -m 5 -o "$tmp/m" "$admin/metrics"
expect "admin requests are not counted" 126 "$(metric sluice_http_requests_total)"

# --admin with a port only: loopback.
kill -TERM "$pid"
wait "$pid"
expect "server exit status after SIGTERM" 0 "$?"
pid=
# shellcheck disable=SC2086
${SLUICE_SERVER_EMULATOR:-} "$server" --listen 127.0.0.1:0 --admin 0 --no-limit --threads 1 \
	>"$tmp/out" 2>"$tmp/err" &
pid=$!
line=
for _ in $(seq 1 100); do
	line=$(grep '^sluice-server: admin on' "$tmp/out")
	[ -n "$line" ] && break
	sleep 0.05
done
case "$line" in
"sluice-server: admin on 127.0.0.1:"[0-9]*) ok ;;
*) bad "--admin PORT: expected the loopback address, got '$line'" ;;
esac

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
