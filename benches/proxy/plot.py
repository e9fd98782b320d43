#!/usr/bin/env python3
"""Plots req/s and p99 latency against concurrency from bench.py's JSON.

    plot.py RESULTS.json OUT.svg

Two workloads (plain HTTP forwarding, intercepted HTTPS keep-alive) by two
measures, one line per target (direct, keyhole, squid, mitmproxy). Runs in
the bench venv (matplotlib).
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
matplotlib.rcParams["svg.fonttype"] = "none"  # text as text: a small, greppable SVG
import matplotlib.pyplot as plt  # noqa: E402

STYLE = {
    "direct": dict(color="#444444", marker="o", linestyle="--"),
    "keyhole": dict(color="#d62728", marker="s", linewidth=2.2),
    "squid": dict(color="#1f77b4", marker="^"),
    "mitmproxy": dict(color="#2ca02c", marker="v"),
}
PANELS = [
    ("http", "plain HTTP keep-alive, forwarded (wrk, absolute-form)"),
    ("https", "HTTPS keep-alive HTTP/1.1, intercepted (oha, CONNECT)"),
]


def main():
    src, out = sys.argv[1], sys.argv[2]
    with open(src) as f:
        res = json.load(f)
    meta = res.get("meta", {})
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    for i, (wl, title) in enumerate(PANELS):
        by = res.get("sweeps", {}).get(wl, {})
        for label, style in STYLE.items():
            runs = by.get(label, {}).get("runs", {})
            pts = sorted((int(c), r) for c, r in runs.items() if r.get("ok"))
            if len(pts) < 2:
                continue
            xs = [c for c, _ in pts]
            axes[i][0].plot(xs, [r["rps"] for _, r in pts], label=label, **style)
            axes[i][1].plot(xs, [r["p99_ms"] for _, r in pts], label=label, **style)
        for j, (ylabel, name) in enumerate([("requests / s", "throughput"),
                                            ("p99 latency, ms", "p99 latency")]):
            ax = axes[i][j]
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xticks([1, 10, 50, 200])
            ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
            ax.set_xlabel("concurrency (connections)")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{title}\n{name}", fontsize=10)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=9)
    fig.suptitle(
        f"keyhole proxy benchmark, {meta.get('date', '')}, {meta.get('mode', '')} run, "
        f"{meta.get('seconds_per_point', '?')} s per point, {meta.get('body_bytes', '?')}-byte "
        f"body, {meta.get('nproc', '?')} CPUs shared by load generator, proxy and nginx",
        fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    fig.savefig(out)


if __name__ == "__main__":
    main()
