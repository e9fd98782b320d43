"""One GET through keyhole with Python's `requests` or `httpx`, as a sandboxed
program would make it: the proxy and the CA bundle come from the environment
that `keyhole env` printed, and the placeholders from its variables.

    python http_client.py requests|httpx URL 'Header-Name=template'...

Each template may name environment variables as $NAME (string.Template).
Prints one JSON object: {"client", "version", "status", "body"}.
"""
import json
import os
import string
import sys


def main():
    client, url, *templates = sys.argv[1:]
    headers = {}
    for t in templates:
        name, _, value = t.partition("=")
        headers[name] = string.Template(value).substitute(os.environ)
    if client == "requests":
        import requests

        res = requests.get(url, headers=headers, timeout=30)
        version, status, body = requests.__version__, res.status_code, res.text
    elif client == "httpx":
        import httpx

        res = httpx.get(url, headers=headers, timeout=30)
        version, status, body = httpx.__version__, res.status_code, res.text
    else:
        sys.exit(f"unknown client {client!r}: use requests or httpx")
    print(json.dumps({"client": client, "version": version, "status": status, "body": body}))


if __name__ == "__main__":
    main()
