#!/usr/bin/env bash
# keyhole proxy benchmark: one entry point.
#
#   benches/proxy/run.sh            full run (~13 min plus the build): results in docs/perf/
#   benches/proxy/run.sh --quick    ~4 min, 2 s per point: results in target/bench-proxy/
#   benches/proxy/run.sh --ci       one short pass of each workload (~75 s): target/bench-proxy/
#
# Installs what is missing (wrk, nginx, HAProxy, squid, nftables from apt;
# oha with cargo; mitmproxy and matplotlib with pip in
# target/bench-proxy/venv), builds keyhole --release (unless --keyhole PATH
# names a binary), then runs bench.py inside a private network namespace
# whose only interface is loopback, with a second address on it for the
# keyhole sandbox rows, so nothing it starts can reach another address.
# Other options are passed to bench.py (see bench.py --help).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
VENV=${BENCH_VENV:-$ROOT/target/bench-proxy/venv}
OHA_VERSION=1.16.0

# The upstream's second address (bench.py's ALT_ADDR), on the namespace's loopback.
ALT_ADDR=10.99.0.1

mode=full
keyhole=
out_dir=
prev=
for a in "$@"; do
  case $a in
    --quick) mode=quick ;;
    --ci) mode=ci ;;
    --keyhole=*) keyhole=${a#--keyhole=} ;;
    --out-dir=*) out_dir=${a#--out-dir=} ;;
    -h|--help) sed -n '2,14p' "$0"; exec python3 "$HERE/bench.py" --help ;;
  esac
  [ "$prev" = --keyhole ] && keyhole=$a
  [ "$prev" = --out-dir ] && out_dir=$a
  prev=$a
done

say() { printf '%s\n' "$*" >&2; }

# --- tools -------------------------------------------------------------------
apt_missing=()
command -v wrk >/dev/null || apt_missing+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || apt_missing+=(nginx-light)
command -v squid >/dev/null || [ -x /usr/sbin/squid ] || apt_missing+=(squid)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || apt_missing+=(haproxy)
command -v nft >/dev/null || [ -x /usr/sbin/nft ] || apt_missing+=(nftables)
command -v openssl >/dev/null || apt_missing+=(openssl)
command -v unshare >/dev/null || apt_missing+=(util-linux)
command -v ip >/dev/null || [ -x /usr/sbin/ip ] || apt_missing+=(iproute2)
python3 -c 'import ensurepip, venv' 2>/dev/null || apt_missing+=(python3-venv)
if ((${#apt_missing[@]})); then
  say "installing from apt: ${apt_missing[*]}"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_missing[@]}" >/dev/null; }; then
    say "apt-get install failed; the rows needing those tools will be missing"
  fi
fi
export PATH="$PATH:/usr/sbin:/sbin:$HOME/.cargo/bin"

OHA=$(command -v oha || true)
if [ -z "$OHA" ]; then
  say "installing oha $OHA_VERSION with cargo (a few minutes)"
  cargo install oha --version "$OHA_VERSION" --locked >&2
  OHA=$(command -v oha)
fi

if [ ! -x "$VENV/bin/mitmdump" ] || ! "$VENV/bin/python" -c 'import matplotlib' 2>/dev/null; then
  say "installing mitmproxy and matplotlib into $VENV"
  { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q mitmproxy matplotlib >&2; } ||
    say "pip install failed: mitmproxy rows and/or the plot will be missing"
fi

# --- keyhole -----------------------------------------------------------------
if [ -z "$keyhole" ]; then
  say "building keyhole (release)"
  (cd "$ROOT" && cargo build --release --quiet --bin keyhole)
else
  say "keyhole: $keyhole (not built)"
fi

# --- run ---------------------------------------------------------------------
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (($(ulimit -n) < 8192)); then
  say "warning: ulimit -n is $(ulimit -n); the 5,000-connection test needs more than 5,000 per process"
fi

if busy=$(pgrep -fa 'fuzz' | grep -v pgrep); then
  say "warning: fuzzing processes are running; figures will be lower and noisier:"
  say "$busy"
fi

stamp=$(date -u +%F)
if [ "$mode" = full ]; then
  out_dir=${out_dir:-$ROOT/docs/perf}
  # A second full run on one day gets the time too: an earlier run's raw
  # output may be quoted in docs/PERFORMANCE.md.
  [ -e "$out_dir/proxy-$stamp.txt" ] && stamp="$stamp-$(date -u +%H%M)"
  txt="$out_dir/proxy-$stamp.txt"
else
  out_dir=${out_dir:-$ROOT/target/bench-proxy}
  txt="$out_dir/proxy-$stamp-$mode.txt"
fi
mkdir -p "$out_dir"

args=(python3 "$HERE/bench.py" --keyhole "$ROOT/target/release/keyhole" --oha "$OHA"
      --venv "$VENV" --out-dir "$out_dir" --stamp "$stamp" "$@")
if unshare --net true 2>/dev/null; then
  # A fresh network namespace: loopback only, and no other listener in it.
  # ALT_ADDR on its loopback is the upstream's address for the keyhole
  # sandbox rows (the sandbox leaves 127.0.0.0/8 alone); it exists only in
  # this namespace.
  unshare --net -- bash -c 'ip link set lo up && ip addr add "$0/32" dev lo && exec "$@"' \
    "$ALT_ADDR" "${args[@]}" 2>&1 | tee "$txt"
else
  say "unshare --net is not permitted here: running in the host's network namespace"
  "${args[@]}" 2>&1 | tee "$txt"
fi
status=${PIPESTATUS[0]}
say "raw output: ${txt#"$ROOT"/}"
exit "$status"
