#!/usr/bin/env bash
# A self-contained demo of `keyhole exec`: a local HTTPS server that prints
# what it receives, and examples/agent.sh run behind keyhole on the example
# config. Only 127.0.0.1 is contacted.
#
#   bash examples/demo.sh            (uses `keyhole` from PATH, or $KEYHOLE)
#
# Needs openssl, python3 and curl. Exits non-zero if the server did not get
# the secret where allowed, got it anywhere else, or the agent's exit
# status did not come back through keyhole.
set -euo pipefail
cd "$(dirname "$0")/.."
KEYHOLE="${KEYHOLE:-keyhole}"
WORK="$(mktemp -d)"
ECHO_PID=""
cleanup() {
  [ -n "$ECHO_PID" ] && kill "$ECHO_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

# A self-signed certificate for localhost. CA:FALSE matters: keyhole (like
# any WebPKI client) refuses a CA certificate used as a server's own.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
  -addext basicConstraints=critical,CA:FALSE \
  -keyout "$WORK/echo.key" -out "$WORK/echo.pem" 2>/dev/null

# The log exists before the server starts: the redirect below happens in
# the background child, which the first read of the log may outrun.
: >"$WORK/server.log"
python3 examples/echo_server.py --cert "$WORK/echo.pem" --key "$WORK/echo.key" --port 0 \
  >"$WORK/server.log" 2>&1 &
ECHO_PID=$!
PORT=""
for _ in $(seq 1 100); do
  PORT=$(sed -n 's|^listening on https://127.0.0.1:||p' "$WORK/server.log")
  [ -n "$PORT" ] && break
  sleep 0.1
done
[ -n "$PORT" ] || { echo "demo: the echo server did not start" >&2; exit 1; }

echo "=== the agent, under keyhole exec ==="
set +e
"$KEYHOLE" exec --config examples/credentials.json --state-dir "$WORK/state" \
  --upstream-ca "$WORK/echo.pem" -- sh examples/agent.sh "$PORT"
status=$?
set -e

echo
echo "=== what the server received ==="
cat "$WORK/server.log"
echo

fail() { echo "demo: FAILED: $*" >&2; exit 1; }
[ "$status" -eq 7 ] || fail "keyhole exec returned $status, not the agent's 7"
grep -q "authorization: Bearer local-realsecret" "$WORK/server.log" ||
  fail "the local API did not get the real LOCAL_TOKEN"
grep -q "authorization: token kh_ph_" "$WORK/server.log" ||
  fail "the GitHub placeholder did not arrive unchanged on a host it is not for"
! grep -q "ghp_realsecret" "$WORK/server.log" || fail "the GitHub secret reached the wrong host"
! grep -q "/steal" "$WORK/server.log" || fail "the exfiltration request reached a server"
echo "demo: OK: the secret went only where its credential allows; exit status $status came back"
