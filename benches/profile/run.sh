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
#
# Each path is counted twice: keyhole, and the floor (floor.rs, the
# example floor_proxy): the same job on the same stack with nothing of
# keyhole's (no policy, substitution, scrubbing, log, pool or head
# guard). The floor is what the stack itself costs; keyhole's own cost is
# the difference. And each path is counted for the C peer of issue 15 under
# the same harness: nginx (one process, no master) as a keep-alive reverse
# proxy for plain HTTP and terminating TLS (HTTP/1.1 and HTTP/2) for
# interception, HAProxy (one thread) in TCP mode for the tunnel; the peers
# are addressed directly (they are reverse proxies), keyhole and the floor
# through CONNECT or absolute-form requests.
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

export PATH="$PATH:/usr/sbin:/sbin"
for tool in valgrind:valgrind curl:curl openssl:openssl python3:python3 nginx:nginx-light haproxy:haproxy; do
  command -v "${tool%%:*}" >/dev/null || { apt-get update -qq && apt-get install -y -qq "${tool#*:}"; }
done

# Release code with line tables, in its own target dir so that the usual
# release build is left alone.
CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
  cargo build --release --quiet --target-dir target/profile-build --bin keyhole --example floor_proxy
BIN="$PWD/target/profile-build/release/keyhole"
FLOOR="$PWD/target/profile-build/release/examples/floor_proxy"

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
  wait_for_address "$log" "keyhole listening on "
}

# Waits for the line "$2ADDR" in the log $1 and sets addr, or exits with
# the log. The log may not exist yet: the background child that redirects
# into it can be outrun.
wait_for_address() {
  addr=""
  for _ in $(seq 1 600); do
    addr=$(sed -n "s/^$2//p" "$1" 2>/dev/null || true)
    [ -n "$addr" ] && return
    sleep 0.1
  done
  cat "$1"
  exit 1
}

# Starts the floor as start_keyhole starts keyhole.
start_floor() {
  local log="$1"
  shift
  "$@" "$FLOOR" "$TLS_PORT" "$PLAIN_PORT" "$WORK/ca.pem" "$WORK/leaf.pem" "$WORK/leaf.key" >"$log" 2>&1 &
  KH=$!
  PIDS+=("$KH")
  wait_for_address "$log" "floor listening on "
}

# Starts nginx (one process) as the plain and TLS reverse proxy in front of
# the upstreams, under "$@"; sets KH and addr (its plain listener).
start_nginx() {
  local log="$1"
  shift
  "$@" nginx -p "$WORK/nginx" -c "$WORK/nginx.conf" -e "$log" >"$log" 2>&1 &
  KH=$!
  PIDS+=("$KH")
  wait_for_port "$NGINX_PLAIN_PORT" "$log"
  wait_for_port "$NGINX_TLS_PORT" "$log"
  addr="127.0.0.1:$NGINX_PLAIN_PORT"
}

# Starts HAProxy (one thread) in TCP mode in front of the TLS upstream.
start_haproxy() {
  local log="$1"
  shift
  "$@" haproxy -db -f "$WORK/haproxy.cfg" >"$log" 2>&1 &
  KH=$!
  PIDS+=("$KH")
  wait_for_port "$HAPROXY_PORT" "$log"
  addr="127.0.0.1:$HAPROXY_PORT"
}

# Waits until 127.0.0.1:$1 accepts a connection, or exits with the log $2.
wait_for_port() {
  for _ in $(seq 1 600); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return
    sleep 0.1
  done
  cat "$2"
  exit 1
}

# One proxy (a start_* function) under callgrind; runs curl with N, then 2N
# URLs, each on one connection, with a callgrind dump after each. "@ADDR@"
# in the URL or curl's arguments becomes the proxy's address. Prints the
# marginal count per request; sets PER_REQUEST to it.
profile() {
  local start="$1" name="$2" url="$3"
  shift 3
  local log="$WORK/$name.log" out="$OUT/callgrind.out.$name"
  "$start" "$log" valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out"
  local vg=$KH
  url=${url//@ADDR@/$addr}
  local client=(curl -sS -H "Authorization: Bearer $TOKEN")
  for a in "$@"; do client+=("${a//@ADDR@/$addr}"); done
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
  PER_REQUEST=$(((total[1] - total[0]) / N))
  printf '%-20s %6d / %6d requests  %8d per request  (whole: %d)\n' "$name" "$N" $((2 * N)) \
    "$PER_REQUEST" $((total[0] / N))
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

dirty=$(git diff --quiet HEAD -- src benches Cargo.toml Cargo.lock 2>/dev/null || echo "-dirty")
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null)$dirty," \
  "$(nproc) CPUs ($(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)), $(uname -sr), $(valgrind --version)"
echo "keyhole instructions per request (callgrind; marginal cost between $N and $((2 * N)) requests on one connection)"
# The peers' configurations: nginx with its access log buffered as the
# proxy bench has it, upstream connections kept alive and verified.
NGINX_PLAIN_PORT=$(free_port)
NGINX_TLS_PORT=$(free_port)
HAPROXY_PORT=$(free_port)
mkdir -p "$WORK/nginx/logs"
cat >"$WORK/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
pid $WORK/nginx/nginx.pid;
events { worker_connections 1024; }
http {
  access_log $WORK/nginx/access.log combined buffer=64k flush=1s;
  upstream plain { server 127.0.0.1:$PLAIN_PORT; keepalive 16; }
  upstream tls { server 127.0.0.1:$TLS_PORT; keepalive 16; }
  server {
    listen 127.0.0.1:$NGINX_PLAIN_PORT;
    location / { proxy_pass http://plain; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
  server {
    listen 127.0.0.1:$NGINX_TLS_PORT ssl http2;
    ssl_certificate $WORK/leaf.pem;
    ssl_certificate_key $WORK/leaf.key;
    location / {
      proxy_pass https://tls; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_ssl_verify on; proxy_ssl_trusted_certificate $WORK/ca.pem;
      proxy_ssl_name prof.test; proxy_ssl_server_name on; proxy_ssl_session_reuse on;
    }
  }
}
CONF
cat >"$WORK/haproxy.cfg" <<CONF
global
  nbthread 1
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend tunnel
  bind 127.0.0.1:$HAPROXY_PORT
  default_backend upstream
backend upstream
  server tls 127.0.0.1:$TLS_PORT
CONF

PLAIN_URL="http://plain.test:$PLAIN_PORT/p"
TLS_URL="https://prof.test:$TLS_PORT/p"
TUNNEL_URL="https://tunnel.test:$TLS_PORT/p"
NGINX_TLS=(--cacert "$WORK/ca.pem" --resolve "prof.test:$NGINX_TLS_PORT:127.0.0.1")
SUMMARY=()
# Counts keyhole, the floor and the peer for one path; $1 is the path,
# $2 the peer's start function, $3 its URL; the rest are curl's
# arguments for all three, then "--", then those for keyhole only.
row() {
  local name="$1" peer="$2" peer_url="$3" url="$4"
  shift 4
  local common=() own=()
  while (($#)) && [ "$1" != -- ]; do common+=("$1"); shift; done
  (($#)) && shift
  own=("$@")
  local peer_args=("${common[@]}")
  profile start_keyhole "$name" "$url" "${common[@]}" --proxy "http://@ADDR@" "${own[@]}"
  local k=$PER_REQUEST
  profile start_floor "floor-$name" "$url" "${common[@]}" --proxy "http://@ADDR@" --cacert "$WORK/ca.pem"
  local f=$PER_REQUEST
  [ "$peer" = start_nginx ] && [ "${peer_url#https}" != "$peer_url" ] && peer_args+=("${NGINX_TLS[@]}")
  [ "$peer" = start_haproxy ] && peer_args+=(--cacert "$WORK/ca.pem" --resolve "tunnel.test:$HAPROXY_PORT:127.0.0.1")
  profile "$peer" "${peer#start_}-$name" "$peer_url" "${peer_args[@]}"
  SUMMARY+=("$(printf '%-16s %8d %8d %8d %8d %s' "$name" "$k" "$f" $((k - f)) "$PER_REQUEST" "${peer#start_}")")
}

row plain start_nginx "http://@ADDR@/p" "$PLAIN_URL" --http1.1
row intercept-h1 start_nginx "https://prof.test:$NGINX_TLS_PORT/p" "$TLS_URL" --http1.1 -- --cacert "$WORK/state/ca.pem"
row intercept-h2 start_nginx "https://prof.test:$NGINX_TLS_PORT/p" "$TLS_URL" --http2 -- --cacert "$WORK/state/ca.pem"
row tunnel start_haproxy "https://tunnel.test:$HAPROXY_PORT/p" "$TUNNEL_URL" --http1.1 -- --cacert "$WORK/ca.pem"
echo
echo "per request       keyhole    floor  keyhole's own   C peer"
printf '%s\n' "${SUMMARY[@]}"
echo "top functions: $OUT/top.*.txt; dumps: $OUT/callgrind.out.*.{1,2}"
if [ -n "${PROFILE_FLAMEGRAPH:-}" ]; then
  flame intercept-h1 https prof.test "$TLS_PORT" --http1.1
fi
