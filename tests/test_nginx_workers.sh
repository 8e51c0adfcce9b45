#!/usr/bin/env bash
# tests/test_nginx_workers.sh MODULE_SO SOURCE_DIR - ngx_http_sluice_module
# with several worker processes on one shared zone (docs/nginx.md, "The
# store"): exact counts across 2 and 4 workers (requests on separate
# connections, served by more than one worker, checked with $pid in the
# access log), of a test policy, of seed 003 (calendar minutes) and of seed
# 002 (sliding minutes, its answers and fields); a reload with a changed
# policy keeping the state of the unchanged limits and starting the changed
# one fresh; workers killed with SIGKILL under load, on token buckets and
# on a sliding log: no over-admission, the store admits afterwards, and
# the slots of the killed come back when the lease expires; a restart with
# a file-backed zone keeping the state.
# Exits 77 (skipped) when nginx, curl or python3 is missing.
# Prints "N passed, N failed".
set -u
module=${1:?usage: test_nginx_workers.sh MODULE_SO SOURCE_DIR}
src=${2:?usage: test_nginx_workers.sh MODULE_SO SOURCE_DIR}
NGINX=${NGINX:-/usr/sbin/nginx}
# shellcheck source=tests/server_test_lib.sh
. "$(dirname "$0")/server_test_lib.sh"
# shellcheck source=tests/test_nginx_lib.sh
. "$(dirname "$0")/test_nginx_lib.sh"

nginx_test_begin test_nginx_workers
port=$(free_port)
mkdir "$tmp/state"
chmod 711 "$tmp"
chmod 777 "$tmp/state"

# policy FILE N WS_N: token buckets of N per token and WS_N per workspace
# refilling over an hour (so that no unit comes back during the test), 2 in
# flight per token with a 4 s lease. A request without a token or a
# workspace is not limited by that scope's limits.
policy() {
	cat >"$1" <<EOF
policy "workers"
headers x-ratelimit reset=delta retry-after=yes describe=token_minute
scope token optional
scope workspace optional
limit token_minute    per token      rate $2/1h
limit ws_minute       per workspace  rate $3/1h
limit token_inflight  per token      concurrency 2 retry-after 1s lease 4s
EOF
}
# The GitHub-style policy's token is optional (anonymous callers are kept
# to the per-address limits); seed 003's organization is required (no
# X-Organization: the identity answer) and read from the policy's default
# source, header X-Organization.
github=$src/docs/policies/github_style.policy
policy "$tmp/p.policy" 20 30

# write_conf WORKERS ZONE_ARGS [POLICY [IDENTITIES]]
write_conf() {
	local ids=${4-"sluice_identity token \$http_x_token; sluice_identity workspace \$http_x_workspace;"}
	cat >"$tmp/nginx.conf" <<EOF
load_module $module;
worker_processes $1;
daemon off;
pid $tmp/nginx.pid;
error_log $tmp/error.log info;
events { worker_connections 256; }
http {
    log_format w '\$pid \$request_uri \$status [\$sluice_dry_run_refused] \$http_x_token';
    access_log $tmp/access.log w;
    client_body_temp_path $tmp/body;
    proxy_temp_path $tmp/proxy;
    fastcgi_temp_path $tmp/fastcgi;
    uwsgi_temp_path $tmp/uwsgi;
    scgi_temp_path $tmp/scgi;
    sluice_zone api policy=${3:-$tmp/p.policy} $2;
    $ids
    server {
        # reuseport: the kernel spreads connections over the workers by
        # their addresses, so the "more than one worker served" checks do
        # not depend on which worker epoll wakes first.
        listen 127.0.0.1:$port reuseport;
        location /api/ { sluice api; proxy_pass http://127.0.0.1:$upstream_port; }
        location /gif/ { sluice api; empty_gif; }
        location /tier/ { sluice api; sluice_tier \$http_x_plan; empty_gif; }
        location / { sluice api; empty_gif; }
    }
}
EOF
}

# spread TOKEN N PARALLEL [HEADERS...]: N requests to /gif/ as PARALLEL
# curl processes (separate connections); prints "200:A 429:R ".
# $path (default /gif/x) and $who (default X-Token) change the target and
# the identity's header. The answers' header fields are left in $tmp/hdr.*
# (until the next spread).
spread() {
	local token=$1 n=$2 par=$3 i
	shift 3
	rm -f "$tmp"/hdr.*
	for ((i = 0; i < par; i++)); do
		{ codes $((n / par)) -D "$tmp/hdr.$i" -H "${who:-X-Token}: $token" "$@" "$(base)${path:-/gif/x}"; echo; } >"$tmp/spread.$i" &
	done
	wait_children
	cat "$tmp"/spread.* | tr ' ' '\n' | sort | uniq -c | awk '{ printf "%s:%s ", $2, $1 }'
	rm -f "$tmp"/spread.*
}
# Wait for the curl jobs only (not nginx or the upstream).
wait_children() {
	local j
	for j in $(jobs -p); do
		[ "$j" = "$pid" ] || [ "$j" = "$upstream_pid" ] || wait "$j"
	done
}
workers_seen() { grep " $1\$" "$tmp/access.log" | awk '{ print $1 }' | sort -u | wc -l; }

for w in 2 4; do
	: >"$tmp/access.log"
	write_conf $w "size=1m"
	start_nginx
	expect "$w workers: 20 of 60 admitted" "200:20 429:40 " "$(spread T$w 60 12)"
	n=$(workers_seen "T$w")
	[ "$n" -gt 1 ] && ok || bad "$w workers: only $n worker served token T$w"
	expect "$w workers: token U's 20 in workspace V" "200:20 429:10 " "$(spread U$w 30 3 -H "X-Workspace: V$w")"
	expect "$w workers: token X, the workspace's last 10" "200:10 429:20 " \
		"$(spread X$w 30 3 -H "X-Workspace: V$w")"
	stop_nginx
done

# --- seed 003 (calendar minutes per organization and class, an override):
# exact over 2 and 4 workers --------------------------------------------------
# Out of the last 10 s of a UTC minute, so that the windows do not turn.
minute_start() {
	local sec
	sec=$(date -u +%S)
	sec=${sec#0}
	[ "$sec" -lt 50 ] || sleep $((61 - sec))
}
for w in 2 4; do
	write_conf $w "size=1m" "$src/docs/policies/seed003.policy" "" # the policy's own source
	start_nginx
	minute_start
	expect "seed 003, $w workers: 300 of 320 on the default class" "200:300 429:20 " \
		"$(who=X-Organization spread O$w 320 8)"
	expect "seed 003, $w workers: 150 of 160 on the search class" "200:150 429:10 " \
		"$(who=X-Organization path=/audience/search spread O$w 160 8)"
	expect "seed 003, $w workers: the override's 3000 admit 320" "200:320 " \
		"$(who=X-Organization spread org_backfill_example 320 8)"
	expect "seed 003, $w workers: tier M (x2) from sluice_tier, 600 of 610" "200:600 429:10 " \
		"$(who=X-Organization path=/tier/x spread M$w 610 10 -H 'X-Plan: M')"
	expect "seed 003, $w workers: an unknown tier is the base numbers" "200:300 429:10 " \
		"$(who=X-Organization path=/tier/x spread N$w 310 10 -H 'X-Plan: nope')"
	curl -s -m 5 -D "$tmp/h" -o "$tmp/b" -H "X-Organization: O$w" "$(base)/gif/x"
	expect "seed 003: refusal status" 429 "$(status_of "$tmp/h")"
	expect "seed 003: empty body" "" "$(cat "$tmp/b")"
	expect "seed 003: X-RateLimit-Limit" 300 "$(header_of "$tmp/h" X-RateLimit-Limit)"
	expect "seed 003: no Retry-After" "" "$(header_of "$tmp/h" Retry-After)"
	expect "seed 003: no organization: the identity answer" 401 "$(codes 1 "$(base)/gif/x")"
	stop_nginx
done

# --- seed 002 (sliding minutes per token and per workspace, 20 in flight per
# token) as it declares its scopes: the token from "Authorization: Bearer"
# (required), the workspace from X-Workspace (else the token's own) -------
# fields FIELD: the values of FIELD in the last spread's answers, one a line.
fields() { cat "$tmp"/hdr.* | tr -d '\r' | sed -n "s/^$1: //ip"; }
for w in 2 4; do
	: >"$tmp/access.log"
	write_conf $w "size=1m" "$src/docs/policies/seed002.policy" "" # the policy's own sources
	start_nginx
	expect "seed 002, $w workers: 120 of 150 per token" "200:120 429:30 " \
		"$(who=Authorization spread "Bearer S$w" 150 6)"
	expect "seed 002, $w workers: X-RateLimit-Limit 120 on every answer" 150 "$(fields X-RateLimit-Limit | grep -c '^120$')"
	# Seconds rounded up; 61 when another worker stamped a unit later than
	# this request read the clock.
	expect "seed 002, $w workers: X-RateLimit-Reset on every answer" 150 "$(fields X-RateLimit-Reset | wc -l)"
	expect "seed 002, $w workers: X-RateLimit-Reset within the minute" "" \
		"$(fields X-RateLimit-Reset | awk '!($1 >= 0 && $1 <= 61)' | tr '\n' ' ')"
	expect "seed 002, $w workers: Retry-After on every 429" 30 "$(fields Retry-After | grep -c .)"
	# Each admission took one place of the minute: remaining 119 .. 0 once each.
	expect "seed 002, $w workers: each Remaining once" "$(seq 0 119 | tr '\n' ' ')" \
		"$(cat "$tmp"/hdr.* | tr -d '\r' | awk '/^HTTP/ { s = $2 } tolower($1) == "x-ratelimit-remaining:" && s == 200 { print $2 }' | sort -n | tr '\n' ' ')"
	# The workspace's 300 across three tokens (each within its own 120).
	expect "seed 002, $w workers: A's 100 in workspace V" "200:100 " \
		"$(who=Authorization spread "Bearer A$w" 100 5 -H "X-Workspace: V$w")"
	expect "seed 002, $w workers: B's 100 in workspace V" "200:100 " \
		"$(who=Authorization spread "Bearer B$w" 100 5 -H "X-Workspace: V$w")"
	expect "seed 002, $w workers: C gets the workspace's last 100 of 110" "200:100 429:10 " \
		"$(who=Authorization spread "Bearer C$w" 110 5 -H "X-Workspace: V$w")"
	expect "seed 002, $w workers: the workspace refusals describe C's minute" 110 \
		"$(fields X-RateLimit-Limit | grep -c '^120$')"
	# 20 in flight per token: the 21st gets the concurrency answer.
	for i in $(seq 1 20); do
		curl -s -m 30 -o /dev/null -H "Authorization: Bearer K$w" "$(base)/api/slow?5" &
	done
	sleep 2
	curl -s -m 5 -D "$tmp/h" -o "$tmp/b" -H "Authorization: Bearer K$w" "$(base)/gif/x"
	expect "seed 002, $w workers: the 21st in flight" 429 "$(status_of "$tmp/h")"
	expect "seed 002, $w workers: concurrent_limit" '{"error":{"code":"concurrent_limit","retryAfterSec":1}}' \
		"$(cat "$tmp/b")"
	expect "seed 002, $w workers: its X-RateLimit-Limit" 120 "$(header_of "$tmp/h" X-RateLimit-Limit)"
	expect "seed 002, $w workers: its X-RateLimit-Remaining" 100 "$(header_of "$tmp/h" X-RateLimit-Remaining)"
	expect "seed 002, $w workers: its Retry-After" 1 "$(header_of "$tmp/h" Retry-After)"
	wait_children
	expect "seed 002, $w workers: no token: the identity answer" 401 "$(codes 1 "$(base)/gif/x")"
	n=$(awk '{ print $1 }' "$tmp/access.log" | sort -u | wc -l)
	[ "$n" -gt 1 ] && ok || bad "seed 002, $w workers: only $n worker served"
	stop_nginx
done

# --- the GitHub-style policy (custom header names, a dry-run limit, 403 on
# the hourly quota) over 2 workers --------------------------------------------
: >"$tmp/access.log"
write_conf 2 "size=1m" "$github" \
	"sluice_identity token \$http_x_token; sluice_identity ip \$remote_addr;"
start_nginx
minute_start
expect "github: 10 within the dry-run limit" "200:10 " "$(spread GH 10 2)"
curl -s -m 5 -D "$tmp/h" -o /dev/null -H 'X-Token: GH' "$(base)/gif/x"
expect "github: the 11th admitted" 200 "$(status_of "$tmp/h")"
expect "github: the dry-run header names the limit" shadow_minute "$(header_of "$tmp/h" X-RateLimit-Dry-Run)"
expect "github: x-ratelimit-limit" 5000 "$(header_of "$tmp/h" x-ratelimit-limit)"
expect "github: x-ratelimit-used" 11 "$(header_of "$tmp/h" x-ratelimit-used)"
expect "github: x-ratelimit-remaining" 4989 "$(header_of "$tmp/h" x-ratelimit-remaining)"
expect "github: x-ratelimit-resource" core "$(header_of "$tmp/h" x-ratelimit-resource)"
sleep 0.2
expect "github: \$sluice_dry_run_refused" 1 "$(grep -c ' 200 \[shadow_minute\] GH$' "$tmp/access.log")"
# "anon per ip ... unless token": the address's 60 are for requests without
# a token; GH's 11 from that address spent none of them.
expect "github: the address's 60 an hour for anonymous callers" "200:60 403:4 " "$(who=X-None spread - 64 4)"
curl -s -m 5 -D "$tmp/h" -o "$tmp/b" "$(base)/gif/x"
expect "github: the quota's answer" \
	'{"message":"API rate limit exceeded for ip.","documentation_url":"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"}' \
	"$(cat "$tmp/b")"
expect "github: its content type" "application/json; charset=utf-8" "$(header_of "$tmp/h" Content-Type)"
stop_nginx

# --- reload: unchanged limits keep their state, a changed one starts fresh --
# new_workers: the master's children once none of OLD is left (up to 10 s).
new_workers() {
	local old=" $* " p fresh
	for _ in $(seq 1 200); do
		fresh=1
		for p in $(pgrep -P "$pid"); do
			case "$old" in *" $p "*) fresh=0 ;; esac
		done
		[ "$fresh" = 1 ] && [ -n "$(pgrep -P "$pid")" ] && return 0
		sleep 0.05
	done
	return 1
}
: >"$tmp/access.log"
write_conf 2 "size=1m"
start_nginx
expect "before reload: R's 20" "200:20 429:5 " "$(spread R 25 5)"
expect "before reload: Q1's 20 in workspace Z" "200:20 " "$(spread Q1 20 2 -H 'X-Workspace: Z')"
expect "before reload: Q2, Z's last 10" "200:10 429:10 " "$(spread Q2 20 2 -H 'X-Workspace: Z')"
policy "$tmp/p.policy" 20 31 # ws_minute changed, token_minute not
old=$(pgrep -P "$pid")
kill -HUP "$pid"
# shellcheck disable=SC2086
new_workers $old && ok || bad "reload: the old workers did not go"
expect "after reload: R still refused (token_minute kept)" "429:4 " "$(spread R 4 2)"
expect "after reload: Z fresh (ws_minute changed)" "200:20 " "$(spread Q3 20 2 -H 'X-Workspace: Z')"
expect "after reload: Z's 31st of the new limit" "200:11 429:9 " "$(spread Q4 20 2 -H 'X-Workspace: Z')"

# A reload with a broken policy fails and keeps the running configuration.
cp "$tmp/p.policy" "$tmp/good.policy"
printf 'policy "broken"\nscope token\nlimit x per token rate 0/1m\n' >"$tmp/p.policy"
old=$(pgrep -P "$pid")
kill -HUP "$pid"
sleep 1
expect "failed reload: the workers stay" "$(echo $old)" "$(echo $(pgrep -P "$pid"))"
grep -q 'p.policy:3:' "$tmp/error.log" && ok || bad "failed reload: no file:line in the error log"
expect "failed reload: R still refused" "429:2 " "$(spread R 2 2)"
expect "failed reload: Q4's state kept" "429:2 " "$(spread Q4 2 2 -H 'X-Workspace: Z')"
cp "$tmp/good.policy" "$tmp/p.policy"

# --- SIGKILL of the workers: slots of the dead come back after the lease;
# no over-admission across the kill ---------------------------------------
t0=$(date +%s%N) # the slots are taken after this
for i in 1 2; do
	curl -s -m 30 -o /dev/null -H 'X-Token: K' "$(base)/api/slow?20" &
done
sleep 0.7
expect "2 slow requests hold K's slots" 429 "$(codes 1 -H 'X-Token: K' "$(base)/gif/x")"
# Load on token L while the workers are killed.
for i in 0 1 2 3 4 5; do
	{ codes 10 -H 'X-Token: L' "$(base)/gif/x"; echo; } >"$tmp/l.$i" &
done
sleep 0.1
old=$(pgrep -P "$pid")
# shellcheck disable=SC2086
kill -KILL $old
# shellcheck disable=SC2086
new_workers $old && ok || bad "SIGKILL: the master did not start new workers"
wait_children
admitted=$(cat "$tmp"/l.* | tr ' ' '\n' | grep -c '^200$')
lost=$(cat "$tmp"/l.* | tr ' ' '\n' | grep -c '^000$')
more=$(spread L 30 3 | tr ' ' '\n' | sed -n 's/^200://p')
total=$((admitted + ${more:-0}))
[ "$total" -le 20 ] && [ "$total" -ge $((20 - lost)) ] && ok ||
	bad "SIGKILL under load: token L admitted $total (lost answers $lost), expected 20 - lost .. 20"
elapsed=$((($(date +%s%N) - t0) / 1000000))
if [ "$elapsed" -lt 3000 ]; then
	expect "K's slots held by the killed worker until the lease" 429 \
		"$(codes 1 -H 'X-Token: K' "$(base)/gif/x")"
else
	echo "note: the lease check skipped (${elapsed} ms after the slots were taken)"
fi
sleep $(((4000 - elapsed) / 1000 + 1))
expect "K admitted once the lease expired" 200 "$(codes 1 -H 'X-Token: K' "$(base)/gif/x")"
stop_nginx

# --- SIGKILL under load on a sliding log (a claim and a sequence lock per
# key that a killed writer may leave taken): no over-admission, and the
# store admits afterwards, on the loaded key and on a fresh one ------------
printf 'policy "log"\nscope token optional\nlimit token_minute per token sliding 100/1m\n' >"$tmp/log.policy"
write_conf 2 "size=1m" "$tmp/log.policy" "sluice_identity token \$http_x_token;"
start_nginx
for i in 0 1 2 3 4 5; do
	{ codes 20 -H 'X-Token: LL' "$(base)/gif/x"; echo; } >"$tmp/l.$i" &
done
sleep 0.1
old=$(pgrep -P "$pid")
# shellcheck disable=SC2086
kill -KILL $old
# shellcheck disable=SC2086
new_workers $old && ok || bad "log SIGKILL: the master did not start new workers"
wait_children
admitted=$(cat "$tmp"/l.* | tr ' ' '\n' | grep -c '^200$')
lost=$(cat "$tmp"/l.* | tr ' ' '\n' | grep -c '^000$')
rm -f "$tmp"/l.*
more=$(spread LL 120 4 | tr ' ' '\n' | sed -n 's/^200://p')
total=$((admitted + ${more:-0}))
[ "$total" -le 100 ] && [ "$total" -ge $((100 - lost)) ] && ok ||
	bad "log SIGKILL: token LL admitted $total (lost answers $lost), expected 100 - lost .. 100"
expect "log SIGKILL: a fresh token's 100 of 110" "200:100 429:10 " "$(spread LM 110 5)"
stop_nginx

# --- restart with a file-backed zone keeps the state -----------------------
write_conf 2 "size=1m state=$tmp/state/api.zone"
start_nginx
expect "file-backed: P's 20" "200:20 429:5 " "$(spread P 25 5)"
stop_nginx
start_nginx
expect "after restart: P still refused" "429:4 " "$(spread P 4 2)"
expect "after restart: P2 has its 20" "200:20 429:2 " "$(spread P2 22 2)"
stop_nginx

# Known: the killed workers, the broken policy of the failed reload.
grep -E '\[(alert|emerg|crit)\]' "$tmp/error.log" | grep -v -e 'exited on signal 9' -e 'p.policy:3:' &&
	bad "alerts in the error log"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
