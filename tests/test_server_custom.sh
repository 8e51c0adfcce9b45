#!/usr/bin/env bash
# tests/test_server_custom.sh SERVER_BINARY SOURCE_DIR - a provider of its
# own, end to end (docs/policy.md, "A provider of your own"): sluice-server
# with docs/policies/github_style.policy, a frozen clock, X-Forwarded-For
# trusted (so the test picks each request's IP) and an admin listener.
# Checks, with curl:
#   - an authenticated answer carries exactly the custom fields
#     x-ratelimit-limit/-remaining/-used/-reset/-resource with the token
#     hour's numbers (used counts the requests sent; reset is the next full
#     UTC hour as Unix seconds) and no other rate-limit field;
#   - the shadow per-minute limit (10/1m, dry-run): the 11th and 12th
#     requests pass (200) with "X-RateLimit-Dry-Run: shadow_minute", the
#     first ten carry no such header, and the admin listener counts 2 in
#     sluice_limit_dry_run_refused_total{limit="shadow_minute"} and in
#     /stats;
#   - an unauthenticated IP: 60 answers 200, the 61st 403 with the page's
#     JSON body, remaining 0, used 60.
# Exits 77 (skipped) when curl is missing. Prints "N passed, N failed".
set -u
server=${1:?usage: test_server_custom.sh SERVER_BINARY SOURCE_DIR}
src=${2:?usage: test_server_custom.sh SERVER_BINARY SOURCE_DIR}
if ! command -v curl >/dev/null 2>&1; then
	echo "test_server_custom: curl not found (apt-get install -y curl); skipped"
	exit 77
fi

# shellcheck source=tests/server_test_lib.sh
. "$(dirname "$0")/server_test_lib.sh"

started=$(date +%s)
# shellcheck disable=SC2086 # the emulator may be a command with arguments
${SLUICE_SERVER_EMULATOR:-} "$server" --listen 127.0.0.1:0 --admin 127.0.0.1:0 \
	--policy "$src/docs/policies/github_style.policy" --threads 2 --frozen-clock \
	--trust-forwarded-for --trusted-proxies 127.0.0.1 >"$tmp/out" 2>"$tmp/err" &
pid=$!
wait_admin_server test_server_custom

# get NAME [curl args...]: status in $tmp/NAME.code, headers (no CR) in
# $tmp/NAME.h, body in $tmp/NAME.b.
get() {
	name=$1
	shift
	curl -sS -m 5 -o "$tmp/$name.b" -D "$tmp/$name.raw" -w '%{http_code}' "$@" >"$tmp/$name.code"
	tr -d '\r' <"$tmp/$name.raw" >"$tmp/$name.h"
}
field() { # field NAME HEADER: the value, or "" (names compare case-insensitively)
	grep -i "^$2: " "$tmp/$1.h" | head -n 1 | cut -d' ' -f2-
}
token=(-H 'Authorization: Bearer tok_a' -H 'X-Forwarded-For: 10.0.0.1')

# Ten authenticated requests: within every limit, the shadow one included.
for i in $(seq 1 10); do
	get "t$i" "${token[@]}" "$traffic/repos/o/r"
	expect "token request $i: status" 200 "$(cat "$tmp/t$i.code")"
	expect "token request $i: no dry-run header" "" "$(field "t$i" X-RateLimit-Dry-Run)"
done
expect "first answer: x-ratelimit-used" 1 "$(field t1 x-ratelimit-used)"
expect "first answer: x-ratelimit-remaining" 4999 "$(field t1 x-ratelimit-remaining)"

# The 11th and 12th: the shadow per-minute limit (10/1m) would refuse;
# they pass and say so.
for i in 11 12; do
	get "t$i" "${token[@]}" "$traffic/repos/o/r"
	expect "token request $i: passes" 200 "$(cat "$tmp/t$i.code")"
	expect "token request $i: dry-run header" shadow_minute "$(field "t$i" X-RateLimit-Dry-Run)"
done
expect "x-ratelimit-limit" 5000 "$(field t12 x-ratelimit-limit)"
expect "x-ratelimit-remaining" 4988 "$(field t12 x-ratelimit-remaining)"
expect "x-ratelimit-used" 12 "$(field t12 x-ratelimit-used)"
expect "x-ratelimit-resource" core "$(field t12 x-ratelimit-resource)"
reset=$(field t12 x-ratelimit-reset)
now=$(date +%s)
if [ -n "$reset" ] && [ $((reset % 3600)) -eq 0 ] && [ "$reset" -gt "$started" ] &&
	[ "$reset" -le $((now + 3600)) ]; then ok
else bad "x-ratelimit-reset: '$reset' is not the next full hour after $started"; fi
# exactly these rate-limit fields: no IETF or X-RateLimit-* family beside them
expect "rate-limit fields" \
	"X-RateLimit-Dry-Run x-ratelimit-limit x-ratelimit-remaining x-ratelimit-reset x-ratelimit-resource x-ratelimit-used" \
	"$(grep -io '^[a-z-]*ratelimit[a-z-]*' "$tmp/t12.h" | sort | tr '\n' ' ' | sed 's/ $//')"
expect "no Retry-After on an admission" "" "$(field t12 Retry-After)"

# An unauthenticated IP: 60 an hour, then 403 with the page's body.
codes=$(for _ in $(seq 1 60); do
	curl -sS -m 5 -o /dev/null -w '%{http_code}\n' -H 'X-Forwarded-For: 10.0.0.2' "$traffic/users/u"
done | sort | uniq -c | tr -s ' ' | sed 's/^ //')
expect "anonymous: 60 admitted" "60 200" "$codes"
get anon -H 'X-Forwarded-For: 10.0.0.2' "$traffic/users/u"
expect "anonymous 61st: status" 403 "$(cat "$tmp/anon.code")"
expect "anonymous 61st: body" \
	'{"message":"API rate limit exceeded for ip.","documentation_url":"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"}' \
	"$(cat "$tmp/anon.b")"
expect "anonymous 61st: content type" "application/json; charset=utf-8" "$(field anon Content-Type)"
expect "anonymous 61st: x-ratelimit-limit" 60 "$(field anon x-ratelimit-limit)"
expect "anonymous 61st: x-ratelimit-remaining" 0 "$(field anon x-ratelimit-remaining)"
expect "anonymous 61st: x-ratelimit-used" 60 "$(field anon x-ratelimit-used)"
expect "anonymous 61st: no dry-run header" "" "$(field anon X-RateLimit-Dry-Run)"
# "unless token": the address's anonymous budget is spent, yet a token from
# that same address is held by its own hour only.
get authed_there -H 'Authorization: Bearer tok_b' -H 'X-Forwarded-For: 10.0.0.2' "$traffic/users/u"
expect "token from the anonymous address: status" 200 "$(cat "$tmp/authed_there.code")"
expect "token from the anonymous address: x-ratelimit-limit" 5000 "$(field authed_there x-ratelimit-limit)"
expect "token from the anonymous address: x-ratelimit-used" 1 "$(field authed_there x-ratelimit-used)"

# The admin listener counts the two would-be refusals.
metrics=$(curl -sS -m 5 "$admin/metrics")
expect "metric: shadow_minute dry-run refusals" 2 \
	"$(printf '%s\n' "$metrics" | sed -n 's/^sluice_limit_dry_run_refused_total{limit="shadow_minute"} //p')"
expect "metric: core dry-run refusals" 0 \
	"$(printf '%s\n' "$metrics" | sed -n 's/^sluice_limit_dry_run_refused_total{limit="core"} //p')"
if printf '%s\n' "$metrics" | grep -q '^# TYPE sluice_limit_dry_run_refused_total counter$'; then ok
else bad "metric: no TYPE line for sluice_limit_dry_run_refused_total"; fi
expect "/stats: dry_run_refused" 2 \
	"$(curl -sS -m 5 "$admin/stats" | sed -n 's/.*"dry_run_refused":\([0-9]*\).*/\1/p')"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
