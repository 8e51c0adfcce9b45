# shellcheck shell=bash
# tests/test_nginx_lib.sh - what the nginx module's test scripts share
# (test_nginx*.sh), sourced after tests/server_test_lib.sh: start and stop
# a private nginx ($tmp/nginx.conf, daemon off, its master's PID in $pid),
# free ports, and the curl helpers. The EXIT trap stops nginx (master and
# workers) and the upstream before the library's cleanup.

upstream_pid=

# nginx_test_begin NAME: skip (exit 77) without nginx, curl or python3;
# start the slow upstream (tests/nginx/slow_upstream.py) on $upstream_port.
nginx_test_begin() {
	local tool
	for tool in "$NGINX" curl python3; do
		if ! command -v "$tool" >/dev/null 2>&1; then
			echo "$1: $tool not found; skipped"
			exit 77
		fi
	done
	upstream_port=$(free_port)
	python3 "$src/tests/nginx/slow_upstream.py" "$upstream_port" &
	upstream_pid=$!
	wait_port "$upstream_port" || { echo "$1: the upstream did not start"; exit 1; }
}

stop_all() {
	if [ -n "$pid" ]; then
		kill -TERM "$pid" 2>/dev/null # the master stops its workers
		wait "$pid" 2>/dev/null
		pid=
	fi
	if [ -n "$upstream_pid" ]; then
		kill -TERM "$upstream_pid" 2>/dev/null
		wait "$upstream_pid" 2>/dev/null
	fi
	cleanup
}
trap stop_all EXIT

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_port PORT: up to 5 s for a listener on 127.0.0.1:PORT.
wait_port() {
	for _ in $(seq 1 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.05
	done
	return 1
}

# start_nginx: run $NGINX on $tmp/nginx.conf, wait for its port ($port).
start_nginx() {
	"$NGINX" -p "$tmp" -c "$tmp/nginx.conf" 2>>"$tmp/error.log" &
	pid=$!
	if ! wait_port "$port"; then
		echo "nginx did not start:"
		tail -n 20 "$tmp/error.log"
		exit 1
	fi
}

# stop_nginx: graceful stop (SIGQUIT: workers finish and run their exit
# hooks), wait for the master.
stop_nginx() {
	kill -QUIT "$pid"
	wait "$pid"
	expect "nginx exit status after SIGQUIT" 0 "$?"
	pid=
}

base() { echo "http://127.0.0.1:$port"; }

# codes N CURL_ARGS... URL: N requests on one connection, their statuses
# space-separated.
codes() {
	local n=$1 i urls=()
	shift
	local url=${*: -1}
	for ((i = 0; i < n; i++)); do urls+=(-o /dev/null "$url"); done
	curl -s -m 30 -w '%{http_code} ' "${@:1:$#-1}" "${urls[@]}" | sed 's/ $//'
}

# status_of FILE / header_of FILE NAME: from a curl -D dump.
status_of() { sed -n '1s/^HTTP\/[0-9.]* \([0-9]*\).*/\1/p' "$1"; }
header_of() { grep -i "^$2:" "$1" | head -n 1 | sed 's/^[^:]*: *//; s/\r$//'; }
