#!/bin/sh
# Every atomic operation in src/ and include/ carries, on its own line, a
# comment naming its memory order and why it suffices (docs/conventions.md, "Atomics").
# Multi-line calls count by the line holding the call. Prints the offenders.
root=${1:-$(dirname "$0")/..}
bad=$(grep -rnE 'atomic_(load|store|exchange|compare_exchange_(weak|strong)|fetch_[a-z]+|thread_fence|signal_fence)(_explicit)?\(' \
	"$root/src" "$root/include" | grep -v '/\*' | grep -v '//')
if [ -n "$bad" ]; then
	echo "atomic operations without a same-line comment naming the order:"
	echo "$bad"
	echo "0 passed, 1 failed"
	exit 1
fi
# No implicit seq_cst forms either: every call names its order.
bad=$(grep -rnE '\batomic_(load|store|exchange|compare_exchange_(weak|strong)|fetch_[a-z]+)\(' "$root/src" "$root/include")
if [ -n "$bad" ]; then
	echo "atomic operations without _explicit:"
	echo "$bad"
	echo "0 passed, 1 failed"
	exit 1
fi
echo "1 passed, 0 failed"
