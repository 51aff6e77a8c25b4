#!/usr/bin/env bash
# Execution history benchmark: what recording runs costs.
#
# Serves bench/apps/bench.json (ANY /bench, ANY /hello) from nflow with the same wrk settings
# as bench/features.sh (../shared/bench/wrk-matrix.sh, c64, 15 s, 5 s warm-up, 2 workers), in
# configurations that differ only in [history] mode (metrics, access log and rate limit off):
#   off      nothing recorded
#   sampled  the default: every run collected (lightly, unless drawn for the sample), failed
#            runs and sample_rate (0.01) of the others written
#   all      every run recorded in full (host calls, clock tapes) and written
# ROUNDS times (3), interleaved, and prints the median req/s and p99 of each side by side
# with the ratio to "off". Targets: "all" >= 0.90 x off and "sampled" >= 0.97 x off on both
# endpoints, with zero errors. A benchmark, not a test.
# After the load it stops the servers (which write what is queued), then reports the runs
# stored and the bytes stored per run (the history rows' column bytes, and the database file)
# for "sampled" and "all". It also prints the server CPU time per request, as
# bench/features.sh does.
#
# Env: NFLOW_PORT (8097; the configurations use 8097, 8098, 8099), WORKERS (2), CONNS (64),
#      DURATION (15s), HOST (127.0.0.1; loopback only), NFLOW (nflow executable; default
#      .venv/bin/nflow), ROUNDS (3), KEEP=1 keeps the work directory (configs, server logs,
#      databases, raw wrk output). WARMUP, THREADS and WRK_TIMEOUT are passed through to
#      wrk-matrix.sh.
# Exit status: 0 if the targets passed, 1 if not, other values on errors.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
SHARED="$(dirname "$REPO")/shared/bench"
APP="$REPO/bench/apps/bench.json"
NFLOW_PORT="${NFLOW_PORT:-8097}"
WORKERS="${WORKERS:-2}"
CONNS="${CONNS:-64}"
DURATION="${DURATION:-15s}"
HOST="${HOST:-127.0.0.1}"
ROUNDS="${ROUNDS:-3}"

case "$HOST" in
  127.*|localhost) ;;
  *) echo "refusing non-loopback address: $HOST (this benchmark runs on loopback only)" >&2; exit 2 ;;
esac

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
PY="$(dirname "$NFLOW")/python"
[ -x "$PY" ] || PY="python3"
for f in "$SHARED/wrk-matrix.sh" "$APP"; do
  [ -f "$f" ] || { echo "missing $f" >&2; exit 2; }
done
command -v wrk >/dev/null 2>&1 || { echo "wrk is required (apt-get install -y wrk)" >&2; exit 2; }
command -v curl >/dev/null 2>&1 || { echo "curl is required" >&2; exit 2; }

CONFIGS="off sampled all"

# --- cleanup: stop what this script started, by PID (as bench/compare.sh does) ----------------
declare -A PIDS=()
MATRIX_PID=""
WORK=""
# stop_pid and stop_matrix (shared with bench/compare.sh).
# shellcheck source=bench/lib.sh
. "$REPO/bench/lib.sh"
# shellcheck disable=SC2317
cleanup() {
  local rc=$? name
  trap - EXIT INT TERM
  stop_matrix
  for name in "${!PIDS[@]}"; do
    stop_pid "${PIDS[$name]}" "$name"
  done
  if [ -n "$WORK" ] && [ -d "$WORK" ]; then
    if [ "${KEEP:-0}" = 1 ] || [ "$rc" = 3 ]; then
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

port_of() { # port_of CONFIG
  case "$1" in off) echo "$NFLOW_PORT" ;; sampled) echo $((NFLOW_PORT + 1)) ;; all) echo $((NFLOW_PORT + 2)) ;; esac
}

# --- header ------------------------------------------------------------------------------------
COMMIT="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [ -n "$(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  COMMIT="$COMMIT + uncommitted changes"
fi
MODEL="$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)"
echo "== nflow execution history: off vs sampled vs all =="
echo "date:      $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "nflow:     commit $COMMIT, $WORKERS worker(s) per server, configurations: $CONFIGS"
echo "machine:   $(nproc) CPU(s), ${MODEL:-unknown model}, load average $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')"
echo "load:      conns=$CONNS, duration=$DURATION, warm-up=${WARMUP:-5s} per cell; wrk and the servers share the CPUs"
echo

# --- configurations ------------------------------------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/nflow-history.XXXXXX")"
for c in $CONFIGS; do
  mkdir -p "$WORK/$c"
  if answers "http://$HOST:$(port_of "$c")/hello"; then
    echo "something already answers port $(port_of "$c"); pick another NFLOW_PORT" >&2
    exit 2
  fi
done
for c in $CONFIGS; do
  cat >"$WORK/$c/config.toml" <<EOF
[database_nflow]
dsn = "$WORK/$c/nflow.db"
[monitor]
enabled = false
[logging]
format = "json"
access = false
[rate_limit]
enabled = false
[history]
mode = "$c"
EOF
done

# --- start the servers (all at once; an idle server costs little) -------------------------------
for c in $CONFIGS; do
  (
    cd "$WORK/$c"
    # stderr holds the JSON log, access lines included: that is the "log to a file".
    exec "$NFLOW" serve --config config.toml --app "$APP" --host "$HOST" \
      --port "$(port_of "$c")" --workers "$WORKERS"
  ) >"$WORK/$c/nflow.log" 2>&1 </dev/null &
  PIDS[nflow-$c]=$!
done
for c in $CONFIGS; do
  url="http://$HOST:$(port_of "$c")/hello"
  ready=0
  for _ in $(seq 1 300); do
    if ! kill -0 "${PIDS[nflow-$c]}" 2>/dev/null; then
      echo "nflow ($c) exited during start-up; last lines of $WORK/$c/nflow.log:" >&2
      tail -n 20 "$WORK/$c/nflow.log" >&2
      exit 3
    fi
    if answers "$url"; then ready=1; break; fi
    sleep 0.1
  done
  [ "$ready" = 1 ] || { echo "nflow ($c) did not answer $url within 30 s" >&2; exit 3; }
  echo "nflow $c started (PID ${PIDS[nflow-$c]}): $(curl -fsS --max-time 5 "http://$HOST:$(port_of "$c")/bench")" >&2
done

# --- load --------------------------------------------------------------------------------------
ROWS="$WORK/rows.csv"
: >"$ROWS"
CPU_ROWS="$WORK/cpu.csv"
: >"$CPU_ROWS"
WARMUP="${WARMUP:-5s}"
# cpu_ticks PID: user + system clock ticks of PID and its children (the server's workers).
cpu_ticks() {
  local total=0 pid
  for pid in "$1" $(pgrep -P "$1" 2>/dev/null || true); do
    total=$((total + $(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0)))
  done
  echo "$total"
}
# Interleaved, in ROUNDS rounds whose order alternates, so slow drift in the machine's load
# (runs of the same cell differ by 10 % and more here) hits every configuration alike; the
# table compares the medians.
REVERSED="$(echo "$CONFIGS" | tr ' ' '\n' | tac | tr '\n' ' ')"
for round in $(seq 1 "$ROUNDS"); do
  order="$CONFIGS"
  [ $((round % 2)) = 0 ] && order="$REVERSED"
  for ep in bench hello; do
    for c in $order; do
      url="http://$HOST:$(port_of "$c")/$ep"
      # The warm-up here rather than in wrk-matrix.sh, so the CPU counted is the cell's own.
      if [ "$WARMUP" != 0 ]; then
        timeout 60 wrk -t"${THREADS:-2}" -c"$CONNS" -d"$WARMUP" "$url" >/dev/null 2>&1 || true
      fi
      before="$(cpu_ticks "${PIDS[nflow-$c]}")"
      WARMUP=0 run_matrix "$url" "$c-$ep-r$round"
      echo "$c-$ep-r$round,$(($(cpu_ticks "${PIDS[nflow-$c]}") - before))" >>"$CPU_ROWS"
    done
  done
done
for c in $CONFIGS; do
  kill -0 "${PIDS[nflow-$c]}" 2>/dev/null || { echo "nflow ($c) died during the run" >&2; exit 3; }
done
echo "load average after the runs: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')"
echo
echo "label,conns,rps,p50_ms,p99_ms,errors,avg_ms"
cat "$ROWS"
echo
# One row per configuration and endpoint: the median of each figure over the rounds, the
# errors summed.
MEDIANS="$WORK/medians.csv"
"$PY" - "$ROWS" >"$MEDIANS" <<'PYEOF'
import csv, statistics, sys
cells = {}
for row in csv.reader(open(sys.argv[1])):
    cfg, ep, _ = row[0].rsplit("-", 2)
    cells.setdefault((f"{cfg}-{ep}", row[1]), []).append(row)
def median(rows, i):
    values = [float(r[i]) for r in rows if r[i] not in ("", "NA")]
    return f"{statistics.median(values):.3f}" if values else "NA"
for (label, conns), rows in cells.items():
    errors = sum(int(float(r[5])) for r in rows if r[5] not in ("", "NA"))
    print(",".join([label, conns, median(rows, 2), median(rows, 3), median(rows, 4), str(errors), median(rows, 6)]))
PYEOF
echo "medians over $ROUNDS round(s):"
cat "$MEDIANS"
echo

# --- the table -----------------------------------------------------------------------------------
status=0
awk -F, '
  { split($1, parts, "-"); cfg = parts[1]; ep = parts[2]
    rps[cfg, ep, $2] = $3; p99[cfg, ep, $2] = $5; err[cfg, ep, $2] = $6
    if (!($2 in seen)) { seen[$2] = 1; order[n++] = $2 }
 }
  function num(v) { return v != "NA" && v != "" }
  function row(cfg, ep, c, target,   r, ok, why) {
    ok = 1; why = ""
    if (!num(rps[cfg, ep, c]) || !num(rps["off", ep, c]) || rps["off", ep, c] + 0 == 0) {
      r = "NA"; ok = 0; why = " no result"
    } else {
      r = sprintf("%.3f", rps[cfg, ep, c] / rps["off", ep, c])
      if (target && r + 0 < target) { ok = 0; why = why sprintf(" %s<%.2f*off", cfg, target) }
      if (err[cfg, ep, c] + 0 != 0 || err["off", ep, c] + 0 != 0) { ok = 0; why = why " errors" }
    }
    printf "%-7s %-8s %6s %10s %10s %7s %9s %9s %7s  %s\n", "/" ep, cfg, c, rps["off", ep, c], \
      rps[cfg, ep, c], r, p99["off", ep, c], p99[cfg, ep, c], err[cfg, ep, c] + 0, \
      (target ? (ok ? "PASS" : "FAIL" why) : "(not a target)" why)
    if (target && !ok) fail = 1
  }
  END {
    printf "%-7s %-8s %6s %10s %10s %7s %9s %9s %7s  %s\n", "", "config", "conns", "off rps", \
      "rps", "ratio", "off p99", "p99", "errors", "result (targets: sampled >= 0.97, all >= 0.90 x off)"
    for (i = 0; i < n; i++) {
      for (e = 0; e < 2; e++) {
        ep = (e == 0 ? "bench" : "hello")
        row("sampled", ep, order[i], 0.97)
        row("all", ep, order[i], 0.90)
      }
    }
    print ""
    print (fail ? "overall: FAIL" : "overall: PASS")
    exit fail
  }' "$MEDIANS" || status=$?
echo "(p99 in ms; ratio = rps / off rps; errors are socket errors + non-2xx)"
echo
# CPU per request: the cell's ticks over the requests it served (rps x duration), median over
# the rounds. Not part of the target.
"$PY" - "$ROWS" "$CPU_ROWS" "$(getconf CLK_TCK)" "$DURATION" <<'PYEOF'
import csv, statistics, sys
rows, cpu_rows, tick, duration = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
seconds = {"s": 1, "m": 60, "h": 3600}.get(duration[-1:], None)
seconds = float(duration[:-1]) * seconds if seconds else float(duration)
rps = {row[0]: float(row[2]) for row in csv.reader(open(rows)) if row[2] not in ("", "NA")}
per_request = {}
for label, ticks in csv.reader(open(cpu_rows)):
    if rps.get(label):
        cfg, ep, _ = label.rsplit("-", 2)
        per_request.setdefault((cfg, ep), []).append(int(ticks) / tick / (rps[label] * seconds))
print("server CPU per request (user + system, all its processes; median over the rounds):")
print(f"{'':7} {'config':8} {'off us':>9} {'us':>9} {'+us':>8} {'off/config':>11}")
for ep in ("bench", "hello"):
    off = per_request.get(("off", ep))
    for cfg in ("sampled", "all"):
        mine = per_request.get((cfg, ep))
        if off and mine:
            a, b = statistics.median(off) * 1e6, statistics.median(mine) * 1e6
            print(f"{'/' + ep:7} {cfg:8} {a:9.1f} {b:9.1f} {b - a:+8.1f} {a / b:11.3f}")
PYEOF
echo
# Bytes stored per run: stop the servers first (each worker writes what it still has queued
# at shutdown), then read their databases.
for c in sampled all; do
  pid="${PIDS[nflow-$c]}"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && echo "nflow ($c) still running after 30 s" >&2
done
"$PY" - "$WORK" "$ROWS" "$DURATION" <<'PYEOF2'
import csv, os, sqlite3, sys
work, rows, duration = sys.argv[1], sys.argv[2], sys.argv[3]
unit = {"s": 1, "m": 60, "h": 3600}.get(duration[-1:], None)
seconds = float(duration[:-1]) * unit if unit else float(duration)
served = {}
for row in csv.reader(open(rows)):
    if row[2] not in ("", "NA"):
        cfg = row[0].split("-", 1)[0]
        served[cfg] = served.get(cfg, 0) + float(row[2]) * seconds
print("stored by the execution history (after the servers stopped):")
print(f"{'config':8} {'requests':>10} {'runs':>9} {'steps':>9} {'row bytes/run':>14} {'file bytes/run':>15}")
for cfg in ("sampled", "all"):
    path = os.path.join(work, cfg, "nflow.db")
    db = sqlite3.connect(path)
    try:
        total = 0
        counts = {}
        for table in ("nflow_runs", "nflow_run_steps"):
            columns = [r[1] for r in db.execute(f"PRAGMA table_info({table})")]
            expr = " + ".join(f"coalesce(length(CAST({c} AS BLOB)), 0)" for c in columns)
            n, size = db.execute(f"SELECT count(*), coalesce(sum({expr}), 0) FROM {table}").fetchone()
            counts[table] = n
            total += size
    finally:
        db.close()
    runs = counts["nflow_runs"]
    files = sum(os.path.getsize(os.path.join(work, cfg, f)) for f in os.listdir(os.path.join(work, cfg)) if f.startswith("nflow.db"))
    per_row = f"{total / runs:.0f}" if runs else "NA"
    per_file = f"{files / runs:.0f}" if runs else "NA"
    print(f"{cfg:8} {served.get(cfg, 0):10.0f} {runs:9d} {counts['nflow_run_steps']:9d} {per_row:>14} {per_file:>15}")
print("(requests: measured cells only, warm-ups excluded; runs include the warm-ups')")
PYEOF2
exit "$status"
