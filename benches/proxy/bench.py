#!/usr/bin/env python3
"""Proxy benchmark driver; start it with benches/proxy/run.sh, which installs
the tools, builds keyhole and runs this inside a private network namespace
(loopback only).

One run: nginx upstream (HTTP, HTTPS with a CA:FALSE certificate), then wrk
(plain HTTP, absolute-form requests through the proxies) and oha (HTTPS,
CONNECT through the proxies, or straight to a TLS-terminating or TCP peer)
against: direct, keyhole, its C peers (nginx as a proxy, nginx terminating
TLS, HAProxy in TCP mode), squid and mitmproxy; keyhole's transparent
interception against its CONNECT interception inside `keyhole sandbox`.
Then idle-connection memory and cold-leaf latency (idle.py). Prints the
table of targets, writes raw JSON and a plot (README.md says what each row
compares and why).

Standard library only (the plot runs in the bench venv, plot.py).
"""

import argparse
import datetime
import http.client
import json
import os
import re
import shutil
import select
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))

HOST = "bench.test"          # allowed for the credential: intercepted
TUNNEL_HOST = "tunnel.test"  # allowed by egress only: tunnelled blind
SECRET = "bench-realsecret-7f3a9c21e4"
SWEEP = [1, 10, 50, 200]
PEER_CS = [1, 50, 200]  # concurrencies of the rows against the C peers
ROW_C = 50   # concurrency of the throughput rows of the table
LAT_C = 1    # concurrency of the added-latency rows (unloaded)
COLD_HOSTS = 40
# The upstream's address for `keyhole sandbox`, whose sandbox leaves
# 127.0.0.0/8 unredirected: run.sh adds it to loopback in the bench's private
# network namespace (nothing outside the namespace is ever dialled).
ALT_ADDR = "10.99.0.1"
SANDBOX_PROXY = "127.0.0.1:15080"  # keyhole's proxy port inside the sandbox

T0 = time.monotonic()


def say(msg=""):
    print(msg, flush=True)


def step(msg):
    say(f"[{time.monotonic() - T0:6.1f}s] {msg}")


# --- processes ---------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=20.0, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def status_kb(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class Proc:
    """A child process with its output in files under the work dir."""

    def __init__(self, name, cmd, work, env=None, cwd=None, pipes=False):
        """pipes: standard input and output are pipes (self.p.stdin,
        self.p.stdout) instead of /dev/null and a file."""
        self.name = name
        self.out_path = os.path.join(work, f"{name}.out")
        self.err_path = os.path.join(work, f"{name}.err")
        self.out = open(self.out_path, "wb")
        self.err = open(self.err_path, "wb")
        self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE if pipes else self.out,
                                  stderr=self.err, env=env, cwd=cwd,
                                  stdin=subprocess.PIPE if pipes else subprocess.DEVNULL)
        self.pid = self.p.pid
        self.rc = None

    def poll(self):
        return self.p.poll()

    def rss_kb(self):
        return status_kb(self.pid, "VmRSS")

    def stop(self, sig=signal.SIGTERM, timeout=15.0):
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.rc = self.p.returncode
        self.out.close()
        self.err.close()
        return self.rc

    def tail(self, n=20):
        try:
            with open(self.err_path, "rb") as f:
                return f.read()[-4000:].decode("utf-8", "replace").splitlines()[-n:]
        except OSError:
            return []


# --- set-up ------------------------------------------------------------------

def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)


def make_certs(work):
    """A bench CA and a CA:FALSE server certificate for the bench names."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    with open(os.path.join(work, "ca-ext.cnf"), "w") as f:
        f.write("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
                "subjectKeyIdentifier=hash\n")
    with open(os.path.join(work, "server-ext.cnf"), "w") as f:
        f.write("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=serverAuth\nsubjectKeyIdentifier=hash\n"
                "authorityKeyIdentifier=keyid\n"
                f"subjectAltName=DNS:{HOST},DNS:*.{HOST},DNS:{TUNNEL_HOST},IP:127.0.0.1\n")
    j = lambda n: os.path.join(work, n)  # noqa: E731
    sh(["openssl", "req", "-new", *ec, "-subj", "/CN=keyhole bench CA",
        "-keyout", j("bench-ca-key.pem"), "-out", j("bench-ca.csr")])
    sh(["openssl", "x509", "-req", "-in", j("bench-ca.csr"), "-signkey", j("bench-ca-key.pem"),
        "-days", "7", "-extfile", j("ca-ext.cnf"), "-out", j("bench-ca.pem")])
    sh(["openssl", "req", "-new", *ec, "-subj", f"/CN={HOST}",
        "-keyout", j("server-key.pem"), "-out", j("server.csr")])
    sh(["openssl", "x509", "-req", "-in", j("server.csr"), "-CA", j("bench-ca.pem"),
        "-CAkey", j("bench-ca-key.pem"), "-CAcreateserial", "-days", "7",
        "-extfile", j("server-ext.cnf"), "-out", j("server.pem")])
    text = sh(["openssl", "x509", "-in", j("server.pem"), "-noout", "-text"]).stdout.decode()
    assert "CA:FALSE" in text, "server certificate lacks CA:FALSE"


def fill(template, out, **values):
    with open(os.path.join(HERE, template)) as f:
        text = f.read()
    for k, v in values.items():
        text = text.replace(f"@{k}@", str(v))
    left = re.findall(r"@[A-Z_0-9]+@", text)
    assert not left, f"{template}: unfilled {left}"
    with open(out, "w") as f:
        f.write(text)


def body_of(n):
    """A JSON-like body of exactly n bytes (no characters nginx would escape)."""
    head = '{"id":"bench","object":"chat.completion","data":"'
    tail = '"}'
    filler = ("lorem ipsum dolor sit amet consectetur " * (n // 8 + 2))
    return head + filler[: max(0, n - len(head) - len(tail))] + tail


# --- load generators ---------------------------------------------------------

class Tools:
    wrk = "wrk"
    oha = "oha"
    oha_threads = None


def run_wrk(target_url, path, host, auth, c, seconds, tag):
    env = dict(os.environ, WRK_PATH=path, WRK_HOST=host, WRK_AUTH=auth)
    cmd = [Tools.wrk, "-t", "1", "-c", str(c), "-d", f"{seconds:g}s", "--timeout", "10s",
           "-s", os.path.join(HERE, "wrk.lua"), target_url]
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=seconds + 60)
    out = p.stdout.decode("utf-8", "replace")
    m = re.search(r"^WRKJSON (\{.*\})$", out, re.M)
    if not m:
        return {"ok": False, "error": f"wrk failed ({tag}): " + " | ".join(out.strip().splitlines()[:3])[:300]}
    d = json.loads(m.group(1))
    errors = d["errors_connect"] + d["errors_read"] + d["errors_write"] + d["errors_timeout"]
    secs = d["duration_us"] / 1e6
    res = {
        "tool": "wrk",
        "c": c,
        "requests": d["requests"],
        "rps": d["requests"] / secs if secs else 0.0,
        "p50_ms": d["p50_us"] / 1000.0,
        "p99_ms": d["p99_us"] / 1000.0,
        "errors": errors,
        "non_2xx": d["errors_status"],
    }
    res["ok"] = res["requests"] > 0 and errors == 0 and res["non_2xx"] == 0
    if not res["ok"]:
        res["error"] = (f"no response completed in {seconds:g} s" if res["requests"] == 0 and not errors
                        else f"{errors} socket errors, {res['non_2xx']} non-2xx of {res['requests']}")
    return res


def run_here(cmd, timeout):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    return p.stdout, p.stderr


def run_oha(url, c, seconds, cacert, auth, tag, proxy=None, http2=False, keepalive=True,
            connect_to=None, runner=None):
    """One oha run. runner(cmd, timeout) -> (stdout, stderr) runs it
    elsewhere (inside `keyhole sandbox`); by default it runs here."""
    cmd = [Tools.oha, "--no-tui", "--output-format", "json", "-z", f"{seconds:g}s", "-w",
           "--no-pre-lookup", "--cacert", cacert, "-t", "10s"]
    if Tools.oha_threads:
        cmd += ["--worker-threads", str(Tools.oha_threads)]
    if auth:
        cmd += ["-H", f"Authorization: {auth}"]
    if proxy:
        cmd += ["-x", f"http://{proxy}"]
    if connect_to:
        cmd += ["--connect-to", connect_to]
    if http2:
        # `c` in-flight requests: c/10 connections of up to 10 streams each.
        conns = max(1, c // 10)
        cmd += ["--http2", "-c", str(conns), "-p", str(max(1, c // conns))]
    else:
        cmd += ["-c", str(c)]
    if not keepalive:
        cmd += ["--disable-keepalive"]
    cmd.append(url)
    stdout, stderr = (runner or run_here)(cmd, seconds + 60)
    try:
        d = json.loads(stdout)
    except ValueError:
        err = (stderr or stdout).decode("utf-8", "replace").strip()
        return {"ok": False, "error": f"oha failed ({tag}): " + " | ".join(err.splitlines()[-3:])[:300]}
    codes = {k: v for k, v in d.get("statusCodeDistribution", {}).items()}
    errs = d.get("errorDistribution", {})
    ok_n = codes.get("200", 0)
    total = sum(codes.values())
    n_err = sum(v for k, v in errs.items() if "deadline" not in k.lower())
    secs = d["summary"]["total"]
    res = {
        "tool": "oha",
        "c": c,
        "requests": ok_n,
        "rps": ok_n / secs if secs else 0.0,
        "p50_ms": d["metrics"]["latency_ms"]["p50"],
        "p99_ms": d["metrics"]["latency_ms"]["p99"],
        "errors": n_err,
        "non_2xx": total - ok_n,
    }
    res["ok"] = ok_n > 0 and n_err == 0 and total == ok_n
    if not res["ok"]:
        res["error"] = f"{n_err} errors {dict(list(errs.items())[:2])}, status {codes}"
    return res


# --- the proxies -------------------------------------------------------------

class Env:
    """Everything the runs share: ports, files, placeholder."""

    def __init__(self, args, work):
        self.args = args
        self.work = work
        self.http_port = free_port()
        self.https_port = free_port()
        self.https_port2 = free_port()
        self.state = os.path.join(work, "state")
        self.config = os.path.join(work, "keyhole.json")
        self.bench_ca = os.path.join(work, "bench-ca.pem")
        # keyhole's CA and the bench CA in one file: the new-connection rows
        # give it to the client on every leg, so each parses the same roots.
        self.same_bundle = os.path.join(work, "keyhole-and-bench-ca.pem")
        # The peers' workers (nginx) and threads (HAProxy).
        self.workers = args.peer_workers
        # The upstream's second address, for keyhole sandbox (which leaves
        # 127.0.0.0/8 alone): only where run.sh put it on loopback, in a
        # namespace with no interface but loopback, so that nothing ever
        # dials it anywhere else.
        only_lo = [name for _, name in socket.if_nameindex()] == ["lo"]
        self.alt_addr = ALT_ADDR if only_lo and address_is_local(ALT_ADDR) else None
        self.placeholder = None
        self.seq = 0

    @property
    def auth(self):
        return f"Bearer {self.placeholder}"

    def name(self, base):
        self.seq += 1
        return f"{self.seq:02d}-{base}"


def address_is_local(addr):
    """Whether this namespace has `addr` on an interface (bind succeeds)."""
    try:
        with socket.socket() as s:
            s.bind((addr, 0))
        return True
    except OSError:
        return False


def child_pids(pid):
    """Processes whose parent is `pid` (nginx's workers)."""
    kids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        kids.append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    return kids


class Target:
    """direct, keyhole or a peer: how to start it, where the client goes,
    and the CA the client trusts."""
    label = "?"
    kind = "?"
    proc = None
    addr = None
    ca = None

    def start(self, env):
        pass

    def origin(self, env):
        """The address an HTTPS client dials in place of the upstream's
        (the client talks to it as to the server itself), or None for a
        forward proxy (CONNECT)."""
        return None

    def pids(self):
        """The processes doing the target's work: their CPU time and
        memory are the target's."""
        return [self.proc.pid] if self.proc else []

    def memory_kb(self, field):
        values = [status_kb(pid, field) for pid in self.pids()]
        return sum(v for v in values if v) if values and any(values) else None

    def stop(self):
        if self.proc:
            self.proc.stop()
            self.proc = None


class Direct(Target):
    label = "direct"
    kind = "direct"

    def origin(self, env):
        return f"127.0.0.1:{env.https_port}"


class Keyhole(Target):
    kind = "keyhole"

    def __init__(self, binary, rust_log=None, label="keyhole", extra=()):
        self.binary = binary
        self.rust_log = rust_log
        self.label = label
        self.extra = list(extra)
        self.logs = []

    def start(self, env):
        cmd = [self.binary, "run", "--config", env.config, "--listen", "127.0.0.1:0",
               "--state-dir", env.state, "--upstream-ca", env.bench_ca, *self.extra]
        for port in (env.http_port, env.https_port, env.https_port2):
            cmd += ["--resolve", f"{HOST}:{port}:127.0.0.1"]
        cmd += ["--resolve", f"{TUNNEL_HOST}:{env.https_port}:127.0.0.1"]
        for i in range(COLD_HOSTS):
            for port in (env.https_port, env.https_port2):
                cmd += ["--resolve", f"c{i}.{HOST}:{port}:127.0.0.1"]
        e = dict(os.environ)
        e.pop("RUST_LOG", None)
        if self.rust_log:
            e["RUST_LOG"] = self.rust_log
        self.proc = Proc(env.name(self.label.replace(" ", "_").replace(",", "")), cmd, env.work, env=e)
        self.started = time.monotonic()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with open(self.proc.out_path) as f:
                m = re.search(r"keyhole listening on (\S+)", f.read())
            if m:
                self.addr = m.group(1)
                break
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        if not self.addr:
            raise RuntimeError("keyhole did not start: " + "\n".join(self.proc.tail()))
        self.ca = os.path.join(env.state, "ca.pem")

    def stop(self):
        if not self.proc:
            return
        t = time.monotonic()
        rc = self.proc.stop()
        took = time.monotonic() - t
        levels = {"WARN": 0, "ERROR": 0}
        expected = 0
        examples = []
        ansi = re.compile(r"\x1b\[[0-9;]*m")
        with open(self.proc.err_path, "rb") as f:
            for raw in f:
                line = ansi.sub("", raw.decode("utf-8", "replace"))
                m = re.match(r"\S+\s+(WARN|ERROR)\b", line)
                if m and "plain http:// never carries a secret" in line:
                    # The placeholder sent on plain HTTP (wrk rows): expected.
                    expected += 1
                elif m:
                    levels[m.group(1)] += 1
                    if len(examples) < 5:
                        examples.append(line.strip()[:300])
        size = os.path.getsize(self.proc.err_path)
        self.logs.append({"rc": rc, "stop_seconds": round(took, 2), "log_bytes": size,
                          "warn": levels["WARN"], "error": levels["ERROR"],
                          "expected_plaintext_warn": expected,
                          "examples": examples})
        if rc != 0 or levels["ERROR"] or levels["WARN"]:
            say(f"    note: {self.label} exit {rc}, {levels['WARN']} WARN, "
                f"{levels['ERROR']} ERROR lines in its log")
            for ex in examples:
                say(f"      {ex}")
        if not env_keep_logs():
            os.remove(self.proc.err_path)
        self.proc = None


def env_keep_logs():
    return os.environ.get("BENCH_KEEP_LOGS") == "1"


class Squid(Target):
    label = "squid"
    kind = "squid"

    def start(self, env):
        d = os.path.join(env.work, "squid")
        os.makedirs(d, exist_ok=True)
        os.chmod(d, 0o777)
        with open(os.path.join(d, "hosts"), "w") as f:
            f.write(f"127.0.0.1 {HOST} {TUNNEL_HOST}\n")
        port = free_port()
        user = "proxy"
        try:
            import pwd
            pwd.getpwnam(user)
        except KeyError:
            user = "nobody"
        fill("squid.conf.in", os.path.join(d, "squid.conf"), PORT=port, DIR=d, USER=user)
        self.proc = Proc(env.name("squid"), [shutil.which("squid") or "/usr/sbin/squid", "-N",
                                               "-f", os.path.join(d, "squid.conf")], env.work)
        if not wait_port(port, 30, self.proc.p):
            tail = self.proc.tail()
            self.proc.stop()
            raise RuntimeError("squid did not start: " + "\n".join(tail))
        self.addr = f"127.0.0.1:{port}"


class Mitm(Target):
    label = "mitmproxy"
    kind = "mitmproxy"

    def __init__(self, mitmdump):
        self.mitmdump = mitmdump

    def start(self, env):
        conf = os.path.join(env.work, "mitm")
        os.makedirs(conf, exist_ok=True)
        port = free_port()
        cmd = [self.mitmdump, "--mode", "regular", "--listen-host", "127.0.0.1",
               "--listen-port", str(port), "--set", f"confdir={conf}",
               "--set", f"ssl_verify_upstream_trusted_ca={env.bench_ca}",
               "--set", "termlog_verbosity=warn", "--set", "flow_detail=0",
               "--ignore-hosts", r"^tunnel\.test",
               "-s", os.path.join(HERE, "mitm_resolve.py")]
        self.proc = Proc(env.name("mitmproxy"), cmd, env.work)
        if not wait_port(port, 60, self.proc.p):
            tail = self.proc.tail()
            self.proc.stop()
            raise RuntimeError("mitmdump did not start: " + "\n".join(tail))
        self.addr = f"127.0.0.1:{port}"
        self.ca = os.path.join(conf, "mitmproxy-ca-cert.pem")
        for _ in range(100):
            if os.path.exists(self.ca):
                break
            time.sleep(0.05)


class SandboxKeyhole(Keyhole):
    """`keyhole sandbox` running sandbox_agent.py, which runs the load
    generator inside the sandbox: with `transparent`, oha dials the
    upstream's address (ALT_ADDR), which the sandbox redirects to keyhole;
    otherwise it goes through the sandbox's own proxy port with CONNECT.
    Either way keyhole dials ALT_ADDR. bench.py reads the CPU time and
    memory of the `keyhole sandbox` process from outside; the command's
    processes are its children, not counted."""
    kind = "sandbox"

    def __init__(self, binary, transparent, label):
        super().__init__(binary, label=label)
        self.transparent = transparent

    def start(self, env):
        cmd = [self.binary, "sandbox", "--config", env.config, "--state-dir", env.state,
               "--upstream-ca", env.bench_ca,
               "--resolve", f"{HOST}:{env.https_port}:{env.alt_addr}",
               "--", sys.executable, os.path.join(HERE, "sandbox_agent.py")]
        e = dict(os.environ)
        e.pop("RUST_LOG", None)
        self.proc = Proc(env.name(self.label.replace(" ", "_").replace("(", "").replace(")", "")),
                         cmd, env.work, env=e, pipes=True)
        line = self._reply(30)
        if not line or not json.loads(line).get("ready"):
            tail = self.proc.tail()
            self.proc.stop()
            raise RuntimeError("keyhole sandbox did not start: " + "\n".join(tail))
        self.addr = None if self.transparent else SANDBOX_PROXY
        # What keyhole hands a sandboxed program (SSL_CERT_FILE).
        self.ca = os.path.join(env.state, "ca-bundle.pem")

    def _reply(self, timeout):
        ready, _, _ = select.select([self.proc.p.stdout], [], [], timeout)
        return self.proc.p.stdout.readline().decode() if ready else None

    def run(self, cmd, timeout):
        """Runs `cmd` inside the sandbox: (stdout, stderr) as bytes."""
        self.proc.p.stdin.write((json.dumps({"argv": cmd, "timeout": timeout}) + "\n").encode())
        self.proc.p.stdin.flush()
        line = self._reply(timeout + 10)
        if not line:
            return b"", b"no answer from the sandbox agent"
        d = json.loads(line)
        return d["stdout"].encode(), d["stderr"].encode()

    def stop(self):
        if self.proc and self.proc.p.poll() is None:
            # End of input: the agent exits, and keyhole with its status.
            self.proc.p.stdin.close()
            try:
                self.proc.p.wait(15)
            except subprocess.TimeoutExpired:
                pass
        if self.proc:
            self.proc.p.stdout.close()
        super().stop()


class NginxProxy(Target):
    """nginx as a proxy (nginx-proxy.conf.in): forwards absolute-form plain
    HTTP on `addr`, terminates TLS for bench.test on `tls_addr`."""
    kind = "nginx"

    def __init__(self, label):
        self.label = label

    def start(self, env):
        os.makedirs(os.path.join(env.work, "nginx-proxy-tmp"), exist_ok=True)
        plain, tls = free_port(), free_port()
        conf = os.path.join(env.work, "nginx-proxy.conf")
        fill("nginx-proxy.conf.in", conf, DIR=env.work, WORKERS=env.workers, HOST=HOST,
             SECRET=SECRET, UP_HTTP_PORT=env.http_port, UP_HTTPS_PORT=env.https_port,
             PLAIN_PORT=plain, TLS_PORT=tls)
        self.proc = Proc(env.name("nginx-proxy"), [nginx_binary(), "-c", conf, "-p", env.work],
                         env.work)
        for port in (plain, tls):
            if not wait_port(port, 20, self.proc.p):
                tail = self.proc.tail()
                self.proc.stop()
                raise RuntimeError("nginx proxy did not start: " + "\n".join(tail))
        self.addr = f"127.0.0.1:{plain}"
        self.tls_addr = f"127.0.0.1:{tls}"

    def origin(self, env):
        return self.tls_addr

    def pids(self):
        # The master and its workers, which do the work.
        return [self.proc.pid, *child_pids(self.proc.pid)] if self.proc else []


class HAProxy(Target):
    """HAProxy in TCP mode (haproxy.cfg.in): relays every connection to the
    upstream's HTTPS port."""
    label = "haproxy (tcp)"
    kind = "haproxy"

    def start(self, env):
        port = free_port()
        conf = os.path.join(env.work, "haproxy.cfg")
        fill("haproxy.cfg.in", conf, DIR=env.work, THREADS=env.workers, PORT=port,
             UP_HTTPS_PORT=env.https_port)
        self.proc = Proc(env.name("haproxy"), [shutil.which("haproxy") or "/usr/sbin/haproxy",
                                                "-db", "-f", conf], env.work)
        if not wait_port(port, 20, self.proc.p):
            tail = self.proc.tail()
            self.proc.stop()
            raise RuntimeError("haproxy did not start: " + "\n".join(tail))
        self.addr = f"127.0.0.1:{port}"

    def origin(self, env):
        return self.addr


def nginx_binary():
    return shutil.which("nginx") or "/usr/sbin/nginx"


# --- checks ------------------------------------------------------------------

def tls_ctx(cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def get_plain(proxy, port, path, auth):
    h, p = proxy.rsplit(":", 1)
    c = http.client.HTTPConnection(h, int(p), timeout=10)
    c.request("GET", f"http://{HOST}:{port}{path}",
              headers={"Host": f"{HOST}:{port}", "Authorization": auth})
    r = c.getresponse()
    body = r.read().decode("utf-8", "replace")
    c.close()
    return r.status, body


class DialHTTPS(http.client.HTTPSConnection):
    """HTTPS to `host` (SNI, certificate check) over a TCP connection to
    `dial` (ADDR:PORT), as curl's --connect-to."""

    def __init__(self, dial, host, port, **kw):
        super().__init__(host, port, **kw)
        h, p = dial.rsplit(":", 1)
        self.dial = (h, int(p))

    def connect(self):
        sock = socket.create_connection(self.dial, self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def get_tls(proxy, host, port, path, auth, cafile, dial=None):
    """GET over TLS with SNI `host`: through `proxy` with CONNECT, or straight
    to `dial` (default 127.0.0.1:port) as to the server itself."""
    if proxy:
        h, p = proxy.rsplit(":", 1)
        c = http.client.HTTPSConnection(h, int(p), timeout=10, context=tls_ctx(cafile))
        c.set_tunnel(host, port)
    else:
        c = DialHTTPS(dial or f"127.0.0.1:{port}", host, port, timeout=10, context=tls_ctx(cafile))
    c.request("GET", path, headers={"Host": f"{host}:{port}", "Authorization": auth})
    r = c.getresponse()
    body = r.read().decode("utf-8", "replace")
    c.close()
    return r.status, body


def check(what, cond, detail=""):
    if not cond:
        raise RuntimeError(f"check failed: {what} {detail}")
    say(f"    ok: {what}")


# --- the workloads -----------------------------------------------------------

WORKLOADS = {
    # name: (title, load generator)
    "http": ("plain HTTP keep-alive (forward)", "wrk"),
    "https": ("HTTPS keep-alive, HTTP/1.1 (intercept)", "oha"),
    "h2": ("HTTPS keep-alive, HTTP/2 (intercept)", "oha"),
    "newconn": ("HTTPS new connection per request (intercept)", "oha"),
    "tunnel": ("HTTPS keep-alive, CONNECT tunnel (blind)", "oha"),
    "transparent": ("HTTPS keep-alive, HTTP/1.1, keyhole sandbox: transparent and CONNECT "
                    "(intercept)", "oha"),
}


def nginx_accepts(env):
    """Connections nginx has accepted so far (this request's own included)."""
    c = http.client.HTTPConnection("127.0.0.1", env.http_port, timeout=5)
    c.request("GET", "/nginx_status", headers={"Host": HOST})
    text = c.getresponse().read().decode()
    c.close()
    # "Active connections: N \nserver accepts handled requests\n A H R \n..."
    return int(text.splitlines()[2].split()[0])


def cpu_seconds(pids):
    """User plus system CPU time of processes, in seconds (None if any is
    gone)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            return None
    return total / os.sysconf("SC_CLK_TCK")


SHORT = {"http": "plain HTTP k-a", "https": "HTTPS k-a h1", "h2": "HTTPS k-a h2",
         "newconn": "HTTPS new conn", "tunnel": "HTTPS tunnel", "transparent": "sandbox k-a h1"}


def one_run(env, workload, target, c, seconds):
    before = nginx_accepts(env)
    pids = target.pids()
    cpu0 = cpu_seconds(pids) if pids else None
    r = load_run(env, workload, target, c, seconds)
    # Minus the status request itself.
    r["upstream_conns"] = nginx_accepts(env) - before - 1
    if cpu0 is not None and r.get("requests"):
        cpu1 = cpu_seconds(pids)
        if cpu1 is not None:
            r["proxy_cpu_us_per_req"] = (cpu1 - cpu0) * 1e6 / r["requests"]
    return r


def tls_host(workload):
    return TUNNEL_HOST if workload == "tunnel" else HOST


def client_ca(env, workload, target):
    """The CA file the HTTPS client trusts on this row."""
    if workload == "newconn" and target.kind in ("direct", "keyhole"):
        # The same file on both legs of the added-latency row.
        return env.same_bundle
    if workload == "newconn" and target.ca:
        path = os.path.join(env.work, f"{target.kind}-and-bench-ca.pem")
        concat([target.ca, env.bench_ca], path)
        return path
    if workload == "tunnel" or target.origin(env) or not target.ca:
        return env.bench_ca
    return target.ca


def concat(paths, out):
    with open(out, "w") as f:
        for p in paths:
            with open(p) as src:
                f.write(src.read())


def load_run(env, workload, target, c, seconds):
    tag = f"{workload}/{target.label}/c{c}"
    if workload == "http":
        if target.kind == "direct":
            return run_wrk(f"http://127.0.0.1:{env.http_port}/", "/", f"{HOST}:{env.http_port}",
                           env.auth, c, seconds, tag)
        return run_wrk(f"http://{target.addr}/", f"http://{HOST}:{env.http_port}/",
                       f"{HOST}:{env.http_port}", env.auth, c, seconds, tag)
    host = tls_host(workload)
    url = f"https://{host}:{env.https_port}/"
    kw = dict(http2=(workload == "h2"), keepalive=(workload != "newconn"))
    cacert = client_ca(env, workload, target)
    origin = target.origin(env)
    if origin:
        return run_oha(url, c, seconds, cacert, env.auth, tag,
                       connect_to=f"{host}:{env.https_port}:{origin}", **kw)
    if target.kind == "sandbox" and target.transparent:
        # No proxy: oha dials the upstream's address; the sandbox redirects it.
        return run_oha(url, c, seconds, cacert, env.auth, tag, runner=target.run,
                       connect_to=f"{host}:{env.https_port}:{env.alt_addr}:{env.https_port}", **kw)
    return run_oha(url, c, seconds, cacert, env.auth, tag, proxy=target.addr,
                   runner=target.run if target.kind == "sandbox" else None, **kw)


def expected_auth(env, workload, target):
    """What the upstream's /echo should report: the secret where the row
    substitutes it (keyhole intercepting; the nginx TLS proxy sets it),
    the placeholder unchanged elsewhere (plain HTTP, tunnels, mitmproxy)."""
    if workload != "http" and workload != "tunnel" and target.kind in ("keyhole", "sandbox", "nginx"):
        return "auth=secret"
    return f"auth=other:{env.auth}"


def warm_up(env, workload, target):
    """One request of the workload's kind (issues the leaf, fills pools),
    which checks what reaches the upstream."""
    if target.kind == "direct":
        return
    if workload == "http":
        st, body = get_plain(target.addr, env.http_port, "/echo", env.auth)
    elif target.kind == "sandbox":
        cmd = [sys.executable, os.path.join(HERE, "idle.py"), "get",
               "--target", f"{HOST}:{env.https_port}", "--ca", target.ca, "--auth", env.auth,
               "--path", "/echo"]
        if target.addr:
            cmd += ["--proxy", target.addr]
        out, err = target.run(cmd, 30)
        try:
            d = json.loads(out)
            st, body = d["status"], d["body"]
        except ValueError:
            raise RuntimeError(f"warm-up {workload}/{target.label}: "
                               + (err or out).decode("utf-8", "replace")[-500:]) from None
    else:
        origin = target.origin(env)
        st, body = get_tls(None if origin else target.addr, tls_host(workload), env.https_port,
                           "/echo", env.auth, client_ca(env, workload, target), dial=origin)
    want = expected_auth(env, workload, target)
    if st != 200 or want not in body:
        raise RuntimeError(f"warm-up {workload}/{target.label}: status {st}, upstream saw "
                           f"{body.strip()!r}, expected {want!r}")


def fmt_ms(v):
    return "-" if v is None else (f"{v:.2f}" if v < 100 else f"{v:.0f}")


def fmt_add(v):
    return "" if v is None else (f"{v:+.2f}" if abs(v) < 100 else f"{v:+.0f}")


def fmt_rps(v):
    return "-" if v is None else f"{v:,.0f}"


def paired(env, results, workload, targets, concs, seconds, rounds):
    """Sweeps `targets` in turn, `rounds` times over, and keeps for each
    concurrency the run with the median req/s: two targets compared by a
    ratio then share the machine's slow and fast moments alike (single
    runs on a small VM move by +-15%, as much as the target's margin).
    Every other round runs them in reverse order, so neither always
    follows the other."""
    for n in range(rounds):
        for t in (targets if n % 2 == 0 else targets[::-1]):
            sweep(env, results, workload, t, concs, seconds, round_of=(n, rounds))
    for t in targets:
        rec = results["sweeps"].get(workload, {}).get(t.label, {})
        for c, runs in rec.get("rounds", {}).items():
            ok = sorted((r for r in runs if r.get("ok")), key=lambda r: r["rps"])
            if ok:
                rec["runs"][c] = ok[len(ok) // 2]
                say(f"  {SHORT[workload]:16} {t.label:24} c={c:<4}median of {len(ok)}: "
                    f"{fmt_rps(rec['runs'][c]['rps'])} req/s "
                    f"(all: {', '.join(fmt_rps(r['rps']) for r in ok)})")


def sweep(env, results, workload, target, concs, seconds, warmup_seconds=1, round_of=None):
    """Starts target, warms it up, runs each concurrency, records RSS, stops
    it. With `round_of` (n, rounds), each run is also kept in the target's
    "rounds" (see `paired`)."""
    wl = results["sweeps"].setdefault(workload, {})
    rec = wl.setdefault(target.label, {"runs": {}})
    try:
        target.start(env)
    except Exception as e:  # noqa: BLE001 - reported, the run goes on
        rec["error"] = str(e)
        say(f"  {target.label}: cannot start: {e}")
        return
    try:
        warm_up(env, workload, target)
        if target.proc:
            time.sleep(0.3)
            rec["rss_after_warmup_kb"] = target.memory_kb("VmRSS")
        # A short warm-up load (not recorded): handshakes, pools, page faults.
        one_run(env, workload, target, 10, warmup_seconds)
        for c in concs:
            r = one_run(env, workload, target, c, seconds)
            rec["runs"][str(c)] = r
            if round_of:
                rec.setdefault("rounds", {}).setdefault(str(c), []).append(r)
            line = (f"  {SHORT[workload]:16} {target.label:24} c={c:<4}"
                    f"{fmt_rps(r.get('rps')):>9} req/s  p50 {fmt_ms(r.get('p50_ms')):>7} ms  "
                    f"p99 {fmt_ms(r.get('p99_ms')):>7} ms  upstream conns {r.get('upstream_conns', '?')}")
            if r.get("proxy_cpu_us_per_req") is not None:
                line += f"  proxy CPU {r['proxy_cpu_us_per_req']:.0f} us/req"
            if not r.get("ok"):
                line += f"  !! {r.get('error')}"
            if round_of and round_of[1] > 1:
                line += f"  (round {round_of[0] + 1} of {round_of[1]})"
            say(line)
        if target.proc:
            # Summed over the target's processes (nginx: master and workers).
            rec["processes"] = len(target.pids())
            rec["peak_rss_kb"] = target.memory_kb("VmHWM")
            rec["rss_end_kb"] = target.memory_kb("VmRSS")
            say(f"  {SHORT[workload]:16} {target.label:24} peak RSS {rec['peak_rss_kb'] / 1024:.1f} MB")
    except Exception as e:  # noqa: BLE001
        rec["error"] = str(e)
        say(f"  {target.label}: {e}")
    finally:
        target.stop()


# --- main --------------------------------------------------------------------

def commit():
    """The commit benchmarked: short hash, and whether tracked files other
    than docs/perf/ (where this run's own output goes) differ."""
    def git(*a):
        p = subprocess.run(["git", "-C", ROOT, *a], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL)
        return p.stdout.decode().strip() if p.returncode == 0 else None
    head = git("rev-parse", "--short", "HEAD")
    if head is None:
        return "unknown"
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!docs/perf")
    return head + ("-dirty" if changed else "")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="2 s per point (about 4 minutes); results go to target/bench-proxy/")
    ap.add_argument("--ci", action="store_true",
                    help="one short pass of each workload and peer (1 s, one concurrency, "
                    "fewer connections in the memory tests, no plot; about 75 s); results "
                    "go to target/bench-proxy/")
    ap.add_argument("--seconds", type=float, help="seconds per point (default 10, quick 2, ci 1)")
    ap.add_argument("--keyhole", default=os.path.join(ROOT, "target", "release", "keyhole"))
    ap.add_argument("--oha", default=shutil.which("oha") or os.path.expanduser("~/.cargo/bin/oha"))
    ap.add_argument("--oha-threads", type=int, default=None)
    ap.add_argument("--venv", default=os.path.join(ROOT, "target", "bench-proxy", "venv"))
    ap.add_argument("--out-dir", help="where the raw JSON and plot go")
    ap.add_argument("--stamp", default=datetime.date.today().isoformat())
    ap.add_argument("--body-bytes", type=int, default=1024)
    ap.add_argument("--idle-conns", type=int, help="idle intercepted connections for the "
                    "per-connection figure (default 2000, ci 200)")
    ap.add_argument("--peak-conns", type=int, help="idle intercepted connections for the peak "
                    "RSS figure (default 5000, ci 500)")
    ap.add_argument("--peer-workers", type=int, default=os.cpu_count(),
                    help="nginx workers and HAProxy threads (default: the CPUs, as many as "
                    "keyhole has worker threads)")
    ap.add_argument("--no-peers", action="store_true",
                    help="skip the peers (nginx proxy, HAProxy, squid, mitmproxy)")
    ap.add_argument("--only", help="comma-separated workloads (" + ",".join(WORKLOADS) + ")")
    ap.add_argument("--keep-work", action="store_true")
    args = ap.parse_args()

    args.keyhole = os.path.abspath(args.keyhole)
    mode = "ci" if args.ci else "quick" if args.quick else "full"
    seconds = args.seconds or {"full": 10, "quick": 2, "ci": 1}[mode]
    if mode == "ci":
        # One pass each, at the concurrency of its target.
        concs = {wl: [ROW_C] for wl in WORKLOADS}
        concs["newconn"] = [LAT_C]
    else:
        concs = {"http": SWEEP, "https": SWEEP, "h2": [LAT_C, ROW_C],
                 "newconn": [LAT_C, ROW_C], "tunnel": PEER_CS, "transparent": [LAT_C, ROW_C]}
    args.idle_conns = args.idle_conns or (200 if mode == "ci" else 2000)
    args.peak_conns = args.peak_conns or (500 if mode == "ci" else 5000)
    Tools.oha = args.oha
    Tools.oha_threads = args.oha_threads
    out_dir = args.out_dir or (os.path.join(ROOT, "docs", "perf") if mode == "full"
                               else os.path.join(ROOT, "target", "bench-proxy"))
    os.makedirs(out_dir, exist_ok=True)
    suffix = "" if mode == "full" else f"-{mode}"

    work = tempfile.mkdtemp(prefix="keyhole-bench-")
    os.chmod(work, 0o711)  # squid drops to its own user and must reach its folder
    env = Env(args, work)
    results = {"meta": {}, "sweeps": {}, "checks": []}
    meta = results["meta"]
    meta["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    meta["mode"] = mode
    meta["seconds_per_point"] = seconds
    meta["body_bytes"] = args.body_bytes
    meta["nproc"] = os.cpu_count()
    meta["peer_workers"] = args.peer_workers
    meta["loadavg_start"] = open("/proc/loadavg").read().split()[:3]
    try:
        meta["cpu"] = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                           if l.startswith("model name"))
    except StopIteration:
        meta["cpu"] = "?"
    meta["kernel"] = os.uname().release
    meta["commit"] = commit()

    def version(cmd):
        try:
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
            return p.stdout.decode("utf-8", "replace").strip().splitlines()[0]
        except Exception:  # noqa: BLE001
            return None

    meta["versions"] = {
        "keyhole": version([args.keyhole, "--version"]),
        "wrk": version(["wrk", "--version"]),
        "oha": version([args.oha, "--version"]),
        "nginx": version([nginx_binary(), "-v"]),
        "haproxy": version([shutil.which("haproxy") or "/usr/sbin/haproxy", "-v"]),
        "squid": version(["squid", "-v"]),
        "mitmproxy": version([os.path.join(args.venv, "bin", "mitmdump"), "--version"]),
    }
    say(f"keyhole proxy benchmark, {mode} run, {seconds:g} s per point")
    say(f"date:    {meta['date']}")
    say(f"commit:  {meta['commit']}" + (" (uncommitted changes to tracked files)"
                                         if meta["commit"].endswith("-dirty") else ""))
    say(f"machine: {meta['cpu']}, {meta['nproc']} CPUs, Linux {meta['kernel']}, "
        f"load average at start {' '.join(meta['loadavg_start'])}")
    say(f"peers:   nginx proxy {args.peer_workers} workers, HAProxy {args.peer_workers} threads "
        f"(keyhole: one worker thread per CPU)")
    for k, v in meta["versions"].items():
        say(f"  {k}: {v}")
    say(f"work dir: {work}")

    # Certificates, nginx, keyhole config.
    step("certificates and nginx")
    make_certs(work)
    os.makedirs(os.path.join(work, "nginx-tmp"), exist_ok=True)
    body = body_of(args.body_bytes)
    alt_listen = (f"listen {env.alt_addr}:{env.https_port} ssl http2;" if env.alt_addr
                  else "# (no second address)")
    fill("nginx.conf.in", os.path.join(work, "nginx.conf"), DIR=work, HTTP_PORT=env.http_port,
         HTTPS_PORT=env.https_port, HTTPS_PORT2=env.https_port2, BODY=body,
         BODY_BYTES=len(body), SECRET=SECRET, ALT_LISTEN=alt_listen)
    nginx = Proc("nginx", [nginx_binary(), "-c", os.path.join(work, "nginx.conf"), "-p", work], work)
    for port in (env.http_port, env.https_port, env.https_port2):
        if not wait_port(port, 20, nginx.p):
            raise SystemExit("nginx did not start: " + "\n".join(nginx.tail()))
    config = {
        "vault_id": "vlt_bench",
        "egress": {"type": "limited", "allowed_hosts": [HOST, f"*.{HOST}", TUNNEL_HOST]},
        "credentials": [{
            "id": "vcrd_bench",
            "display_name": "bench upstream",
            "auth": {
                "type": "environment_variable",
                "secret_name": "BENCH_TOKEN",
                "secret_value": SECRET,
                "networking": {"type": "limited", "allowed_hosts": [HOST, f"*.{HOST}"]},
                "injection_location": {"header": True, "body": False},
            },
        }],
    }
    with open(env.config, "w") as f:
        json.dump(config, f, indent=2)
    envjson = json.loads(sh([args.keyhole, "env", "--config", env.config, "--state-dir", env.state,
                             "--format", "json"]).stdout)
    env.placeholder = envjson["BENCH_TOKEN"]
    concat([os.path.join(env.state, "ca.pem"), env.bench_ca], env.same_bundle)
    say(f"  upstream: nginx http {env.http_port}, https {env.https_port} (+{env.https_port2}), "
        f"{len(body)}-byte body; placeholder {env.placeholder[:10]}...")

    rc = 0
    try:
        rc = run_all(args, env, results, seconds, concs, mode)
    finally:
        nginx.stop()
        results["meta"]["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
        results["meta"]["run_seconds"] = round(time.monotonic() - T0, 1)
        path = os.path.join(out_dir, f"proxy-{args.stamp}{suffix}.json")
        with open(path, "w") as f:
            json.dump(results, f, indent=1)
        say(f"raw results: {os.path.relpath(path, ROOT)}")
        plot = os.path.join(out_dir, f"proxy-plot{suffix}.svg")
        py = os.path.join(args.venv, "bin", "python")
        if mode == "ci":
            pass
        elif os.path.exists(py):
            p = subprocess.run([py, os.path.join(HERE, "plot.py"), path, plot],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            if p.returncode == 0:
                say(f"plot: {os.path.relpath(plot, ROOT)}")
            else:
                say("plot failed: " + p.stdout.decode("utf-8", "replace")[-800:])
        else:
            say(f"plot skipped: no venv python at {py}")
        say(f"load average at end {' '.join(results['meta']['loadavg_end'])}; "
            f"total run time {time.monotonic() - T0:.0f} s")
        if not args.keep_work:
            shutil.rmtree(work, ignore_errors=True)
    return rc


def run_all(args, env, results, seconds, concs, mode):
    kh = lambda **kw: Keyhole(args.keyhole, **kw)  # noqa: E731

    # --- keyhole start-up, idle RSS, correctness of the paths measured ---
    step("keyhole: idle RSS and the checks")
    k = kh()
    k.start(env)
    try:
        time.sleep(0.5)
        idle_start = k.proc.rss_kb()
        st, body = get_plain(k.addr, env.http_port, "/echo", env.auth)
        check("plain HTTP absolute-form forwarded, placeholder passed unchanged (plaintext)",
              st == 200 and f"auth=other:{env.auth}" in body, body)
        st, body = get_tls(k.addr, HOST, env.https_port, "/echo", env.auth, k.ca)
        check(f"CONNECT {HOST} intercepted (keyhole CA), placeholder substituted upstream",
              st == 200 and "auth=secret" in body, body)
        st, body = get_tls(k.addr, TUNNEL_HOST, env.https_port, "/echo", env.auth, env.bench_ca)
        check(f"CONNECT {TUNNEL_HOST} tunnelled blind (upstream certificate seen, placeholder unchanged)",
              st == 200 and f"auth=other:{env.auth}" in body, body)
        time.sleep(0.5)
        idle_warm = k.proc.rss_kb()
        results["idle_rss"] = {"after_start_kb": idle_start, "after_warmup_kb": idle_warm}
        say(f"  idle RSS: {idle_start / 1024:.1f} MB after start, {idle_warm / 1024:.1f} MB after "
            "one request of each kind")
    finally:
        k.stop()

    # wrk's requests need no check of their own: keyhole answers an
    # origin-form request with 400, which a run counts as non-2xx (ERROR).
    # Every other target's first request is checked by warm_up: what the
    # upstream received (secret or placeholder).

    targets_for = {
        "http": ["direct", "keyhole", "nginx proxy", "squid", "mitmproxy"],
        "https": ["direct", "keyhole", "nginx TLS proxy", "mitmproxy"],
        "h2": ["direct", "keyhole", "mitmproxy"],
        "newconn": ["direct", "keyhole", "mitmproxy"],
        "tunnel": ["keyhole", "haproxy", "squid", "mitmproxy"],
        "transparent": ["keyhole transparent", "keyhole CONNECT"],
    }
    only = args.only.split(",") if args.only else list(WORKLOADS)
    unknown = [wl for wl in only if wl not in WORKLOADS]
    if unknown:
        raise SystemExit(f"--only: unknown workloads {unknown}; known: {', '.join(WORKLOADS)}")
    mitmdump = os.path.join(args.venv, "bin", "mitmdump")
    have = {
        "nginx proxy": True,  # the upstream is nginx already
        "haproxy": shutil.which("haproxy") is not None or os.path.exists("/usr/sbin/haproxy"),
        "squid": shutil.which("squid") is not None,
        "mitmproxy": os.path.exists(mitmdump),
    }
    have["nginx TLS proxy"] = have["nginx proxy"]
    if args.no_peers:
        have = {k: False for k in have}
    for name, ok in have.items():
        if not ok:
            say(f"{name} not available or skipped: its rows are left out")
    if "transparent" in only and not env.alt_addr:
        say(f"no {ALT_ADDR} on loopback (run.sh adds it in its private network namespace): "
            "the keyhole sandbox rows are left out")
    results["peer_notes"] = {
        "nginx proxy": "plain HTTP: absolute-form requests proxied to the upstream over kept-alive "
                       f"connections; {args.peer_workers} workers",
        "nginx TLS proxy": "the client's HTTPS ends at nginx (bench.test's certificate); HTTPS to "
                           "the upstream, verified, SNI, session reuse, kept-alive; sets the secret "
                           f"as a fixed header; {args.peer_workers} workers",
        "haproxy (tcp)": f"TCP relay to the upstream's HTTPS port; {args.peer_workers} threads",
        "squid": "forward and tunnel only: Debian's squid has no TLS interception (ssl-bump)",
        "mitmproxy": "intercepts and forwards; does no placeholder substitution",
    }

    def make(name):
        if name == "direct":
            return Direct()
        if name == "keyhole":
            return kh()
        if name in ("nginx proxy", "nginx TLS proxy"):
            return NginxProxy(name) if have[name] else None
        if name == "haproxy":
            return HAProxy() if have[name] else None
        if name == "squid":
            return Squid() if have["squid"] else None
        if name == "mitmproxy":
            return Mitm(mitmdump) if have["mitmproxy"] else None
        if name.startswith("keyhole") and env.alt_addr:
            return SandboxKeyhole(args.keyhole, transparent=(name == "keyhole transparent"),
                                  label=name)
        return None

    keyholes = []
    if "tunnel" in only and "https" not in only:
        # The tunnel rows compare with direct HTTPS keep-alive.
        step("direct HTTPS keep-alive (the tunnel rows' baseline)")
        sweep(env, results, "https", Direct(), concs["tunnel"], seconds)
    for wl in only:
        step(WORKLOADS[wl][0])
        if wl == "transparent":
            pair = [t for t in map(make, targets_for[wl]) if t is not None]
            keyholes.extend(pair)
            paired(env, results, wl, pair, concs[wl], seconds, PAIRED_ROUNDS[mode])
            continue
        for name in targets_for[wl]:
            t = make(name)
            if t is None:
                continue
            if isinstance(t, Keyhole):
                keyholes.append(t)
            sweep(env, results, wl, t, concs[wl], seconds)
        if wl in ("http", "https") and mode != "ci":
            # Diagnostic: keyhole with its per-request log lines off.
            t = kh(rust_log="warn", label="keyhole, RUST_LOG=warn")
            keyholes.append(t)
            sweep(env, results, wl, t, [ROW_C], seconds)

    # --- idle intercepted connections: per connection, then the peak ---
    for key, count, what in (("idle", args.idle_conns, "RSS per connection"),
                             ("peak", args.peak_conns, "peak RSS")):
        step(f"{count} idle intercepted connections ({what})")
        # Room for them all (the default --max-connections is 4096).
        k = kh(extra=["--max-connections", str(max(4096, count + 1000))])
        keyholes.append(k)
        results[key] = idle_connections(env, k, count)

    # --- cold leaf ---
    step("first request to a new host (cold leaf)")
    k = kh()
    k.start(env)
    try:
        hosts = {"full": COLD_HOSTS, "quick": 20, "ci": 5}[mode]
        p = subprocess.run([sys.executable, os.path.join(HERE, "idle.py"), "cold",
                            "--proxy", k.addr, "--port", str(env.https_port),
                            "--port2", str(env.https_port2), "--ca", k.ca,
                            "--upstream-ca", env.bench_ca, "--auth", env.auth,
                            "--hosts", str(hosts)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
        out = p.stdout.decode("utf-8", "replace")
        try:
            results["cold"] = json.loads(out.strip().splitlines()[-1])
            c = results["cold"]
            say(f"  new host: p50 {c['cold_p50_ms']} ms; same host again (cached leaf, pooled "
                f"upstream): {c['cached_p50_ms']} ms; cached leaf, new upstream connection: "
                f"{c['leaf_cached_new_upstream_p50_ms']} ms; direct new TLS connection: "
                f"{c['direct_new_tls_p50_ms']} ms")
        except (ValueError, IndexError):
            results["cold"] = {"error": out[-1000:]}
            say(f"  cold-leaf test failed: {out[-1000:]}")
    finally:
        k.stop()
    keyholes.append(k)

    results["keyhole_logs"] = [x for t in keyholes for x in t.logs]
    return report(results)


def kb_mb(kb):
    return "?" if kb is None else f"{kb / 1024:.1f}"


def idle_connections(env, k, count):
    """Opens `count` idle intercepted connections through a fresh keyhole
    (idle.py idle): its RSS before and after, and its peak (VmHWM)."""
    k.start(env)
    try:
        p = subprocess.run([sys.executable, os.path.join(HERE, "idle.py"), "idle",
                            "--proxy", k.addr, "--target", f"{HOST}:{env.https_port}",
                            "--ca", k.ca, "--auth", env.auth, "--pid", str(k.proc.pid),
                            "--count", str(count)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
        out = p.stdout.decode("utf-8", "replace")
        try:
            i = json.loads(out.strip().splitlines()[-1])
            say(f"  opened {i['opened']}/{i['count']} in {i['open_seconds']} s, "
                f"{i['alive_after']} still answering after the reading; keyhole RSS "
                f"{i['rss_before_kb'] / 1024:.1f} -> {i['rss_after_kb'] / 1024:.1f} MB "
                f"= {i['per_conn_kb']} KB per connection, peak {i['hwm_kb'] / 1024:.1f} MB "
                f"(fds {i['fds_before']} -> {i['fds_after']}; anonymous memory "
                f"{kb_mb(i.get('anon_before_kb'))} -> {kb_mb(i.get('anon_after_kb'))} MB; "
                f"{i.get('threads')} threads)")
            return i
        except (ValueError, IndexError, KeyError):
            say(f"  idle-connection test failed: {out[-1000:]}")
            return {"error": out[-1000:]}
    finally:
        k.stop()


# --- report ------------------------------------------------------------------

def run_of(results, wl, label, c):
    return results["sweeps"].get(wl, {}).get(label, {}).get("runs", {}).get(str(c))


# Issue 15: keyhole's req/s at least `ratio` times its C peer's on the same
# row, at each of PEER_CS, and its p99 no higher.
PEER_TARGETS = [
    ("http", "nginx proxy", 1.0),
    ("https", "nginx TLS proxy", 0.9),
    ("tunnel", "haproxy (tcp)", 0.95),
]
NEWCONN_ADD_P50_MS = 0.3        # new connection, c=1: added p50 over direct
TRANSPARENT_RATIO = 0.9         # issue 14: transparent >= 0.9x CONNECT, c=50
# Rounds of the transparent/CONNECT pair, alternated (see `paired`).
PAIRED_ROUNDS = {"full": 5, "quick": 3, "ci": 1}
IDLE_RSS_MB = 10                # after start and one request of each kind
PER_CONN_KB = 32                # per idle intercepted connection, at 2,000
PER_CONN_COUNT = 2000
PEAK_MB = 120                   # VmHWM with 5,000 idle intercepted connections
PEAK_COUNT = 5000


def fmt_cpu(r):
    v = r.get("proxy_cpu_us_per_req") if r else None
    return "-" if v is None else f"{v:.0f}"


def report(results):
    verdicts = []
    rows = []
    W = 150

    def verdict(v):
        verdicts.append(v)
        return v

    say()
    say("=" * W)
    say("TARGETS (issue 15; transparent mode: issue 14), all from this run: same upstream nginx, "
        "same load generators, same machine")
    say()
    say("keyhole against C proxies (ratio = keyhole req/s / peer req/s; cpu = the proxy's CPU "
        "time per request, us, all its threads and processes)")
    hdr = (f"{'row':16} {'c':>3}  {'keyhole':>9} {'p50':>6} {'p99':>6} {'cpu':>4} | "
           f"{'peer':16} {'req/s':>9} {'p50':>6} {'p99':>6} {'cpu':>4} | {'ratio':>6}  "
           f"{'target':28} result")
    say(hdr)
    say("-" * len(hdr))
    for wl, peer, need in PEER_TARGETS:
        for c in PEER_CS:
            k = run_of(results, wl, "keyhole", c)
            p = run_of(results, wl, peer, c)
            if k is None or p is None:
                continue
            d = {"table": "peers", "workload": wl, "peer": peer, "c": c, "keyhole": k, "peer_run": p,
                 "target": f">= {need:.2f}x, p99 <= peer's"}
            if not (k.get("ok") and p.get("ok") and p["rps"]):
                d["result"] = verdict("ERROR")
                d["ratio"] = None
            else:
                d["ratio"] = k["rps"] / p["rps"]
                why = []
                if d["ratio"] < need:
                    why.append("req/s")
                if k["p99_ms"] > p["p99_ms"]:
                    why.append("p99")
                if why:
                    d["result"] = verdict("MISS") + f" ({', '.join(why)})"
                else:
                    d["result"] = verdict("PASS")
            rows.append(d)
            ratio = f"{d['ratio']:.2f}x" if d["ratio"] is not None else "-"
            say(f"{SHORT[wl]:16} {c:>3}  {fmt_rps(k.get('rps')):>9} {fmt_ms(k.get('p50_ms')):>6} "
                f"{fmt_ms(k.get('p99_ms')):>6} {fmt_cpu(k):>4} | {peer:16} {fmt_rps(p.get('rps')):>9} "
                f"{fmt_ms(p.get('p50_ms')):>6} {fmt_ms(p.get('p99_ms')):>6} {fmt_cpu(p):>4} | "
                f"{ratio:>6}  {d['target']:28} {d['result']}")
    say("-" * len(hdr))

    # A new connection per request, unloaded: keyhole against direct, the
    # client trusting the same bundle file on both legs.
    k = run_of(results, "newconn", "keyhole", LAT_C)
    b = run_of(results, "newconn", "direct", LAT_C)
    if k and b:
        text = f"p50 <= +{NEWCONN_ADD_P50_MS:.2f} ms"
        if k.get("ok") and b.get("ok"):
            a50, a99 = k["p50_ms"] - b["p50_ms"], k["p99_ms"] - b["p99_ms"]
            res = verdict("PASS" if a50 <= NEWCONN_ADD_P50_MS else "MISS")
            say(f"{'new connection':16} {LAT_C:>3}  keyhole p50/p99 {fmt_ms(k['p50_ms'])}/"
                f"{fmt_ms(k['p99_ms'])} ms, direct {fmt_ms(b['p50_ms'])}/{fmt_ms(b['p99_ms'])} ms: "
                f"added {fmt_add(a50)} / {fmt_add(a99)} ms (CONNECT + two handshakes, cached leaf, "
                f"pooled upstream; same CA bundle on both legs)   {text:22} {res}")
            rows.append({"table": "newconn", "c": LAT_C, "add_p50": a50, "add_p99": a99,
                         "target": text, "result": res})
        else:
            say(f"{'new connection':16} {LAT_C:>3}  {verdict('ERROR')}: "
                f"{k.get('error') or b.get('error')}")

    # Transparent interception against CONNECT interception, both through
    # `keyhole sandbox`, same upstream address.
    for c in (LAT_C, ROW_C):
        t = run_of(results, "transparent", "keyhole transparent", c)
        x = run_of(results, "transparent", "keyhole CONNECT", c)
        if t is None or x is None:
            continue
        text = f">= {TRANSPARENT_RATIO:.2f}x CONNECT" if c == ROW_C else "(information)"
        if t.get("ok") and x.get("ok") and x["rps"]:
            ratio = t["rps"] / x["rps"]
            res = (verdict("PASS" if ratio >= TRANSPARENT_RATIO else "MISS") if c == ROW_C else "")
            say(f"{'transparent':16} {c:>3}  {fmt_rps(t['rps']):>9} {fmt_ms(t['p50_ms']):>6} "
                f"{fmt_ms(t['p99_ms']):>6} {fmt_cpu(t):>4} | {'CONNECT, sandbox':16} "
                f"{fmt_rps(x['rps']):>9} {fmt_ms(x['p50_ms']):>6} {fmt_ms(x['p99_ms']):>6} "
                f"{fmt_cpu(x):>4} | {ratio:>5.2f}x  {text:28} {res}")
            rows.append({"table": "transparent", "c": c, "ratio": ratio, "target": text,
                         "result": res})
        else:
            say(f"{'transparent':16} {c:>3}  {verdict('ERROR') if c == ROW_C else 'ERROR'}: "
                f"{t.get('error') or x.get('error')}")

    # Memory.
    idle = results.get("idle_rss", {})
    if idle:
        mb = idle["after_warmup_kb"] / 1024
        v = verdict("PASS" if mb <= IDLE_RSS_MB else "MISS")
        say(f"{'idle RSS':20} {idle['after_start_kb'] / 1024:.1f} MB after start, {mb:.1f} MB after "
            f"one request of each kind   target <= {IDLE_RSS_MB} MB: {v}")
    for key, count, limit, what in (
            ("idle", PER_CONN_COUNT, f"<= {PER_CONN_KB} KB each", "idle connections"),
            ("peak", PEAK_COUNT, f"peak <= {PEAK_MB} MB", "peak, idle conns")):
        i = results.get(key, {})
        if "per_conn_kb" not in i:
            if i:
                say(f"{what:20} {verdict('ERROR')}: {i.get('error', '')[:200]}")
            continue
        complete = i["opened"] == i["count"] and i["alive_after"] == i["opened"]
        if key == "idle":
            fits = i["per_conn_kb"] is not None and i["per_conn_kb"] <= PER_CONN_KB
        else:
            fits = i["hwm_kb"] <= PEAK_MB * 1024
        if not complete:
            v = verdict("ERROR")
        elif i["count"] != count:
            v = f"no verdict (the target is at {count:,})"
        else:
            v = verdict("PASS" if fits else "MISS")
        say(f"{what:20} {i['opened']:,} of {i['count']:,} intercepted connections open, "
            f"{i['alive_after']:,} answering after: RSS {i['rss_before_kb'] / 1024:.1f} -> "
            f"{i['rss_after_kb'] / 1024:.1f} MB = {i['per_conn_kb']:.1f} KB each, peak (VmHWM) "
            f"{i['hwm_kb'] / 1024:.1f} MB   target {limit}: {v}")
    say("=" * W)
    report_direct(results, rows)
    results["rows"] = rows

    failed = []
    for wl, by in results["sweeps"].items():
        for label, rec in by.items():
            if rec.get("error"):
                failed.append(f"{wl}/{label}: {' | '.join(rec['error'].splitlines())[:300]}")
            for cc, r in rec.get("runs", {}).items():
                if not r.get("ok"):
                    failed.append(f"{wl}/{label}/c={cc}: {r.get('error')}")
    n_pass, n_miss, n_err = (verdicts.count(v) for v in ("PASS", "MISS", "ERROR"))
    say(f"targets: {n_pass} PASS, {n_miss} MISS, {n_err} ERROR")
    results["verdicts"] = {"pass": n_pass, "miss": n_miss, "error": n_err, "failed_runs": failed}
    if failed:
        say(f"{len(failed)} runs failed:")
        for f in failed:
            say(f"  {f}")
    return 1 if (failed or n_err) else 0


def report_direct(results, rows):
    """The table against direct (and squid and mitmproxy), for information,
    then memory, cold leaf, logs and the whole sweep."""

    def row(wl, label, c, base_wl=None, note="", shown=None, shown_wl=None):
        """`label` on workload `wl` at concurrency `c`, against direct on
        `base_wl` (default `wl`) at the same concurrency."""
        r = run_of(results, wl, label, c)
        if r is None:
            return
        base = run_of(results, base_wl or wl, "direct", c)
        d = {"table": "direct", "workload": shown_wl or wl, "via": shown or label, "c": c,
             "rps": r.get("rps"), "p50": r.get("p50_ms"), "p99": r.get("p99_ms"), "ok": r.get("ok"),
             "error": r.get("error"), "note": note, "upstream_conns": r.get("upstream_conns")}
        if label != "direct" and base and base.get("ok") and r.get("ok") and base["rps"]:
            d["ratio"] = r["rps"] / base["rps"]
            d["add_p50"] = r["p50_ms"] - base["p50_ms"]
            d["add_p99"] = r["p99_ms"] - base["p99_ms"]
        elif label == "direct" and r.get("ok"):
            d["ratio"] = 1.0
        rows.append(d)
        ratio = f"{d['ratio']:.2f}x" if d.get("ratio") is not None else "-"
        tail = note if d["ok"] else f"ERROR ({d.get('error')})"
        say(f"{SHORT[d['workload']]:16} {d['via']:24} {c:>3} {fmt_rps(d['rps']):>9} {ratio:>6} "
            f"{fmt_ms(d['p50']):>7} {fmt_ms(d['p99']):>7} {fmt_add(d.get('add_p50')):>7} "
            f"{fmt_add(d.get('add_p99')):>7}  {tail}")

    def mitm_note(wl, c):
        k = run_of(results, wl, "keyhole", c)
        m = run_of(results, wl, "mitmproxy", c)
        if k and m and k.get("ok") and m.get("ok") and m["rps"]:
            return f"keyhole = {k['rps'] / m['rps']:.1f}x mitmproxy"
        return ""

    say("Against direct, for information (ratio and added latency against direct at the same "
        "concurrency; tunnel rows against direct HTTPS keep-alive)")
    hdr = (f"{'row':16} {'via':24} {'c':>3} {'req/s':>9} {'ratio':>6} {'p50 ms':>7} {'p99 ms':>7} "
           f"{'+p50':>7} {'+p99':>7}")
    say(hdr)
    say("-" * len(hdr))
    for wl in ("http", "https", "h2"):
        row(wl, "direct", ROW_C)
        row(wl, "keyhole", ROW_C)
        row(wl, "keyhole, RUST_LOG=warn", ROW_C, note="(diagnostic: no per-request log line)")
        row(wl, "nginx proxy" if wl == "http" else "nginx TLS proxy", ROW_C)
        row(wl, "squid", ROW_C)
        row(wl, "mitmproxy", ROW_C, note=mitm_note(wl, ROW_C))
    for c in (LAT_C, ROW_C):
        row("newconn", "direct", c, note="(same CA bundle as keyhole's leg)")
        row("newconn", "keyhole", c)
        row("newconn", "mitmproxy", c, note=mitm_note("newconn", c))
    for c in PEER_CS:
        row("https", "direct", c, shown="direct (HTTPS k-a)", shown_wl="tunnel")
        for label in ("keyhole", "haproxy (tcp)", "squid"):
            row("tunnel", label, c, base_wl="https")
        row("tunnel", "mitmproxy", c, base_wl="https", note=mitm_note("tunnel", c))
    say("-" * len(hdr))

    c = results.get("cold", {})
    if "cold_p50_ms" in c:
        say(f"{'cold leaf (first request to a new host)':41} +{c['added_vs_cached_p50_ms']:.2f} ms p50 "
            f"vs a cached-leaf new connection ({c['cold_p50_ms']:.2f} vs {c['cached_p50_ms']:.2f} ms; "
            f"leaf issuance alone ~{c['leaf_issue_p50_ms']:.2f} ms; sequential, Python client, "
            f"{c['hosts']} hosts)")
    peaks = []
    for wl, by in results["sweeps"].items():
        for label, rec in by.items():
            if rec.get("peak_rss_kb"):
                n = rec.get("processes", 1)
                peaks.append(f"{SHORT[wl]}: {label} {rec['peak_rss_kb'] / 1024:.1f}"
                             + (f" ({n} processes, summed)" if n > 1 else ""))
    say(f"{'peak RSS, MB (VmHWM per instance)':41} " + "; ".join(p for p in peaks if "keyhole" in p))
    say(f"{'':41} " + "; ".join(p for p in peaks if "keyhole" not in p))
    logs = results.get("keyhole_logs", [])
    warn = sum(x["warn"] for x in logs)
    err = sum(x["error"] for x in logs)
    bad_rc = [x["rc"] for x in logs if x["rc"] != 0]
    plain_warn = sum(x.get("expected_plaintext_warn", 0) for x in logs)
    say(f"{'keyhole logs':41} {len(logs)} instances, {warn} WARN, {err} ERROR lines "
        f"(besides {plain_warn:,} expected WARN 'placeholder passed unsubstituted: plain http://'), "
        f"non-zero exits: {bad_rc or 'none'}; longest SIGTERM stop "
        f"{max((x['stop_seconds'] for x in logs), default=0):.1f} s")
    say("=" * 150)

    # The whole sweep, for the plot and the record.
    say("Sweep (req/s, p50 ms/p99 ms, proxy CPU per request, by concurrency):")
    for wl, by in results["sweeps"].items():
        for label, rec in by.items():
            cells = []
            for cc, r in sorted(rec.get("runs", {}).items(), key=lambda kv: int(kv[0])):
                if r.get("ok"):
                    cpu = r.get("proxy_cpu_us_per_req")
                    cells.append(f"c={cc}: {fmt_rps(r['rps'])} {fmt_ms(r['p50_ms'])}/{fmt_ms(r['p99_ms'])}"
                                 + (f" {cpu:.0f}us" if cpu is not None else ""))
                else:
                    cells.append(f"c={cc}: ERROR")
            if rec.get("error"):
                cells.append("error: " + " | ".join(rec["error"].splitlines())[:100])
            say(f"  {SHORT[wl]:16} {label:24} " + "; ".join(cells))


if __name__ == "__main__":
    sys.exit(main())
