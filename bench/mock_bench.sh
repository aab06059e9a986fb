#!/usr/bin/env bash
# mock_bench.sh: measure flexllm's mock server next to nginx (the "infinitely fast LLM").
#
#   1. Connection storm: `flexllm mock --latency 1000` on CPU 0, bench/conn_storm opening 10 000
#      connections from CPU 1 (one POST each); ROUNDS runs, wall of each and the median.
#   2. Throughput: nginx (shared config, 127.0.0.1:18080) and `flexllm mock` (zero latency), both
#      on CPU 0; wrk -t1 -c100 from CPU 1 against each in turn, ROUNDS rounds; req/s medians and
#      the ratio mock/nginx.
#
# Usage: bench/mock_bench.sh [FLEXLLM_BIN]
# Env:   FLEXLLM_BIN (default build/release/apps/flexllm/flexllm), BENCH_DIR (default ../shared/bench from the
#        repo root), ROUNDS (3), DURATION (wrk -d, 10s), CONNECTIONS (10000), STORM_LATENCY (1000,
#        passed to `mock --latency`), STORM_TIMEOUT (conn_storm --timeout, 30).
# Progress goes to stderr; a markdown block for bench/RESULTS.md goes to stdout.
# Exit status: 0 if every storm run answered every request with 2xx and every wrk run worked.
set -euo pipefail

BENCH_NAME=mock_bench
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-10000}"
STORM_LATENCY="${STORM_LATENCY:-1000}"
STORM_TIMEOUT="${STORM_TIMEOUT:-30}"

# --- inputs -------------------------------------------------------------------------------------
if [[ $# -ge 1 ]]; then
  FLEXLLM_BIN=$1
elif [[ -z ${FLEXLLM_BIN:-} ]]; then
  FLEXLLM_BIN="$REPO_ROOT/build/release/apps/flexllm/flexllm"
fi
BENCH_DIR="${BENCH_DIR:-$REPO_ROOT/../shared/bench}"
[[ -x $FLEXLLM_BIN ]] || die "flexllm binary not found or not executable: $FLEXLLM_BIN"
[[ -f $BENCH_DIR/nginx/nginx.conf && -f $BENCH_DIR/wrk/chat_post.lua ]] ||
  die "BENCH_DIR=$BENCH_DIR lacks nginx/nginx.conf or wrk/chat_post.lua"
BENCH_DIR="$(cd "$BENCH_DIR" && pwd)" # nginx -c wants an absolute path
need_posint ROUNDS CONNECTIONS
need_tools taskset nginx wrk curl ps awk sort cmake
WRK_LUA="$BENCH_DIR/wrk/chat_post.lua"
CHAT_PATH=/v1/chat/completions

# --- 1. build conn_storm (CMake target of bench/) -----------------------------------------------
CONN_STORM="$REPO_ROOT/build/release/bench/conn_storm"
log "building conn_storm"
cmake --build "$REPO_ROOT/build/release" --target conn_storm >&2 ||
  die "cannot build conn_storm: configure build/release first (scripts/test does)"

# --- process bookkeeping ------------------------------------------------------------------------
bench_setup # $TMP, PIDS, cleanup on exit (lib.sh)

# start_mock NAME [ARGS...]: flexllm mock on CPU 0; sets MOCK_PID and MOCK_PORT. The mock prints
# its base URL (http://127.0.0.1:PORT/v1) as its first stdout line; it must flush that line.
start_mock() {
  local name=$1 line="" i
  shift
  : >"$TMP/$name.out" # exists before the first read below
  taskset -c 0 "$FLEXLLM_BIN" mock --port 0 "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" &
  MOCK_PID=$!
  PIDS+=("$MOCK_PID")
  for ((i = 0; i < 100; i++)); do
    if IFS= read -r line <"$TMP/$name.out"; then
      [[ $line =~ ^https?://[^/]+:([0-9]+)(/|$) ]] ||
        die "$name: first stdout line is not a base URL: '$line'"
      MOCK_PORT=${BASH_REMATCH[1]}
      wait_port "$MOCK_PORT" "$MOCK_PID" "$name"
      log "$name: pid $MOCK_PID, port $MOCK_PORT"
      return 0
    fi
    alive "$MOCK_PID" || die "$name exited early: $(tail -n 5 "$TMP/$name.err")"
    sleep 0.1
  done
  die "$name printed no base URL line within 10 s (is stdout flushed?)"
}

FAILURES=0

# --- 2. connection storm ------------------------------------------------------------------------
log "== storm: $CONNECTIONS connections, mock --latency $STORM_LATENCY, $ROUNDS rounds"
start_mock storm-mock --latency "$STORM_LATENCY"
STORM_PORT=$MOCK_PORT
STORM_ROWS=()
STORM_WALLS=()
for ((r = 1; r <= ROUNDS; r++)); do
  rc=0
  json=$(taskset -c 1 "$CONN_STORM" --port "$MOCK_PORT" --connections "$CONNECTIONS" \
    --timeout "$STORM_TIMEOUT") || rc=$?
  log "storm round $r (rc=$rc): $json"
  if ((rc != 0)); then FAILURES=$((FAILURES + 1)); fi
  wall=$(json_field wall_s "$json")
  STORM_WALLS+=("${wall:-n/a}")
  row="| $r | ${wall:-n/a}"
  for f in completed errors connect_errors latency_p50_ms latency_p99_ms peak_open; do
    v=$(json_field "$f" "$json")
    row+=" | ${v:-n/a}"
  done
  STORM_ROWS+=("$row |")
done
STORM_MEDIAN=$(median %.3f "${STORM_WALLS[@]}")
log "storm wall_s: ${STORM_WALLS[*]} -> median $STORM_MEDIAN"
stop_all

# --- 3. throughput: wrk against nginx and the zero-latency mock -------------------------------
run_wrk() { # run_wrk LABEL URL: prints Requests/sec (empty on failure)
  local label=$1 url=$2 out="$TMP/wrk-$1.txt" rps errs
  if ! taskset -c 1 wrk -t1 -c100 -d"$DURATION" -s "$WRK_LUA" "$url" >"$out" 2>&1; then
    log "wrk against $label failed: $(tail -n 3 "$out")"
    return 0
  fi
  rps=$(wrk_rps "$out")
  if errs=$(wrk_errors "$out"); then
    log "wrk against $label reported errors: $errs"
    rps=""
  fi
  printf '%s' "$rps"
}

log "== throughput: wrk -t1 -c100 -d$DURATION, $ROUNDS rounds"
start_nginx
start_mock tput-mock
TPUT_PORT=$MOCK_PORT
NGINX_RPS=()
MOCK_RPS=()
TPUT_ROWS=()
for ((r = 1; r <= ROUNDS; r++)); do
  n=$(run_wrk nginx "http://127.0.0.1:$NGINX_PORT$CHAT_PATH")
  m=$(run_wrk mock "http://127.0.0.1:$MOCK_PORT$CHAT_PATH")
  [[ -n $n && -n $m ]] || FAILURES=$((FAILURES + 1))
  log "throughput round $r: nginx ${n:-n/a} req/s, mock ${m:-n/a} req/s"
  NGINX_RPS+=("${n:-n/a}")
  MOCK_RPS+=("${m:-n/a}")
  TPUT_ROWS+=("| $r | ${n:-n/a} | ${m:-n/a} |")
done
NGINX_MEDIAN=$(median %.0f "${NGINX_RPS[@]}")
MOCK_MEDIAN=$(median %.0f "${MOCK_RPS[@]}")
RATIO=$(awk -v m="$MOCK_MEDIAN" -v n="$NGINX_MEDIAN" \
  'BEGIN { if (m + 0 > 0 && n + 0 > 0) printf "%.2f", m / n; else print "n/a" }')
stop_all

# --- 4. markdown summary ------------------------------------------------------------------------
BIN_SHOWN=$(rel "$FLEXLLM_BIN")
STORM_SHOWN=$(rel "$CONN_STORM")
cat <<EOF
### flexllm mock vs nginx: $(date -u +%Y-%m-%d), rev $(git_rev), $(cpu_desc)

Server pinned to CPU 0, client to CPU 1; $ROUNDS rounds, medians.

**Connection storm**: $CONNECTIONS connections, one POST each, mock \`--latency $STORM_LATENCY\`
(ideal wall ≈ that latency): median wall **$STORM_MEDIAN s**

\`\`\`
taskset -c 0 $BIN_SHOWN mock --port 0 --latency $STORM_LATENCY   # port $STORM_PORT
taskset -c 1 $STORM_SHOWN --port $STORM_PORT --connections $CONNECTIONS --timeout $STORM_TIMEOUT
\`\`\`

| round | wall s | completed | errors | connect errors | p50 ms | p99 ms | peak open |
|---|---|---|---|---|---|---|---|
$(printf '%s\n' "${STORM_ROWS[@]}")
| median | $STORM_MEDIAN | | | | | | |

**Throughput** (wrk, 100 connections, $DURATION): nginx **$NGINX_MEDIAN** req/s, mock
**$MOCK_MEDIAN** req/s, mock/nginx = **$RATIO**

\`\`\`
mkdir -p \$RUN && taskset -c 0 nginx -p \$RUN -e stderr -c $BENCH_DIR/nginx/nginx.conf
taskset -c 0 $BIN_SHOWN mock --port 0   # port $TPUT_PORT
taskset -c 1 wrk -t1 -c100 -d$DURATION -s $WRK_LUA http://127.0.0.1:$NGINX_PORT$CHAT_PATH
taskset -c 1 wrk -t1 -c100 -d$DURATION -s $WRK_LUA http://127.0.0.1:$TPUT_PORT$CHAT_PATH
\`\`\`

| round | nginx req/s | mock req/s |
|---|---|---|
$(printf '%s\n' "${TPUT_ROWS[@]}")
| median | $NGINX_MEDIAN | $MOCK_MEDIAN |
EOF

if ((FAILURES > 0)); then
  log "mock_bench: $FAILURES failed run(s), see the log above"
  exit 1
fi
