#!/usr/bin/env bash
# fuzz.sh [-b BUILD] [-t SECONDS] [-o OUT] [NAME...] -- run the libFuzzer harnesses
# BUILD/fuzz_NAME (default build-fuzz; every fuzz/fuzz_*.c when no NAME is given), one
# after another, each for SECONDS (default 60). Each runs over OUT/corpus/NAME (default
# OUT: runs/fuzz), which it grows, and reads the committed seeds fuzz/corpus/NAME
# without changing them; fuzz/NAME.dict is used when present. Logs go to OUT/NAME.log,
# crash inputs to OUT/NAME-crash-* (also -leak-, -timeout-, -oom-). Prints each
# harness's executions and exec/s and the total; exits 1 if any harness failed,
# printing the input that made it fail and how to replay it.
set -u
cd "$(dirname "$0")/.."
build=build-fuzz secs=60 out=runs/fuzz
while getopts b:t:o: opt; do
    case $opt in
        b) build=$OPTARG ;;
        t) secs=$OPTARG ;;
        o) out=$OPTARG ;;
        *) echo "usage: $0 [-b BUILD] [-t SECONDS] [-o OUT] [NAME...]" >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
    for f in fuzz/fuzz_*.c; do n=${f#fuzz/fuzz_}; names+=("${n%.c}"); done
fi

# Scratch directories of harnesses that died without cleaning up (crash, timeout, kill).
reap() {
    for d in /dev/shm/ddpm-fuzz-*-* /tmp/ddpm-fuzz-*-*; do
        [ -d "$d" ] || continue
        pid=${d##*-}
        case $pid in *[!0-9]*) continue ;; esac
        kill -0 "$pid" 2>/dev/null || rm -rf "$d"
    done
}

mkdir -p "$out"
total=0 failed=()
for n in "${names[@]}"; do
    bin=$build/fuzz_$n
    if [ ! -x "$bin" ]; then
        echo "fuzz $n: $bin is missing (make fuzz-build)"
        failed+=("$n")
        continue
    fi
    mkdir -p "$out/corpus/$n"
    dict=()
    [ -f "fuzz/$n.dict" ] && dict=("-dict=fuzz/$n.dict")
    # -rss_limit_mb: the loaders may allocate up to 2 GiB for an image set by design.
    "$bin" -max_total_time="$secs" -print_final_stats=1 -timeout=30 -rss_limit_mb=4096 \
        -artifact_prefix="$out/$n-" "${dict[@]}" "$out/corpus/$n" "fuzz/corpus/$n" > "$out/$n.log" 2>&1
    rc=$?
    reap
    runs=$(sed -n 's/^stat::number_of_executed_runs: *//p' "$out/$n.log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$out/$n.log" | tail -1)
    # a failed run prints no final stats: its last status line "#N ..." counts the runs
    [ -n "$runs" ] || runs=$(sed -n 's/^#\([0-9]*\)[[:space:]].*/\1/p' "$out/$n.log" | tail -1)
    runs=${runs:-0}
    total=$((total + runs))
    if [ $rc -eq 0 ]; then
        printf "fuzz %-12s %4s s %11d runs %8s exec/s  ok\n" "$n" "$secs" "$runs" "${rate:-?}"
    else
        failed+=("$n")
        printf "fuzz %-12s %4s s %11d runs %8s exec/s  FAILED (exit %d)\n" "$n" "$secs" "$runs" "${rate:-?}" $rc
        grep -E "^==[0-9]+== ?ERROR|^SUMMARY|runtime error|fuzz harness|ddpm: internal error" "$out/$n.log" | head -5 | sed 's/^/    /'
        art=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$out/$n.log" | tail -1)
        if [ -n "$art" ]; then
            echo "    input: $art (replay: $bin $art)"
        else
            echo "    no input saved; log: $out/$n.log"
        fi
    fi
done
echo "fuzz: $total runs in all (${#names[@]} harnesses, $secs s each), ${#failed[@]} failed${failed:+ (${failed[*]})}; logs in $out"
[ ${#failed[@]} -eq 0 ]
