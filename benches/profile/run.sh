#!/usr/bin/env bash
# Counts the instructions keyhole spends per request with callgrind, for
# the paths that matter: plain-HTTP forwarding, intercepted HTTPS
# keep-alive over HTTP/1.1 and over HTTP/2 (one TLS connection, many
# requests) and tunnelling, at the default log level (info: one access-log
# line per request; PROFILE_RUST_LOG overrides it).
#
#   bash benches/profile/run.sh [REQUESTS]      (default 400)
#   PROFILE_FLAMEGRAPH=1 bash benches/profile/run.sh [REQUESTS]
#       also samples keyhole with perf (cpu-clock, DWARF call graphs) under
#       the intercepted HTTP/1.1 load and writes a flame graph to
#       target/profile/flame-intercept-h1.svg (needs linux-perf and
#       inferno: cargo install inferno).
#
# callgrind counts instructions, not seconds, so the figures repeat for the
# same binary and inputs whatever else the machine does (within about 1%:
# the multi-threaded runtime's scheduling varies). Each path runs under its
# own callgrind process, instrumented (callgrind_control --instr=on) only
# after a warm-up request. Two connections follow, one with N requests and
# one with 2N; the counts are dumped after each, and the figure is the
# difference divided by N: the marginal cost of one request, with the
# connection's fixed costs (TCP and TLS handshakes, leaf, pool) cancelled
# out. "whole" is the first connection's total divided by N, fixed costs
# included, as earlier versions of this script reported. Writes
# callgrind.out.* and the top functions to target/profile/. Needs valgrind,
# curl, openssl and python3.
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

# Starts keyhole (under the command in "$@", if any) logging to $1, and
# waits for its address: sets KH (its pid) and addr, or exits with the log.
start_keyhole() {
  local log="$1"
  shift
  RUST_LOG="${PROFILE_RUST_LOG:-info}" "$@" \
    "$BIN" run --config "$WORK/config.json" --state-dir "$WORK/state" --listen 127.0.0.1:0 \
    --upstream-ca "$WORK/ca.pem" \
    --resolve "prof.test:$TLS_PORT:127.0.0.1" --resolve "tunnel.test:$TLS_PORT:127.0.0.1" \
    --resolve "plain.test:$PLAIN_PORT:127.0.0.1" >"$log" 2>&1 &
  KH=$!
  PIDS+=("$KH")
  addr=""
  for _ in $(seq 1 600); do
    addr=$(sed -n 's/^keyhole listening on //p' "$log")
    [ -n "$addr" ] && break
    sleep 0.1
  done
  [ -n "$addr" ] || { cat "$log"; exit 1; }
}

# One keyhole under callgrind; runs curl with N, then 2N URLs, each on one
# connection, with a callgrind dump after each.
profile() {
  local name="$1" scheme="$2" host="$3" port="$4" version="$5"
  local log="$WORK/$name.log" out="$OUT/callgrind.out.$name"
  start_keyhole "$log" valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out"
  local vg=$KH
  local url="$scheme://$host:$port/p"
  local cacert=(--cacert "$WORK/state/ca.pem")
  [ "$host" = tunnel.test ] && cacert=(--cacert "$WORK/ca.pem")
  local client=(curl -sS "$version" --proxy "http://$addr" "${cacert[@]}" -H "Authorization: Bearer $TOKEN")
  "${client[@]}" "$url" >/dev/null
  callgrind_control --instr=on "$vg" >/dev/null 2>&1
  local urls=() total=()
  for n in "$N" $((2 * N)); do
    urls=()
    for _ in $(seq 1 "$n"); do urls+=("$url"); done
    "${client[@]}" "${urls[@]}" >/dev/null
    callgrind_control --dump="$name-$n" "$vg" >/dev/null 2>&1
  done
  kill -TERM "$vg"
  wait "$vg" || true
  for part in 1 2; do
    total+=("$(callgrind_annotate "$out.$part" 2>/dev/null | sed -n 's/^\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' | tr -d ,)")
  done
  printf '%-16s %6d / %6d requests  %8d per request  (whole: %d)\n' "$name" "$N" $((2 * N)) \
    $(((total[1] - total[0]) / N)) $((total[0] / N))
  callgrind_annotate "$out.2" 2>/dev/null | awk '/file:function/{on=1} on && n++ < 40' >"$OUT/top.$name.txt"
}

# keyhole sampled by perf while curl sends N requests on each of 8
# connections at once; the stacks folded into a flame graph.
flame() {
  local name="$1" scheme="$2" host="$3" port="$4" version="$5"
  local log="$WORK/$name-perf.log"
  start_keyhole "$log"
  local kh=$KH
  local url="$scheme://$host:$port/p" urls=()
  for _ in $(seq 1 "$N"); do urls+=("$url"); done
  perf record -F 1999 --call-graph dwarf,16384 -o "$WORK/$name.perf" -p "$kh" 2>/dev/null &
  local rec=$!
  sleep 0.5
  local clients=()
  for _ in 1 2 3 4 5 6 7 8; do
    curl -sS "$version" --proxy "http://$addr" --cacert "$WORK/state/ca.pem" \
      -H "Authorization: Bearer $TOKEN" "${urls[@]}" >/dev/null &
    clients+=($!)
  done
  wait "${clients[@]}" || true
  kill -INT "$rec"; wait "$rec" || true
  kill -TERM "$kh"; wait "$kh" || true
  perf script -i "$WORK/$name.perf" 2>/dev/null | inferno-collapse-perf >"$OUT/$name.folded"
  inferno-flamegraph --title "keyhole: $name, $N x 8 requests (perf, cpu-clock)" \
    <"$OUT/$name.folded" >"$OUT/flame-$name.svg"
  echo "flame graph: $OUT/flame-$name.svg"
}

echo "keyhole instructions per request (callgrind; marginal cost between $N and $((2 * N)) requests on one connection)"
profile plain http plain.test "$PLAIN_PORT" --http1.1
profile intercept-h1 https prof.test "$TLS_PORT" --http1.1
profile intercept-h2 https prof.test "$TLS_PORT" --http2
profile tunnel https tunnel.test "$TLS_PORT" --http1.1
echo "top functions: $OUT/top.*.txt; dumps: $OUT/callgrind.out.*.{1,2}"
if [ -n "${PROFILE_FLAMEGRAPH:-}" ]; then
  flame intercept-h1 https prof.test "$TLS_PORT" --http1.1
fi
