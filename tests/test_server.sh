#!/usr/bin/env bash
# tests/test_server.sh SERVER_BINARY SOURCE_DIR - integration test of
# sluice-server (docs/server.md): starts it on 127.0.0.1 with a free port,
# checks exact answers with curl and raw HTTP (bash /dev/tcp) (each seed
# policy's limits doing what its page says, a provider's own answers and
# described limit, route spellings, targets the
# matcher refuses: 400/414), then drives a
# bounded load with wrk and checks that the 2xx answers equal the policy's
# bound exactly, counted by wrk and by the server (/stats on the admin
# listener, and its shutdown line). Exits 77 (skipped, for ctest) when curl
# or wrk is missing; CI installs both (.ci/deps test). Every server started is killed on exit.
# SLUICE_SERVER_EMULATOR (cross builds): a command that runs the server.
# Prints "N passed, N failed".
set -u
server=${1:?usage: test_server.sh SERVER_BINARY SOURCE_DIR}
src=${2:?usage: test_server.sh SERVER_BINARY SOURCE_DIR}
for tool in curl wrk; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "test_server: $tool not found (apt-get install -y $tool); skipped"
		exit 77
	fi
done

# shellcheck source=tests/server_test_lib.sh
. "$(dirname "$0")/server_test_lib.sh"
# Every client call is bounded (curl -m, timeout, wrk -d); ctest's TIMEOUT
# bounds the whole.

# start_server ARGS...: start, wait for the "listening" line, set $port
# (and $admin_port: the counters are read on the admin listener).
start_server() {
	: >"$tmp/out"
	# shellcheck disable=SC2086 # the emulator may be a command with arguments
	${SLUICE_SERVER_EMULATOR:-} "$server" --listen 127.0.0.1:0 --admin 127.0.0.1:0 "$@" >"$tmp/out" 2>"$tmp/err" &
	pid=$!
	port=
	for _ in $(seq 1 100); do
		port=$(sed -n 's/^sluice-server: listening on 127\.0\.0\.1:\([0-9]*\),.*/\1/p' "$tmp/out")
		admin_port=$(sed -n 's/^sluice-server: admin on 127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$tmp/out")
		[ -n "$port" ] && [ -n "$admin_port" ] && return 0
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
	echo "test_server: the server did not start:"; cat "$tmp/err"
	exit 1
}

# stop_server: SIGTERM, wait for a clean exit, keep its last line in $stopped.
stop_server() {
	kill -TERM "$pid"
	wait "$pid"
	rc=$?
	expect "server exit status after SIGTERM" 0 "$rc"
	[ "$rc" -eq 0 ] || head -n 80 "$tmp/err"
	pid=
	stopped=$(tail -n 1 "$tmp/err")
}

base() { echo "http://127.0.0.1:$port"; }
admin() { echo "http://127.0.0.1:$admin_port"; }

# get NAME [curl args...] URL: headers in $tmp/NAME.h (CR stripped), body in
# $tmp/NAME.b, status in $status.
get() {
	name=$1
	shift
	status=$(curl -sS -m 5 -o "$tmp/$name.b" -D "$tmp/$name.raw" -w '%{http_code}' "$@")
	tr -d '\r' <"$tmp/$name.raw" >"$tmp/$name.h"
}
header() { # header NAME FIELD: the field's value ("" if absent)
	sed -n "s/^$2: //Ip" "$tmp/$1.h" | head -n 1
}
ratelimit_fields() { # the X-RateLimit-* and Retry-After lines, in order
	grep -iE '^(x-ratelimit-|retry-after)' "$tmp/$1.h" | tr '\n' '|'
}
# many N [curl args...] URL: N requests on one keep-alive connection; prints
# the status codes, one a line.
many() {
	n=$1
	shift
	url=${*: -1}
	args=("${@:1:$#-1}")
	: >"$tmp/urls"
	for _ in $(seq 1 "$n"); do echo "url = \"$url\"" >>"$tmp/urls"; echo 'output = "/dev/null"' >>"$tmp/urls"; done
	curl -sS -m 10 -w '%{http_code}\n' "${args[@]}" -K "$tmp/urls"
}
# raw REQUEST: send bytes on a fresh connection, print the answer's status
# line (CR stripped).
raw() {
	exec 3<>"/dev/tcp/127.0.0.1/$port"
	printf '%b' "$1" >&3
	timeout 5 cat <&3 | tr -d '\r' >"$tmp/raw"
	exec 3<&- 3>&-
	head -n 1 "$tmp/raw"
}

A=(-H 'Authorization: Bearer tok_a' -H 'X-Workspace: ws_1')

# ---------------------------------------------------------------------------
# 1. Seed 002, exact answers. --frozen-clock: time does not advance, so each
#    limit admits exactly its count and the numbers below are exact. The
#    minute limits are sliding windows: one request is in the window until
#    60 s later, so the window is whole again ("resets") in 60 s.
start_server --policy "$src/docs/policies/seed002.policy" --threads 2 --frozen-clock

get first "${A[@]}" "$(base)/v1/items"
expect "first request status" 200 "$status"
expect "first request rate-limit fields" \
	"X-RateLimit-Limit: 120|X-RateLimit-Remaining: 119|X-RateLimit-Reset: 60|" \
	"$(ratelimit_fields first)"
expect "first request body" '{"ok":true}' "$(cat "$tmp/first.b")"
expect "first request content type" "application/json" "$(header first Content-Type)"

codes=$(many 119 "${A[@]}" "$(base)/v1/items" | sort | uniq -c | tr -s ' ')
expect "requests 2..120 of token A" " 119 200" "$codes"

get limited "${A[@]}" "$(base)/v1/items"
expect "121st request status" 429 "$status"
expect "121st request fields" \
	"Retry-After: 60|X-RateLimit-Limit: 120|X-RateLimit-Remaining: 0|X-RateLimit-Reset: 60|" \
	"$(ratelimit_fields limited)"
expect "121st request body" \
	'{"error":{"code":"rate_limited","message":"Too many requests. Retry after 60 seconds.","retryAfterSec":60}}' \
	"$(cat "$tmp/limited.b")"
expect "121st request content type" "application/json" "$(header limited Content-Type)"
expect "121st request content length" "$(wc -c <"$tmp/limited.b" | tr -d ' ')" \
	"$(header limited Content-Length)"

get other -H 'Authorization: Bearer tok_b' -H 'X-Workspace: ws_1' "$(base)/v1/items"
expect "second token unaffected" "200 X-RateLimit-Limit: 120|X-RateLimit-Remaining: 119|X-RateLimit-Reset: 60|" \
	"$status $(ratelimit_fields other)"

# Workspace ws_1: 120 (tok_a) + 1 (tok_b) + 120 (tok_c) + 59 (tok_d) = 300.
codes=$(many 120 -H 'Authorization: Bearer tok_c' -H 'X-Workspace: ws_1' "$(base)/v1/items" | sort | uniq -c | tr -s ' ')
expect "tok_c in ws_1" " 120 200" "$codes"
codes=$(many 59 -H 'Authorization: Bearer tok_d' -H 'X-Workspace: ws_1' "$(base)/v1/items" | sort | uniq -c | tr -s ' ')
expect "tok_d in ws_1" " 59 200" "$codes"
get ws -H 'Authorization: Bearer tok_d' -H 'X-Workspace: ws_1' "$(base)/v1/items"
# The headers describe tok_d's own minute limit (describe=token_minute), as
# it stands after 59 calls: 61 left.
expect "301st request of the workspace" \
	"429 Retry-After: 60|X-RateLimit-Limit: 120|X-RateLimit-Remaining: 61|X-RateLimit-Reset: 60|" \
	"$status $(ratelimit_fields ws)"
# The workspace's refusal consumed nothing of tok_d's own limits: 120 - 59 - 1.
get ws2 -H 'Authorization: Bearer tok_d' -H 'X-Workspace: ws_2' "$(base)/v1/items"
expect "tok_d in another workspace" "200 60" "$status $(header ws2 X-RateLimit-Remaining)"

# No token: seed 002 makes it required, so the request is refused with the
# default identity answer (401, no rate-limit fields).
get anon "$(base)/v1/items"
expect "anonymous request" "401 " "$status $(ratelimit_fields anon)"
expect "anonymous request body" '{"error":{"code":"identity_required","scope":"token"}}' "$(cat "$tmp/anon.b")"

# Bad requests.
expect "malformed request line" "HTTP/1.1 400 Bad Request" "$(raw 'GET\r\n\r\n')"
expect "HTTP/1.1 without Host" "HTTP/1.1 400 Bad Request" "$(raw 'GET / HTTP/1.1\r\n\r\n')"
expect "space before colon" "HTTP/1.1 400 Bad Request" "$(raw 'GET / HTTP/1.1\r\nHost : x\r\n\r\n')"
expect "body above --max-body" "HTTP/1.1 413 Content Too Large" \
	"$(raw 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n')"
big=$(head -c 9000 /dev/zero | tr '\0' 'a')
expect "head above 8 KiB" "HTTP/1.1 431 Request Header Fields Too Large" \
	"$(raw "GET / HTTP/1.1\r\nHost: x\r\nX-Big: $big\r\n\r\n")"
expect "HTTP/2.0 request line" "HTTP/1.1 505 HTTP Version Not Supported" "$(raw 'GET / HTTP/2.0\r\n\r\n')"
expect "chunked body" "HTTP/1.1 501 Not Implemented" \
	"$(raw 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n')"
# Pipelining, a discarded body, then Connection: close.
raw 'POST /a HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok_p\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok_p\r\nConnection: close\r\n\r\n' >/dev/null
expect "pipelined requests answered" 2 "$(grep -o 'HTTP/1.1 200 OK' "$tmp/raw" | wc -l | tr -d ' ')"
expect "Connection: close honoured" "Connection: close" "$(grep '^Connection:' "$tmp/raw")"

# HEAD: the fields of a GET, Content-Length included, and no body.
raw 'HEAD /x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok_p\r\nConnection: close\r\n\r\n' >/dev/null
expect "HEAD answer" "HTTP/1.1 200 OK|Content-Length: 11|" \
	"$(grep -E '^(HTTP/|Content-Length:)' "$tmp/raw" | tr '\n' '|')"
expect "HEAD answer has no body" "" "$(sed -n '/^$/,$p' "$tmp/raw" | tr -d '\n')"

# The clock is frozen for the limits' sweeper too: seconds later (it runs
# once a second), tok_b's one request still counts (a sweeper on the real
# clock reclaimed its entry as full and answered 119 here).
sleep 2.5
get later -H 'Authorization: Bearer tok_b' -H 'X-Workspace: ws_2' "$(base)/v1/items"
expect "frozen clock, seconds later" "200 118" "$status $(header later X-RateLimit-Remaining)"

# Counted by the server (/stats itself is not): 200: 1+119+1+120+59+1
# +2 (pipelined)+1 (HEAD)+1 (later) = 305; refused: 2 (429) + 1 (anonymous,
# 401) = 3; bad requests: 7.
get stats "$(admin)/stats"
expect "/stats" '"requests":315,"ok":305,"limited":3,"errors":7' \
	"$(sed -n 's/^{\("requests":[0-9]*,"ok":[0-9]*,"limited":[0-9]*,"errors":[0-9]*\).*/\1/p' "$tmp/stats.b")"
stop_server
expect "shutdown line" "requests=315 ok=305 limited=3 errors=7" \
	"$(echo "$stopped" | sed -n 's/.*\(requests=[0-9]* ok=[0-9]* limited=[0-9]* errors=[0-9]*\).*/\1/p')"

# ---------------------------------------------------------------------------
# 1b. Concurrency (seed 002: 20 in flight per token). --work-ms holds every
#     2xx answer, and with it the request's slot, for 2 s: of 21 parallel
#     requests of one token, 20 are admitted and one is refused at once with
#     concurrent_limit; once they are answered the slots are free again.
start_server --policy "$src/docs/policies/seed002.policy" --threads 2 --frozen-clock --work-ms 2000
: >"$tmp/purls"
for i in $(seq 1 21); do
	# One operation each ("next"): output and dump-header are per operation.
	printf 'url = "%s/v1/items"\noutput = "%s/p%d.b"\ndump-header = "%s/p%d.h"\n' \
		"$(base)" "$tmp" "$i" "$tmp" "$i" >>"$tmp/purls"
	printf 'header = "Authorization: Bearer tok_p"\nwrite-out = "%%{http_code}\\n"\nmax-time = 20\n' >>"$tmp/purls"
	[ "$i" -lt 21 ] && echo next >>"$tmp/purls"
done
codes=$(curl -sS -Z --parallel-immediate --parallel-max 21 -K "$tmp/purls" 2>/dev/null |
	sort | uniq -c | tr -s ' ' | tr '\n' '|')
expect "21 parallel requests of one token" " 20 200| 1 429|" "$codes"
refused=$(grep -l concurrent_limit "$tmp"/p*.b | head -n 1)
expect "concurrency refusal body" '{"error":{"code":"concurrent_limit","retryAfterSec":1}}' \
	"$(cat "${refused:-/dev/null}")"
tr -d '\r' <"${refused%.b}.h" >"$tmp/refused.h"
# The 21st in flight: the minute limit's fields (20 of 120 taken), the
# concurrency limit's Retry-After.
expect "concurrency refusal fields" \
	"Retry-After: 1|X-RateLimit-Limit: 120|X-RateLimit-Remaining: 100|X-RateLimit-Reset: 60|" \
	"$(ratelimit_fields refused)"
# Slots released: 21 admitted answers (the 20 and this one) of token_minute.
get after -H 'Authorization: Bearer tok_p' "$(base)/v1/items"
expect "after the parallel burst" "200 99" "$status $(header after X-RateLimit-Remaining)"
stop_server

# ---------------------------------------------------------------------------
# 1b'. Seed 002's daily refusal (its daily quota cut to 3 for the test): the
#      "rate_limited" shape with the day's longer retryAfterSec, and the
#      headers still describe the token's minute limit (3 of 120 taken).
sed 's|token_day       per token      quota 50_000/1d@utc|token_day       per token      quota 3/1d@utc|' \
	"$src/docs/policies/seed002.policy" >"$tmp/seed002d.policy"
start_server --policy "$tmp/seed002d.policy" --threads 2 --frozen-clock
codes=$(many 3 -H 'Authorization: Bearer tok_q' "$(base)/v1/items" | sort | uniq -c | tr -s ' ')
expect "daily quota of 3" " 3 200" "$codes"
get daily -H 'Authorization: Bearer tok_q' "$(base)/v1/items"
expect "daily refusal fields" "429 X-RateLimit-Limit: 120|X-RateLimit-Remaining: 117|X-RateLimit-Reset: 60|" \
	"$status $(ratelimit_fields daily | sed 's/^Retry-After: [0-9]*|//')"
expect "daily refusal body" "rate_limited $(header daily Retry-After)" \
	"$(sed -n 's/.*"code":"\([a-z_]*\)".*"retryAfterSec":\([0-9]*\)}}$/\1 \2/p' "$tmp/daily.b")"
ra=$(header daily Retry-After)
[ "${ra:-0}" -gt 60 ] && ok || bad "daily Retry-After beyond the minute: '$ra'"
stop_server

# ---------------------------------------------------------------------------
# 1c. Seed 002 on the real clock: "Calls remaining in the current 60-second
#     window" is a window. 120 calls pass, the 121st is refused, and two
#     seconds later 4 more are still refused (a token bucket of 120/1m would
#     have admitted them: one call every 0.5 s); Retry-After and the body's
#     retryAfterSec agree, and count down with the clock.
start_server --policy "$src/docs/policies/seed002.policy" --threads 2
W=(-H 'Authorization: Bearer tok_w' -H 'X-Workspace: ws_w')
codes=$(many 120 "${W[@]}" "$(base)/v1/items" | sort | uniq -c | tr -s ' ')
expect "seed 002, real clock: 120 calls" " 120 200" "$codes"
get win1 "${W[@]}" "$(base)/v1/items"
r1=$(header win1 Retry-After)
expect "seed 002, real clock: the 121st" "429 120 0" \
	"$status $(header win1 X-RateLimit-Limit) $(header win1 X-RateLimit-Remaining)"
expect "seed 002, real clock: retryAfterSec is Retry-After" "\"retryAfterSec\":$r1}}" \
	"$(grep -o '"retryAfterSec":[0-9]*}}' "$tmp/win1.b")"
if [ "${r1:-0}" -ge 50 ] && [ "${r1:-0}" -le 60 ] && [ "$(header win1 X-RateLimit-Reset)" -ge "$r1" ]; then ok
else bad "seed 002, real clock: Retry-After '$r1', Reset '$(header win1 X-RateLimit-Reset)' (want 50..60, Reset >= Retry-After)"; fi
sleep 2
codes=$(many 4 "${W[@]}" "$(base)/v1/items" | sort | uniq -c | tr -s ' ')
expect "seed 002, real clock: 2 s after Remaining 0" " 4 429" "$codes"
get win2 "${W[@]}" "$(base)/v1/items"
r2=$(header win2 Retry-After)
if [ "$status" = 429 ] && [ "${r2:-99}" -lt "${r1:-0}" ]; then ok
else bad "seed 002, real clock: 2 s later: status $status, Retry-After '$r2' (want 429, < $r1)"; fi
stop_server

# ---------------------------------------------------------------------------
# 1d. Seed 000 (per IP, sliding windows): the page's 429 example, field for
#     field: "Retry-After: 60, RateLimit-Limit: 100, RateLimit-Remaining: 0,
#     RateLimit-Reset: 60" and the RATE_LIMITED envelope (draft-6 adds
#     RateLimit-Policy, which the page does not show).
start_server --policy "$src/docs/policies/seed000.policy" --threads 2 --frozen-clock
codes=$(many 100 "$(base)/v2/campaigns" | sort | uniq -c | tr -s ' ')
expect "seed 000: 100 requests per IP" " 100 200" "$codes"
get s0 "$(base)/v2/campaigns"
expect "seed 000: the 101st, the page's example" \
	"429 Retry-After: 60|RateLimit-Limit: 100|RateLimit-Remaining: 0|RateLimit-Reset: 60|RateLimit-Policy: 100;w=60|" \
	"$status $(grep -iE '^(ratelimit-|retry-after)' "$tmp/s0.h" | tr '\n' '|')"
expect "seed 000: the page's body" \
	'{"data":null,"error":{"code":"RATE_LIMITED","message":"Too many requests"}}' "$(cat "$tmp/s0.b")"
stop_server

# ---------------------------------------------------------------------------
# 1e. Seed 003 (fixed minute windows): "X-RateLimit-Reset: Unix timestamp
#     when the counter resets" is the next whole minute, the same on every
#     answer of the minute, the 429 included (no body, no Retry-After).
#     The server selects no plan: the base ceiling, 300 per minute.
t_start=$(date +%s)
start_server --policy "$src/docs/policies/seed003.policy" --threads 2 --frozen-clock
O=(-H 'X-Organization: org_1')
get s3 "${O[@]}" "$(base)/projects/7/dashboards"
reset3=$(header s3 X-RateLimit-Reset)
expect "seed 003: first answer" "200 300 299" \
	"$status $(header s3 X-RateLimit-Limit) $(header s3 X-RateLimit-Remaining)"
if [ $((${reset3:-1} % 60)) -eq 0 ] && [ "${reset3:-0}" -gt "$t_start" ] &&
	[ "${reset3:-0}" -le $(($(date +%s) + 60)) ]; then ok
else bad "seed 003: X-RateLimit-Reset '$reset3' is not the next whole minute after $t_start"; fi
codes=$(many 299 "${O[@]}" "$(base)/projects/7/dashboards" | sort | uniq -c | tr -s ' ')
expect "seed 003: 300 per minute" " 299 200" "$codes"
get s3b "${O[@]}" "$(base)/projects/7/dashboards"
expect "seed 003: the 301st" "429 X-RateLimit-Limit: 300|X-RateLimit-Remaining: 0|X-RateLimit-Reset: $reset3|" \
	"$status $(ratelimit_fields s3b)"
expect "seed 003: empty 429 body" "0" "$(wc -c <"$tmp/s3b.b" | tr -d ' ')"
get s3c "${O[@]}" "$(base)/audience/scroll"
expect "seed 003: a hot class has its own budget" "200 150 149 $reset3" \
	"$status $(header s3c X-RateLimit-Limit) $(header s3c X-RateLimit-Remaining) $(header s3c X-RateLimit-Reset)"
stop_server

# ---------------------------------------------------------------------------
# 1f. Seed 004: spellings of a route count in its class (the path is
#     normalized before matching); targets the normalizer refuses answer
#     400, paths above 4096 bytes 414, consuming nothing.
start_server --policy "$src/docs/policies/seed004.policy" --threads 2 --frozen-clock
K=(--path-as-is -H 'X-Api-Key: key_1')
spellings=(/v1/analytics /v1/./analytics /v1/x/../analytics /v1//analytics /v1/%61nalytics)
seen=
for sp in "${spellings[@]}"; do
	get sp "${K[@]}" "$(base)$sp"
	seen="$seen$status $(header sp X-RateLimit-Limit) $(header sp X-RateLimit-Remaining)|"
done
expect "seed 004: spellings counted in the analytics budget" \
	"200 30 29|200 30 28|200 30 27|200 30 26|200 30 25|" "$seen"
codes=$(many 25 "${K[@]}" "$(base)/v1/analytics" | sort | uniq -c | tr -s ' ')
expect "seed 004: the rest of the analytics budget" " 25 200" "$codes"
seen=
for sp in "${spellings[@]}"; do
	get sp "${K[@]}" "$(base)$sp"
	seen="$seen$status|"
done
expect "seed 004: every spelling refused once the budget is spent" "429|429|429|429|429|" "$seen"
# The page does not say its paths are case-insensitive: /V1/Analytics is
# another route, in the default budget (60 per 60 s).
get upper "${K[@]}" "$(base)/V1/Analytics"
expect "seed 004: /V1/Analytics, case-sensitive routes" "200 60 59" \
	"$status $(header upper X-RateLimit-Limit) $(header upper X-RateLimit-Remaining)"
get bad1 "${K[@]}" "$(base)/v1/%zz"
expect "seed 004: malformed percent-escape" 400 "$status"
get bad2 "${K[@]}" "$(base)/v1/analytics%2"
expect "seed 004: truncated percent-escape" 400 "$status"
long=$(head -c 5000 /dev/zero | tr '\0' 'a')
get bad3 "${K[@]}" "$(base)/v1/$long"
expect "seed 004: a 5000-byte path" 414 "$status"
expect "seed 004: 414 status line" "HTTP/1.1 414 URI Too Long" "$(head -n 1 "$tmp/bad3.h")"
get after4 "${K[@]}" "$(base)/v1/teams/me"
expect "seed 004: refused targets consumed nothing" "200 60 59" \
	"$status $(header after4 X-RateLimit-Limit) $(header after4 X-RateLimit-Remaining)"
stop_server
# With `routes case-insensitive` (a server that routes case-insensitively),
# /V1/Analytics is the analytics route too.
{ cat "$src/docs/policies/seed004.policy"; echo 'routes case-insensitive'; } >"$tmp/seed004i.policy"
start_server --policy "$tmp/seed004i.policy" --threads 2 --frozen-clock
seen=
for sp in /v1/analytics /V1/Analytics /V1/ANALYTICS/./ /v1/%61NALYTICS; do
	get sp "${K[@]}" "$(base)$sp"
	seen="$seen$status $(header sp X-RateLimit-Limit) $(header sp X-RateLimit-Remaining)|"
done
expect "seed 004 + routes case-insensitive: case spellings counted in analytics" \
	"200 30 29|200 30 28|200 30 27|200 30 26|" "$seen"
stop_server

# ---------------------------------------------------------------------------
# 2. Bounded load with wrk over loopback, real clock: 500 per hour per token
#    admits exactly 500 in a run shorter than one emission interval (7.2 s).
cat >"$tmp/bound.policy" <<'EOF'
policy "bound"
headers x-ratelimit reset=delta retry-after=yes
body json-error
scope token
limit per_token per token rate 500/1h
EOF
cat >"$tmp/token.lua" <<'EOF'
wrk.headers["Authorization"] = "Bearer wrk-token"
EOF
# wrk_2xx: the 2xx count of a wrk report (requests minus non-2xx/3xx).
wrk_2xx() {
	total=$(sed -n 's/^ *\([0-9]*\) requests in .*/\1/p' "$1")
	non=$(sed -n 's/^ *Non-2xx or 3xx responses: *\([0-9]*\).*/\1/p' "$1")
	echo $((total - ${non:-0}))
}
start_server --policy "$tmp/bound.policy" --threads 2
wrk -t2 -c8 -d1s -s "$tmp/token.lua" "$(base)/v1/items" >"$tmp/wrk1" 2>&1
expect "wrk: 2xx answers in the window" 500 "$(wrk_2xx "$tmp/wrk1")"
total=$(sed -n 's/^ *\([0-9]*\) requests in .*/\1/p' "$tmp/wrk1")
if [ "${total:-0}" -gt 500 ]; then ok; else bad "wrk drove only '${total}' requests (want > 500)"; cat "$tmp/wrk1"; fi
get stats "$(admin)/stats"
expect "server-side 2xx count (/stats)" 500 \
	"$(sed -n 's/.*"ok":\([0-9]*\).*/\1/p' "$tmp/stats.b")"
stop_server
expect "server-side 2xx count (shutdown line)" "ok=500" \
	"$(echo "$stopped" | grep -o 'ok=[0-9]*')"

# 3. The same load on seed 002 (frozen clock): exactly token_minute's 120.
start_server --policy "$src/docs/policies/seed002.policy" --threads 2 --frozen-clock
wrk -t2 -c8 -d1s -s "$tmp/token.lua" "$(base)/v1/items" >"$tmp/wrk2" 2>&1
expect "wrk on seed 002: 2xx answers" 120 "$(wrk_2xx "$tmp/wrk2")"
stop_server
expect "seed 002 server-side 2xx count" "ok=120" "$(echo "$stopped" | grep -o 'ok=[0-9]*')"

# 3b. A provider's own answer (not a seed): status 503, text/plain, a
#     template; headers describing the tightest rate-like limit.
cat >"$tmp/answers.policy" <<'POLICY'
policy "own"
headers x-ratelimit reset=delta retry-after=yes describe=tightest
answer rate status 503 type "text/plain" body "slow down: {limit_name} per {scope}, {retry_after_s}s"
scope ip
limit loose per ip sliding 10/1m
limit tight per ip sliding 3/1m
POLICY
start_server --policy "$tmp/answers.policy" --threads 1 --frozen-clock
get own1 "$(base)/x"
expect "tightest limit described" "200 X-RateLimit-Limit: 3|X-RateLimit-Remaining: 2|X-RateLimit-Reset: 60|" \
	"$status $(ratelimit_fields own1)"
many 2 "$(base)/x" >/dev/null
get own4 "$(base)/x"
expect "own answer: status, type, body" "503 text/plain slow down: tight per ip, 60s" \
	"$status $(header own4 Content-Type) $(cat "$tmp/own4.b")"
stop_server

# 4. --no-limit: every request 200, no rate-limit fields.
start_server --no-limit --threads 1
get nolimit "${A[@]}" "$(base)/v1/items"
expect "--no-limit answer" "200 " "$status $(ratelimit_fields nolimit)"
stop_server

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
