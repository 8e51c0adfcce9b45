#!/usr/bin/env bash
# Bundle a Release sluice_bench with every shared library it loads (and the
# dynamic loader itself) into one folder, so it runs unchanged on another
# x86-64 Linux machine that has none of the dependencies installed (used for
# the multi-core scaling runs recorded in docs/benchmarks.md).
#   bench/bundle.sh [OUTDIR]   (default .devcarry/bench)
# On the target:  OUTDIR/run [benchmark args...]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-.devcarry/bench}
cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release -DSLUICE_BUILD_TESTS=OFF >/dev/null
cmake --build build-release --target sluice_bench >/dev/null
rm -rf "$out" && mkdir -p "$out/lib"
cp build-release/bench/sluice_bench "$out/"
ldd build-release/bench/sluice_bench | awk '/=> \//{print $3} $1 ~ /ld-linux/{print $1}' |
	while read -r lib; do cp -L "$lib" "$out/lib/"; done
loader=$(basename "$(ldd build-release/bench/sluice_bench | awk '/ld-linux/{print $1}')")
cat > "$out/run" <<RUN
#!/bin/sh
here=\$(cd "\$(dirname "\$0")" && pwd)
exec "\$here/lib/$loader" --library-path "\$here/lib" "\$here/sluice_bench" "\$@"
RUN
chmod +x "$out/run"
du -sh "$out"
