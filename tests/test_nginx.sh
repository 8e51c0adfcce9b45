#!/usr/bin/env bash
# tests/test_nginx.sh MODULE_SO SOURCE_DIR - integration test of
# ngx_http_sluice_module (docs/nginx.md) in Debian's /usr/sbin/nginx: a
# private nginx on loopback (its own prefix under a scratch directory,
# daemon off, stopped by its PID) in front of a small upstream
# (tests/nginx/slow_upstream.py) and a static location; checks with curl:
# the configuration errors nginx -t reports, exact counts per token and
# per workspace (tests/nginx/small.policy, then seed 002's 120 per minute),
# the answers and X-RateLimit-* fields as the policy says on refused and on
# proxied admitted responses, missing identities, the variables in the
# access log, dry run, concurrency slots released when clients abort, and a
# restart with a file-backed zone keeping the state.
# Exits 77 (skipped, for ctest) when nginx, curl or python3 is missing.
# Prints "N passed, N failed".
set -u
module=${1:?usage: test_nginx.sh MODULE_SO SOURCE_DIR}
src=${2:?usage: test_nginx.sh MODULE_SO SOURCE_DIR}
NGINX=${NGINX:-/usr/sbin/nginx}
# shellcheck source=tests/server_test_lib.sh
. "$(dirname "$0")/server_test_lib.sh"
# shellcheck source=tests/test_nginx_lib.sh
. "$(dirname "$0")/test_nginx_lib.sh"

nginx_test_begin test_nginx

policy=$src/tests/nginx/small.policy
# The workers (user nobody when the test runs as root) write the state file.
mkdir "$tmp/state"
chmod 711 "$tmp"
chmod 777 "$tmp/state"
# write_conf WORKERS EXTRA_HTTP: the configuration of the instance.
write_conf() {
	cat >"$tmp/nginx.conf" <<EOF
load_module $module;
worker_processes $1;
daemon off;
pid $tmp/nginx.pid;
error_log $tmp/error.log info;
events { worker_connections 256; }
http {
    log_format sluice '\$request_uri \$status \$sluice_status \$sluice_limit_name \$sluice_limit \$sluice_remaining \$sluice_reset \$sluice_reason \$sluice_retry_after';
    access_log $tmp/access.log sluice;
    client_body_temp_path $tmp/body;
    proxy_temp_path $tmp/proxy;
    fastcgi_temp_path $tmp/fastcgi;
    uwsgi_temp_path $tmp/uwsgi;
    scgi_temp_path $tmp/scgi;
    $2
    map \$http_authorization \$sluice_token {
        "~*^Bearer\\s+(?<t>.+)\$"  \$t;
        default                  "";
    }
    sluice_identity token \$http_x_token;
    sluice_identity workspace \$http_x_workspace;
    server {
        listen 127.0.0.1:$port;
        location /api/ { sluice api; proxy_pass http://127.0.0.1:$upstream_port; }
        location /gif/ { sluice api; empty_gif; }
        location /dry/ { sluice api dry_run; empty_gif; }
        location /free/ { empty_gif; }
        location /down/ { sluice api; proxy_pass http://127.0.0.1:$closed_port; }
        location /tf/ { sluice api; try_files /nonexistent @named; }
        location @named { sluice api; empty_gif; }
        location /bearer/ { sluice api; sluice_identity token \$sluice_token; empty_gif; }
        location /ip/ { sluice api; sluice_identity token \$binary_remote_addr; empty_gif; }
    }
}
EOF
}
port=$(free_port)
closed_port=$(free_port) # nothing listens there: an upstream error

# --- configuration errors (nginx -t) -------------------------------------
printf 'policy "bad"\nscope token\nlimit x per token sliding 0/1m\n' >"$tmp/bad.policy"
write_conf 1 "sluice_zone api policy=$tmp/bad.policy size=1m;"
out=$("$NGINX" -t -p "$tmp" -c "$tmp/nginx.conf" 2>&1)
case "$out" in
*"bad.policy:3:"*) ok ;;
*) bad "nginx -t on a bad policy: no file:line:column: $out" ;;
esac
write_conf 1 "sluice_zone api policy=$policy size=1m; sluice_identity tokn \$http_x;"
out=$("$NGINX" -t -p "$tmp" -c "$tmp/nginx.conf" 2>&1)
case "$out" in
*'sluice_identity "tokn"'*) ok ;;
*) bad "nginx -t on an unknown scope: $out" ;;
esac
# A zone of 8 pages cannot hold one key of a 4096-long sliding log (32 KiB).
printf 'policy "big"\nscope token\nscope workspace\nlimit x per token sliding 4096/1m\n' >"$tmp/big.policy"
write_conf 1 "sluice_zone api policy=$tmp/big.policy size=32k;"
out=$("$NGINX" -t -p "$tmp" -c "$tmp/nginx.conf" 2>&1)
case "$out" in
*'size=32768 is too small for policy'*'big.policy: at least '*) ok ;;
*) bad "nginx -t on a zone too small for its policy: $out" ;;
esac
write_conf 1 "sluice_zone api policy=$policy size=1m state=$tmp/state/api.state;"
out=$("$NGINX" -t -p "$tmp" -c "$tmp/nginx.conf" 2>&1)
expect "nginx -t on the test configuration" 0 "$?"

# --- exact counts, one worker ---------------------------------------------
start_nginx
# 5 per token per minute: 5 admitted, the 6th refused, another token unaffected.
expect "token A: 5 admitted then refused" "200 200 200 200 200 429 429" \
	"$(codes 7 -H 'X-Token: A' "$(base)/gif/x")"
expect "token B: its own 5" "200 200 200 200 200 429" "$(codes 6 -H 'X-Token: B' "$(base)/gif/x")"
# The refusal: the policy's answer and the described limit's fields.
curl -s -m 5 -D "$tmp/h" -o "$tmp/b" -H 'X-Token: A' "$(base)/gif/x"
expect "refusal status" 429 "$(status_of "$tmp/h")"
expect "refusal body" '{"error":{"code":"rate_limited","retryAfterSec":60}}' "$(cat "$tmp/b")"
expect "refusal content type" "application/json" "$(header_of "$tmp/h" Content-Type)"
expect "refusal X-RateLimit-Limit" 5 "$(header_of "$tmp/h" X-RateLimit-Limit)"
expect "refusal X-RateLimit-Remaining" 0 "$(header_of "$tmp/h" X-RateLimit-Remaining)"
expect "refusal Retry-After" 60 "$(header_of "$tmp/h" Retry-After)"
# A proxied admitted response carries the fields (the header filter).
curl -s -m 5 -D "$tmp/h" -o "$tmp/b" -H 'X-Token: C' "$(base)/api/x"
expect "proxied: status" 200 "$(status_of "$tmp/h")"
expect "proxied: body from the upstream" ok "$(cat "$tmp/b")"
expect "proxied: X-RateLimit-Limit" 5 "$(header_of "$tmp/h" X-RateLimit-Limit)"
expect "proxied: X-RateLimit-Remaining" 4 "$(header_of "$tmp/h" X-RateLimit-Remaining)"
expect "proxied: X-RateLimit-Reset" 60 "$(header_of "$tmp/h" X-RateLimit-Reset)"
expect "proxied: no Retry-After" "" "$(header_of "$tmp/h" Retry-After)"
# 8 per workspace across tokens: D takes 5, E 3, E's 4th is the workspace's 9th.
expect "workspace: D's 5" "200 200 200 200 200" \
	"$(codes 5 -H 'X-Token: D' -H 'X-Workspace: W' "$(base)/gif/x")"
expect "workspace: E's 3, then refused by the workspace" "200 200 200 429" \
	"$(codes 4 -H 'X-Token: E' -H 'X-Workspace: W' "$(base)/gif/x")"
# No identity: no limit applies, no field.
curl -s -m 5 -D "$tmp/h" -o /dev/null "$(base)/gif/x"
expect "no identity: admitted" 200 "$(status_of "$tmp/h")"
expect "no identity: no X-RateLimit-Limit" "" "$(header_of "$tmp/h" X-RateLimit-Limit)"
expect "no identity, 10 more: all admitted" "200 200 200 200 200 200 200 200 200 200" \
	"$(codes 10 "$(base)/gif/x")"
# An empty header is no identity either.
expect "empty token: not limited" "200 200 200 200 200 200" "$(codes 6 -H 'X-Token;' "$(base)/gif/x")"
# The identity from \$binary_remote_addr (a location's own sluice_identity).
expect "identity from the address" "200 200 200 200 200 429" "$(codes 6 "$(base)/ip/x")"
# An internal redirect (try_files to a named location with sluice) counts once.
expect "try_files: counted once" "200 200 200 200 200 429" "$(codes 6 -H 'X-Token: TF' "$(base)/tf/x")"
# A location without sluice is not limited.
expect "no sluice in the location" "200 200 200 200 200 200" "$(codes 6 -H 'X-Token: A' "$(base)/free/x")"

# --- dry run: counted, never refused, no fields -----------------------------
expect "dry run: all admitted" "200 200 200 200 200 200 200" "$(codes 7 -H 'X-Token: F' "$(base)/dry/x")"
curl -s -m 5 -D "$tmp/h" -o /dev/null -H 'X-Token: F' "$(base)/dry/x"
expect "dry run: no X-RateLimit-Limit" "" "$(header_of "$tmp/h" X-RateLimit-Limit)"
expect "dry run counted: F refused where enforced" 429 "$(codes 1 -H 'X-Token: F' "$(base)/gif/x")"

# --- variables (access log) -------------------------------------------------
sleep 0.2
expect "log: admitted (the governing limit: a slot of 2 taken)" "/api/x 200 PASSED token_inflight 2 1 0 none 0" \
	"$(grep -m1 '^/api/x 200' "$tmp/access.log")"
expect "log: refused" "/gif/x 429 REJECTED token_minute 5 0 60 rate 60" \
	"$(grep -m1 '^/gif/x 429 REJECTED token_minute' "$tmp/access.log")"
expect "log: dry run" 1 "$(grep -c '^/dry/x 200 REJECTED_DRY_RUN token_minute 5 0 ' "$tmp/access.log" | grep -c '^[1-9]')"

# --- concurrency slots: held by slow requests, released on client abort ----
pids=()
for i in 1 2; do
	curl -s -m 30 -o /dev/null -H 'X-Token: G' "$(base)/api/slow?20" &
	pids+=($!)
done
sleep 0.7
curl -s -m 5 -D "$tmp/h" -o "$tmp/b" -H 'X-Token: G' "$(base)/api/x"
expect "3rd in flight: refused" 429 "$(status_of "$tmp/h")"
expect "3rd in flight: concurrency answer" '{"error":{"code":"concurrent_limit","retryAfterSec":1}}' \
	"$(cat "$tmp/b")"
kill "${pids[@]}" 2>/dev/null
wait "${pids[@]}" 2>/dev/null
sleep 0.5
expect "after the clients abort: admitted" 200 "$(codes 1 -H 'X-Token: G' "$(base)/api/x")"
# An upstream error (502) gives the slot back: 3 on 2 slots.
expect "upstream errors release their slots" "502 502 502" "$(codes 3 -H 'X-Token: J' "$(base)/down/x")"
# Through the log phase too: a completed request gives its slot back.
expect "sequential requests never hold a slot (3 on 2 slots)" "200 200 200" "$(codes 3 -H 'X-Token: H' "$(base)/api/x")"

# --- restart with a file-backed zone keeps the state -----------------------
stop_nginx
[ -s "$tmp/state/api.state" ] && ok || bad "no state file after a graceful stop"
start_nginx
expect "after restart: A still refused" 429 "$(codes 1 -H 'X-Token: A' "$(base)/gif/x")"
expect "after restart: C has 4 left" "200 200 200 200 429" "$(codes 5 -H 'X-Token: C' "$(base)/gif/x")"
stop_nginx

# --- seed 002: exactly 120 per token per minute ----------------------------
write_conf 1 "sluice_zone api policy=$src/docs/policies/seed002.policy size=1m;"
start_nginx
got=$(codes 125 -H 'Authorization: Bearer S' "$(base)/bearer/x" | tr ' ' '\n' | sort | uniq -c | awk '{printf "%s:%s ", $2, $1}')
expect "seed 002: 120 admitted of 125" "200:120 429:5 " "$got"
curl -s -m 5 -D "$tmp/h" -o "$tmp/b" -H 'Authorization: bearer  S' "$(base)/bearer/x"
expect "seed 002: the page's body" \
	'{"error":{"code":"rate_limited","message":"Too many requests. Retry after 60 seconds.","retryAfterSec":60}}' \
	"$(cat "$tmp/b")"
expect "seed 002: X-RateLimit-Limit" 120 "$(header_of "$tmp/h" X-RateLimit-Limit)"
expect "seed 002: the same token from X-Token is the same key" 429 "$(codes 1 -H 'X-Token: S' "$(base)/gif/x")"
# Seed 002's token is required: a call without one is refused (the
# policy's identity answer, 401 by default). /bearer/ reads the token from
# "Authorization: Bearer" through a map: Basic credentials leave it empty.
expect "seed 002: Basic credentials are no token: the identity answer" 401 \
	"$(codes 1 -H 'Authorization: Basic S' "$(base)/bearer/x")"
stop_nginx

grep -E '\[(alert|emerg|crit)\]' "$tmp/error.log" && bad "alerts in the error log"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
