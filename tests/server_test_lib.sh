# shellcheck shell=bash
# tests/server_test_lib.sh - what the server integration scripts share
# (test_server.sh, test_server_state.sh, test_server_admin.sh,
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
