#!/usr/bin/env python3
"""Runs commands inside `keyhole sandbox` for benches/proxy/bench.py, so
that one sandboxed keyhole serves a whole sweep (warm-up, each
concurrency) while bench.py reads its CPU time and RSS from outside.

    keyhole sandbox --config ... -- python3 sandbox_agent.py

Reads one JSON object a line on standard input, {"argv": [...],
"timeout": seconds}, runs it, and answers one JSON line on standard output,
{"rc": N, "stdout": "...", "stderr": "..."}. Exits at end of input. The
proxy variables keyhole sets in the sandbox are removed from the
commands' environment: what goes to keyhole's proxy says so with `-x`,
everything else is redirected (transparent mode).
"""

import json
import os
import subprocess
import sys

PROXY_VARS = ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy", "ALL_PROXY", "all_proxy")


def main():
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS}
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        job = json.loads(line)
        try:
            p = subprocess.run(job["argv"], env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               timeout=job.get("timeout", 120))
            out = {"rc": p.returncode, "stdout": p.stdout.decode("utf-8", "replace"),
                   "stderr": p.stderr.decode("utf-8", "replace")}
        except (OSError, subprocess.TimeoutExpired) as e:
            out = {"rc": -1, "stdout": "", "stderr": repr(e)}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
