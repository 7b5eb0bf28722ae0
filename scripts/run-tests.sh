#!/usr/bin/env bash
# run-tests.sh BUILD -- run every test binary in BUILD/tests, then every tests/py/test_*.py
# (parity against the Python references, with /usr/bin/python3 and DDPM_BUILD=BUILD), then
# every tests/test_*.sh (the fuzz smoke test), from the repository root; print a summary,
# exit non-zero if any failed.
#
# A test that cannot run here (mpirun missing, a build without MPI) exits with status 77,
# the automake convention, and is counted as skipped, not passed. With DDPM_NO_SKIP=1 (what
# `make test` sets, so that CI cannot pass without running everything) a skip is a failure.
set -u
# Threads sleep rather than spin while waiting: a busy machine must not slow the tests 50x.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
build=${1:-build}
# The convolution algorithms every test process chooses by measurement (src/ops/conv_choice.c)
# go to a cache of this run's own: not the user's, and the same for all the suite's processes.
export XDG_CACHE_HOME
XDG_CACHE_HOME=$(mktemp -d "${TMPDIR:-/tmp}/ddpm-tests-cache.XXXXXX") || exit 1
trap 'rm -rf "$XDG_CACHE_HOME"' EXIT
no_skip=${DDPM_NO_SKIP:-0}
pass=0; fail=0; skip=0; failed=(); skipped=()
export DDPM_BUILD=$build
for t in "$build"/tests/test_* tests/py/test_*.py tests/test_*.sh; do
    [ -f "$t" ] || continue
    case "$t" in
        *.log) continue ;;
        *.py) run=(/usr/bin/python3 "$t") ;;
        *.sh) run=(bash "$t") ;;
        *) [ -x "$t" ] || continue; run=("$t") ;;
    esac
    name=$(basename "$t")
    start=$(date +%s%N)
    "${run[@]}" > "$build/tests/$name.log" 2>&1
    rc=$?
    if [ "$rc" -eq 0 ]; then
        pass=$((pass + 1)); status=PASS
    elif [ "$rc" -eq 77 ] && [ "$no_skip" != 1 ]; then
        skip=$((skip + 1)); skipped+=("$name"); status=SKIP
        grep -i "skip" "$build/tests/$name.log" | head -n 3
    else
        fail=$((fail + 1)); failed+=("$name"); status=FAIL
        [ "$rc" -eq 77 ] && status="FAIL (skipped, and DDPM_NO_SKIP=1)"
        cat "$build/tests/$name.log"
    fi
    printf "%-28s %s (%d ms)\n" "$name" "$status" $(( ($(date +%s%N) - start) / 1000000 ))
done
echo "tests: $pass passed, $fail failed${failed:+ (${failed[*]})}, $skip skipped${skipped:+ (${skipped[*]})}"
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]
