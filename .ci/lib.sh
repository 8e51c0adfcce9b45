# shellcheck shell=bash
# .ci/lib.sh - helpers shared by .ci/test, .ci/bench and .ci/run (sourced).

SLUICE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SLUICE_JOBS=${SLUICE_JOBS:-$(nproc 2>/dev/null || echo 2)}
export DEBIAN_FRONTEND=noninteractive

# Install missing packages (skipped when SLUICE_CI_NO_DEPS=1).
ci_deps() {
	if [ "${SLUICE_CI_NO_DEPS:-0}" = 1 ]; then
		return 0
	fi
	bash "$SLUICE_ROOT/.ci/deps" "$@"
}

# The clang driver: `clang` (Debian's clang package), else clang-14.
ci_clang() {
	local c
	for c in clang clang-14; do
		if command -v "$c" >/dev/null 2>&1; then
			echo "$c"
			return 0
		fi
	done
	echo "no clang found: apt-get install -y clang libclang-rt-14-dev" >&2
	return 1
}

ci_clangxx() {
	local c
	for c in clang++ clang++-14; do
		if command -v "$c" >/dev/null 2>&1; then
			echo "$c"
			return 0
		fi
	done
	echo "no clang++ found: apt-get install -y clang" >&2
	return 1
}

# ci_configure DIR ARGS...: configure build directory DIR (relative to the
# repository root) with Ninja.
ci_configure() {
	local dir=$1
	shift
	cmake -S "$SLUICE_ROOT" -B "$SLUICE_ROOT/$dir" -G Ninja "$@"
}

# ci_build DIR [ARGS...]
ci_build() {
	local dir=$1
	shift
	cmake --build "$SLUICE_ROOT/$dir" -j "$SLUICE_JOBS" "$@"
}

# ci_ctest DIR [ARGS...]: the whole suite of DIR; its summary is the last
# thing printed; fails on any failure and on an empty suite.
ci_ctest() {
	local dir=$1
	shift
	ctest --test-dir "$SLUICE_ROOT/$dir" --output-on-failure -j "$SLUICE_JOBS" \
		--no-tests=error --timeout "${SLUICE_TEST_TIMEOUT:-600}" "$@"
}

# A prefix for running sanitizer binaries. The sanitizer runtimes of gcc 12 and
# clang 14 assume at most 28 bits of mmap randomization; kernels configured with
# more (vm.mmap_rnd_bits=32) make them fail at start-up, so disable ASLR there.
ci_san_prefix() {
	local bits
	bits=$(cat /proc/sys/vm/mmap_rnd_bits 2>/dev/null || echo 28)
	if [ "$bits" -gt 28 ] && command -v setarch >/dev/null 2>&1; then
		echo "setarch $(uname -m) -R"
	fi
}
