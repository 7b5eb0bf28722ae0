#!/usr/bin/python3
"""plot_loss.py OUT.svg RUN:LABEL [RUN:LABEL ...] -- training loss against step of runs (docs/perf.md, bf16).

Reads each RUN/metrics.jsonl (the lines with "loss"); draws each run's logged loss faintly and its
moving average over 9 logged points (the centred mean, shorter at the ends) as a line (the first run
solid, the others dashed), on a log axis; below, each other run's smoothed loss relative to the
first's, in percent, at the steps both logged. Plain SVG, no plotting library needed. Prints the mean
loss of each run over its last quarter.
"""
import json
import math
import sys

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]


def series(run):
    pts = []
    for line in open(f"{run}/metrics.jsonl"):
        m = json.loads(line)
        if "loss" in m and "step" in m:
            pts.append((m["step"], m["loss"]))
    return pts


def smooth(ys, k=9):
    h = k // 2
    return [sum(ys[max(0, i - h):i + h + 1]) / len(ys[max(0, i - h):i + h + 1]) for i in range(len(ys))]


def main(out, runs):
    data = []
    for spec in runs:
        run, _, label = spec.partition(":")
        data.append((label or run, series(run)))
    W, H, L, R, T, B = 720, 420, 70, 190, 30, 50
    P = 150  # the lower panel's height
    xs = [s for _, p in data for s, _ in p]
    ys = [v for _, p in data for _, v in p if v > 0]
    x1 = max(xs)
    y0, y1 = math.floor(math.log10(min(ys)) * 4) / 4, math.ceil(math.log10(max(ys)) * 4) / 4

    def px(s):
        return L + s / x1 * (W - L - R)

    def py(v):
        return H - B - (math.log10(v) - y0) / (y1 - y0) * (H - T - B)

    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H + P}" font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H + P}" fill="white"/>',
         f'<line x1="{L}" y1="{H - B}" x2="{W - R}" y2="{H - B}" stroke="black"/>',
         f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H - B}" stroke="black"/>']
    for e in range(int(math.floor(y0)), int(math.ceil(y1)) + 1):
        for m in (1, 2, 5):
            v = m * 10 ** e
            if y0 <= math.log10(v) <= y1:
                y = py(v)
                o.append(f'<line x1="{L}" y1="{y:.1f}" x2="{W - R}" y2="{y:.1f}" stroke="#ddd"/>')
                o.append(f'<text x="{L - 6}" y="{y + 4:.1f}" text-anchor="end">{v:g}</text>')
    step = 10 ** math.floor(math.log10(x1 / 4))
    step *= 2 if x1 / step > 8 else 1
    for s in range(0, int(x1) + 1, int(step)):
        o.append(f'<text x="{px(s):.1f}" y="{H - B + 16}" text-anchor="middle">{s}</text>')
    o.append(f'<text x="{(L + W - R) / 2}" y="{H - 12}" text-anchor="middle">step</text>')
    o.append(f'<text x="16" y="{(T + H - B) / 2}" transform="rotate(-90 16 {(T + H - B) / 2})" '
             'text-anchor="middle">training loss</text>')
    for i, (label, p) in enumerate(data):
        c = COLORS[i % len(COLORS)]
        raw = " ".join(f"{px(s):.1f},{py(v):.1f}" for s, v in p if v > 0)
        o.append(f'<polyline points="{raw}" fill="none" stroke="{c}" stroke-opacity="0.25" stroke-width="1"/>')
        sm = smooth([v for _, v in p])
        line = " ".join(f"{px(s):.1f},{py(v):.1f}" for (s, _), v in zip(p, sm))
        dash = ' stroke-dasharray="6 4"' if i else ""
        o.append(f'<polyline points="{line}" fill="none" stroke="{c}" stroke-width="2"{dash}/>')
        o.append(f'<line x1="{W - R + 12}" y1="{T + 12 + 20 * i}" x2="{W - R + 36}" y2="{T + 12 + 20 * i}" '
                 f'stroke="{c}" stroke-width="2"{dash}/>')
        o.append(f'<text x="{W - R + 42}" y="{T + 16 + 20 * i}">{label}</text>')
        tail = [v for s, v in p if s > 0.75 * x1]
        print(f"{label}: {len(p)} points, mean loss over the last quarter {sum(tail) / len(tail):.5f}")
    # Lower panel: smoothed loss relative to the first run's, percent.
    base = dict(zip([st for st, _ in data[0][1]], smooth([v for _, v in data[0][1]])))
    rel = []
    for i, (label, p) in enumerate(data[1:], 1):
        sm = smooth([v for _, v in p])
        rel.append((i, [(st, 100 * (v / base[st] - 1)) for (st, _), v in zip(p, sm) if st in base]))
    lim = max([abs(r) for _, pts in rel for _, r in pts] + [1])
    lim = math.ceil(lim)
    top, bot = H + 10, H + P - 30

    def qy(r):
        return (top + bot) / 2 - r / lim * (bot - top) / 2

    o.append(f'<line x1="{L}" y1="{top}" x2="{L}" y2="{bot}" stroke="black"/>')
    o.append(f'<line x1="{L}" y1="{bot}" x2="{W - R}" y2="{bot}" stroke="black"/>')
    for r in (-lim, 0, lim):
        o.append(f'<line x1="{L}" y1="{qy(r):.1f}" x2="{W - R}" y2="{qy(r):.1f}" stroke="#ddd"/>')
        o.append(f'<text x="{L - 6}" y="{qy(r) + 4:.1f}" text-anchor="end">{r:+d}%</text>')
    for s_ in range(0, int(x1) + 1, int(step)):
        o.append(f'<text x="{px(s_):.1f}" y="{bot + 16}" text-anchor="middle">{s_}</text>')
    o.append(f'<text x="16" y="{(top + bot) / 2}" transform="rotate(-90 16 {(top + bot) / 2})" '
             f'text-anchor="middle">vs {data[0][0]}</text>')
    for i, pts in rel:
        c = COLORS[i % len(COLORS)]
        line = " ".join(f"{px(st):.1f},{qy(r):.1f}" for st, r in pts)
        o.append(f'<polyline points="{line}" fill="none" stroke="{c}" stroke-width="1.5"/>')
    o.append("</svg>")
    open(out, "w").write("\n".join(o) + "\n")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
