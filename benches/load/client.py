#!/usr/bin/env python3
"""The load client of the keyhole load bench (`benches/load/run.sh` starts it;
standard library only: asyncio + ssl + multiprocessing).

Three kinds of client connection go through keyhole:

- intercept: `CONNECT intercept-host:tls-port`, TLS with keyhole's CA,
  HTTP/1.1 keep-alive requests carrying `Authorization: Bearer <placeholder>`.
  The upstream answers 200 only if it got a real secret; its body echoes the
  header it got, and keyhole must scrub that secret back to the placeholder.
- tunnel: `CONNECT tunnel-host:tls-port`, a host no credential allows, so
  keyhole relays bytes blind; TLS straight with the upstream (its own CA).
- plain: absolute-form `GET http://plain-host:plain-port/...` keep-alive
  requests, forwarded by keyhole; the placeholder must arrive unchanged.

A request is ok only when it gets a 200 whose body is exactly
`ok Bearer <placeholder>`; every other outcome (non-200, a secret in the
body, reset, EOF, timeout, a failed CONNECT or handshake) is a failure.

Subcommands:

    client.py connections ...   N connections held open at once, some
                                active (a request every 100-500 ms), the
                                rest idle (one request on opening, one
                                before closing), for --hold seconds once
                                all are open.
    client.py soak ...          steady load for --minutes while the config
                                file is rewritten every --reload-every
                                seconds; keyhole's RSS sampled every
                                --rss-every seconds.

The parent process samples keyhole (/proc/PID/status, /proc/PID/fd,
/metrics), rewrites the config (soak) and prints the report; the load runs
in --workers processes. Exit status: 0 all ok, 1 a failed request, 2 (soak)
RSS not flat.
"""
import argparse
import array
import asyncio
import json
import multiprocessing as mp
import os
import queue as queue_mod
import random
import ssl
import sys
import time
import urllib.request

KINDS = ("intercept", "tunnel", "plain")
PHASES = ("first", "active", "last")


# --------------------------------------------------------------------------
# keyhole process sampling


def proc_status(pid):
    """VmRSS and VmHWM in KiB, threads, from /proc/PID/status."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM"):
                    out[k] = int(v.split()[0])
                elif k == "Threads":
                    out[k] = int(v)
    except OSError:
        pass
    return out


def cpu_seconds(pid):
    """User plus system CPU time of a process, in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def own_cpu_seconds():
    """This process and its reaped children (the workers), in seconds."""
    import resource
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def metrics(url, token):
    """keyhole's /metrics as {name_with_labels: value}; {} if unavailable."""
    if not url:
        return {}
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            text = r.read().decode()
    except Exception as e:  # noqa: BLE001 - a sample is best effort
        return {"error": str(e)}
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            out[name] = float(value)
        except ValueError:
            pass
    return out


# --------------------------------------------------------------------------
# one client connection


class Failure(Exception):
    def __init__(self, what, detail=""):
        super().__init__(f"{what}: {detail}" if detail else what)
        self.what = what


class Conn:
    def __init__(self, kind, spec, contexts):
        self.kind = kind
        self.spec = spec
        self.contexts = contexts
        self.r = self.w = None
        if kind == "intercept":
            self.host, self.port = spec["intercept_host"], spec["tls_port"]
        elif kind == "tunnel":
            self.host, self.port = spec["tunnel_host"], spec["tls_port"]
        else:
            self.host, self.port = spec["plain_host"], spec["plain_port"]
        self.authority = f"{self.host}:{self.port}"
        ph = spec["placeholder"]
        self.expect = f"ok Bearer {ph}\n".encode()
        self.secrets = [s.encode() for s in spec["secrets"]]
        target = (f"http://{self.authority}" if kind == "plain" else "") + "/load/{n}"
        self.template = (
            f"GET {target} HTTP/1.1\r\nHost: {self.authority}\r\n"
            f"Authorization: Bearer {ph}\r\nx-load-kind: {kind}\r\n"
            f"User-Agent: keyhole-load\r\n\r\n")
        self.n = 0

    async def open(self):
        try:
            r, w = await asyncio.open_connection(self.spec["proxy_host"], self.spec["proxy_port"])
        except OSError as e:
            raise Failure("connect", repr(e)) from e
        self.r, self.w = r, w
        if self.kind == "plain":
            return
        w.write(f"CONNECT {self.authority} HTTP/1.1\r\nHost: {self.authority}\r\n\r\n".encode())
        try:
            head = await r.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError) as e:
            raise Failure("connect_eof", repr(e)) from e
        status = head.split(b" ", 2)[1]
        if status != b"200":
            raise Failure(f"connect_{status.decode()}", head[:200].decode(errors="replace"))
        try:
            await w.start_tls(self.contexts[self.kind], server_hostname=self.host)
        except (ssl.SSLError, ConnectionError, OSError) as e:
            raise Failure("tls", repr(e)) from e

    async def request(self):
        """One request; returns its latency in seconds or raises Failure."""
        self.n += 1
        r, w = self.r, self.w
        t0 = time.perf_counter()
        try:
            w.write(self.template.replace("{n}", str(self.n)).encode())
            head = await r.readuntil(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            status = lines[0].split(b" ", 2)[1]
            length = None
            chunked = False
            close = False
            for line in lines[1:]:
                k, _, v = line.partition(b":")
                k = k.strip().lower()
                if k == b"content-length":
                    length = int(v)
                elif k == b"transfer-encoding" and b"chunked" in v.lower():
                    chunked = True
                elif k == b"connection" and b"close" in v.lower():
                    close = True
            if chunked:
                body = b""
                while True:
                    size = int((await r.readuntil(b"\r\n")).split(b";")[0], 16)
                    if size == 0:
                        await r.readuntil(b"\r\n")  # no trailers expected
                        break
                    body += await r.readexactly(size)
                    await r.readexactly(2)
            elif length is not None:
                body = await r.readexactly(length)
            else:
                raise Failure("framing", "response without length")
        except asyncio.IncompleteReadError as e:
            raise Failure("eof", f"after {len(e.partial)} bytes") from e
        except (ConnectionError, OSError, ssl.SSLError) as e:
            raise Failure("reset", repr(e)) from e
        dt = time.perf_counter() - t0
        if status != b"200":
            raise Failure(f"status_{status.decode()}", body[:200].decode(errors="replace").strip())
        if body != self.expect:
            if any(s in body for s in self.secrets):
                raise Failure("secret_in_response", "a secret reached the client unscrubbed")
            raise Failure("body", body[:200].decode(errors="replace"))
        if close:
            # keyhole announced it closes this connection: the next request
            # on it would fail, so count it now.
            raise Failure("closed_by_proxy", "Connection: close")
        return dt

    async def close(self):
        if self.w is None:
            return
        w, self.w = self.w, None
        try:
            w.close()
            await asyncio.wait_for(w.wait_closed(), 5)
        except Exception:  # noqa: BLE001 - closing is not measured
            pass


# --------------------------------------------------------------------------
# worker process


class Stats:
    def __init__(self):
        self.ok = {k: 0 for k in KINDS}
        self.failed = {k: 0 for k in KINDS}
        self.why = {}
        self.examples = []
        # microseconds, by "kind/phase"; phase: first (on opening), active
        # (repeated requests), last (before closing)
        self.lat = {f"{k}/{p}": array.array("I") for k in KINDS for p in PHASES}
        self.opened = {k: 0 for k in KINDS}
        self.open_failed = {k: 0 for k in KINDS}
        self.lag = array.array("I")  # client event-loop lag samples, microseconds

    def fail(self, kind, f, t0):
        self.failed[kind] += 1
        self.why[f.what] = self.why.get(f.what, 0) + 1
        # The first occurrence of each distinct failure, with its time.
        key = f"{kind}: {f}"
        if len(self.examples) < 20 and key not in self.seen:
            self.seen.add(key)
            self.examples.append(f"t={time.time() - t0:.1f}s {key}")

    def good(self, kind, dt, phase="active"):
        self.ok[kind] += 1
        self.lat[f"{kind}/{phase}"].append(min(int(dt * 1e6), 2**32 - 1))

    def dump(self):
        return {"ok": self.ok, "failed": self.failed, "why": self.why,
                "examples": self.examples, "lat": {k: v.tobytes() for k, v in self.lat.items()},
                "opened": self.opened, "open_failed": self.open_failed,
                "lag": self.lag.tobytes()}


def contexts_for(spec):
    ki = ssl.create_default_context(cafile=spec["keyhole_ca"])
    ki.set_alpn_protocols(["http/1.1"])
    tu = ssl.create_default_context(cafile=spec["upstream_ca"])
    tu.set_alpn_protocols(["http/1.1"])
    return {"intercept": ki, "tunnel": tu}


async def timed(coro, seconds, what):
    try:
        return await asyncio.wait_for(coro, seconds)
    except asyncio.TimeoutError as e:
        raise Failure("timeout", f"{what} took over {seconds}s") from e


async def lag_monitor(stats):
    """How late a 50 ms sleep wakes up: the load client's own delay, which
    every latency below includes."""
    while True:
        t = time.perf_counter()
        await asyncio.sleep(0.05)
        stats.lag.append(int(max(0.0, time.perf_counter() - t - 0.05) * 1e6))


async def connections_worker(spec, plan, barrier, q):
    stats = Stats()
    contexts = contexts_for(spec)
    t0 = spec["t0"]
    sem = asyncio.Semaphore(spec["open_concurrency"])
    loop = asyncio.get_running_loop()
    done_opening = asyncio.Event()
    pending = [len(plan)]
    end = [None]  # monotonic end of the hold, known once all are open
    hold_started = asyncio.Event()
    timeout = spec["timeout"]
    lo, hi = spec["active_interval"]
    rng = random.Random(os.getpid())

    def opened_one():
        pending[0] -= 1
        if pending[0] == 0:
            done_opening.set()

    async def one(kind, active):
        c = Conn(kind, spec, contexts)
        try:
            async with sem:
                try:
                    await timed(c.open(), timeout, "open")
                    stats.opened[kind] += 1
                except Failure as f:
                    stats.open_failed[kind] += 1
                    stats.fail(kind, f, t0)
                    await c.close()
                    return
                finally:
                    opened_one()
                try:
                    stats.good(kind, await timed(c.request(), timeout, "request"), "first")
                except Failure as f:
                    stats.fail(kind, f, t0)
                    await c.close()
                    return
            if active:
                while end[0] is None or time.monotonic() < end[0]:
                    await asyncio.sleep(rng.uniform(lo, hi))
                    try:
                        stats.good(kind, await timed(c.request(), timeout, "request"))
                    except Failure as f:
                        stats.fail(kind, f, t0)
                        await c.close()
                        return
            else:
                await hold_started.wait()
                await asyncio.sleep(max(0.0, end[0] - time.monotonic()))
            # Idle connections wake up spread over --last-spread seconds (a
            # few thousand requests at the same instant would measure the
            # burst, not the proxy), active ones keep their own pace.
            if not active:
                await asyncio.sleep(rng.uniform(0, spec["last_spread"]))
            # The last request shows the connection was still usable.
            try:
                stats.good(kind, await timed(c.request(), timeout, "last request"), "last")
            except Failure as f:
                stats.fail(kind, f, t0)
        finally:
            await c.close()

    lag = asyncio.create_task(lag_monitor(stats))
    tasks = [asyncio.create_task(one(k, a)) for k, a in plan]
    if not plan:
        done_opening.set()
    await done_opening.wait()
    q.put(("opened", time.time() - t0))
    await loop.run_in_executor(None, barrier.wait)
    end[0] = time.monotonic() + spec["hold"]
    hold_started.set()
    await asyncio.gather(*tasks)
    lag.cancel()
    q.put(("stats", stats.dump()))


async def soak_worker(spec, plan, q):
    stats = Stats()
    contexts = contexts_for(spec)
    t0 = spec["t0"]
    end = time.monotonic() + spec["seconds"]
    timeout = spec["timeout"]
    interval = spec["interval"]
    lo, hi = spec["lifetime"]
    rng = random.Random(os.getpid())

    async def one(kind):
        # Stagger the start so connections do not all renew together.
        await asyncio.sleep(rng.uniform(0, 1))
        while time.monotonic() < end:
            c = Conn(kind, spec, contexts)
            try:
                await timed(c.open(), timeout, "open")
                stats.opened[kind] += 1
            except Failure as f:
                stats.open_failed[kind] += 1
                stats.fail(kind, f, t0)
                await c.close()
                await asyncio.sleep(0.5)
                continue
            until = min(end, time.monotonic() + rng.uniform(lo, hi))
            try:
                phase = "first"
                while time.monotonic() < until:
                    try:
                        stats.good(kind, await timed(c.request(), timeout, "request"), phase)
                        phase = "active"
                    except Failure as f:
                        stats.fail(kind, f, t0)
                        break
                    await asyncio.sleep(interval * rng.uniform(0.5, 1.5))
            finally:
                await c.close()

    async def progress():
        while time.monotonic() < end:
            await asyncio.sleep(5)
            q.put(("progress", os.getpid(), sum(stats.ok.values()), sum(stats.failed.values())))

    p = asyncio.create_task(progress())
    lag = asyncio.create_task(lag_monitor(stats))
    await asyncio.gather(*(one(k) for k in plan))
    p.cancel()
    lag.cancel()
    q.put(("progress", os.getpid(), sum(stats.ok.values()), sum(stats.failed.values())))
    q.put(("stats", stats.dump()))


def worker_entry(mode, spec, plan, barrier, q):
    try:
        if mode == "connections":
            asyncio.run(connections_worker(spec, plan, barrier, q))
        else:
            asyncio.run(soak_worker(spec, plan, q))
    except BaseException as e:  # noqa: BLE001 - reported as a failure
        q.put(("crash", repr(e)))
        raise


# --------------------------------------------------------------------------
# parent: plan, monitor, report


def merge(dumps):
    total = Stats()
    for d in dumps:
        for k in KINDS:
            total.ok[k] += d["ok"][k]
            total.failed[k] += d["failed"][k]
            total.opened[k] += d["opened"][k]
            total.open_failed[k] += d["open_failed"][k]
        for w, n in d["why"].items():
            total.why[w] = total.why.get(w, 0) + n
        total.examples.extend(e for e in d["examples"]
                              if e.partition(" ")[2] not in {x.partition(" ")[2] for x in total.examples})
        lag = array.array("I")
        lag.frombytes(d["lag"])
        total.lag.extend(lag)
        for k, b in d["lat"].items():
            a = array.array("I")
            a.frombytes(b)
            total.lat[k].extend(a)
    return total


def ok_count(total):
    return sum(total.ok.values())


def pct(sorted_lat, p):
    if not sorted_lat:
        return float("nan")
    i = min(len(sorted_lat) - 1, int(round(p / 100 * (len(sorted_lat) - 1))))
    return sorted_lat[i] / 1000.0


def report_requests(total, out):
    lat = sorted(x for v in total.lat.values() for x in v)
    ok = sum(total.ok.values())
    failed = sum(total.failed.values())
    out(f"requests sent       {ok + failed}")
    out(f"requests ok         {ok}  ({', '.join(f'{k} {total.ok[k]}' for k in KINDS)})")
    out(f"requests failed     {failed}  ({', '.join(f'{k} {total.failed[k]}' for k in KINDS)})")
    if total.why:
        out(f"failures by cause   {json.dumps(total.why, sort_keys=True)}")
        for e in total.examples[:20]:
            out(f"  e.g. {e}")
    out(f"latency ms          p50 {pct(lat, 50):.2f}  p90 {pct(lat, 90):.2f}  "
        f"p99 {pct(lat, 99):.2f}  p99.9 {pct(lat, 99.9):.2f}  max {pct(lat, 100):.2f}")
    lag = sorted(total.lag)
    if lag:
        out(f"client loop lag ms  p50 {pct(lag, 50):.2f}  p90 {pct(lag, 90):.2f}  "
            f"p99 {pct(lag, 99):.2f}  max {pct(lag, 100):.2f}  (how late the load client's own "
            f"50 ms timer fires; latencies include this)")
    groups = [(k, [f"{k}/{p}" for p in PHASES]) for k in KINDS]
    groups += [(f"{p} requests", [f"{k}/{p}" for k in KINDS]) for p in PHASES]
    for name, keys in groups:
        kl = sorted(x for key in keys for x in total.lat[key])
        if kl:
            out(f"  {name:<17} n {len(kl):<7} p50 {pct(kl, 50):.2f}  p90 {pct(kl, 90):.2f}  "
                f"p99 {pct(kl, 99):.2f}  max {pct(kl, 100):.2f}")
    return failed


def start_workers(mode, spec, plans, barrier):
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=worker_entry, args=(mode, spec, plan, barrier, q), daemon=True)
             for plan in plans]
    for p in procs:
        p.start()
    return procs, q


def collect(procs, q, on_message, deadline):
    """Reads messages until every worker has sent its stats."""
    dumps = []
    crashes = []
    while len(dumps) + len(crashes) < len(procs):
        if time.time() > deadline:
            crashes.append("workers did not finish before the deadline")
            break
        try:
            msg = q.get(timeout=0.1)
        except queue_mod.Empty:
            on_message(None)
            if not any(p.is_alive() for p in procs) and q.empty():
                crashes.append("a worker exited without reporting")
                break
            continue
        if msg[0] == "stats":
            dumps.append(msg[1])
        elif msg[0] == "crash":
            crashes.append(msg[1])
        else:
            on_message(msg)
    for p in procs:
        p.join(timeout=10)
    return dumps, crashes


def cmd_connections(a, spec, out):
    rng = random.Random(a.seed)
    n_int = round(a.connections * a.intercepted_fraction)
    n_rest = a.connections - n_int
    n_tun = n_rest // 2
    n_plain = n_rest - n_tun
    plan = ([("intercept", rng.random() < a.active_fraction) for _ in range(n_int)]
            + [("tunnel", rng.random() < a.active_fraction) for _ in range(n_tun)]
            + [("plain", rng.random() < a.active_fraction) for _ in range(n_plain)])
    rng.shuffle(plan)
    plans = [plan[i::a.workers] for i in range(a.workers)]
    n_active = sum(1 for _, act in plan if act)
    out(f"plan                {a.connections} connections: intercept {n_int}, "
        f"tunnel {n_tun}, plain {n_plain}; active {n_active} (a request every "
        f"{a.active_interval[0] * 1000:.0f}-{a.active_interval[1] * 1000:.0f} ms), "
        f"idle {a.connections - n_active} (one request on opening, one before closing, "
        f"spread over {a.last_spread:g} s after the hold)")
    out(f"                    hold {a.hold:.0f} s once all are open; {a.workers} client processes, "
        f"{a.open_concurrency} opens in flight per process; request timeout {a.timeout:.0f} s")

    pid = a.keyhole_pid
    base = proc_status(pid)
    out(f"keyhole before      VmRSS {base.get('VmRSS', 0) / 1024:.1f} MiB, fds {fd_count(pid)}")
    bad = False
    rounds = []
    for r in range(1, a.rounds + 1):
        if a.rounds > 1:
            out("")
            out(f"--- round {r} of {a.rounds}")
        res = connections_round(a, spec, plans, out)
        rounds.append(res)
        bad = bad or res["bad"]
    if a.rounds > 1:
        out("")
        out("rounds              " + "; ".join(
            f"#{i + 1}: VmHWM {x['vmhwm_kib'] / 1024:.1f} MiB, after close "
            f"{x['rss_after_kib'] / 1024:.1f} MiB" for i, x in enumerate(rounds)))
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(rounds, f)
    out("")
    out("RESULT              " + ("FAIL" if bad else "PASS: no failed request"))
    return 1 if bad else 0


def connections_round(a, spec, plans, out):
    pid = a.keyhole_pid
    cpu0 = cpu_seconds(pid)
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(a.workers + 1)
    spec.update(t0=time.time(), hold=a.hold, active_interval=a.active_interval,
                open_concurrency=a.open_concurrency, last_spread=a.last_spread)
    t0 = spec["t0"]
    kids0 = own_cpu_seconds()
    procs, q = start_workers("connections", spec, plans, barrier)
    samples = []
    phase = {"opened": 0, "all_open_at": None, "peak_fds": 0}

    def sample():
        s = proc_status(pid)
        fds = fd_count(pid)
        phase["peak_fds"] = max(phase["peak_fds"], fds)
        samples.append((time.time() - t0, s.get("VmRSS", 0), s.get("VmHWM", 0), fds))

    last = [0.0]

    def on_message(msg):
        if msg is not None and msg[0] == "opened":
            phase["opened"] += 1
            if phase["opened"] == a.workers:
                phase["all_open_at"] = time.time() - t0
        if time.time() - last[0] >= 1:
            last[0] = time.time()
            sample()

    # The barrier is passed in a thread so that sampling goes on meanwhile.
    import threading
    threading.Thread(target=barrier.wait, daemon=True).start()
    dumps, crashes = collect(procs, q, on_message, t0 + a.hold + 600)
    t_end = time.time() - t0
    cpu1 = cpu_seconds(pid)
    peak = proc_status(pid)
    time.sleep(a.settle)
    after = proc_status(pid)
    fds_after = fd_count(pid)

    total = merge(dumps)
    out("")
    opened = sum(total.opened.values())
    out(f"connections opened  {opened} of {a.connections}  "
        f"(open failures {sum(total.open_failed.values())})")
    if phase["all_open_at"] is not None:
        out(f"time to open all    {phase['all_open_at']:.1f} s (connect, CONNECT, TLS, first request)")
    out(f"keyhole fds peak    {phase['peak_fds']} (client connections plus upstream connections, "
        f"sampled every second)")
    failed = report_requests(total, out)
    out(f"run time            {t_end:.1f} s")
    out(f"CPU time            keyhole {cpu1 - cpu0:.1f} s, load client "
        f"{own_cpu_seconds() - kids0:.1f} s "
        f"({(cpu1 - cpu0) / max(1, ok_count(total)) * 1e6:.0f} us of keyhole CPU per request, "
        f"connection set-up included)")
    out(f"keyhole peak RSS    VmHWM {peak.get('VmHWM', 0) / 1024:.1f} MiB "
        f"(VmRSS as the last connection closed {peak.get('VmRSS', 0) / 1024:.1f} MiB)")
    out(f"keyhole after close VmRSS {after.get('VmRSS', 0) / 1024:.1f} MiB, fds {fds_after} "
        f"({a.settle:.0f} s after the last connection closed)")
    if crashes:
        out(f"CLIENT PROBLEMS     {crashes}")
    out("")
    out("samples (t s, VmRSS KiB, VmHWM KiB, fds):")
    for t, rss, hwm, fds in samples:
        out(f"  {t:7.1f} {rss:8d} {hwm:8d} {fds:6d}")
    return {"opened": opened, "ok": total.ok, "failed": total.failed, "why": total.why,
            "all_open_at": phase["all_open_at"], "peak_fds": phase["peak_fds"],
            "vmhwm_kib": peak.get("VmHWM", 0), "rss_after_kib": after.get("VmRSS", 0),
            "samples": samples,
            "bad": bool(failed or crashes or opened != a.connections)}


class ConfigFlipper:
    """Rewrites the config file atomically (write + rename), alternating
    the first credential's secret_value and bumping a metadata counter on
    another credential, so every write is a real change."""

    def __init__(self, path, secrets):
        self.path = path
        with open(path) as f:
            self.doc = json.load(f)
        self.secrets = secrets
        self.n = 0

    def flip(self):
        self.n += 1
        creds = self.doc["credentials"]
        creds[0]["auth"]["secret_value"] = self.secrets[self.n % len(self.secrets)]
        if len(creds) > 1:
            creds[1].setdefault("metadata", {})["reload"] = str(self.n)
        tmp = f"{self.path}.tmp"
        with open(tmp, "w") as f:
            json.dump(self.doc, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, self.path)


def cmd_soak(a, spec, out):
    n_int = round(a.connections * a.intercepted_fraction)
    n_rest = a.connections - n_int
    n_tun = n_rest // 2
    plan = ["intercept"] * n_int + ["tunnel"] * n_tun + ["plain"] * (n_rest - n_tun)
    random.Random(a.seed).shuffle(plan)
    plans = [plan[i::a.workers] for i in range(a.workers)]
    seconds = a.minutes * 60
    out(f"plan                {a.connections} connections: intercept {n_int}, tunnel {n_tun}, "
        f"plain {n_rest - n_tun}; a request every ~{a.interval * 1000:.0f} ms each "
        f"(x0.5-1.5 jitter after each response); each connection lives "
        f"{a.lifetime[0]:.0f}-{a.lifetime[1]:.0f} s, then a new one")
    out(f"                    {a.minutes:g} min; config rewritten (atomic rename) every "
        f"{a.reload_every:g} s; keyhole VmRSS sampled every {a.rss_every:g} s; "
        f"{a.workers} client processes")
    pid = a.keyhole_pid
    flipper = ConfigFlipper(a.config, spec["secrets"])
    spec.update(t0=time.time(), seconds=seconds, interval=a.interval, lifetime=a.lifetime)
    t0 = spec["t0"]
    m0 = metrics(a.metrics_url, a.token)
    cpu0 = cpu_seconds(pid)
    procs, q = start_workers("soak", spec, plans, None)
    progress = {}
    samples = []
    writes = [0]
    next_flip = [t0 + a.reload_every]
    next_sample = [t0]

    def tick(msg):
        if msg is not None and msg[0] == "progress":
            progress[msg[1]] = (msg[2], msg[3])
        now = time.time()
        if now >= next_flip[0] and now < t0 + seconds:
            flipper.flip()
            writes[0] += 1
            next_flip[0] += a.reload_every
            if next_flip[0] < now:
                next_flip[0] = now + a.reload_every
        if now >= next_sample[0]:
            next_sample[0] += a.rss_every
            s = proc_status(pid)
            m = metrics(a.metrics_url, a.token)
            ok = sum(v[0] for v in progress.values())
            bad = sum(v[1] for v in progress.values())
            row = (now - t0, s.get("VmRSS", 0), s.get("VmHWM", 0), fd_count(pid),
                   int(m.get('keyhole_reloads_total{outcome="ok"}', -1)),
                   int(m.get('keyhole_reloads_total{outcome="failed"}', -1)), ok, bad)
            samples.append(row)
            print(f"  t={row[0]:6.0f}s VmRSS {row[1]:7d} KiB  fds {row[3]:4d}  reloads ok "
                  f"{row[4]:4d} failed {row[5]}  requests ok {ok} failed {bad}",
                  file=sys.stderr, flush=True)

    # collect() calls tick at least every 0.1 s, so flips keep their pace.
    dumps, crashes = collect(procs, q, tick, t0 + seconds + 120)
    elapsed = time.time() - t0
    cpu1 = cpu_seconds(pid)
    time.sleep(2)
    m1 = metrics(a.metrics_url, a.token)
    final = proc_status(pid)
    total = merge(dumps)
    out("")
    out(f"duration            {elapsed:.0f} s")
    out(f"connections opened  {sum(total.opened.values())}  "
        f"(open failures {sum(total.open_failed.values())})")
    failed = report_requests(total, out)
    ok = sum(total.ok.values())
    out(f"throughput          {ok / elapsed:.0f} requests/s ok")
    out(f"CPU time            keyhole {cpu1 - cpu0:.1f} s ({(cpu1 - cpu0) / elapsed * 100:.0f}% of "
        f"one core; {(cpu1 - cpu0) / max(1, ok) * 1e6:.0f} us per request), load client "
        f"{own_cpu_seconds():.1f} s")
    r_ok = m1.get('keyhole_reloads_total{outcome="ok"}', float("nan")) - m0.get(
        'keyhole_reloads_total{outcome="ok"}', 0)
    r_bad = m1.get('keyhole_reloads_total{outcome="failed"}', float("nan")) - m0.get(
        'keyhole_reloads_total{outcome="failed"}', 0)
    out(f"config writes       {writes[0]}")
    out(f"reloads (metrics)   applied {r_ok:.0f}, refused {r_bad:.0f}")

    # RSS flatness: after the warm-up, the last sample against the first.
    warm = [s for s in samples if s[0] >= a.warmup]
    rss = [s[1] for s in samples]
    out(f"keyhole VmRSS KiB   first {rss[0] if rss else 0}, min {min(rss) if rss else 0}, "
        f"max {max(rss) if rss else 0}, last {rss[-1] if rss else 0}; "
        f"VmHWM at the end {final.get('VmHWM', 0)}")
    flat = True
    if len(warm) >= 2:
        base, last = warm[0][1], warm[-1][1]
        growth = (last - base) / base * 100 if base else 0.0
        peak = (max(s[1] for s in warm) - base) / base * 100 if base else 0.0
        n = len(warm)
        xs = [s[0] / 60 for s in warm]
        ys = [s[1] for s in warm]
        mx, my = sum(xs) / n, sum(ys) / n
        var = sum((x - mx) ** 2 for x in xs)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var if var else 0.0
        flat = growth <= a.max_growth
        out(f"after warm-up       ({a.warmup:.0f} s) first {base} KiB, last {last} KiB: "
            f"{growth:+.1f}% (max {peak:+.1f}%); least-squares slope {slope:+.0f} KiB/min")
        out(f"RSS flat            {'yes' if flat else 'NO'} (limit +{a.max_growth:g}% last vs "
            f"first after warm-up)")
    if crashes:
        out(f"CLIENT PROBLEMS     {crashes}")
    out("")
    out("samples (t s, VmRSS KiB, VmHWM KiB, fds, reloads ok, reloads failed, "
        "requests ok so far, failed so far):")
    for row in samples:
        out(f"  {row[0]:6.0f} {row[1]:8d} {row[2]:8d} {row[3]:5d} {row[4]:6d} {row[5]:4d} "
            f"{row[6]:9d} {row[7]:5d}")
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump({"ok": total.ok, "failed": total.failed, "why": total.why,
                       "writes": writes[0], "reloads_ok": r_ok, "reloads_failed": r_bad,
                       "samples": samples}, f)
    bad = failed or crashes or r_bad != 0
    out("")
    if bad:
        out("RESULT              FAIL: failed requests, refused reloads or client problems")
        return 1
    if not flat:
        out("RESULT              FAIL: RSS grew")
        return 2
    out("RESULT              PASS: no failed request, RSS flat")
    return 0


def pair(text):
    lo, _, hi = text.partition(",")
    return (float(lo), float(hi or lo))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="mode", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--proxy", required=True, help="keyhole's HOST:PORT")
    common.add_argument("--keyhole-pid", type=int, required=True)
    common.add_argument("--keyhole-ca", required=True)
    common.add_argument("--upstream-ca", required=True)
    common.add_argument("--placeholder", required=True)
    common.add_argument("--secret", action="append", required=True)
    common.add_argument("--intercept-host", required=True)
    common.add_argument("--tunnel-host", required=True)
    common.add_argument("--plain-host", required=True)
    common.add_argument("--tls-port", type=int, required=True)
    common.add_argument("--plain-port", type=int, required=True)
    common.add_argument("--metrics-url", default="")
    common.add_argument("--admin-token-file", default="")
    common.add_argument("--workers", type=int, default=2)
    common.add_argument("--intercepted-fraction", type=float, default=0.5)
    common.add_argument("--timeout", type=float, default=30.0, help="per open and per request, s")
    common.add_argument("--seed", type=int, default=7)
    common.add_argument("--json-out", default="")

    c = sub.add_parser("connections", parents=[common])
    c.add_argument("--connections", type=int, default=5000)
    c.add_argument("--active-fraction", type=float, default=0.2)
    c.add_argument("--active-interval", type=pair, default=(0.1, 0.5), help="LO,HI seconds")
    c.add_argument("--hold", type=float, default=60.0)
    c.add_argument("--open-concurrency", type=int, default=100)
    c.add_argument("--settle", type=float, default=5.0)
    c.add_argument("--rounds", type=int, default=1,
                   help="open, hold and close everything this many times (memory reuse)")
    c.add_argument("--last-spread", type=float, default=10.0,
                   help="idle connections send their last request within this many s after the hold")

    s = sub.add_parser("soak", parents=[common])
    s.add_argument("--connections", type=int, default=50)
    s.add_argument("--interval", type=float, default=0.02)
    s.add_argument("--lifetime", type=pair, default=(5.0, 60.0), help="LO,HI seconds")
    s.add_argument("--minutes", type=float, default=10.0)
    s.add_argument("--config", required=True)
    s.add_argument("--reload-every", type=float, default=1.0)
    s.add_argument("--rss-every", type=float, default=10.0)
    s.add_argument("--warmup", type=float, default=60.0)
    s.add_argument("--max-growth", type=float, default=10.0, help="percent")
    a = p.parse_args()

    host, _, port = a.proxy.rpartition(":")
    a.token = open(a.admin_token_file).read().strip() if a.admin_token_file else ""
    spec = {
        "proxy_host": host, "proxy_port": int(port),
        "keyhole_ca": a.keyhole_ca, "upstream_ca": a.upstream_ca,
        "placeholder": a.placeholder, "secrets": a.secret,
        "intercept_host": a.intercept_host, "tunnel_host": a.tunnel_host,
        "plain_host": a.plain_host, "tls_port": a.tls_port, "plain_port": a.plain_port,
        "timeout": a.timeout,
    }

    def out(line):
        print(line, flush=True)

    rc = cmd_connections(a, spec, out) if a.mode == "connections" else cmd_soak(a, spec, out)
    sys.exit(rc)


if __name__ == "__main__":
    main()
