#!/usr/bin/env bash
# test_fuzz.sh -- the fuzz smoke test (scripts/run-tests.sh runs it with the others, in
# `make test` and `make test SAN=1` alike): builds the libFuzzer harnesses of fuzz/ (make
# fuzz-build: clang-14, ASan+UBSan, build-fuzz/) and runs each for FUZZ_SMOKE_S seconds
# (default 10; about 90 s in all) from its committed seeds, in a fresh scratch corpus
# under DDPM_BUILD/tests/fuzz. Fails if the build fails or any harness finds a crash,
# leak, hang or sanitizer error; the input that did it is left there and its path printed.
set -u
cd "$(dirname "$0")/.."
secs=${FUZZ_SMOKE_S:-10}
out=${DDPM_BUILD:-build}/tests/fuzz
command -v clang-14 > /dev/null || { echo "test_fuzz: clang-14 is missing (scripts/install-deps.sh --test)"; exit 1; }
# A make of its own (not a sub-make of `make test`): no inherited flags or jobserver.
env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make --no-print-directory -j2 fuzz-build || exit 1
rm -rf "$out"
scripts/fuzz.sh -t "$secs" -o "$out"
