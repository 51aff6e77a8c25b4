#!/usr/bin/env bash
# Side-by-side benchmark: nflow against the Node-RED peer, same machine, same run.
#
# Starts nflow with bench/apps/bench.json (ANY /bench, ANY /hello, ANY /chain10) from a
# throwaway working directory, starts Node-RED with ../shared/bench/peer-nodered.sh, loads
#   nflow /bench, Node-RED /bench, nflow /hello, Node-RED /hello, nflow /chain10, Node-RED /chain10
# with ../shared/bench/wrk-matrix.sh, prints the CSV rows and the ratios against nflow's
# targets (/bench >= 4.0x Node-RED req/s with p99 <= half of Node-RED's; /hello >= 3.0x;
# /chain10 >= 4.0x; zero errors).
# Both servers are stopped by PID on exit, on Ctrl-C and on errors.
#
# Env: NFLOW_PORT (8090), PEER_PORT (1880), WORKERS (2), CONNS (64), DURATION (15s),
#      HOST (127.0.0.1; loopback only), NFLOW (nflow executable; default .venv/bin/nflow),
#      KEEP=1 keeps the work directory (nflow log, SQLite file, raw wrk output).
#      WARMUP, THREADS and WRK_TIMEOUT are passed through to wrk-matrix.sh.
# Exit status: 0 if every target passed, 1 if one failed, other values on errors.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
SHARED="$(dirname "$REPO")/shared/bench"
APP="$REPO/bench/apps/bench.json"
NFLOW_PORT="${NFLOW_PORT:-8090}"
PEER_PORT="${PEER_PORT:-1880}"
WORKERS="${WORKERS:-2}"
CONNS="${CONNS:-64}"
DURATION="${DURATION:-15s}"
HOST="${HOST:-127.0.0.1}"
NR_HOME="${NR_HOME:-$HOME/.cache/nflow-peers/node-red}"
export NR_HOME

case "$HOST" in
  127.*|localhost|::1) ;;
  *) echo "refusing non-loopback address: $HOST (this benchmark runs on loopback only)" >&2; exit 2 ;;
esac
case "$HOST" in
  ::1) URL_HOST="[::1]" ;;
  *) URL_HOST="$HOST" ;;
esac
# Node-RED's peer settings bind 127.0.0.1 only.
NFLOW_URL="http://$URL_HOST:$NFLOW_PORT"
PEER_URL="http://127.0.0.1:$PEER_PORT"

if [ -n "${NFLOW:-}" ]; then
  :
elif [ -x "$REPO/.venv/bin/nflow" ]; then
  NFLOW="$REPO/.venv/bin/nflow"
else
  NFLOW="$(command -v nflow || true)"
fi
if [ -z "$NFLOW" ] || [ ! -x "$NFLOW" ]; then
  echo "nflow executable not found (set NFLOW=...)" >&2
  exit 2
fi
for f in "$SHARED/peer-nodered.sh" "$SHARED/wrk-matrix.sh" "$APP"; do
  [ -f "$f" ] || { echo "missing $f" >&2; exit 2; }
done

# --- cleanup: stop what this script started, by PID ---------------------------------------
NFLOW_PID=""
NR_PID=""
MATRIX_PID=""
WORK=""
# stop_pid and stop_matrix (shared with bench/features.sh).
# shellcheck source=bench/lib.sh
. "$REPO/bench/lib.sh"
# shellcheck disable=SC2317
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_matrix
  stop_pid "$NFLOW_PID" nflow
  stop_pid "$NR_PID" node-red
  if [ -n "$WORK" ] && [ -d "$WORK" ]; then
    if [ "${KEEP:-0}" = 1 ] || [ "$rc" = 3 ] || [ "$rc" = 5 ]; then
      echo "work directory kept: $WORK" >&2
    else
      rm -rf "$WORK"
    fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT
trap 'echo "terminated" >&2; exit 143' TERM

answers() { curl -fsS --max-time 1 -o /dev/null "$1" 2>/dev/null; }

# --- tools -----------------------------------------------------------------------------------
if ! command -v wrk >/dev/null 2>&1; then
  echo "wrk not found: installing it with apt-get install -y wrk" >&2
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get install -y wrk >&2 || { $SUDO apt-get update >&2 && $SUDO apt-get install -y wrk >&2; }
fi
command -v curl >/dev/null 2>&1 || { echo "curl is required" >&2; exit 2; }

# --- header ----------------------------------------------------------------------------------
PY="$(dirname "$NFLOW")/python"
[ -x "$PY" ] || PY="python3"
NFLOW_VERSION="$("$PY" -c 'import importlib.metadata as m; print(m.version("nflow"))' 2>/dev/null || echo unknown)"
COMMIT="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [ -n "$(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  COMMIT="$COMMIT + uncommitted changes"
fi
MODEL="$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)"
NR_VERSION="$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$NR_HOME/node_modules/node-red/package.json" 2>/dev/null | head -n 1 || true)"

echo "== nflow vs Node-RED =="
echo "date:      $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "nflow:     $NFLOW_VERSION (commit $COMMIT), $WORKERS worker(s), $NFLOW_URL"
echo "node-red:  ${NR_VERSION:-not installed yet (installing from npm)} on node $(node --version 2>/dev/null || echo '?'), $PEER_URL"
echo "machine:   $(nproc) CPU(s), ${MODEL:-unknown model}, $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')"
echo "load:      $(wrk --version 2>&1 | head -n 1 | awk '{print $1, $2}'), conns=$CONNS, duration=$DURATION," \
     "warm-up=${WARMUP:-5s} per cell; wrk and both servers share the same CPUs"
echo

# --- start the servers -----------------------------------------------------------------------
for u in "$NFLOW_URL/hello" "$PEER_URL/hello"; do
  if answers "$u"; then
    echo "something already answers $u; stop it or pick another port (NFLOW_PORT / PEER_PORT)" >&2
    exit 2
  fi
done

WORK="$(mktemp -d "${TMPDIR:-/tmp}/nflow-bench.XXXXXX")"
(
  cd "$WORK"
  exec "$NFLOW" serve --app "$APP" --host "$HOST" --port "$NFLOW_PORT" --workers "$WORKERS"
) >"$WORK/nflow.log" 2>&1 </dev/null &
NFLOW_PID=$!
ready=0
for _ in $(seq 1 300); do
  if ! kill -0 "$NFLOW_PID" 2>/dev/null; then
    NFLOW_PID=""
    echo "nflow exited during start-up; last lines of $WORK/nflow.log:" >&2
    tail -n 20 "$WORK/nflow.log" >&2
    exit 3
  fi
  if answers "$NFLOW_URL/hello"; then ready=1; break; fi
  sleep 0.1
done
[ "$ready" = 1 ] || { echo "nflow did not answer $NFLOW_URL/hello within 30 s; see $WORK/nflow.log" >&2; exit 3; }
echo "nflow started (PID $NFLOW_PID)" >&2

if [ ! -f "$NR_HOME/node_modules/node-red/red.js" ]; then
  echo "node-red is not installed in $NR_HOME: peer-nodered.sh installs it from npm now" >&2
fi
if ! NR_PID="$(PORT="$PEER_PORT" "$SHARED/peer-nodered.sh")"; then
  NR_PID=""
  echo "Node-RED peer failed to install or start (see the messages above)" >&2
  exit 4
fi
case "$NR_PID" in
  ''|*[!0-9]*) echo "peer-nodered.sh printed no PID: '$NR_PID'" >&2; NR_PID=""; exit 4 ;;
esac
echo "node-red started (PID $NR_PID)" >&2
if [ -z "$NR_VERSION" ]; then
  NR_VERSION="$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$NR_HOME/node_modules/node-red/package.json" 2>/dev/null | head -n 1 || true)"
  echo "node-red:  installed ${NR_VERSION:-?}"
fi

# both answer with the same body?
nb="$(curl -fsS --max-time 5 "$NFLOW_URL/bench")"
pb="$(curl -fsS --max-time 5 "$PEER_URL/bench")"
echo "GET /bench    nflow: $nb   node-red: $pb"
nb="$(curl -fsS --max-time 5 "$NFLOW_URL/chain10")"
pb="$(curl -fsS --max-time 5 "$PEER_URL/chain10")"
echo "GET /chain10  nflow: $nb   node-red: $pb"
echo

# --- load ------------------------------------------------------------------------------------
ROWS="$WORK/rows.csv"
: >"$ROWS"
run_matrix "$NFLOW_URL/bench" nflow-bench
run_matrix "$PEER_URL/bench" nodered-bench
run_matrix "$NFLOW_URL/hello" nflow-hello
run_matrix "$PEER_URL/hello" nodered-hello
run_matrix "$NFLOW_URL/chain10" nflow-chain10
run_matrix "$PEER_URL/chain10" nodered-chain10
kill -0 "$NFLOW_PID" 2>/dev/null || { NFLOW_PID=""; echo "nflow died during the run; see $WORK/nflow.log" >&2; exit 3; }
kill -0 "$NR_PID" 2>/dev/null || { NR_PID=""; echo "node-red died during the run" >&2; exit 4; }

echo "load average after the runs: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')"
echo
echo "label,conns,rps,p50_ms,p99_ms,errors,avg_ms"
cat "$ROWS"
echo

# --- ratios against the targets -------------------------------------------------------------------
status=0
awk -F, '
  { rps[$1, $2] = $3; p99[$1, $2] = $5; err[$1, $2] = $6; if (!($2 in seen)) { seen[$2] = 1; order[n++] = $2 } }
  function num(v) { return v != "NA" && v != "" }
  # p99_rule: nflow p99 must be at most p99_rule times the Node-RED p99 (0: no rule).
  function check(ep, min_ratio, p99_rule, c,   a, b, r, ok, why) {
    a = "nflow-" ep; b = "nodered-" ep
    ok = 1; why = ""
    if (!num(rps[a, c]) || !num(rps[b, c]) || rps[b, c] + 0 == 0) {
      r = "NA"; ok = 0; why = "no result"
    } else {
      r = sprintf("%.2fx", rps[a, c] / rps[b, c])
      if (rps[a, c] / rps[b, c] < min_ratio) { ok = 0; why = why " rps<" min_ratio "x" }
      if (p99_rule && p99[a, c] + 0 > p99_rule * p99[b, c]) { ok = 0; why = why " p99>" p99_rule "x node-red" }
      if (err[a, c] + 0 != 0) { ok = 0; why = why " errors" }
    }
    printf "%-8s %6s %10s %10s %8s %10s %10s %6s  %-5s %s\n", "/" ep, c, rps[a, c], rps[b, c], r, \
      p99[a, c], p99[b, c], err[a, c] + 0, (ok ? "PASS" : "FAIL"), \
      sprintf("(target >= %.1fx%s, 0 errors)%s", min_ratio, (p99_rule ? sprintf(", p99 <= %gx node-red", p99_rule) : ""), why)
    if (!ok) fail = 1
  }
  END {
    printf "%-8s %6s %10s %10s %8s %10s %10s %6s  %s\n", "", "conns", "nflow rps", "n-red rps", "ratio", \
      "nflow p99", "n-red p99", "errors", "result"
    for (i = 0; i < n; i++) {
      check("bench", 4.0, 0.5, order[i]); check("hello", 3.0, 0, order[i]); check("chain10", 4.0, 0, order[i])
    }
    print ""
    print (fail ? "overall: FAIL" : "overall: PASS")
    exit fail
  }' "$ROWS" || status=$?
echo "(p99 in ms; errors are nflow socket errors + non-2xx; the targets are defined for c64 and c256, 15 s)"
exit "$status"
