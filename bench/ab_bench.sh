#!/usr/bin/env bash
# ab_bench.sh: two builds of bench/client_bench (a baseline revision and the change under test)
# measured in alternating order in the same rounds, so that "the change did not slow S1/S2" is a
# same-run ratio rather than a comparison with figures from another day.
#
#   S1 throughput: the fixed-response nginx (bench/nginx/nginx.conf, 127.0.0.1:18080) on CPU 0;
#      N=20 000 requests, C=100; each client on CPU 1; wrk's req/s in every round as the limit.
#   S2 concurrency: `flexllm mock --latency 200` on CPU 0; N=10 000, C=1000; wall against the
#      ideal N/C x latency = 2.0 s.
#
# Usage: bench/ab_bench.sh BASE_CLIENT_BENCH NEW_CLIENT_BENCH
#   e.g. git worktree add /tmp/base REV && cmake -S /tmp/base -B /tmp/base/build -G Ninja \
#          -DCMAKE_BUILD_TYPE=Release && cmake --build /tmp/base/build --target client_bench
#        bench/ab_bench.sh /tmp/base/build/bench/client_bench build/release/bench/client_bench
# Env: ROUNDS (7), S1_N (20000), S1_C (100), S2_N (10000), S2_C (1000), CLIENT_TIMEOUT (300),
#      FLEXLLM (build/release/apps/flexllm/flexllm: the mock for S2).
# Needs: nginx wrk taskset timeout /usr/bin/time.
# Progress goes to stderr; a markdown block for bench/RESULTS.md goes to stdout.
# Exit status: 0 when every run answered all N requests, 1 otherwise, 2 on bad usage.
set -euo pipefail

BENCH_NAME=ab_bench
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
MEDIAN_NONE="—"

[[ $# -eq 2 && -x $1 && -x $2 ]] || {
  sed -n '/^# Usage:/,/^# Exit status:/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
BASE=$(realpath "$1")
NEW=$(realpath "$2")
ROUNDS=${ROUNDS:-7} S1_N=${S1_N:-20000} S1_C=${S1_C:-100} S2_N=${S2_N:-10000} S2_C=${S2_C:-1000}
CLIENT_TIMEOUT=${CLIENT_TIMEOUT:-300}
FLEXLLM=${FLEXLLM:-$REPO_ROOT/build/release/apps/flexllm/flexllm}
need_posint ROUNDS S1_N S1_C S2_N S2_C CLIENT_TIMEOUT
need_tools nginx wrk taskset timeout
[[ -x $FLEXLLM ]] || die "no flexllm command at $FLEXLLM (build flexllm_cli, or set FLEXLLM)"
bench_setup

declare -A RES
FAILED=0

# measure SCENARIO LABEL BIN URL N C: one timed client run; stores req/s (S1) or wall (S2).
measure() {
  local scen=$1 label=$2 bin=$3 url=$4 n=$5 c=$6 json ok
  run_timed "$scen-$label" "$bin" --base-url "$url" -n "$n" -c "$c"
  json=$(tail -n 1 "$TMP/$scen-$label.out")
  ok=$(json_field ok "$json")
  if ((RUN_RC != 0)) || [[ $ok != "$n" ]]; then
    log "  $scen $label: FAILED (rc $RUN_RC, ok ${ok:-?}/$n)"
    FAILED=1
    return
  fi
  RES[$scen,$label]+=" $(json_field "$([[ $scen == s1 ]] && echo req_s || echo wall_s)" "$json")"
  RES[$scen,$label,rss]+=" $(awk -v k="$TIME_M" 'BEGIN { printf "%.1f", k / 1024 }')"
}

start_nginx
url1="http://127.0.0.1:$NGINX_PORT/v1"
taskset -c 0 "$FLEXLLM" mock --port 0 --latency 200 >"$TMP/mock.out" 2>"$TMP/mock.err" &
MOCK_PID=$!
PIDS+=("$MOCK_PID")
poll_ready 100 "$MOCK_PID" mock grep -q "^http://127.0.0.1:" "$TMP/mock.out" ||
  die "the mock did not say its address"
url2=$(head -n 1 "$TMP/mock.out")

for ((r = 1; r <= ROUNDS; r++)); do
  log "round $r/$ROUNDS"
  taskset -c 1 wrk -t1 -c"$S1_C" -d5s -s "$REPO_ROOT/bench/nginx/chat_post.lua" \
    "$url1/chat/completions" >"$TMP/wrk.out" 2>&1 || true
  RES[s1,wrk]+=" $(wrk_rps "$TMP/wrk.out")"
  order=(base new)
  ((r % 2 == 0)) && order=(new base)
  for label in "${order[@]}"; do
    bin=$BASE
    [[ $label == new ]] && bin=$NEW
    measure s1 "$label" "$bin" "$url1" "$S1_N" "$S1_C"
    measure s2 "$label" "$bin" "$url2" "$S2_N" "$S2_C"
  done
done

# shellcheck disable=SC2086 # word splitting of the value lists is wanted
{
  s1b=$(median %.0f ${RES[s1,base]:-}) s1n=$(median %.0f ${RES[s1,new]:-})
  s2b=$(median %.3f ${RES[s2,base]:-}) s2n=$(median %.3f ${RES[s2,new]:-})
  wrk=$(median %.0f ${RES[s1,wrk]:-})
  echo "### A/B: $(rel "$BASE") vs $(rel "$NEW") ($ROUNDS rounds, alternating order, $(cpu_desc))"
  echo
  echo "Command: \`bench/ab_bench.sh $(rel "$BASE") $(rel "$NEW")\` (ROUNDS=$ROUNDS)"
  echo
  echo "| scenario | base | new | new / base | per round (base; new) |"
  echo "|---|---|---|---|---|"
  echo "| S1 req/s (N=$S1_N, C=$S1_C; wrk $wrk) | $s1b | $s1n | $(awk -v a="$s1n" -v b="$s1b" 'BEGIN { printf "%.3f", a / b }') | ${RES[s1,base]:-}; ${RES[s1,new]:-} |"
  echo "| S2 wall s (N=$S2_N, C=$S2_C; ideal $(awk -v n="$S2_N" -v c="$S2_C" 'BEGIN { printf "%.1f", n / c * 0.2 }')) | $s2b | $s2n | $(awk -v a="$s2n" -v b="$s2b" 'BEGIN { printf "%.3f", a / b }') | ${RES[s2,base]:-}; ${RES[s2,new]:-} |"
  echo "| peak RSS MB S1 / S2 | $(median %.1f ${RES[s1,base,rss]:-}) / $(median %.1f ${RES[s2,base,rss]:-}) | $(median %.1f ${RES[s1,new,rss]:-}) / $(median %.1f ${RES[s2,new,rss]:-}) | | |"
}
exit "$FAILED"
