#!/usr/bin/env python3
"""The upstream for the load bench: one HTTPS and one plain-HTTP listener on
127.0.0.1, HTTP/1.1 keep-alive, standard library only.

Every request must carry `x-load-kind` (intercept, tunnel or plain) and an
`Authorization: Bearer ...` header. The server answers 200 only when that
header holds what keyhole should have sent for that kind:

- intercept: one of the real secrets (`--secret`, repeatable: during the
  soak the config alternates between two values);
- tunnel and plain: the placeholder, unchanged (nothing may substitute on a
  blind tunnel or over plaintext).

Anything else is answered 500 with the reason (never the value) in the body,
so a substitution failure is a failed request on the client's side. The
200 body echoes the Authorization value it received: on an intercepted
connection keyhole must scrub the secret back to the placeholder before the
client sees it (the client checks).

    python3 upstream.py --cert leaf.pem --key leaf.key --secret A --secret B \
        --placeholder kh_ph_... --workers 2

Prints `upstream tls PORT plain PORT` once both listeners are bound.
"""
import argparse
import asyncio
import os
import signal
import socket
import ssl
import sys


class Http(asyncio.Protocol):
    """A minimal HTTP/1.1 server: Content-Length bodies, keep-alive, no
    pipelining limits (requests are answered in order)."""

    secrets = ()
    secret_list = []
    placeholder = b""
    stats = None

    def connection_made(self, transport):
        self.transport = transport
        self.buf = b""

    def data_received(self, data):
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > 65536:
                    self.transport.close()
                return
            head = self.buf[:end]
            lines = head.split(b"\r\n")
            length = 0
            auth = None
            kind = None
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                value = value.strip()
                if name == b"content-length":
                    length = int(value)
                elif name == b"authorization":
                    auth = value
                elif name == b"x-load-kind":
                    kind = value
            need = end + 4 + length
            if len(self.buf) < need:
                return
            self.buf = self.buf[need:]
            self.answer(kind, auth)

    def answer(self, kind, auth):
        stats = Http.stats
        stats["requests"] += 1
        if auth is None or not auth.startswith(b"Bearer "):
            ok, why = False, b"no bearer authorization"
        else:
            token = auth[7:]
            if kind == b"intercept":
                ok = token in Http.secrets
                if ok:
                    stats[token] = stats.get(token, 0) + 1
                why = b"" if ok else (
                    b"placeholder not substituted" if token == Http.placeholder
                    else b"unexpected token (not a current secret)")
            elif kind in (b"tunnel", b"plain"):
                ok = token == Http.placeholder
                why = b"" if ok else (
                    b"secret sent where it must not be" if token in Http.secrets
                    else b"placeholder altered")
            else:
                ok, why = False, b"missing or unknown x-load-kind"
        if ok:
            body = b"ok " + auth + b"\n"
            status = b"200 OK"
        else:
            stats["bad"] += 1
            if stats["bad"] <= 5:
                print(f"upstream[{os.getpid()}]: 500 for kind={kind!r}: {why.decode()}",
                      file=sys.stderr, flush=True)
            body = b"bad: " + why + b"\n"
            status = b"500 Internal Server Error"
        self.transport.write(
            b"HTTP/1.1 " + status + b"\r\nContent-Type: text/plain\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)


def listener(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(4096)
    s.setblocking(False)
    return s


async def serve(tls_sock, plain_sock, context):
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    s1 = await loop.create_server(Http, sock=tls_sock, ssl=context, backlog=4096,
                                  ssl_handshake_timeout=30)
    s2 = await loop.create_server(Http, sock=plain_sock, backlog=4096)
    lags = []

    async def lag_monitor():
        # How late a 50 ms timer fires: this server's own queueing delay.
        while True:
            t = loop.time()
            await asyncio.sleep(0.05)
            lags.append(max(0.0, loop.time() - t - 0.05))

    lag = asyncio.create_task(lag_monitor())
    await stop.wait()
    lag.cancel()
    lags.sort()
    if lags:
        p = lambda q: lags[min(len(lags) - 1, int(q * (len(lags) - 1)))] * 1000
        print(f"upstream[{os.getpid()}]: loop lag ms p50 {p(0.5):.2f} p99 {p(0.99):.2f} "
              f"max {lags[-1] * 1000:.2f}", file=sys.stderr, flush=True)
    s1.close()
    s2.close()
    by_secret = ", ".join(f"secret #{i + 1} {Http.stats.get(s, 0)}"
                          for i, s in enumerate(Http.secret_list))
    print(f"upstream[{os.getpid()}]: {Http.stats['requests']} requests, "
          f"{Http.stats['bad']} answered 500; intercepted requests carrying {by_secret}",
          file=sys.stderr, flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--secret", action="append", required=True)
    p.add_argument("--placeholder", required=True)
    p.add_argument("--tls-port", type=int, default=0)
    p.add_argument("--plain-port", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    a = p.parse_args()

    Http.secret_list = [s.encode() for s in a.secret]
    Http.secrets = frozenset(Http.secret_list)
    Http.placeholder = a.placeholder.encode()
    Http.stats = {"requests": 0, "bad": 0}

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(a.cert, a.key)
    context.set_alpn_protocols(["http/1.1"])

    tls_sock = listener(a.tls_port)
    plain_sock = listener(a.plain_port)
    print(f"upstream tls {tls_sock.getsockname()[1]} plain {plain_sock.getsockname()[1]}",
          flush=True)
    children = []
    for _ in range(max(1, a.workers) - 1):
        pid = os.fork()
        if pid == 0:
            children = None
            break
        children.append(pid)
    try:
        asyncio.run(serve(tls_sock, plain_sock, context))
    finally:
        if children:
            for pid in children:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            for pid in children:
                os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
