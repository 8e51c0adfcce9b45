#!/bin/sh
# Proves that tests/lint_layers.sh fails on each kind of violation: a tiny
# tree with src/layers.txt from the repository passes, then one offence at a
# time is introduced and the lint must fail on it.
here=$(cd "$(dirname "$0")" && pwd)
root=${1:-$here/..}
lint=$here/lint_layers.sh
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0

fresh() { # a clean tree: one file per layer folder, includes that follow the table
	rm -rf "$tmp/t"
	mkdir -p "$tmp/t/include/sluice" "$tmp/t/src"
	cp "$root/src/layers.txt" "$tmp/t/src/layers.txt"
	for d in $(sed -n 's/^\([a-z][a-z0-9_]*\)[[:space:]].*/\1/p' "$root/src/layers.txt"); do
		mkdir -p "$tmp/t/src/$d"
	done
	printf '#include <stdint.h>\n' >"$tmp/t/include/sluice/common.h"
	printf '#include "common.h"\n' >"$tmp/t/include/sluice/gcra.h"
	printf '#include "common.h"\n' >"$tmp/t/include/sluice/limiter.h"
	printf '#include <sluice/common.h>\n' >"$tmp/t/src/common/util_internal.h"
	printf '#include <sluice/gcra.h>\n#include "common/util_internal.h"\n' >"$tmp/t/src/cells/gcra.c"
	printf '#include "cells/gcra_internal.h"\n' >"$tmp/t/src/cells/a_internal.h"
	printf '#include <sluice/gcra.h>\n' >"$tmp/t/src/cells/gcra_internal.h"
	printf '#include <sluice/limiter.h>\n#include "cells/gcra_internal.h"\n' >"$tmp/t/src/limiter/limiter.c"
	printf '#include <sluice/limiter.h>\n' >"$tmp/t/src/server/main.c"
}

expect() { # expect pass|fail WHAT
	if sh "$lint" "$tmp/t" >"$tmp/out" 2>&1; then got=pass; else got=fail; fi
	if [ "$got" = "$1" ]; then
		passed=$((passed + 1))
		echo "ok: $2 ($1)"
	else
		failed=$((failed + 1))
		echo "FAILED: $2: expected $1, got $got"
		cat "$tmp/out"
	fi
}

fresh
expect pass "a tree that follows the table"

fresh
printf '#include "limiter/limiter_internal.h"\n' >>"$tmp/t/src/cells/gcra.c"
expect fail "a cell includes a private header of the limiter (upward)"

fresh
printf '#include <sluice/limiter.h>\n' >>"$tmp/t/src/cells/gcra.c"
expect fail "a cell includes the limiter's public header (upward)"

fresh
printf '#include "limiter.h"\n' >>"$tmp/t/include/sluice/gcra.h"
expect fail "a cells public header includes the limiter's header"

fresh
printf '#include "cells/a_internal.h"\n' >>"$tmp/t/src/cells/gcra_internal.h"
expect fail "two headers of one layer include each other (cycle)"

fresh
printf '#include "limiter/x_internal.h"\n' >>"$tmp/t/src/server/main.c"
expect fail "a program includes a private header"

fresh
mkdir -p "$tmp/t/src/nowhere"
expect fail "a folder of src/ that is not a layer"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
