"""mitmproxy addon for benches/proxy/run.sh: dial the bench's upstream names
(bench.test, *.bench.test, tunnel.test) at 127.0.0.1, as keyhole's --resolve
and squid's hosts_file do, so no name is looked up outside the machine."""

NAMES = ("bench.test", "tunnel.test")


def _local(host) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    host = str(host).rstrip(".").lower()
    return host in NAMES or host.endswith(".bench.test")


def request(flow):
    # Plain HTTP (absolute-form): send it to 127.0.0.1, keeping the Host
    # header. Done on the request rather than on the connection so that
    # mitmproxy matches, and so reuses, its upstream connections.
    req = flow.request
    if req.scheme == "http" and _local(req.host):
        host_header = req.host_header
        req.host = "127.0.0.1"
        req.host_header = host_header


def server_connect(data):
    # CONNECT tunnels (intercepted or passed through): dial 127.0.0.1, keep
    # the name for SNI and certificate verification.
    address = data.server.address
    if address and _local(address[0]):
        if not data.server.sni:
            data.server.sni = address[0]
        data.server.address = ("127.0.0.1", address[1])
