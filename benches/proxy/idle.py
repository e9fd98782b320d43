#!/usr/bin/env python3
"""Connection-level measurements for benches/proxy/run.sh (standard library
only): memory per idle intercepted connection (and the peak with many of
them open), the latency of the first request to a new host (cold leaf)
against a new connection to a host whose leaf is cached, and one request
for the set-up checks.

    idle.py idle --proxy 127.0.0.1:PORT --target bench.test:PORT --ca CA.pem \
        --auth 'Bearer kh_ph_...' --pid PID --count 2000
    idle.py cold --proxy 127.0.0.1:PORT --port PORT --port2 PORT2 --ca CA.pem \
        --upstream-ca BENCHCA.pem --auth ... --hosts 40
    idle.py get --target bench.test:PORT --ca CA.pem --auth ... --path /echo \
        [--proxy 127.0.0.1:PORT]

Each prints one JSON object on stdout. `get` without --proxy dials the
name itself (inside `keyhole sandbox`: the sandbox's DNS, then the
redirect to keyhole).
"""

import argparse
import asyncio
import json
import ssl
import statistics
import sys
import time


def status_kb(pid, field):
    """A `kB` field of /proc/PID/status (VmRSS, VmHWM)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def anon_kb(pid):
    """Anonymous memory (heap, stacks) of /proc/PID/smaps_rollup, in kB: the
    part of RSS that connections grow, as opposed to the mapped binary."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Anonymous:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def fd_count(pid):
    import os
    return len(os.listdir(f"/proc/{pid}/fd"))


def tls_context(cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


async def read_response(reader):
    """Reads one HTTP/1.1 response (Content-Length or chunked); returns (status, body)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip())
        elif name == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    if not chunked:
        return status, (await reader.readexactly(length) if length else b"")
    body = b""
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return status, body
        body += await reader.readexactly(size)
        await reader.readexactly(2)


async def connect_via(proxy, host, port, ctx):
    """TCP to the proxy, CONNECT host:port, TLS inside. Returns (reader, writer)."""
    phost, pport = proxy
    reader, writer = await asyncio.open_connection(phost, pport)
    writer.write(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    first = head.split(b"\r\n", 1)[0]
    if b" 200" not in first:
        raise RuntimeError(f"CONNECT {host}:{port}: {first!r}")
    await writer.start_tls(ctx, server_hostname=host)
    return reader, writer


async def connect_direct(host, port, ctx, addr="127.0.0.1"):
    reader, writer = await asyncio.open_connection(addr, port)
    await writer.start_tls(ctx, server_hostname=host)
    return reader, writer


async def get(reader, writer, host, port, auth, path="/"):
    req = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
    if auth:
        req += f"Authorization: {auth}\r\n"
    writer.write((req + "\r\n").encode())
    await writer.drain()
    return await read_response(reader)


def hostport(s):
    h, _, p = s.rpartition(":")
    return h, int(p)


async def idle(args):
    proxy = hostport(args.proxy)
    host, port = hostport(args.target)
    ctx = tls_context(args.ca)
    # Warm up: the leaf for the host is issued and an upstream connection pooled.
    r, w = await connect_via(proxy, host, port, ctx)
    status, _ = await get(r, w, host, port, args.auth)
    assert status == 200, status
    w.close()
    await asyncio.sleep(1.0)
    before = status_kb(args.pid, "VmRSS")
    anon_before = anon_kb(args.pid)
    fds_before = fd_count(args.pid)

    sem = asyncio.Semaphore(args.parallel)
    conns = []
    failures = []

    async def open_one(i):
        async with sem:
            try:
                r, w = await connect_via(proxy, host, port, ctx)
                st, _ = await get(r, w, host, port, args.auth)
                if st != 200:
                    raise RuntimeError(f"status {st}")
                conns.append((r, w))
            except Exception as e:  # noqa: BLE001 - reported, not hidden
                failures.append(repr(e))

    t0 = time.monotonic()
    await asyncio.gather(*(open_one(i) for i in range(args.count)))
    opened = time.monotonic() - t0
    await asyncio.sleep(args.settle)
    after = status_kb(args.pid, "VmRSS")
    hwm = status_kb(args.pid, "VmHWM")
    anon_after = anon_kb(args.pid)
    fds_after = fd_count(args.pid)

    # Every connection must still be open and usable: one more request each.
    alive = 0
    dead = []

    async def again(rw):
        nonlocal alive
        async with sem:
            try:
                st, _ = await get(rw[0], rw[1], host, port, args.auth)
                if st == 200:
                    alive += 1
                else:
                    dead.append(f"status {st}")
            except Exception as e:  # noqa: BLE001 - counted as not alive
                dead.append(repr(e))

    await asyncio.gather(*(again(c) for c in conns))
    for _, w in conns:
        w.close()
    n = len(conns)
    out = {
        "count": args.count,
        "opened": n,
        "failures": len(failures),
        "first_failures": failures[:3],
        "alive_after": alive,
        "first_dead": dead[:3],
        "open_seconds": round(opened, 2),
        "rss_before_kb": before,
        "rss_after_kb": after,
        "hwm_kb": hwm,
        "anon_before_kb": anon_before,
        "anon_after_kb": anon_after,
        "threads": status_kb(args.pid, "Threads"),
        "fds_before": fds_before,
        "fds_after": fds_after,
        "per_conn_kb": round((after - before) / n, 2) if n else None,
    }
    print(json.dumps(out))


def pct(values, p):
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100 * len(s) + 0.5)) - 1))
    return s[k]


async def cold(args):
    proxy = hostport(args.proxy)
    port = args.port
    ctx = tls_context(args.ca)
    up_ctx = tls_context(args.upstream_ca)

    async def one(host, port, via_proxy=True):
        t0 = time.perf_counter()
        if via_proxy:
            r, w = await connect_via(proxy, host, port, ctx)
        else:
            r, w = await connect_direct(host, port, up_ctx)
        st, _ = await get(r, w, host, port, args.auth)
        dt = time.perf_counter() - t0
        w.close()
        if st != 200:
            raise RuntimeError(f"{host}: status {st}")
        return dt * 1000.0

    # Warm the client side (imports, first handshake) on the cached host.
    await one("bench.test", port)
    await one("bench.test", port)
    cold_ms, leaf_cached_ms, cached_ms, direct_ms = [], [], [], []
    for i in range(args.hosts):
        host = f"c{i}.bench.test"
        # New host: leaf issued, new upstream connection.
        cold_ms.append(await one(host, port))
        # Same host on the second port: leaf cached, new upstream connection.
        leaf_cached_ms.append(await one(host, args.port2))
        # Same host and port again: leaf cached, upstream connection pooled
        # (what the new-connection load row measures).
        cached_ms.append(await one(host, port))
        direct_ms.append(await one(host, port, via_proxy=False))
    med = statistics.median
    out = {
        "hosts": args.hosts,
        "cold_p50_ms": round(med(cold_ms), 3),
        "cold_max_ms": round(max(cold_ms), 3),
        "leaf_cached_new_upstream_p50_ms": round(med(leaf_cached_ms), 3),
        "cached_p50_ms": round(med(cached_ms), 3),
        "cached_max_ms": round(max(cached_ms), 3),
        "direct_new_tls_p50_ms": round(med(direct_ms), 3),
        "added_vs_cached_p50_ms": round(med(cold_ms) - med(cached_ms), 3),
        "leaf_issue_p50_ms": round(med(cold_ms) - med(leaf_cached_ms), 3),
    }
    print(json.dumps(out))


async def fetch(args):
    host, port = hostport(args.target)
    ctx = tls_context(args.ca)
    if args.proxy:
        r, w = await connect_via(hostport(args.proxy), host, port, ctx)
    else:
        r, w = await connect_direct(host, port, ctx, addr=host)
    status, body = await get(r, w, host, port, args.auth, args.path)
    w.close()
    print(json.dumps({"status": status, "body": body.decode("utf-8", "replace")}))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("idle")
    a.add_argument("--proxy", required=True)
    a.add_argument("--target", required=True)
    a.add_argument("--ca", required=True)
    a.add_argument("--auth", default="")
    a.add_argument("--pid", type=int, required=True)
    a.add_argument("--count", type=int, default=2000)
    a.add_argument("--parallel", type=int, default=64)
    a.add_argument("--settle", type=float, default=1.0)
    c = sub.add_parser("cold")
    c.add_argument("--proxy", required=True)
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--port2", type=int, required=True)
    c.add_argument("--ca", required=True)
    c.add_argument("--upstream-ca", required=True)
    c.add_argument("--auth", default="")
    c.add_argument("--hosts", type=int, default=40)
    g = sub.add_parser("get")
    g.add_argument("--target", required=True)
    g.add_argument("--ca", required=True)
    g.add_argument("--auth", default="")
    g.add_argument("--path", default="/")
    g.add_argument("--proxy")
    args = ap.parse_args()
    asyncio.run({"idle": idle, "cold": cold, "get": fetch}[args.cmd](args))


if __name__ == "__main__":
    sys.exit(main())
