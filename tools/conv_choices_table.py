#!/usr/bin/env python3
"""conv_choices_table.py CACHE [training] -- the convolution choices of a ddpm cache file
($XDG_CACHE_HOME/ddpm/conv-algorithms.txt) as a Markdown table: per shape, each pass's
algorithm and the measured milliseconds of direct / Winograd (docs/perf.md)."""
import sys

ALG = {"direct": "direct", "winograd": "**Winograd**", "onednn-winograd": "oneDNN Winograd"}


def times(field, name):
    for part in field.split():
        if part.startswith(name + "="):
            return [None if v == "-" else float(v) for v in part.split("=", 1)[1].split(",")]
    return [None] * 3


def main():
    path, want = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "training") == "training"
    rows = []
    for line in open(path):
        f = line.rstrip("\n").split("|")
        if len(f) < 5 or f[2].startswith("net "):
            continue
        B, H, W, ci, co, stride, pad, ldx, ldy, training = map(int, f[2].split())
        if bool(training) != want:
            continue
        algs = f[3].split()
        cells = []
        for i, p in enumerate(["fwd", "bwd_data", "bwd_w"][: 3 if want else 1]):
            t = times(f[4], p)
            ms = " / ".join("-" if v is None else "%.2f" % v for v in t[:2])
            cells.append("%s (%s)" % (ALG[algs[i]], ms))
        prep = times(f[4], "prepare")
        rows.append(((H, -ci, -co, stride, ldx, ldy), "| %d, %dx%d, %d->%d%s%s | %s | %s |" % (
            B, H, W, ci, co, ", stride 2" if stride == 2 else "",
            "" if (ldx, ldy) == (ci, co) else ", rows of %d / %d" % (ldx, ldy), " | ".join(cells),
            " / ".join("-" if v is None else "%.3f" % v for v in prep[:2]))))
    passes = "forward | input gradient | weight gradient" if want else "forward"
    print("| shape (B, HxW, Cin->Cout) | %s | weight preparation |" % passes)
    print("|---|" + "---|" * (3 if want else 1) + "---|")
    for _, r in sorted(set(rows), reverse=True):
        print(r)


main()
