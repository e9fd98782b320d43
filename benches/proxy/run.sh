#!/usr/bin/env bash
# keyhole proxy benchmark: one entry point.
#
#   benches/proxy/run.sh            full run (~10 min plus the build): results in docs/perf/
#   benches/proxy/run.sh --quick    ~2.5 min, 2 s per point: results in target/bench-proxy/
#
# Installs what is missing (wrk, nginx, squid from apt; oha with cargo;
# mitmproxy and matplotlib with pip in target/bench-proxy/venv), builds
# keyhole --release, then runs bench.py inside a private network namespace
# whose only interface is loopback, so nothing it starts can reach another
# address. Other options are passed to bench.py (see bench.py --help).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
VENV=${BENCH_VENV:-$ROOT/target/bench-proxy/venv}
OHA_VERSION=1.16.0

quick=0
for a in "$@"; do
  case $a in
    --quick) quick=1 ;;
    -h|--help) sed -n '2,13p' "$0"; exec python3 "$HERE/bench.py" --help ;;
  esac
done

say() { printf '%s\n' "$*" >&2; }

# --- tools -------------------------------------------------------------------
apt_missing=()
command -v wrk >/dev/null || apt_missing+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || apt_missing+=(nginx-light)
command -v squid >/dev/null || [ -x /usr/sbin/squid ] || apt_missing+=(squid)
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
say "building keyhole (release)"
(cd "$ROOT" && cargo build --release --quiet --bin keyhole)

# --- run ---------------------------------------------------------------------
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (($(ulimit -n) < 8192)); then
  say "warning: ulimit -n is $(ulimit -n); the 2,000-connection test needs about 6,000"
fi

if busy=$(pgrep -fa 'fuzz' | grep -v pgrep); then
  say "warning: fuzzing processes are running; figures will be lower and noisier:"
  say "$busy"
fi

stamp=$(date -u +%F)
if ((quick)); then
  out_dir="$ROOT/target/bench-proxy"
  txt="$out_dir/proxy-$stamp-quick.txt"
else
  out_dir="$ROOT/docs/perf"
  txt="$out_dir/proxy-$stamp.txt"
fi
mkdir -p "$out_dir"

args=(python3 "$HERE/bench.py" --keyhole "$ROOT/target/release/keyhole" --oha "$OHA"
      --venv "$VENV" --out-dir "$out_dir" --stamp "$stamp" "$@")
if unshare --net true 2>/dev/null; then
  # A fresh network namespace: loopback only, and no other listener in it.
  unshare --net -- bash -c 'ip link set lo up && exec "$@"' bash "${args[@]}" 2>&1 | tee "$txt"
else
  say "unshare --net is not permitted here: running in the host's network namespace"
  "${args[@]}" 2>&1 | tee "$txt"
fi
status=${PIPESTATUS[0]}
say "raw output: ${txt#"$ROOT"/}"
exit "$status"
