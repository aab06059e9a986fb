#!/usr/bin/env bash
# client_bench.sh: the flexllm C++ client next to its peers, scenarios S1 and S2 of
# ../shared/bench/README.md, every client measured the same way in the same round.
#
#   S1 throughput: nginx fixed-response server (shared nginx.conf, 127.0.0.1:18080) on CPU 0;
#      N=20 000 requests, C=100 in flight, each client on CPU 1: wrk (the limit, req/s only),
#      curl --parallel, openai-node, [aiohttp], flexllm. req/s = N / wall, CPU ms per request,
#      peak RSS.
#   S2 concurrency: mock_server.js --latency-ms 200 on CPU 0; N=10 000, C=1000: curl --parallel
#      (--procs 4: curl clamps --parallel-max to 300), openai-node, [aiohttp], flexllm. Wall,
#      x ideal (N/C x latency = 2.0 s), CPU s, peak RSS, and the server's own in-flight peak.
#
# Each round runs every client once (the start order rotates from round to round); the summary
# gives per-round tables and medians. A run that exits non-zero, times out or does not answer all
# N requests OK is reported as FAILED and left out of the median (which says so).
#
# Measurement: every client process runs as
#   timeout -k 5 $CLIENT_TIMEOUT /usr/bin/time -o F -f '%e %U %S %M' taskset -c 1 CLIENT...
# "wall" is the client's own loop wall (first request -> last response: loop_s of the peers,
# wall_s of flexllm); "proc s" is the whole process (GNU time %e, includes start-up). CPU is
# user+sys of the process and every descendant; peak RSS is GNU time's %M (KiB), i.e. the largest
# single process: for curl_parallel.sh (a bash wrapper around P curl processes) that is one curl.
#
# Usage: bench/client_bench.sh [--scenario s1|s2|all] [--quick] [--with-aiohttp]
#   --quick          smoke test: ROUNDS=1, S1 N=2000, S2 N=2000, wrk -d3s
#   --with-aiohttp   also run peers/aiohttp_loop.py with /usr/bin/python3 (Debian python3-aiohttp)
# Env: ROUNDS (3), FLEXLLM_BENCH (build/release/bench/client_bench; skipped if missing),
#      BENCH_DIR (../shared/bench from the repo root), OPENAI_NODE_MODULES (build/bench/node_modules,
#      `npm install openai` there once if missing), S1_N (20000), S1_C (100), S2_N (10000),
#      S2_C (1000), S2_LATENCY_MS (200), WRK_DURATION (10s), CLIENT_TIMEOUT (600 s per client run),
#      PAUSE (1 s between runs).
# Needs: nginx wrk curl node npm taskset timeout /usr/bin/time (Debian packages nginx wrk curl
#        nodejs npm util-linux coreutils time; python3-aiohttp for --with-aiohttp).
# Progress goes to stderr; a markdown block for bench/RESULTS.md goes to stdout.
# Exit status: 0 if every run that was not skipped succeeded, 1 otherwise, 2 on bad usage.
set -euo pipefail

BENCH_NAME=client_bench
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
MEDIAN_NONE="—" # median of no OK round

usage() {
  sed -n '/^# Usage:/,/^# Exit status:/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# --- options ------------------------------------------------------------------------------------
SCENARIO=all
QUICK=0
WITH_AIOHTTP=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --scenario)
      [[ $# -ge 2 ]] || usage
      SCENARIO=$2
      shift 2
      ;;
    --scenario=*)
      SCENARIO=${1#--scenario=}
      shift
      ;;
    --quick)
      QUICK=1
      shift
      ;;
    --with-aiohttp)
      WITH_AIOHTTP=1
      shift
      ;;
    -h | --help) usage ;;
    *)
      log "client_bench: unknown argument '$1'"
      usage
      ;;
  esac
done
case "$SCENARIO" in
  s1 | s2 | all) ;;
  *)
    log "client_bench: --scenario must be s1, s2 or all, got '$SCENARIO'"
    usage
    ;;
esac

if ((QUICK)); then
  ROUNDS=1
  S1_N="${S1_N:-2000}"
  S2_N="${S2_N:-2000}"
  WRK_DURATION="${WRK_DURATION:-3s}"
fi
ROUNDS="${ROUNDS:-3}"
S1_N="${S1_N:-20000}"
S1_C="${S1_C:-100}"
S2_N="${S2_N:-10000}"
S2_C="${S2_C:-1000}"
S2_LATENCY_MS="${S2_LATENCY_MS:-200}"
S2_CURL_PROCS=4 # curl 7.88 clamps --parallel-max to 300
WRK_DURATION="${WRK_DURATION:-10s}"
CLIENT_TIMEOUT="${CLIENT_TIMEOUT:-600}"
PAUSE="${PAUSE:-1}"
FLEXLLM_BENCH="${FLEXLLM_BENCH:-$REPO_ROOT/build/release/bench/client_bench}"
BENCH_DIR="${BENCH_DIR:-$REPO_ROOT/../shared/bench}"
NPM_PREFIX="$REPO_ROOT/build/bench"
OPENAI_NODE_MODULES="${OPENAI_NODE_MODULES:-$NPM_PREFIX/node_modules}"
PYTHON=/usr/bin/python3

need_posint ROUNDS S1_N S1_C S2_N S2_C S2_LATENCY_MS CLIENT_TIMEOUT
[[ $PAUSE =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "PAUSE must be a number of seconds, got '$PAUSE'"
[[ $WRK_DURATION =~ ^[1-9][0-9]*[smh]?$ ]] || die "WRK_DURATION must look like 10s, got '$WRK_DURATION'"
[[ -f $BENCH_DIR/nginx/nginx.conf && -f $BENCH_DIR/mock_server.js && -d $BENCH_DIR/peers ]] ||
  die "BENCH_DIR=$BENCH_DIR lacks nginx/nginx.conf, mock_server.js or peers/"
BENCH_DIR="$(cd "$BENCH_DIR" && pwd)" # nginx -c wants an absolute path
PEERS="$BENCH_DIR/peers"
WRK_LUA="$BENCH_DIR/wrk/chat_post.lua"
NGINX_CONF="$BENCH_DIR/nginx/nginx.conf"
[[ -x /usr/bin/time ]] || die "GNU time missing: apt-get install time"
need_tools taskset timeout nginx wrk curl node npm awk sed sort ps
# The same descriptor limit for every client (C=1000 needs more than the usual 1024).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)

# --- process bookkeeping ------------------------------------------------------------------------
bench_setup # $TMP, PIDS, cleanup on exit (lib.sh)

# start_mock LATENCY_MS: mock_server.js on CPU 0 on a free port; sets MOCK_PID and MOCK_PORT. The
# mock logs "mock_server: listening on http://127.0.0.1:PORT pid=..." to stderr once bound.
start_mock() {
  local i line
  : >"$TMP/mock.err"
  taskset -c 0 node "$BENCH_DIR/mock_server.js" --port 0 --latency-ms "$1" \
    >"$TMP/mock.out" 2>"$TMP/mock.err" &
  MOCK_PID=$!
  PIDS+=("$MOCK_PID")
  MOCK_PORT=""
  for ((i = 0; i < 100; i++)); do
    line=$(grep -m1 'listening on' "$TMP/mock.err" || true)
    if [[ $line =~ listening\ on\ http://127\.0\.0\.1:([0-9]+) ]]; then
      MOCK_PORT=${BASH_REMATCH[1]}
      break
    fi
    alive "$MOCK_PID" || die "mock exited early: $(tail -n 5 "$TMP/mock.err")"
    sleep 0.1
  done
  [[ -n $MOCK_PORT ]] || die "mock printed no 'listening on' line within 10 s"
  wait_http "http://127.0.0.1:$MOCK_PORT/v1/models" "$MOCK_PID" mock
  log "mock: pid $MOCK_PID, 127.0.0.1:$MOCK_PORT, latency ${1} ms"
}

calc() { awk "BEGIN { $1 }"; } # calc 'printf "%.1f", 1/3'


# --- clients --------------------------------------------------------------------------------------
FAILURES=0
NODE_VERSION=$(node --version)
CURL_VERSION=$(curl --version | awk 'NR == 1 { print $2 }')
WRK_VERSION=$(wrk -v 2>&1 | awk 'NR == 1 { print $2 }' || true)
NGINX_VERSION=$(nginx -v 2>&1 | sed 's|.*nginx/||')
OPENAI_VERSION=""
AIOHTTP_VERSION=""


HAVE_FLEXLLM=0
[[ -x $FLEXLLM_BENCH ]] && HAVE_FLEXLLM=1
HAVE_AIOHTTP=0
if ((WITH_AIOHTTP)); then
  if [[ -x $PYTHON ]] && AIOHTTP_VERSION=$(timeout 30 "$PYTHON" -c 'import aiohttp; print(aiohttp.__version__)' 2>/dev/null); then
    HAVE_AIOHTTP=1
  else
    log "aiohttp: $PYTHON cannot import aiohttp (apt-get install python3-aiohttp), skipped"
  fi
fi

# Result of the last client run: R_STATUS (ok|FAILED|skipped), R_WALL (client loop wall s),
# R_PROC (process wall s), R_CPU (user+sys s), R_RSS (peak RSS MiB), R_RPS, R_NOTE.
reset_result() { R_STATUS="" R_WALL="" R_PROC="" R_CPU="" R_RSS="" R_RPS="" R_NOTE=""; }

# finish_json NAME N WALLKEY: judge a JSON-printing client run (stdout's last JSON line)
finish_json() {
  local name=$1 n=$2 wallkey=$3 json ok err rc
  json=$(grep '^{' "$TMP/$name.out" | tail -n 1 || true)
  ok=$(json_field ok "$json")
  err=$(json_field err "$json")
  rc=$(json_field rc "$json") # curl_parallel.sh: worst curl exit status
  R_WALL=$(json_field "$wallkey" "$json")
  R_PROC=$TIME_E
  [[ -n $TIME_U ]] && R_CPU=$(calc "printf \"%.3f\", $TIME_U + $TIME_S")
  [[ -n $TIME_M ]] && R_RSS=$(calc "printf \"%.1f\", $TIME_M / 1024")
  if ((RUN_RC != 0)); then
    R_NOTE="exit $RUN_RC"
  elif [[ -z $json ]]; then
    R_NOTE="no JSON line"
  elif [[ $ok != "$n" ]]; then
    R_NOTE="ok=${ok:-?} of $n, err=${err:-?}"
  elif [[ -n $rc && $rc != 0 ]]; then
    R_NOTE="curl rc=$rc"
  elif ! [[ $R_WALL =~ ^[0-9]+(\.[0-9]+)?$ ]] || [[ -z $R_CPU || -z $R_RSS ]]; then
    R_NOTE="unparsable output"
  fi
  if [[ -n $R_NOTE ]]; then
    R_STATUS=FAILED
    FAILURES=$((FAILURES + 1))
    log "  $name FAILED ($R_NOTE); stdout: ${json:-<none>}; stderr: $(tail -n 3 "$TMP/$name.err" | tr '\n' ' ')"
  else
    R_STATUS=ok
    R_RPS=$(calc "printf \"%.0f\", $n / $R_WALL")
  fi
}

# run_client SCEN CLIENT ROUND URL N C: one run of one client; sets the R_* result
run_client() {
  local scen=$1 client=$2 round=$3 url=$4 n=$5 c=$6 name procs errs
  name="$scen-$client-r$round"
  reset_result
  case "$client" in
    wrk)
      run_timed "$name" wrk -t1 -c"$c" -d"$WRK_DURATION" -s "$WRK_LUA" "$url/chat/completions"
      R_RPS=$(wrk_rps "$TMP/$name.out")
      if ((RUN_RC != 0)); then
        R_NOTE="exit $RUN_RC"
      elif [[ -z $R_RPS ]]; then
        R_NOTE="no Requests/sec line"
      elif errs=$(wrk_errors "$TMP/$name.out"); then
        R_NOTE=$(tr '\n' ' ' <<<"$errs")
      fi
      if [[ -n $R_NOTE ]]; then
        R_STATUS=FAILED R_RPS=""
        FAILURES=$((FAILURES + 1))
        log "  $name FAILED ($R_NOTE): $(tail -n 3 "$TMP/$name.out" "$TMP/$name.err" | tr '\n' ' ')"
      else
        R_STATUS=ok
      fi
      ;;
    curl)
      procs=1
      [[ $scen == s2 ]] && procs=$S2_CURL_PROCS
      run_timed "$name" "$PEERS/curl_parallel.sh" run --url "$url" -n "$n" -c "$c" \
        --dir "$TMP/curl-$scen" --procs "$procs"
      finish_json "$name" "$n" loop_s
      ;;
    openai-node)
      run_timed "$name" node "$PEERS/openai_node.js" --node-modules "$OPENAI_NODE_MODULES" \
        --base-url "$url" -n "$n" -c "$c"
      finish_json "$name" "$n" loop_s
      ;;
    aiohttp)
      run_timed "$name" "$PYTHON" "$PEERS/aiohttp_loop.py" --base-url "$url" -n "$n" -c "$c"
      finish_json "$name" "$n" loop_s
      ;;
    flexllm)
      if ((!HAVE_FLEXLLM)); then
        R_STATUS=skipped R_NOTE="missing"
        return 0
      fi
      run_timed "$name" "$FLEXLLM_BENCH" --base-url "$url" -n "$n" -c "$c"
      finish_json "$name" "$n" wall_s
      ;;
    *) die "internal: unknown client $client" ;;
  esac
}

# client_command SCEN CLIENT URL N C: the command line as shown in the summary
client_command() {
  local scen=$1 client=$2 url=$3 n=$4 c=$5 procs=1
  [[ $scen == s2 ]] && procs=$S2_CURL_PROCS
  case "$client" in
    wrk) echo "taskset -c 1 wrk -t1 -c$c -d$WRK_DURATION -s $WRK_LUA $url/chat/completions" ;;
    curl)
      echo "$PEERS/curl_parallel.sh prepare --url $url -n $n -c $c --dir \$DIR --procs $procs"
      echo "taskset -c 1 $PEERS/curl_parallel.sh run --url $url -n $n -c $c --dir \$DIR --procs $procs"
      ;;
    openai-node) echo "taskset -c 1 node $PEERS/openai_node.js --node-modules $(rel "$OPENAI_NODE_MODULES") --base-url $url -n $n -c $c" ;;
    aiohttp) echo "taskset -c 1 $PYTHON $PEERS/aiohttp_loop.py --base-url $url -n $n -c $c" ;;
    flexllm) echo "taskset -c 1 $(rel "$FLEXLLM_BENCH") --base-url $url -n $n -c $c" ;;
  esac
}

CLIENT_PREFIX="timeout -k 5 $CLIENT_TIMEOUT /usr/bin/time -f '%e %U %S %M' -o \$F"

# --- one scenario -------------------------------------------------------------------------------
# run_scenario SCEN URL N C CLIENTS...: ROUNDS rounds; fills per-round rows and medians into
# ${SCEN}_ROUNDS_MD and ${SCEN}_MEDIANS_MD (markdown) for the summary.
declare -A RES # RES[scen,client,round,field]
run_scenario() {
  local scen=$1 url=$2 n=$3 c=$4 r i k client
  shift 4
  local clients=("$@") order=()
  local nc=${#clients[@]}
  for ((r = 1; r <= ROUNDS; r++)); do
    order=()
    for ((i = 0; i < nc; i++)); do order+=("${clients[$(((i + r - 1) % nc))]}"); done
    log "== $scen round $r/$ROUNDS: ${order[*]}"
    k=0
    local f
    for client in "${order[@]}"; do
      if ((k++ > 0)) && [[ $client != flexllm || $HAVE_FLEXLLM == 1 ]]; then sleep "$PAUSE"; fi
      if [[ $scen == s2 ]]; then
        curl -s -o /dev/null -m 2 -X POST "http://127.0.0.1:$MOCK_PORT/__reset" || true
      fi
      run_client "$scen" "$client" "$r" "$url" "$n" "$c"
      if [[ $scen == s2 && $R_STATUS != skipped ]]; then
        RES[$scen,$client,$r,inflight]=$(json_field max_inflight \
          "$(curl -s -m 2 "http://127.0.0.1:$MOCK_PORT/__stats" || true)")
      fi
      for f in R_STATUS R_WALL R_PROC R_CPU R_RSS R_RPS R_NOTE; do
        RES[$scen,$client,$r,$f]=${!f}
      done
      case "$R_STATUS" in
        skipped) log "  $client: missing ($FLEXLLM_BENCH), skipped" ;;
        FAILED) log "  $client: FAILED ($R_NOTE)" ;;
        *)
          if [[ $client == wrk ]]; then
            log "  $client: $R_RPS req/s"
          else
            log "  $client: wall $R_WALL s ($R_RPS req/s), proc $R_PROC s, cpu $R_CPU s, peak RSS $R_RSS MB${RES[$scen,$client,$r,inflight]:+, server max in-flight ${RES[$scen,$client,$r,inflight]-}}"
          fi
          ;;
      esac
    done
  done
}

# cell SCEN CLIENT ROUND METRIC: one formatted per-round value
cell() {
  local scen=$1 client=$2 r=$3 metric=$4 n=$5 c=$6 st wall cpu
  st=${RES[$scen,$client,$r,R_STATUS]-}
  wall=${RES[$scen,$client,$r,R_WALL]-}
  cpu=${RES[$scen,$client,$r,R_CPU]-}
  [[ $st == ok ]] || {
    echo "—"
    return
  }
  case "$metric" in
    rps) echo "${RES[$scen,$client,$r,R_RPS]-}" ;;
    cpu_ms) calc "printf \"%.3f\", $cpu / $n * 1000" ;;
    cpu_s) echo "$cpu" ;;
    rss) echo "${RES[$scen,$client,$r,R_RSS]-}" ;;
    wall) echo "$wall" ;;
    proc) echo "${RES[$scen,$client,$r,R_PROC]-}" ;;
    xideal) calc "printf \"%.2f\", $wall / ($n / $c * $S2_LATENCY_MS / 1000)" ;;
    inflight) echo "${RES[$scen,$client,$r,inflight]:-?}" ;;
  esac
}

status_cell() {
  local st=${RES[$1,$2,$3,R_STATUS]-} note=${RES[$1,$2,$3,R_NOTE]-}
  case "$st" in
    ok) echo ok ;;
    skipped) echo "missing, skipped" ;;
    *) echo "**FAILED** ($note)" ;;
  esac
}

# med SCEN CLIENT METRIC FMT N C: median over the ok rounds
med() {
  local scen=$1 client=$2 metric=$3 fmt=$4 n=$5 c=$6 r vals=()
  for ((r = 1; r <= ROUNDS; r++)); do
    [[ ${RES[$scen,$client,$r,R_STATUS]-} == ok ]] && vals+=("$(cell "$scen" "$client" "$r" "$metric" "$n" "$c")")
  done
  median "$fmt" "${vals[@]}"
}

rounds_ok() { # "3/3", "2/3 (1 FAILED)", "missing, skipped"
  local scen=$1 client=$2 r ok=0 failed=0
  for ((r = 1; r <= ROUNDS; r++)); do
    case "${RES[$scen,$client,$r,R_STATUS]-}" in
      ok) ok=$((ok + 1)) ;;
      FAILED) failed=$((failed + 1)) ;;
    esac
  done
  if ((ok == 0 && failed == 0)); then
    echo "missing, skipped"
  elif ((failed > 0)); then
    echo "$ok/$ROUNDS (**$failed FAILED**)"
  else
    echo "$ok/$ROUNDS"
  fi
}

# --- run ------------------------------------------------------------------------------------------
ensure_openai_node
((HAVE_FLEXLLM)) || log "flexllm: $FLEXLLM_BENCH missing, skipped (build it or set FLEXLLM_BENCH)"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "client_bench: rounds $ROUNDS, scenario $SCENARIO, load average $LOAD_BEFORE, nofile $NOFILE"

S1_CLIENTS=(wrk curl openai-node)
S2_CLIENTS=(curl openai-node)
if ((HAVE_AIOHTTP)); then
  S1_CLIENTS+=(aiohttp)
  S2_CLIENTS+=(aiohttp)
fi
S1_CLIENTS+=(flexllm)
S2_CLIENTS+=(flexllm)
S1_URL="http://127.0.0.1:$NGINX_PORT/v1"

if [[ $SCENARIO == s1 || $SCENARIO == all ]]; then
  log "== S1 throughput: nginx, N=$S1_N, C=$S1_C, wrk -d$WRK_DURATION"
  start_nginx
  timeout 60 "$PEERS/curl_parallel.sh" prepare --url "$S1_URL" -n "$S1_N" -c "$S1_C" --dir "$TMP/curl-s1" \
    --procs 1
  run_scenario s1 "$S1_URL" "$S1_N" "$S1_C" "${S1_CLIENTS[@]}"
  stop_all
fi

if [[ $SCENARIO == s2 || $SCENARIO == all ]]; then
  log "== S2 concurrency: mock --latency-ms $S2_LATENCY_MS, N=$S2_N, C=$S2_C"
  start_mock "$S2_LATENCY_MS"
  S2_URL="http://127.0.0.1:$MOCK_PORT/v1"
  timeout 60 "$PEERS/curl_parallel.sh" prepare --url "$S2_URL" -n "$S2_N" -c "$S2_C" --dir "$TMP/curl-s2" \
    --procs "$S2_CURL_PROCS"
  run_scenario s2 "$S2_URL" "$S2_N" "$S2_C" "${S2_CLIENTS[@]}"
  stop_all
fi
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# --- markdown summary ---------------------------------------------------------------------------
REV=$(git_rev)
VERSIONS="nginx $NGINX_VERSION, wrk $WRK_VERSION, curl $CURL_VERSION, node $NODE_VERSION, openai-node $OPENAI_VERSION"
((HAVE_AIOHTTP)) && VERSIONS+=", aiohttp $AIOHTTP_VERSION (/usr/bin/python3 $("$PYTHON" -c 'import sys; print(sys.version.split()[0])'))"
if ((HAVE_FLEXLLM)); then FLEX_SHOWN=$(rel "$FLEXLLM_BENCH"); else FLEX_SHOWN="$(rel "$FLEXLLM_BENCH") (missing, skipped)"; fi

s1_markdown() {
  local n=$S1_N c=$S1_C url=$S1_URL client r ref
  ref=$(med s1 openai-node rps %.0f "$n" "$c")
  echo
  echo "**S1 throughput**: nginx fixed response, N=$n, C=$c; req/s = N / client loop wall, CPU ms"
  echo "per request = (user+sys)/N, peak RSS of the client process (wrk: req/s of a ${WRK_DURATION} run only)."
  echo
  echo '```'
  echo "mkdir -p \$RUN && taskset -c 0 nginx -p \$RUN -e stderr -c $NGINX_CONF"
  echo "# each client: $CLIENT_PREFIX taskset -c 1 ..."
  for client in "${S1_CLIENTS[@]}"; do client_command s1 "$client" "$url" "$n" "$c"; done
  echo '```'
  echo
  echo "| client | req/s | × openai-node | CPU ms/req | peak RSS MB | rounds ok |"
  echo "|---|---|---|---|---|---|"
  for client in "${S1_CLIENTS[@]}"; do
    local rps x
    rps=$(med s1 "$client" rps %.0f "$n" "$c")
    x=$(calc "r = \"$rps\" + 0; f = \"$ref\" + 0; if (r > 0 && f > 0) printf \"%.2f\", r / f; else print \"—\"")
    if [[ $client == wrk ]]; then
      echo "| wrk (limit) | $rps | $x | — | — | $(rounds_ok s1 wrk) |"
    else
      echo "| $client | $rps | $x | $(med s1 "$client" cpu_ms %.3f "$n" "$c") | $(med s1 "$client" rss %.1f "$n" "$c") | $(rounds_ok s1 "$client") |"
    fi
  done
  echo
  echo "<details><summary>S1 per round</summary>"
  echo
  echo "| round | client | req/s | client wall s | proc s | CPU s | CPU ms/req | peak RSS MB | status |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for ((r = 1; r <= ROUNDS; r++)); do
    for client in "${S1_CLIENTS[@]}"; do
      if [[ $client == wrk ]]; then
        echo "| $r | wrk | $(cell s1 wrk "$r" rps "$n" "$c") | — | — | — | — | — | $(status_cell s1 wrk "$r") |"
      else
        echo "| $r | $client | $(cell s1 "$client" "$r" rps "$n" "$c") | $(cell s1 "$client" "$r" wall "$n" "$c") | $(cell s1 "$client" "$r" proc "$n" "$c") | $(cell s1 "$client" "$r" cpu_s "$n" "$c") | $(cell s1 "$client" "$r" cpu_ms "$n" "$c") | $(cell s1 "$client" "$r" rss "$n" "$c") | $(status_cell s1 "$client" "$r") |"
      fi
    done
  done
  echo
  echo "</details>"
}

s2_markdown() {
  local n=$S2_N c=$S2_C url="http://127.0.0.1:\$PORT/v1" client r ideal
  ideal=$(calc "printf \"%.1f\", $n / $c * $S2_LATENCY_MS / 1000")
  echo
  echo "**S2 concurrency**: mock_server.js --latency-ms $S2_LATENCY_MS, N=$n, C=$c, ideal wall = N/C × latency"
  echo "= $ideal s; wall = client loop wall, CPU s = user+sys of the client, server max in-flight"
  echo "from the mock's /__stats (should reach C)."
  echo
  echo '```'
  echo "taskset -c 0 node $BENCH_DIR/mock_server.js --port 0 --latency-ms $S2_LATENCY_MS   # port $MOCK_PORT"
  echo "# each client: $CLIENT_PREFIX taskset -c 1 ..."
  for client in "${S2_CLIENTS[@]}"; do client_command s2 "$client" "$url" "$n" "$c"; done
  echo '```'
  echo
  echo "| client | wall s | × ideal | CPU s | peak RSS MB | rounds ok |"
  echo "|---|---|---|---|---|---|"
  for client in "${S2_CLIENTS[@]}"; do
    echo "| $client | $(med s2 "$client" wall %.2f "$n" "$c") | $(med s2 "$client" xideal %.2f "$n" "$c") | $(med s2 "$client" cpu_s %.2f "$n" "$c") | $(med s2 "$client" rss %.1f "$n" "$c") | $(rounds_ok s2 "$client") |"
  done
  echo
  echo "<details><summary>S2 per round</summary>"
  echo
  echo "| round | client | wall s | × ideal | proc s | CPU s | peak RSS MB | server max in-flight | status |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for ((r = 1; r <= ROUNDS; r++)); do
    for client in "${S2_CLIENTS[@]}"; do
      echo "| $r | $client | $(cell s2 "$client" "$r" wall "$n" "$c") | $(cell s2 "$client" "$r" xideal "$n" "$c") | $(cell s2 "$client" "$r" proc "$n" "$c") | $(cell s2 "$client" "$r" cpu_s "$n" "$c") | $(cell s2 "$client" "$r" rss "$n" "$c") | $(cell s2 "$client" "$r" inflight "$n" "$c") | $(status_cell s2 "$client" "$r") |"
    done
  done
  echo
  echo "</details>"
}

{
  echo "### Client benchmark$( ((QUICK)) && echo ' (--quick smoke test, not a result)'): $(date -u '+%Y-%m-%d %H:%M UTC'), rev $REV"
  echo
  echo "$(cpu_desc); servers pinned to CPU 0, clients to CPU 1; $ROUNDS round(s), client"
  echo "order rotated per round, medians over the OK rounds. Load average before/after: $LOAD_BEFORE / $LOAD_AFTER."
  echo "$VERSIONS; flexllm: $FLEX_SHOWN. nofile $NOFILE."
  echo "Command: \`$( ((QUICK)) || echo "ROUNDS=$ROUNDS ")bench/client_bench.sh --scenario $SCENARIO$( ((QUICK)) && echo ' --quick')$( ((WITH_AIOHTTP)) && echo ' --with-aiohttp')\`"
  if [[ $SCENARIO == s1 || $SCENARIO == all ]]; then s1_markdown; fi
  if [[ $SCENARIO == s2 || $SCENARIO == all ]]; then s2_markdown; fi
  echo
  echo "MB = MiB (GNU time %M / 1024); for curl the largest single curl process."
}

if ((FAILURES > 0)); then
  log "client_bench: $FAILURES failed run(s), see the log above"
  exit 1
fi
log "client_bench: done"
