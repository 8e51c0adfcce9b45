#!/usr/bin/env bash
# docs/examples/run_redis.sh PROGRAM WITH_REDIS - run the Redis store example
# against its own redis-server: a free loopback port, no persistence, killed
# on exit. WITH_REDIS=OFF (libsluice built without hiredis): run PROGRAM
# alone; it exits 77 (skipped, for ctest). With hiredis, redis-server missing
# is a failure, as for the Redis tests (.ci/deps test installs it).
# SLUICE_EXAMPLE_EMULATOR (cross builds): a command that runs PROGRAM.
set -u
prog=${1:?usage: run_redis.sh PROGRAM WITH_REDIS}
with_redis=${2:?usage: run_redis.sh PROGRAM WITH_REDIS}
# shellcheck disable=SC2086 # the emulator may be a command with arguments
if [ "$with_redis" != ON ]; then
	exec ${SLUICE_EXAMPLE_EMULATOR:-} "$prog"
fi
if ! command -v redis-server >/dev/null 2>&1; then
	echo "run_redis: redis-server not found (apt-get install -y redis-server)" >&2
	exit 1
fi

pid=
cleanup() {
	if [ -n "$pid" ]; then
		kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# answers PORT: something accepts connections on 127.0.0.1:PORT.
answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A port nobody listens on; the server may still lose it to another process
# before it binds: then it exits, and the next attempt takes another port.
for _ in $(seq 1 20); do
	port=$((20000 + RANDOM % 40000))
	answers "$port" && continue
	redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no >/dev/null 2>&1 &
	pid=$!
	for _ in $(seq 1 250); do
		kill -0 "$pid" 2>/dev/null || break
		answers "$port" && break
		sleep 0.02
	done
	if kill -0 "$pid" 2>/dev/null && answers "$port"; then
		# shellcheck disable=SC2086
		${SLUICE_EXAMPLE_EMULATOR:-} "$prog" "$port"
		exit $?
	fi
	cleanup
	pid=
done
echo "run_redis: redis-server did not start" >&2
exit 1
