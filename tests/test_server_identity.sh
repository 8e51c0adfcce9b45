#!/usr/bin/env bash
# tests/test_server_identity.sh SERVER_BINARY - sluice-server reads each
# scope's identity as the policy declares it and applies the policy's rule
# for a request without one (docs/policy.md "Identities"): a missing
# required identity is answered with the policy's "answer identity"; a
# fallback scope is keyed by the other scope's identity apart from real
# identities; an X-Forwarded-For from a peer that is not a trusted proxy
# does not change the key, one from a trusted proxy does; cookie and query
# sources; a workspace and a tier from map files; an identity given twice,
# differently, is 400. Exits 77 (skipped)
# without curl. Prints "N passed, N failed".
set -u
server=${1:?usage: test_server_identity.sh SERVER_BINARY}
if ! command -v curl >/dev/null 2>&1; then
	echo "test_server_identity: curl not found; skipped"
	exit 77
fi
# shellcheck source=tests/server_test_lib.sh
. "$(dirname "$0")/server_test_lib.sh"

start_server() { # start_server POLICY_FILE [ARGS...]: sets $port
	: >"$tmp/out"
	# shellcheck disable=SC2086 # the emulator may be a command with arguments
	${SLUICE_SERVER_EMULATOR:-} "$server" --listen 127.0.0.1:0 --admin 127.0.0.1:0 --frozen-clock --policy "$@" \
		>"$tmp/out" 2>"$tmp/err" &
	pid=$!
	port=
	for _ in $(seq 1 100); do
		port=$(sed -n 's/^sluice-server: listening on 127\.0\.0\.1:\([0-9]*\),.*/\1/p' "$tmp/out")
		admin_port=$(sed -n 's/^sluice-server: admin on 127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$tmp/out")
		[ -n "$port" ] && [ -n "$admin_port" ] && return 0
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
	echo "test_server_identity: the server did not start:"; cat "$tmp/err"
	exit 1
}
stop_server() {
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	pid=
}
code() { curl -sS -m 5 -o "$tmp/body" -w '%{http_code}' "$@"; }

# 1. required token, workspace falling back to the token, a key from a
# cookie or the query, ip through trusted proxies.
cat >"$tmp/a.policy" <<'POLICY'
policy "identity"
trusted-proxies 10.0.0.0/8
answer identity status 401 type "application/json" body "{{\"error\":\"missing {scope}\"}}"
scope token      from authorization Bearer required
scope workspace  from header X-Workspace fallback token
limit token_minute  per token      sliding 3/1m
limit ws_minute     per workspace  sliding 2/1m
POLICY
start_server "$tmp/a.policy"
expect "no token: status" 401 "$(code "http://127.0.0.1:$port/x")"
expect "no token: the policy's body" '{"error":"missing token"}' "$(cat "$tmp/body")"
expect "other scheme: refused" 401 "$(code -H 'Authorization: Basic abc' "http://127.0.0.1:$port/x")"
expect "empty bearer: refused" 401 "$(code -H 'Authorization: Bearer  ' "http://127.0.0.1:$port/x")"
# Without a workspace, t1's workspace limit (2/min) is kept per token.
expect "t1 #1" 200 "$(code -H 'Authorization: bearer t1' "http://127.0.0.1:$port/x")"
expect "t1 #2" 200 "$(code -H 'Authorization: Bearer t1' "http://127.0.0.1:$port/x")"
expect "t1 #3: the fallback workspace limit" 429 "$(code -H 'Authorization: Bearer t1' "http://127.0.0.1:$port/x")"
# A real workspace named "t1" is another key than t1's fallback.
expect "workspace t1, token t2" 200 "$(code -H 'Authorization: Bearer t2' -H 'X-Workspace: t1' "http://127.0.0.1:$port/x")"
expect "ambiguous token: 400" 400 "$(code -H 'Authorization: Bearer a' -H 'Authorization: Bearer b' "http://127.0.0.1:$port/x")"
expect "identity refusals on /metrics" "sluice_identity_refused_total 3" \
	"$(curl -sS -m 5 "http://127.0.0.1:$admin_port/metrics" | grep '^sluice_identity_refused_total')"
stop_server

# 2. ip from forwarded-for: a client's own X-Forwarded-For from an untrusted
# peer (127.0.0.1 is not in trusted-proxies) does not change the key.
cat >"$tmp/b.policy" <<'POLICY'
policy "ip"
trusted-proxies 10.0.0.0/8
scope ip from forwarded-for
limit ip_minute per ip sliding 2/1m
POLICY
start_server "$tmp/b.policy"
expect "ip #1" 200 "$(code -H 'X-Forwarded-For: 192.0.2.1' "http://127.0.0.1:$port/x")"
expect "ip #2 (spoofed XFF)" 200 "$(code -H 'X-Forwarded-For: 192.0.2.2' "http://127.0.0.1:$port/x")"
expect "ip #3: same peer key" 429 "$(code -H 'X-Forwarded-For: 192.0.2.3' "http://127.0.0.1:$port/x")"
stop_server
# Trusted (127.0.0.1 as a proxy): the rightmost untrusted entry is the key.
sed 's|^trusted-proxies .*|trusted-proxies 10.0.0.0/8 127.0.0.1|' "$tmp/b.policy" >"$tmp/c.policy"
start_server "$tmp/c.policy"
expect "client A #1" 200 "$(code -H 'X-Forwarded-For: 6.6.6.6, 192.0.2.1, 10.1.2.3' "http://127.0.0.1:$port/x")"
expect "client A #2" 200 "$(code -H 'X-Forwarded-For: 7.7.7.7, 192.0.2.1' "http://127.0.0.1:$port/x")"
expect "client A #3: left entries ignored" 429 "$(code -H 'X-Forwarded-For: 192.0.2.1' "http://127.0.0.1:$port/x")"
expect "client B: its own key" 200 "$(code -H 'X-Forwarded-For: 192.0.2.9' "http://127.0.0.1:$port/x")"
stop_server

# The server's own trusted proxies, for a scope "ip" with no declared
# source (--trust-forwarded-for --trusted-proxies).
printf 'policy "d"\nscope ip\nlimit ip_minute per ip sliding 1/1m\n' >"$tmp/f.policy"
start_server "$tmp/f.policy" --trust-forwarded-for --trusted-proxies 10.0.0.0/8,127.0.0.0/8
expect "trusted by flag: client C" 200 "$(code -H 'X-Forwarded-For: 192.0.2.20' "http://127.0.0.1:$port/x")"
expect "trusted by flag: client D" 200 "$(code -H 'X-Forwarded-For: 192.0.2.21' "http://127.0.0.1:$port/x")"
expect "trusted by flag: client C again" 429 "$(code -H 'X-Forwarded-For: 192.0.2.20' "http://127.0.0.1:$port/x")"
stop_server
start_server "$tmp/f.policy" --trust-forwarded-for
expect "no trusted proxy: the peer, #1" 200 "$(code -H 'X-Forwarded-For: 192.0.2.30' "http://127.0.0.1:$port/x")"
expect "no trusted proxy: the peer, #2" 429 "$(code -H 'X-Forwarded-For: 192.0.2.31' "http://127.0.0.1:$port/x")"
stop_server

# 3. cookie and query sources.
cat >"$tmp/d.policy" <<'POLICY'
policy "sources"
scope session from cookie sid optional
scope key from query api_key optional
limit per_session per session sliding 1/1m
limit per_key per key sliding 1/1m
POLICY
start_server "$tmp/d.policy"
expect "cookie #1" 200 "$(code -H 'Cookie: a=1; sid="s1"; b=2' "http://127.0.0.1:$port/x")"
expect "cookie #2, unquoted" 429 "$(code -H 'Cookie: sid=s1' "http://127.0.0.1:$port/x")"
expect "query #1" 200 "$(code "http://127.0.0.1:$port/x?api_key=k%201")"
expect "query #2, name and value re-spelled" 429 "$(code "http://127.0.0.1:$port/x?x=1&api%5Fkey=k+1")"
expect "optional: no identity, no limit" 200 "$(code "http://127.0.0.1:$port/x")"
stop_server

# 4. a workspace and a tier derived from the token through map files read
# beside the policy: every token of a workspace shares its budget; the
# tier scales a tiered limit.
cat >"$tmp/tokens.map" <<'MAP'
# token workspace
tok_a ws_1
tok_b ws_1
tok_c ws_2
MAP
printf 'tok_c pro\n' >"$tmp/plans.map"
cat >"$tmp/e.policy" <<'POLICY'
policy "maps"
scope token required
scope workspace from map "tokens.map" key token fallback token
tier from map "plans.map" key token
tier pro x2
limit ws_minute per workspace sliding 2/1m tiered
POLICY
start_server "$tmp/e.policy"
expect "ws_1 via tok_a" 200 "$(code -H 'Authorization: Bearer tok_a' "http://127.0.0.1:$port/x")"
expect "ws_1 via tok_b" 200 "$(code -H 'Authorization: Bearer tok_b' "http://127.0.0.1:$port/x")"
expect "ws_1 spent, whichever token" 429 "$(code -H 'Authorization: Bearer tok_a' "http://127.0.0.1:$port/x")"
expect "ws_1 spent, a client's X-Workspace changes nothing" 429 \
	"$(code -H 'Authorization: Bearer tok_b' -H 'X-Workspace: ws_9' "http://127.0.0.1:$port/x")"
for i in 1 2 3 4; do
	expect "tok_c (tier pro: 4) #$i" 200 "$(code -H 'Authorization: Bearer tok_c' "http://127.0.0.1:$port/x")"
done
expect "tok_c #5" 429 "$(code -H 'Authorization: Bearer tok_c' "http://127.0.0.1:$port/x")"
stop_server

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
