#!/usr/bin/env bash
# Counts the instructions keyhole spends per request with callgrind, for
# the three paths that matter: plain-HTTP forwarding, intercepted HTTPS
# keep-alive (one TLS connection, many requests) and tunnelling.
#
#   bash benches/profile/run.sh [REQUESTS]      (default 400)
#
# callgrind counts instructions, not seconds, so the figures repeat for the
# same binary and inputs whatever else the machine does. Each path runs
# under its own callgrind process; start-up and shutdown are excluded by
# instrumenting (callgrind_control --instr=on) only after a warm-up request; the
# graceful shutdown after SIGTERM is counted (a few thousand instructions). Writes callgrind.out.* and the top functions to
# target/profile/. Needs valgrind, curl, openssl and python3.
set -euo pipefail
cd "$(dirname "$0")/../.."
N="${1:-400}"
OUT="$PWD/target/profile"
mkdir -p "$OUT"
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

for tool in valgrind curl openssl python3; do
  command -v "$tool" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$tool"; }
done

# Release code with line tables, in its own target dir so that the usual
# release build is left alone.
CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
  cargo build --release --quiet --target-dir target/profile-build
BIN="$PWD/target/profile-build/release/keyhole"

# A CA and a CA:FALSE leaf for the upstream.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=profile-ca -keyout "$WORK/ca.key" -out "$WORK/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -subj /CN=prof.test -keyout "$WORK/leaf.key" -out "$WORK/leaf.csr" 2>/dev/null
printf 'basicConstraints=critical,CA:FALSE\nsubjectAltName=DNS:prof.test,DNS:tunnel.test\n' >"$WORK/ext"
openssl x509 -req -in "$WORK/leaf.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" \
  -CAcreateserial -days 2 -extfile "$WORK/ext" -out "$WORK/leaf.pem" 2>/dev/null

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
TLS_PORT=$(free_port)
PLAIN_PORT=$(free_port)
python3 benches/profile/upstream.py "$TLS_PORT" "$WORK/leaf.pem" "$WORK/leaf.key" &
PIDS+=($!)
python3 benches/profile/upstream.py "$PLAIN_PORT" &
PIDS+=($!)

cat >"$WORK/config.json" <<JSON
{
  "egress": {"type": "limited", "allowed_hosts": ["prof.test", "tunnel.test", "plain.test"]},
  "credentials": [
    {"id": "vcrd_prof", "auth": {"type": "environment_variable", "secret_name": "PROF_TOKEN",
      "secret_value": "sek_profile_0123456789",
      "networking": {"type": "limited", "allowed_hosts": ["prof.test", "plain.test"]}}}
  ]
}
JSON
TOKEN=$("$BIN" env --config "$WORK/config.json" --state-dir "$WORK/state" --format json |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["PROF_TOKEN"])')

# One keyhole under callgrind; runs curl with N URLs on one connection.
profile() {
  local name="$1" scheme="$2" host="$3" port="$4"
  local log="$WORK/$name.log" out="$OUT/callgrind.out.$name"
  RUST_LOG=warn valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" \
    "$BIN" run --config "$WORK/config.json" --state-dir "$WORK/state" --listen 127.0.0.1:0 \
    --upstream-ca "$WORK/ca.pem" \
    --resolve "prof.test:$TLS_PORT:127.0.0.1" --resolve "tunnel.test:$TLS_PORT:127.0.0.1" \
    --resolve "plain.test:$PLAIN_PORT:127.0.0.1" >"$log" 2>&1 &
  local vg=$!
  local addr=""
  for _ in $(seq 1 600); do
    addr=$(sed -n 's/^keyhole listening on //p' "$log")
    [ -n "$addr" ] && break
    sleep 0.1
  done
  [ -n "$addr" ] || { cat "$log"; exit 1; }
  local url="$scheme://$host:$port/p"
  local cacert=(--cacert "$WORK/state/ca.pem")
  [ "$host" = tunnel.test ] && cacert=(--cacert "$WORK/ca.pem")
  curl -sS --proxy "http://$addr" "${cacert[@]}" -H "Authorization: Bearer $TOKEN" "$url" >/dev/null
  callgrind_control --instr=on "$vg" >/dev/null 2>&1
  local urls=()
  for _ in $(seq 1 "$N"); do urls+=("$url"); done
  curl -sS --proxy "http://$addr" "${cacert[@]}" -H "Authorization: Bearer $TOKEN" "${urls[@]}" >/dev/null
  kill -TERM "$vg"
  wait "$vg" || true
  local total
  total=$(callgrind_annotate "$out" 2>/dev/null | sed -n 's/^\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' | tr -d ,)
  printf '%-12s %8d requests  %12d instructions  %8d per request\n' "$name" "$N" "$total" $((total / N))
  callgrind_annotate "$out" 2>/dev/null | awk '/file:function/{on=1} on && n++ < 40' >"$OUT/top.$name.txt"
}

echo "keyhole instructions per request (callgrind, $N requests on one connection)"
profile plain http plain.test "$PLAIN_PORT"
profile intercept https prof.test "$TLS_PORT"
profile tunnel https tunnel.test "$TLS_PORT"
echo "top functions: $OUT/top.*.txt"
