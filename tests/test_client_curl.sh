#!/usr/bin/env bash
# tests/test_client_curl.sh SERVER_BINARY CLIENT_BINARY - the libcurl client
# example (docs/examples/curl_paced_client.c) against a live sluice-server:
# starts the server on 127.0.0.1 with a port the kernel picks (port 0, read
# back from its "listening" line), under a policy of 5 requests per
# calendar second per token with X-RateLimit-* fields (reset in Unix ms)
# and Retry-After; runs the client (a burst, then 3 threads paced for 4 s);
# checks its verdict and that the server's own count of refusals is the
# burst's only; stops the server by its PID. Prints "N passed, N failed".
set -u
server=${1:?usage: test_client_curl.sh SERVER_BINARY CLIENT_BINARY}
client=${2:?usage: test_client_curl.sh SERVER_BINARY CLIENT_BINARY}

# shellcheck source=tests/server_test_lib.sh
. "$(dirname "$0")/server_test_lib.sh"

cat >"$tmp/paced.policy" <<'POLICY'
policy "paced"
headers x-ratelimit reset=unix-ms retry-after=yes
scope token
limit per_token per token quota 5/1s@utc
POLICY

"$server" --listen 127.0.0.1:0 --policy "$tmp/paced.policy" --threads 1 >"$tmp/out" 2>"$tmp/err" &
pid=$!
port=
for _ in $(seq 1 100); do
	port=$(sed -n 's/^sluice-server: listening on 127\.0\.0\.1:\([0-9]*\),.*/\1/p' "$tmp/out")
	[ -n "$port" ] && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.05
done
if [ -z "$port" ]; then
	echo "test_client_curl: the server did not start:"; cat "$tmp/err"
	exit 1
fi

timeout 40 "$client" "http://127.0.0.1:$port/v1/items" tok_paced 5 3 4 >"$tmp/client" 2>&1
rc=$?
cat "$tmp/client"
if [ "$rc" -eq 0 ]; then ok; else bad "client exit status $rc"; fi
if grep -q '^ok$' "$tmp/client"; then ok; else bad "client verdict"; fi

kill -TERM "$pid"
wait "$pid"
src=$?
pid=
if [ "$src" -eq 0 ]; then ok; else bad "server exit status $src"; fi
# The server's count: only the burst's refusals (2 or 3: the burst may
# straddle a window), none while paced.
limited=$(tail -n 1 "$tmp/err" | sed -n 's/.*limited=\([0-9]*\).*/\1/p')
refused=$(sed -n 's/^unpaced: .* \([0-9]*\) refused with .*/\1/p' "$tmp/client")
if [ -n "$limited" ] && [ "$limited" = "$refused" ]; then ok; else
	bad "server counted limited='$limited', the client's burst saw '$refused'"; tail -n 1 "$tmp/err"; fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
