#!/usr/bin/env bash
# batch_bench.sh: the batch scenarios (S1 checkpoint cost, S3 memory, pool) for flexllm's batch
# runner, against the fixed-response nginx of bench/nginx/nginx.conf (CPU 0; batch_bench on CPU 1).
#
#   S1 checkpoint cost: N=20 000, C=100, chat_completions_batch without and with an output file,
#      in ROUNDS alternating pairs (the order flips every round). Medians of req/s and of CPU µs
#      per request, and the median of the per-pair ratios (with / without): on a noisy machine the
#      pairs, run back to back, share the same conditions.
#   S3 memory: chat_completions_batch over 200 000 inputs from a lazy source with a known size
#      (--source) and from a vector of nlohmann inputs the caller holds; peak RSS.
#   pool: S1 (no output file) on one client (C=100) against an LLMClientPool of 2 endpoints on
#      the same server (C/2 each), round robin and distributed, in ROUNDS rotating triples; the
#      pool's routing overhead as the median per-round ratio to the single client.
#
# Usage: bench/batch_bench.sh [--scenario s1|s3|pool|all]
# Env: ROUNDS (15), BATCH_BENCH (build/release/bench/batch_bench), S1_N (20000), S1_C (100),
#      S3_N (200000).
# Needs: nginx taskset curl (Debian packages nginx util-linux curl).
# Progress goes to stderr; a markdown block for bench/RESULTS.md goes to stdout.
# Exit status: 0 if every run succeeded, 1 otherwise, 2 on bad usage.
set -euo pipefail

BENCH_NAME=batch_bench
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
MEDIAN_NONE="—"

usage() {
  sed -n '/^# Usage:/,/^# Exit status:/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

SCENARIO=all
while [[ $# -gt 0 ]]; do
  case "$1" in
    --scenario)
      [[ $# -ge 2 ]] || usage
      SCENARIO=$2
      shift 2
      ;;
    *) usage ;;
  esac
done
[[ $SCENARIO =~ ^(s1|s3|pool|all)$ ]] || usage

ROUNDS=${ROUNDS:-15}
S1_N=${S1_N:-20000}
S1_C=${S1_C:-100}
S3_N=${S3_N:-200000}
BATCH_BENCH=${BATCH_BENCH:-$REPO_ROOT/build/release/bench/batch_bench}
need_posint ROUNDS S1_N S1_C S3_N
need_tools nginx taskset curl
[[ -x $BATCH_BENCH ]] || die "$BATCH_BENCH is missing: build it (cmake --build build/release)"

bench_setup
start_nginx
URL="http://127.0.0.1:$NGINX_PORT/v1"
FAILED=0

run() { # run ARGS...: one batch_bench run on CPU 1; prints its JSON line ("" on failure)
  local out
  if out=$(taskset -c 1 "$BATCH_BENCH" --base-url "$URL" "$@" 2>"$TMP/err"); then
    printf '%s' "$out"
  else
    log "batch_bench $* failed: $(tail -n 3 "$TMP/err")"
    FAILED=1
  fi
}

if [[ $SCENARIO == s1 || $SCENARIO == all ]]; then
  plain_rps=() file_rps=() plain_cpu=() file_cpu=() ratios=()
  for ((r = 1; r <= ROUNDS; r++)); do
    rm -f "$TMP/s1.jsonl"
    if ((r % 2)); then
      a=$(run -n "$S1_N" -c "$S1_C")
      b=$(run -n "$S1_N" -c "$S1_C" --output "$TMP/s1.jsonl")
    else
      b=$(run -n "$S1_N" -c "$S1_C" --output "$TMP/s1.jsonl")
      a=$(run -n "$S1_N" -c "$S1_C")
    fi
    [[ -n $a && -n $b ]] || continue
    plain_rps+=("$(json_field req_s "$a")")
    file_rps+=("$(json_field req_s "$b")")
    plain_cpu+=("$(json_field cpu_us_per_req "$a")")
    file_cpu+=("$(json_field cpu_us_per_req "$b")")
    ratios+=("$(awk -v a="${plain_rps[-1]}" -v b="${file_rps[-1]}" 'BEGIN { printf "%.3f", b / a }')")
    log "S1 round $r: ${plain_rps[-1]} vs ${file_rps[-1]} req/s (${ratios[-1]})"
  done
  echo "### S1: the checkpoint's cost ($(git_rev), ${#ratios[@]} pairs, N=$S1_N, C=$S1_C)"
  echo
  echo "| | req/s (median) | CPU µs/req (median) |"
  echo "|---|---|---|"
  echo "| without output_file | $(median %.0f "${plain_rps[@]}") | $(median %.2f "${plain_cpu[@]}") |"
  echo "| with output_file | $(median %.0f "${file_rps[@]}") | $(median %.2f "${file_cpu[@]}") |"
  echo
  echo "Median of the per-pair ratios (with / without): **$(median %.3f "${ratios[@]}")**"
  echo
fi

if [[ $SCENARIO == s3 || $SCENARIO == all ]]; then
  source_out=$(run -n "$S3_N" -c 100 --source)
  vector_out=$(run -n "$S3_N" -c 100)
  echo "### S3: chat_completions_batch over $S3_N inputs ($(git_rev))"
  echo
  echo "| inputs | peak RSS MB | req/s |"
  echo "|---|---|---|"
  echo "| lazy source with its size (\`--source\`) | $(json_field peak_rss_mb "$source_out") | $(json_field req_s "$source_out") |"
  echo "| vector of nlohmann inputs held by the caller | $(json_field peak_rss_mb "$vector_out") | $(json_field req_s "$vector_out") |"
  echo
fi
if [[ $SCENARIO == pool || $SCENARIO == all ]]; then
  single=() rr=() dist=() rr_ratio=() dist_ratio=()
  for ((r = 1; r <= ROUNDS; r++)); do
    declare -A out=()
    order=(single rr dist)
    ((r % 3 == 1)) && order=(rr dist single)
    ((r % 3 == 2)) && order=(dist single rr)
    for what in "${order[@]}"; do
      case $what in
        single) out[$what]=$(run -n "$S1_N" -c "$S1_C") ;;
        rr) out[$what]=$(run -n "$S1_N" -c "$S1_C" --pool 2) ;;
        dist) out[$what]=$(run -n "$S1_N" -c "$S1_C" --pool 2 --distribute) ;;
      esac
    done
    [[ -n ${out[single]} && -n ${out[rr]} && -n ${out[dist]} ]] || continue
    single+=("$(json_field req_s "${out[single]}")")
    rr+=("$(json_field req_s "${out[rr]}")")
    dist+=("$(json_field req_s "${out[dist]}")")
    rr_ratio+=("$(awk -v a="${single[-1]}" -v b="${rr[-1]}" 'BEGIN { printf "%.3f", b / a }')")
    dist_ratio+=("$(awk -v a="${single[-1]}" -v b="${dist[-1]}" 'BEGIN { printf "%.3f", b / a }')")
    log "pool round $r: single ${single[-1]}, round robin ${rr[-1]}, distributed ${dist[-1]} req/s"
    unset out
  done
  echo "### Pool of 2 endpoints vs one client ($(git_rev), ${#single[@]} rounds, N=$S1_N, C=$S1_C)"
  echo
  echo "| | req/s (median) | ratio to one client (median per round) |"
  echo "|---|---|---|"
  echo "| one client | $(median %.0f "${single[@]}") | 1 |"
  echo "| pool, round robin | $(median %.0f "${rr[@]}") | **$(median %.3f "${rr_ratio[@]}")** |"
  echo "| pool, distribute | $(median %.0f "${dist[@]}") | **$(median %.3f "${dist_ratio[@]}")** |"
  echo
fi
exit "$FAILED"
