#!/usr/bin/python3
"""plot_quality.py TABLE.csv OUT.svg -- FID against network calls, one line per sampler (docs/quality.md).

TABLE.csv has a header and rows "sampler,calls,fid,precision,recall,broken"; calls are plotted on a
log axis, FID on a linear one. Plain SVG, no plotting library needed.
"""
import csv
import math
import sys

COLORS = {"ddpm": "#d62728", "ddim": "#1f77b4", "dpm++2m": "#2ca02c"}


def main(table, out):
    rows = list(csv.DictReader(open(table)))
    series = {}
    for r in rows:
        series.setdefault(r["sampler"], []).append((int(r["calls"]), float(r["fid"])))
    W, H, L, R, T, B = 640, 400, 70, 150, 30, 50
    xs = [c for s in series.values() for c, _ in s]
    ys = [f for s in series.values() for _, f in s]
    x0, x1 = math.log10(min(xs)), math.log10(max(xs))
    y1 = max(ys) * 1.05
    y1 = math.ceil(y1 / 10) * 10 if y1 > 20 else math.ceil(y1)

    def px(c):
        return L + (math.log10(c) - x0) / (x1 - x0) * (W - L - R)

    def py(f):
        return H - B - f / y1 * (H - T - B)

    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<line x1="{L}" y1="{H - B}" x2="{W - R}" y2="{H - B}" stroke="black"/>',
         f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H - B}" stroke="black"/>']
    for c in sorted(set(xs)):
        o.append(f'<line x1="{px(c):.1f}" y1="{H - B}" x2="{px(c):.1f}" y2="{H - B + 5}" stroke="black"/>')
        o.append(f'<text x="{px(c):.1f}" y="{H - B + 18}" text-anchor="middle">{c}</text>')
    step = y1 / 5
    for k in range(6):
        v = k * step
        o.append(f'<line x1="{L - 5}" y1="{py(v):.1f}" x2="{W - R}" y2="{py(v):.1f}" stroke="#ddd"/>')
        o.append(f'<text x="{L - 8}" y="{py(v) + 4:.1f}" text-anchor="end">{v:g}</text>')
    o.append(f'<text x="{(L + W - R) / 2}" y="{H - 12}" text-anchor="middle">network calls (log scale)</text>')
    o.append(f'<text x="16" y="{(T + H - B) / 2}" text-anchor="middle" '
             f'transform="rotate(-90 16 {(T + H - B) / 2})">FID (F-MNIST features), N = 1000</text>')
    for i, (name, pts) in enumerate(sorted(series.items())):
        pts.sort()
        col = COLORS.get(name, "#555")
        path = " ".join(f"{px(c):.1f},{py(f):.1f}" for c, f in pts)
        o.append(f'<polyline points="{path}" fill="none" stroke="{col}" stroke-width="2"/>')
        for c, f in pts:
            o.append(f'<circle cx="{px(c):.1f}" cy="{py(f):.1f}" r="3.5" fill="{col}"/>')
        ly = T + 10 + 20 * i
        o.append(f'<line x1="{W - R + 15}" y1="{ly}" x2="{W - R + 40}" y2="{ly}" stroke="{col}" stroke-width="2"/>')
        o.append(f'<text x="{W - R + 46}" y="{ly + 4}">{name}</text>')
    o.append("</svg>")
    open(out, "w").write("\n".join(o) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
