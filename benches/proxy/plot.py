#!/usr/bin/env python3
"""Plots req/s and p99 latency against concurrency from bench.py's JSON.

    plot.py RESULTS.json OUT.svg

Three workloads (plain HTTP forwarding, intercepted HTTPS keep-alive, blind
tunnel) by two measures, one line per target (direct, keyhole, its C peer:
nginx as a proxy, nginx terminating TLS, HAProxy in TCP mode; squid,
mitmproxy). Runs in the bench venv (matplotlib).
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
    "nginx proxy": dict(color="#9467bd", marker="D"),
    "nginx TLS proxy": dict(color="#9467bd", marker="D"),
    "haproxy (tcp)": dict(color="#8c564b", marker="P"),
    "squid": dict(color="#1f77b4", marker="^"),
    "mitmproxy": dict(color="#2ca02c", marker="v"),
}
PANELS = [
    ("http", "plain HTTP keep-alive, forwarded (wrk, absolute-form)"),
    ("https", "HTTPS keep-alive HTTP/1.1, intercepted (oha, CONNECT; nginx: TLS to nginx)"),
    ("tunnel", "HTTPS keep-alive through a tunnel (oha, CONNECT; HAProxy: TCP relay)"),
]
# The tunnel panel's direct line is direct HTTPS keep-alive.
DIRECT_FROM = {"tunnel": "https"}


def main():
    src, out = sys.argv[1], sys.argv[2]
    with open(src) as f:
        res = json.load(f)
    meta = res.get("meta", {})
    fig, axes = plt.subplots(len(PANELS), 2, figsize=(12, 4.2 * len(PANELS)))
    sweeps = res.get("sweeps", {})
    for i, (wl, title) in enumerate(PANELS):
        for label, style in STYLE.items():
            src = DIRECT_FROM.get(wl, wl) if label == "direct" else wl
            runs = sweeps.get(src, {}).get(label, {}).get("runs", {})
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
            if ax.get_lines():
                ax.legend(fontsize=9)
    fig.suptitle(
        f"keyhole proxy benchmark, {meta.get('date', '')}, commit {meta.get('commit', '?')}, "
        f"{meta.get('mode', '')} run,\n"
        f"{meta.get('seconds_per_point', '?')} s per point, {meta.get('body_bytes', '?')}-byte "
        f"body, {meta.get('nproc', '?')} CPUs shared by load generator, proxy and nginx",
        fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    fig.savefig(out)


if __name__ == "__main__":
    main()
