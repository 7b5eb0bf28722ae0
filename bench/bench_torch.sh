#!/bin/sh
# bench_torch.sh -- ddpm against the PyTorch reference (tools/ref_unet.py, Debian python3-torch), same model,
# same batch, on this machine: `make bench-torch` runs it.
#
#   bench/bench_torch.sh [BUILD=build]
#
# For each (preset, batch, mode) it runs build/bench/bench_train (ddpm) and then bench/bench_torch.py
# (PyTorch), each in its own process (so peak RSS is per configuration), and prints a table of the
# median img/s of a full training step (train) and of one sampling step (sample: forward only), the ratio
# ddpm/torch, GFLOP/s (forward F per image from unet_forward_flops, a training step 3F) and peak RSS.
# The raw JSON lines go to BUILD/bench/bench_torch.jsonl.
#
# Environment:
#   BENCH_QUICK=1      fmnist-small only, few steps (a smoke test)
#   BENCH_THREADS=N    threads for both (default: every CPU this process may use)
#   BENCH_WAIT_S=S     before each measurement, wait while a `ddpm train` / `ddpm sample` runs or other processes
#                      keep more than BENCH_BUSY_PCT (default 20) percent of the CPUs busy, polling every 30 s,
#                      at most S seconds (default 1500), so timings are not disturbed; then go on anyway
#   BENCH_BF16=0|1     bf16 rows: ddpm --precision bf16 and PyTorch's bf16 autocast (default: 1 where the CPU
#                      has AVX512_BF16 or AMX-BF16; on a CPU without them ddpm's rows say it cannot run)
#   BENCH_TORCH_BLAS, BENCH_NO_TCMALLOC: see bench/bench_torch.py
set -eu

BUILD=${1:-build}
BT=$BUILD/bench/bench_train
PY=/usr/bin/python3
THREADS=${BENCH_THREADS:-0}
WAIT_S=${BENCH_WAIT_S:-1500}
OUT=$BUILD/bench/bench_torch.jsonl

[ -x "$BT" ] || { echo "bench_torch: $BT is missing (make $BT)" >&2; exit 1; }
if ! $PY -c "import torch" 2>/dev/null; then
    echo "bench_torch: $PY cannot import torch: apt-get install python3-torch" >&2
    exit 1
fi

# preset batch mode steps warmup probe: probe = timed steps of the quick run of each torch memory format
# (contiguous, channels_last) before the measurement, or "reuse": take the format picked earlier in this run
# for the same preset and mode (cifar10 at B=64 reuses B=32's choice: its probes would cost minutes).
if [ "${BENCH_QUICK:-0}" = 1 ]; then
    CONFIGS="fmnist-small 64 train 3 1 1
fmnist-small 64 sample 5 1 1"
else
    CONFIGS="fmnist-small 64 train 10 2 2
fmnist-small 64 sample 20 2 3
fmnist 64 train 5 2 2
fmnist 64 sample 10 2 2
cifar10 32 train 3 1 1
cifar10 32 sample 5 1 1
cifar10 64 train 3 1 reuse
cifar10 64 sample 3 1 reuse"
fi

# Percent of the CPU time busy over one second (every CPU, every process; nothing of ours runs meanwhile).
cpu_busy() {
    a=$(awk '/^cpu / {print $2+$3+$4+$7+$8, $5+$6; exit}' /proc/stat)
    sleep 1
    b=$(awk '/^cpu / {print $2+$3+$4+$7+$8, $5+$6; exit}' /proc/stat)
    echo "$a $b" | awk '{ busy = $3 - $1; idle = $4 - $2; print (busy + idle > 0) ? int(100 * busy / (busy + idle)) : 0 }'
}

# Waits while a ddpm train/sample runs or the machine is otherwise busy (> BENCH_BUSY_PCT, default 20, percent
# of all CPUs busy: a test run, a build), polling every 30 s, at most WAIT_S seconds per measurement.
wait_idle() {
    w=0
    while :; do
        # the pattern cannot match this script's own command line
        if pgrep -f 'ddpm (train|sample)' >/dev/null; then
            why="a ddpm train/sample is running"
        elif b=$(cpu_busy) && [ "$b" -gt "${BENCH_BUSY_PCT:-20}" ]; then
            why="the CPUs are busy (${b}% used by other processes)"
        else
            return 0
        fi
        if [ "$w" -ge "$WAIT_S" ]; then
            echo "bench_torch: after ${WAIT_S}s $why; measuring anyway (timings disturbed)" >&2
            return 0
        fi
        echo "bench_torch: $why; waiting (polling every 30 s, at most ${WAIT_S}s)..." >&2
        sleep 30
        w=$((w + 30))
    done
}

ncpu=$(nproc)
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
tver=$($PY -c "import torch; print(torch.__version__)")
if [ "$THREADS" = 0 ]; then th="all ($ncpu)"; else th=$THREADS; fi
echo "machine: $cpu, $ncpu CPUs usable (affinity), $(grep -c ^processor /proc/cpuinfo) online," \
     "$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
# The instruction sets that decide the kernels (bf16 and AMX ones included), and the family/model
# that tell Zen 3 from Zen 4 or Sapphire Rapids when the model name does not.
isa=$(grep -m 1 '^flags' /proc/cpuinfo | tr ' ' '\n' |
      grep -xE 'avx2|fma|avx512f|avx512bw|avx512vl|avx512_vnni|avx512_bf16|avx_vnni|amx_tile|amx_bf16|amx_int8' |
      tr '\n' ' ')
echo "cpu: family $(sed -n 's/^cpu family[[:space:]]*: //p' /proc/cpuinfo | head -n 1)," \
     "model $(sed -n 's/^model[[:space:]]*: //p' /proc/cpuinfo | head -n 1); isa: ${isa:-none of AVX2, AVX-512, AMX}"
kernels=$("$BT" fmnist-small 1 sample 1 1 0 2>/dev/null | sed -n 's/.*"kernels":"\([^"]*\)".*/\1/p')
echo "ddpm: $BT (oneDNN $(dpkg-query -W -f='${Version}' libdnnl2 2>/dev/null || echo '?'), OpenMP)," \
     "threads $th, ddpm's kernels: ${kernels:-?} (ONEDNN_MAX_CPU_ISA=${ONEDNN_MAX_CPU_ISA:-unset})"
echo "torch: $tver (Debian python3-torch, $PY), threads $th"
# bf16 rows (ddpm's --precision bf16 and PyTorch's torch.autocast bf16): where the CPU has bf16
# arithmetic (AVX512_BF16 or AMX-BF16), or with BENCH_BF16=1. Elsewhere ddpm refuses bf16 and PyTorch's
# autocast runs reference kernels, 15-35x slower than its fp32 (Zen 3, 2026-12-07): the rows would take hours.
case " $isa" in *" avx512_bf16 "*|*" amx_bf16 "*) BF16=${BENCH_BF16:-1} ;; *) BF16=${BENCH_BF16:-0} ;; esac
if [ "$BF16" = 1 ]; then
    echo "bf16: ddpm --precision bf16; PyTorch torch.autocast('cpu', dtype=torch.bfloat16) (GroupNorm in fp32, as PyTorch 2 does)"
else
    echo "bf16: no rows: this CPU has neither AVX512_BF16 nor AMX-BF16 (BENCH_BF16=1 measures PyTorch's autocast anyway)"
fi

: > "$OUT"
echo "$CONFIGS" | {
picked=" "  # "preset/mode=format " for each torch measurement done
while read -r preset batch mode steps warmup probe; do
    wait_idle
    echo "  $preset B=$batch $mode: ddpm ($warmup warm-up + $steps timed steps)..." >&2
    "$BT" "$preset" "$batch" "$mode" "$steps" "$THREADS" "$warmup" >> "$OUT" ||
        echo "bench_torch: ddpm $preset B=$batch $mode FAILED" >&2
    wait_idle
    fmt=auto
    if [ "$probe" = reuse ]; then
        fmt=$(echo "$picked" | tr ' ' '\n' | sed -n "s|^$preset/$mode=||p" | tail -n 1)
        [ -n "$fmt" ] || { fmt=auto; probe=1; }
    fi
    if [ "$fmt" = auto ]; then
        echo "  $preset B=$batch $mode: torch (variants probed, then $warmup + $steps steps)..." >&2
        $PY bench/bench_torch.py "$preset" "$batch" "$mode" "$steps" "$THREADS" "$warmup" \
            --probe-steps "$probe" >> "$OUT" || echo "bench_torch: torch $preset B=$batch $mode FAILED" >&2
    else
        echo "  $preset B=$batch $mode: torch ($fmt as picked before, $warmup + $steps steps)..." >&2
        $PY bench/bench_torch.py "$preset" "$batch" "$mode" "$steps" "$THREADS" "$warmup" --format "$fmt" >> "$OUT" ||
            echo "bench_torch: torch $preset B=$batch $mode FAILED" >&2
    fi
    fmt=$(tail -n 1 "$OUT" | sed -n 's/.*"impl":"torch".*"format":"\([a-z_]*\)".*/\1/p')
    picked="$picked$preset/$mode=$fmt "
    if [ "$BF16" = 1 ]; then
        wait_idle
        echo "  $preset B=$batch $mode: ddpm bf16 ($warmup warm-up + $steps timed steps)..." >&2
        "$BT" "$preset" "$batch" "$mode" "$steps" "$THREADS" "$warmup" bf16 >> "$OUT" ||
            echo "bench_torch: ddpm bf16 $preset B=$batch $mode did not run (above: why)" >&2
        wait_idle
        [ "$fmt" = jit ] && fmt=contiguous
        echo "  $preset B=$batch $mode: torch bf16 autocast (${fmt:-contiguous}, $warmup + $steps steps)..." >&2
        $PY bench/bench_torch.py "$preset" "$batch" "$mode" "$steps" "$THREADS" "$warmup" --format "${fmt:-contiguous}" \
            --precision bf16 >> "$OUT" || echo "bench_torch: torch bf16 $preset B=$batch $mode FAILED" >&2
    fi
done
}

$PY - "$OUT" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
torch_rows = [r for r in rows if r["impl"] == "torch"]
if torch_rows:
    t = torch_rows[0]
    print(f"torch setting: tcmalloc {'preloaded' if t['tcmalloc'] else 'NOT loaded'}, BLAS {t['blas']}, "
          "Adam(foreach) + clip_grad_norm_ + _foreach EMA; variant per row (fastest of quick probes)")
print("median img/s of a full training step (train) / one sampling step (sample); GFLOP/s: fwd F/img, train 3F/img")
print()
hdr = ["preset", "B", "mode", "ddpm img/s", "torch img/s", "ratio", "ddpm GFLOP/s", "torch GFLOP/s",
       "ddpm RSS MB", "torch RSS MB", "torch format", "steps"]
lines = []
key = lambda r: (r["preset"], r["batch"], r["mode"])
by = {}
for r in rows:
    by.setdefault(key(r), {})[r["impl"] + ("_bf16" if r.get("precision", "fp32") != "fp32" else "")] = r
for k, v in by.items():
    d, t = v.get("ddpm"), v.get("torch")
    if not d or not t:
        continue
    if d["nparams"] != t["nparams"]:
        print(f"warning: {k}: parameter counts differ ({d['nparams']} vs {t['nparams']})")
    probe = t.get("format_probe_img_s", {})
    fmt = t["format"] + (" (probe " + "/".join(f"{v:.1f}" for v in probe.values()) + ")"
                         if probe else " (as at the smaller B)")
    lines.append([k[0], str(k[1]), k[2], f"{d['img_s']:.1f}", f"{t['img_s']:.1f}", f"{d['img_s'] / t['img_s']:.2f}",
                  f"{d['gflops']:.1f}", f"{t['gflops']:.1f}", f"{d['peak_rss_mb']:.0f}", f"{t['peak_rss_mb']:.0f}",
                  fmt, f"{d['warmup']}+{d['steps']}"])
w = [max(len(h), *(len(l[i]) for l in lines)) if lines else len(h) for i, h in enumerate(hdr)]
print("| " + " | ".join(h.ljust(w[i]) for i, h in enumerate(hdr)) + " |")
print("|" + "|".join("-" * (x + 2) for x in w) + "|")
for l in lines:
    print("| " + " | ".join(c.ljust(w[i]) if i < 3 or i == 10 else c.rjust(w[i]) for i, c in enumerate(l)) + " |")
bf = [(k, v) for k, v in by.items() if "torch_bf16" in v]
if bf:
    print()
    print("bf16: ddpm --precision bf16 (oneDNN's bf16 convolutions); PyTorch torch.autocast('cpu', dtype=torch.bfloat16).")
    print("Targets (issue 21): ddpm bf16 >= 2.5x torch fp32 and >= 1.5x torch bf16.")
    print()
    print("| preset | B | mode | ddpm bf16 img/s | ddpm fp32 img/s | torch bf16 img/s | torch fp32 img/s "
          "| ddpm bf16 / torch fp32 | ddpm bf16 / torch bf16 | ddpm bf16 / fp32 |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    f = lambda r: f"{r['img_s']:.1f}" if r else "-"
    q = lambda a, b: f"{a['img_s'] / b['img_s']:.2f}" if a and b else "-"
    for k, v in bf:
        db, d, tb, t = v.get("ddpm_bf16"), v.get("ddpm"), v["torch_bf16"], v.get("torch")
        print(f"| {k[0]} | {k[1]} | {k[2]} | {f(db)} | {f(d)} | {f(tb)} | {f(t)} | {q(db, t)} | {q(db, tb)} | {q(db, d)} |")
    if not any(v.get("ddpm_bf16") for _, v in bf):
        print()
        print("ddpm bf16: not run (this CPU, or ONEDNN_MAX_CPU_ISA, has neither AVX512_BF16 nor AMX-BF16)")
print()
print("ratio = ddpm img/s / torch img/s (> 1: ddpm faster); steps = warm-up + timed steps, each side;")
print("torch format: the variant measured, after the img/s of quick probes of contiguous/channels_last[/jit];")
print("jit = contiguous + torch.jit.trace, freeze, optimize_for_inference (sampling only).")
EOF
