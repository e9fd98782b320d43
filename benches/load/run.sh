#!/usr/bin/env bash
# keyhole load bench: a script, not a timed test. Everything runs on
# 127.0.0.1: a Python upstream (HTTPS and plain HTTP, keep-alive), keyhole
# (release build) and a Python asyncio load client.
#
#   bash benches/load/run.sh connections [--connections 5000] [--hold 60]
#        [--rounds 1] [--active-fraction 0.2] [--active-interval 0.1,0.5]
#   bash benches/load/run.sh soak [--minutes 10] [--soak-connections 50]
#        [--interval 0.02] [--reload-every 1]
#
# Common flags: --out FILE (default docs/perf/load-<mode>.txt; "-" for
# stdout only), --workers N (client and upstream processes, default 2),
# --max-connections N (keyhole's, default 12000), --no-build, --keep (keep
# the temp dir with keyhole's log), and --client-args '...' (extra flags
# for client.py, see `python3 benches/load/client.py connections --help`).
#
# Exit status: 0 when no request failed (and, for soak, RSS stayed flat);
# the client's status otherwise. See docs/PERFORMANCE.md, "Load".
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 2; }
[ $# -ge 1 ] || usage
mode=$1; shift
case "$mode" in connections|soak) ;; -h|--help) usage ;; *) echo "unknown mode: $mode" >&2; usage ;; esac

connections=5000 hold=60 rounds=1 active_fraction=0.2 active_interval=0.1,0.5
minutes=10 soak_connections=50 interval=0.02 reload_every=1
workers=2 out="" build=1 keep=0 client_args="" max_connections=12000
while [ $# -gt 0 ]; do
  case "$1" in
    --connections) connections=$2; shift 2 ;;
    --hold) hold=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --active-fraction) active_fraction=$2; shift 2 ;;
    --active-interval) active_interval=$2; shift 2 ;;
    --minutes) minutes=$2; shift 2 ;;
    --soak-connections) soak_connections=$2; shift 2 ;;
    --interval) interval=$2; shift 2 ;;
    --reload-every) reload_every=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --max-connections) max_connections=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --keep) keep=1; shift ;;
    --client-args) client_args=$2; shift 2 ;;
    -h|--help) usage ;;
    *) echo "unknown flag: $1" >&2; usage ;;
  esac
done
[ -n "$out" ] || out="$root/docs/perf/load-$mode.txt"

# File descriptors: the client holds one per connection, keyhole two
# (client side and upstream side for tunnels). Raise the soft limit as far
# as the hard limit allows, up to 65536.
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ] || [ "$hard" -gt 65536 ]; then hard=65536; fi
ulimit -n "$hard"
if [ "$mode" = connections ] && [ "$(ulimit -n)" -lt $((2 * connections + 200)) ]; then
  echo "ulimit -n is $(ulimit -n): too low for $connections connections (keyhole needs about $((2 * connections)))" >&2
  exit 2
fi

if [ "$build" = 1 ]; then
  (cd "$root" && cargo build --release --quiet)
fi
bin="$root/target/release/keyhole"

tmp=$(mktemp -d /tmp/keyhole-load.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "$keep" = 1 ]; then echo "kept $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

wait_for_line() { # FILE PATTERN SECONDS
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    if grep -q "$2" "$1" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for '$2' in $1" >&2
  cat "$1" "${1%.*}.log" >&2 2>/dev/null || true
  exit 1
}

# --- certificates: a test CA and an upstream leaf (CA:FALSE) -------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=keyhole load test CA" -keyout "$tmp/ca.key" -out "$tmp/ca.pem" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
  2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -subj "/CN=api.load.test" -keyout "$tmp/leaf.key" -out "$tmp/leaf.csr" 2>/dev/null
cat > "$tmp/leaf.ext" <<'EOF'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:api.load.test,DNS:tunnel.load.test
EOF
openssl x509 -req -in "$tmp/leaf.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" \
  -CAcreateserial -days 2 -extfile "$tmp/leaf.ext" -out "$tmp/leaf.pem" 2>/dev/null

# --- config: one credential for the intercepted host, another untouched ---
secret_a="load-secret-alpha-0123456789"
secret_b="load-secret-bravo-9876543210"
cat > "$tmp/config.json" <<EOF
{
  "vault_id": "vlt_load",
  "egress": {"type": "limited", "allowed_hosts": ["api.load.test", "tunnel.load.test", "plain.load.test", "other.load.test"]},
  "credentials": [
    {
      "id": "vcrd_load",
      "display_name": "load bench",
      "auth": {
        "type": "environment_variable",
        "secret_name": "LOAD_TOKEN",
        "secret_value": "$secret_a",
        "networking": {"type": "limited", "allowed_hosts": ["api.load.test"]}
      }
    },
    {
      "id": "vcrd_other",
      "display_name": "another credential",
      "metadata": {"reload": "0"},
      "auth": {
        "type": "environment_variable",
        "secret_name": "OTHER_TOKEN",
        "secret_value": "other-secret-value",
        "networking": {"type": "limited", "allowed_hosts": ["other.load.test"]}
      }
    }
  ]
}
EOF
(umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$tmp/token")
mkdir -m 700 "$tmp/state"
"$bin" check --config "$tmp/config.json" >/dev/null
"$bin" ca --state-dir "$tmp/state" >/dev/null
placeholder=$("$bin" env --config "$tmp/config.json" --state-dir "$tmp/state" --format json |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["LOAD_TOKEN"])')

# --- upstream --------------------------------------------------------------
python3 "$here/upstream.py" --cert "$tmp/leaf.pem" --key "$tmp/leaf.key" \
  --secret "$secret_a" --secret "$secret_b" --placeholder "$placeholder" \
  --workers "$workers" >"$tmp/upstream.out" 2>"$tmp/upstream.log" &
pids+=($!)
wait_for_line "$tmp/upstream.out" "^upstream tls" 10
read -r _ _ tls_port _ plain_port < "$tmp/upstream.out"

# --- keyhole -----------------------------------------------------------------
header_timeout=$(python3 -c "print(int(float('$hold')) + 180)")
keyhole_cmd=("$bin" run --config "$tmp/config.json" --listen 127.0.0.1:0
  --state-dir "$tmp/state" --upstream-ca "$tmp/ca.pem"
  --resolve "api.load.test:$tls_port:127.0.0.1" --resolve "tunnel.load.test:$tls_port:127.0.0.1"
  --resolve "plain.load.test:$plain_port:127.0.0.1"
  --admin 127.0.0.1:0 --admin-token-file "$tmp/token"
  --max-connections "$max_connections" --header-read-timeout "$header_timeout")
"${keyhole_cmd[@]}" >"$tmp/keyhole.out" 2>"$tmp/keyhole.log" &
kpid=$!
pids+=($kpid)
wait_for_line "$tmp/keyhole.out" "^keyhole admin listening on" 20
wait_for_line "$tmp/keyhole.out" "^keyhole listening on" 20
proxy=$(sed -n 's/^keyhole listening on //p' "$tmp/keyhole.out")
admin=$(sed -n 's/^keyhole admin listening on //p' "$tmp/keyhole.out")

client=(python3 "$here/client.py" "$mode" --proxy "$proxy" --keyhole-pid "$kpid"
  --keyhole-ca "$tmp/state/ca.pem" --upstream-ca "$tmp/ca.pem"
  --placeholder "$placeholder" --secret "$secret_a" --secret "$secret_b"
  --intercept-host api.load.test --tunnel-host tunnel.load.test --plain-host plain.load.test
  --tls-port "$tls_port" --plain-port "$plain_port"
  --metrics-url "http://$admin/metrics" --admin-token-file "$tmp/token" --workers "$workers")
if [ "$mode" = connections ]; then
  client+=(--connections "$connections" --hold "$hold" --rounds "$rounds" --active-fraction "$active_fraction"
    --active-interval "$active_interval")
else
  client+=(--connections "$soak_connections" --minutes "$minutes" --interval "$interval"
    --reload-every "$reload_every" --config "$tmp/config.json")
fi
# shellcheck disable=SC2206
client+=($client_args)

report="$tmp/report.txt"
{
  echo "keyhole load bench: $mode"
  echo "date         $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "HEAD at run start $(cd "$root" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$root" && git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo ' (src/ modified in the working tree)')"
  echo "machine      $(nproc) CPUs, $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p'), $(uname -sr), $(python3 --version)"
  echo "ulimit -n    $(ulimit -n)"
  echo "before       $(uptime)"
  echo "binary       target/release/keyhole built $(date -u -r "$bin" '+%Y-%m-%d %H:%M:%S UTC')"
  echo "other load   (pgrep -fa 'fuzz|cargo|rustc', first 120 characters each)"
  pgrep -fa 'fuzz|cargo|rustc' | cut -c1-120 | sed 's/^/             /' || true
  echo "keyhole      ${keyhole_cmd[*]}" | sed "s#$tmp#\$TMP#g"
  echo "client       ${client[*]}" | sed "s#$tmp#\$TMP#g; s#$here/##"
  echo
} > "$report"
cat "$report"

set +e
"${client[@]}" | tee -a "$report"
rc=${PIPESTATUS[0]}
set -e

cpu_of() { # PID and its children: "user+system" seconds
  local p t=0
  for p in "$1" $(pgrep -P "$1" || true); do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$t $(getconf CLK_TCK)" | awk '{printf "%.1f", $1 / $2}'
}
echo "after        $(uptime)" | tee -a "$report"
echo "upstream CPU $(cpu_of "${pids[0]}") s (all its processes, whole run)" | tee -a "$report"
kill -TERM "$kpid" 2>/dev/null || true
for ((i = 0; i < 150; i++)); do kill -0 "$kpid" 2>/dev/null || break; sleep 0.1; done
wait "$kpid" 2>/dev/null; krc=$?
upid=${pids[0]}
kill -TERM "$upid" 2>/dev/null || true
wait "$upid" 2>/dev/null || true
{
  echo
  echo "keyhole exit status on SIGTERM: $krc"
  echo "keyhole log: $(wc -l < "$tmp/keyhole.log") lines; by level:" \
    "$(grep -oE '^[^ ]+ +(TRACE|DEBUG|INFO|WARN|ERROR)' "$tmp/keyhole.log" | awk '{print $2}' | sort | uniq -c | tr '\n' ' ')"
  echo "  'config reloaded' lines: $(grep -c 'config reloaded' "$tmp/keyhole.log" || true);" \
    "'config reload refused' lines: $(grep -c 'config reload refused' "$tmp/keyhole.log" || true)"
  echo "  request lines with a status other than 200: $(grep -E ' (request|http request)' "$tmp/keyhole.log" | grep -E 'status=' | grep -vc 'status=200' || true)"
  echo "  WARN/ERROR lines by message (count; timestamps, peers and ms cut):"
  grep -E '^[^ ]+ +(WARN|ERROR)' "$tmp/keyhole.log" | cut -d' ' -f2- |
    sed -E 's/peer=[0-9.:]+/peer=_/g; s/ms=[0-9]+/ms=_/g; s#/tmp/keyhole-load\.[A-Za-z0-9]+#$TMP#g' |
    cut -c1-300 | sort | uniq -c | sort -rn | head -20 | sed 's/^/    /'
  echo "  last lines:"
  tail -n 3 "$tmp/keyhole.log" | cut -c1-400 | sed 's/^/    /'
  echo "upstream log:"
  sed 's/^/    /' "$tmp/upstream.log" | head -30
} | tee -a "$report"

if [ "$out" != "-" ]; then
  mkdir -p "$(dirname "$out")"
  cp "$report" "$out"
  echo "results written to $out"
fi
exit "$rc"
