# shellcheck shell=bash
# tests/server_test_lib.sh - what the server integration scripts share
# (test_server.sh, test_server_state.sh, test_server_admin.sh, test_server_custom.sh, test_server_identity.sh,
# test_client_curl.sh), sourced after their argument checks: a scratch
# directory $tmp, the server's $pid (killed and reaped at exit), the
# pass/fail tallies and the checks that count them.

tmp=$(mktemp -d)
pid=
passed=0
failed=0
cleanup() {
	if [ -n "$pid" ]; then
		kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL: $*"; }
expect() { # expect WHAT EXPECTED ACTUAL
	if [ "$2" = "$3" ]; then ok; else bad "$1: expected '$2', got '$3'"; fi
}

# wait_admin_server NAME: wait (up to 5 s) for a server started with --admin
# (its stdout in $tmp/out, stderr in $tmp/err, PID in $pid) to print both
# listeners; sets $port, $admin_port, $traffic and $admin, or exits 1.
wait_admin_server() {
	port=
	admin_port=
	for _ in $(seq 1 100); do
		port=$(sed -n 's/^sluice-server: listening on 127\.0\.0\.1:\([0-9]*\),.*/\1/p' "$tmp/out")
		admin_port=$(sed -n 's/^sluice-server: admin on 127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$tmp/out")
		[ -n "$port" ] && [ -n "$admin_port" ] && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
	if [ -z "$port" ] || [ -z "$admin_port" ]; then
		echo "$1: the server did not start:"
		cat "$tmp/err"
		exit 1
	fi
	traffic="http://127.0.0.1:$port"
	admin="http://127.0.0.1:$admin_port"
}
