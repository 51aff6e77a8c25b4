# Shell helpers shared by the bench/ scripts (sourced, not run).
# They stop only what the sourcing script started, by PID; stop_matrix reads MATRIX_PID.
# run_matrix reads CONNS, DURATION, WORK, SHARED and ROWS from the sourcing script.
# The functions run from the sourcing script's EXIT trap (shellcheck cannot see that: SC2317).
# shellcheck disable=SC2317
stop_pid() { # stop_pid PID NAME
  local pid="$1" name="$2"
  [ -n "$pid" ] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || { echo "stopped $name (PID $pid)" >&2; return 0; }
    sleep 0.1
  done
  echo "$name (PID $pid) still running after 5 s; sending SIGKILL" >&2
  kill -KILL "$pid" 2>/dev/null || true
}
# shellcheck disable=SC2317
stop_matrix() { # wrk-matrix.sh runs wrk under `timeout`, which forwards SIGTERM to wrk
  local child
  [ -n "${MATRIX_PID:-}" ] || return 0
  kill -0 "$MATRIX_PID" 2>/dev/null || return 0
  for child in $(pgrep -P "$MATRIX_PID" 2>/dev/null || true); do
    kill -TERM "$child" 2>/dev/null || true
  done
  kill -TERM "$MATRIX_PID" 2>/dev/null || true
  wait "$MATRIX_PID" 2>/dev/null || true
  echo "stopped wrk-matrix.sh (PID $MATRIX_PID)" >&2
}
# shellcheck disable=SC2317
run_matrix() { # run_matrix URL LABEL: one wrk-matrix.sh cell; its CSV row is appended to $ROWS
  echo "running wrk: $2 ($1)" >&2
  # In the background so that Ctrl-C is handled at once (wrk runs under `timeout`, which puts
  # it in its own process group; cleanup stops it through its parent's PID).
  CONNS="$CONNS" DURATION="$DURATION" AVG=1 HEADER=0 RAW_DIR="$WORK/raw/$2" \
    "$SHARED/wrk-matrix.sh" "$1" "$2" >"$WORK/$2.csv" 2>"$WORK/$2.err" </dev/null &
  MATRIX_PID=$!
  if ! wait "$MATRIX_PID"; then
    MATRIX_PID=""
    echo "wrk-matrix.sh failed for $2:" >&2
    cat "$WORK/$2.err" >&2
    exit 5
  fi
  MATRIX_PID=""
  cat "$WORK/$2.csv" >&2
  cat "$WORK/$2.csv" >>"$ROWS"
}
