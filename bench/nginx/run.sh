#!/usr/bin/env bash
# bench/nginx/run.sh MODULE_SO - ngx_http_sluice_module head to head with
# nginx's own limit_req in the same nginx (/usr/sbin/nginx, or $NGINX), the
# same policy (RATE requests per second per key, no burst: a GCRA of burst
# 1 in both) and the same load (wrk, bench/nginx/wrk_keys.lua spreading
# requests over KEYS keys at random, "X-Key: k<N>"), for 1 and 2 workers:
#   none       empty_gif, no limit (the baseline)
#   limit_req  limit_req_zone $http_x_key rate=RATEr/s; limit_req_status 429
#   sluice     sluice_zone (policy "limit per_key per key rate RATE/1s
#              burst 1") with sluice_identity key $http_x_key
# Per configuration, the median of RUNS runs (interleaved, a fresh nginx
# each): requests/s; nginx CPU per request (user + system of the master
# and the workers from /proc/<pid>/stat over the run); the CPU the limiter
# adds over "none"; exactness: the requests admitted against the bound
# KEYS x (1 + RATE x seconds) (a key admits its first request at once,
# then one per 1/RATE s). Then the memory per key: one worker, a new key
# per request (KEYS=0) at a rate of 1 per minute, the workers' resident
# memory growth over MEMSECS seconds divided by the keys admitted (for
# sluice, whose zone is allocated whole, also the zone's size over the
# keys it holds).
# Knobs (environment): WORKERS ("1 2"), DURATION (10 s), CONNECTIONS (32),
# THREADS (wrk threads, 1), KEYS (1000), RATE (10), RUNS (3), MEMSECS (5).
# On a 2-core machine nginx and wrk share the cores: the figures compare
# the three configurations, they are not a capacity.
set -euo pipefail
module=${1:?usage: run.sh MODULE_SO}
here=$(cd "$(dirname "$0")" && pwd)
NGINX=${NGINX:-/usr/sbin/nginx}
workers_list=${WORKERS:-1 2}
secs=${DURATION:-10}
conns=${CONNECTIONS:-32}
wthreads=${THREADS:-1}
keys=${KEYS:-1000}
rate=${RATE:-10}
runs=${RUNS:-3}
memsecs=${MEMSECS:-5}
tmp=$(mktemp -d)
chmod 711 "$tmp"
pid=
trap '[ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null; [ -n "$pid" ] && wait "$pid"; rm -rf "$tmp"' EXIT
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

# conf NAME WORKERS RATE_PER_S: nginx.conf for one configuration.
conf() {
	local limit=
	local per_min=$(( $3 == 0 ))
	case $1 in
	limit_req)
		local r="$3r/s"
		[ "$per_min" = 1 ] && r="1r/m"
		limit="limit_req_zone \$http_x_key zone=lr:64m rate=$r; limit_req zone=lr; limit_req_status 429;" ;;
	sluice)
		local p="$3/1s"
		[ "$per_min" = 1 ] && p="1/1m"
		printf 'policy "bench"\nscope key\nlimit per_key per key rate %s burst 1\n' "$p" >"$tmp/bench.policy"
		limit="sluice_zone bench policy=$tmp/bench.policy size=64m; sluice_identity key \$http_x_key; sluice bench;" ;;
	esac
	cat >"$tmp/nginx.conf" <<CONF
load_module $module;
worker_processes $2;
daemon off;
pid $tmp/nginx.pid;
error_log $tmp/error.log notice;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $tmp/body; proxy_temp_path $tmp/proxy; fastcgi_temp_path $tmp/fastcgi;
    uwsgi_temp_path $tmp/uwsgi; scgi_temp_path $tmp/scgi;
    $limit
    server { listen 127.0.0.1:$port; location / { empty_gif; } }
}
CONF
}

start() {
	"$NGINX" -p "$tmp" -c "$tmp/nginx.conf" 2>>"$tmp/error.log" &
	pid=$!
	for _ in $(seq 1 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
		sleep 0.05
	done
	echo "nginx did not start"; cat "$tmp/error.log"; exit 1
}
stop() { kill -QUIT "$pid"; wait "$pid" || true; pid=; }
procs() { echo "$pid" $(pgrep -P "$pid"); }
# CPU ticks (user + system) of the master and its workers.
cpu_ticks() { local t=0 p; for p in $(procs); do t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat"))); done; echo $t; }
rss_kb() { local t=0 p; for p in $(pgrep -P "$pid"); do t=$((t + $(awk '/^VmRSS/ { print $2 }' "/proc/$p/status"))); done; echo $t; }

# run_once NAME WORKERS: appends "rps cpu_us_per_request admitted" to $tmp/NAME.W
run_once() {
	conf "$1" "$2" "$rate"
	start
	sleep 0.3
	local c0 us rps total adm
	c0=$(cpu_ticks)
	KEYS=$keys "${WRK:-wrk}" -t"$wthreads" -c"$conns" -d"${secs}s" -s "$here/wrk_keys.lua" \
		"http://127.0.0.1:$port/" >"$tmp/wrk"
	us=$(( ($(cpu_ticks) - c0) * 1000000 / $(getconf CLK_TCK) ))
	stop
	rps=$(sed -n 's/^Requests\/sec: *\([0-9.]*\)/\1/p' "$tmp/wrk")
	total=$(sed -n 's/^ *\([0-9]*\) requests in .*/\1/p' "$tmp/wrk")
	adm=$(sed -n 's/^admitted \([0-9]*\) refused.*/\1/p' "$tmp/wrk")
	echo "  $1 workers=$2: $rps req/s, $total requests, admitted $adm, nginx CPU ${us} us" >&2
	awk -v r="$rps" -v u="$us" -v n="$total" -v a="$adm" 'BEGIN { printf "%s %.3f %s\n", r, u / n, a }' >>"$tmp/$1.$2"
}

median() { sort -n -k"$2" "$tmp/$1" | sed -n "$(((runs + 1) / 2))p" | awk -v k="$2" '{ print $k }'; }

echo "nginx $("$NGINX" -v 2>&1 | sed 's/.*\///'), wrk -t$wthreads -c$conns -d${secs}s, $keys keys, $rate/s per key, median of $runs, $(nproc) CPUs"
bound=$(( keys * (1 + rate * secs) ))
configs=(none limit_req sluice)
for w in $workers_list; do
	for r in $(seq 0 $((runs - 1))); do
		for k in 0 1 2; do run_once "${configs[$(((r + k) % 3))]}" "$w"; done
	done
	base_cpu=$(median "none.$w" 2)
	for name in "${configs[@]}"; do
		awk -v n="$name" -v w="$w" -v rps="$(median "$name.$w" 1)" -v cpu="$(median "$name.$w" 2)" \
			-v adm="$(median "$name.$w" 3)" -v b="$base_cpu" -v bound="$bound" \
			'BEGIN { printf "workers %s  %-9s %8.0f req/s  nginx CPU %6.2f us/request (limiter +%5.2f)  admitted %s (bound %d)\n",
				 w, n, rps, cpu, cpu - b, n == "none" ? "-" : adm, bound }'
	done
done

# Memory per key: one worker, every request a new key.
for name in limit_req sluice; do
	conf "$name" 1 0
	start
	sleep 0.3
	r0=$(rss_kb)
	KEYS=0 "${WRK:-wrk}" -t"$wthreads" -c"$conns" -d"${memsecs}s" -s "$here/wrk_keys.lua" \
		"http://127.0.0.1:$port/" >"$tmp/wrk"
	r1=$(rss_kb)
	stop
	adm=$(sed -n 's/^admitted \([0-9]*\) refused.*/\1/p' "$tmp/wrk")
	awk -v n="$name" -v r0="$r0" -v r1="$r1" -v a="$adm" \
		'BEGIN { printf "memory    %-9s %d keys, worker RSS +%d KiB: %.0f bytes per key\n", n, a, r1 - r0, (r1 - r0) * 1024 / a }'
done
# The shared zone's own figure: its size over the keys it holds (the
# master's notice "N limit regions of K keys").
sed -n 's/.*sluice_zone "bench": \([0-9]*\) limit regions of \([0-9]*\) keys.*/\1 \2/p' "$tmp/error.log" | tail -n 1 |
	awk '{ printf "memory    sluice    zone of 64 MiB: %d region(s) of %d keys: %.0f bytes per key\n", $1, $2, 64 * 1048576 / ($1 * $2) }'
