#!/usr/bin/env bash
# resume_bench.sh: how fast `flexllm batch` gets going again on a large checkpoint, and how its
# memory grows with the job. Against bench/nginx/nginx.conf (a fixed reply) on CPU 0, the client on
# CPU 1.
#
#   A. resume, for each DONE in $DONE_LIST: OUT holds DONE finished records (made once by a real
#      run, copied afresh for each round) and the input has NEW more lines. Measured: the time from
#      process start to the first new request reaching nginx (nginx logs each arrival's $msec),
#      the wall time of the whole run, and its peak RSS. Next to it, the library's figure for the
#      same shape: batch_bench -n DONE+NEW --prefill DONE (a vector of inputs; its time from the
#      batch's start to its first request, which is a new one).
#   B. memory: fresh runs of N items for each N in $SIZES: the command's peak RSS and wall time.
#
# Usage: bench/resume_bench.sh
# Env: ROUNDS (5), DONE_LIST ("100000 1000000"), NEW (1000), SIZES ("100000 1000000 3000000"),
#      C (100), FLEXLLM_BIN (build/release/apps/flexllm/flexllm), BATCH_BENCH
#      (build/release/bench/batch_bench).
# Needs: nginx taskset curl /usr/bin/time (Debian packages nginx util-linux curl time).
# Progress goes to stderr; a markdown block for bench/RESULTS.md goes to stdout.
# Exit status: 0 if every run succeeded, 1 otherwise, 2 on bad usage.
set -euo pipefail

BENCH_NAME=resume_bench
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
MEDIAN_NONE="—"

[[ $# -eq 0 ]] || { sed -n '/^# Usage:/,/^# Exit status:/p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
ROUNDS=${ROUNDS:-5}
DONE_LIST=${DONE_LIST:-"100000 1000000"}
NEW=${NEW:-1000}
SIZES=${SIZES:-"100000 1000000 3000000"}
C=${C:-100}
FLEXLLM_BIN=${FLEXLLM_BIN:-$REPO_ROOT/build/release/apps/flexllm/flexllm}
BATCH_BENCH=${BATCH_BENCH:-$REPO_ROOT/build/release/bench/batch_bench}
need_posint ROUNDS NEW C
need_tools nginx taskset curl awk
[[ -x /usr/bin/time ]] || die "/usr/bin/time is missing (Debian package time)"
[[ -x $FLEXLLM_BIN && -x $BATCH_BENCH ]] ||
  die "build first: cmake --build build/release (needs $FLEXLLM_BIN and $BATCH_BENCH)"

bench_setup
# The repo's nginx fixture, with an access log of each request's arrival time (seconds, ms).
NGINX_CONF="$TMP/nginx.conf"
# shellcheck disable=SC2016 # $msec is nginx's, written literally into its config
sed 's|^    access_log off;|    log_format arrival "$msec"; access_log access.log arrival;|' \
  "$REPO_ROOT/bench/nginx/nginx.conf" >"$NGINX_CONF"
grep -q 'access_log access.log' "$NGINX_CONF" || die "could not turn on nginx's access log"
start_nginx
URL="http://127.0.0.1:$NGINX_PORT/v1"
ACCESS_LOG="$TMP/nginx-run/access.log"

prompts() { # prompts FROM TO: prompt records FROM..TO-1
  awk -v a="$1" -v b="$2" 'BEGIN { for (i = a; i < b; i++)
    printf "{\"id\": %d, \"prompt\": \"Summarise item %d of the benchmark in one short sentence.\"}\n", i, i }'
}
# batch IN OUT [flags…]: the command on CPU 1 under /usr/bin/time; prints "WALL_S MAXRSS_KB"
batch() {
  local in=$1 out=$2
  shift 2
  if /usr/bin/time -f '%e %M' -o "$TMP/time" taskset -c 1 "$FLEXLLM_BIN" batch "$in" -o "$out" \
    --base-url "$URL" -m bench-model -c "$C" "$@" >/dev/null 2>"$TMP/batch.err"; then
    cat "$TMP/time"
  else
    log "flexllm batch failed: $(tail -n 3 "$TMP/batch.err")"
    FAILED=1
    echo "0 0"
  fi
}
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

FAILED=0
resume_rows=""
for n_done in $DONE_LIST; do
  need_posint n_done
  prompts 0 "$n_done" >"$TMP/done_in.jsonl"
  prompts 0 $((n_done + NEW)) >"$TMP/in.jsonl"
  log "making a checkpoint of $n_done records"
  batch "$TMP/done_in.jsonl" "$TMP/done.jsonl" --no-progress >/dev/null
  first=() wall=() rss=() lib=()
  for ((r = 1; r <= ROUNDS; r++)); do
    cp "$TMP/done.jsonl" "$TMP/out.jsonl"
    : >"$ACCESS_LOG"
    start_ns=$(date +%s%N)
    read -r w m < <(batch "$TMP/in.jsonl" "$TMP/out.jsonl")
    arrived=$(head -n 1 "$ACCESS_LOG")
    first+=("$(awk -v a="$arrived" -v s="$start_ns" 'BEGIN { printf "%.3f", a - s / 1e9 }')")
    wall+=("$w") rss+=("$m")
    lines=$(wc -l <"$TMP/out.jsonl")
    [[ $lines -eq $((n_done + NEW)) ]] || { log "OUT has $lines records, not $((n_done + NEW))"; FAILED=1; }
    rm -f "$TMP/lib.jsonl"
    lib_json=$(taskset -c 1 "$BATCH_BENCH" --base-url "$URL" -n $((n_done + NEW)) -c "$C" \
      --output "$TMP/lib.jsonl" --prefill "$n_done")
    lib+=("$(sed -n 's/.*"first_new_s":\([0-9.]*\).*/\1/p' <<<"$lib_json")")
    log "done $n_done, round $r: command first request ${first[-1]} s, wall $w s, $(mb "$m") MB;" \
      "library first ${lib[-1]} s"
  done
  resume_rows+="| $n_done + $NEW | $(median %.3f "${first[@]}") ($(printf '%s ' "${first[@]}")) | $(median %.2f "${wall[@]}") | $(mb "$(median %.0f "${rss[@]}")") | $(median %.3f "${lib[@]}") |"$'\n'
done

memory_rows=""
for n in $SIZES; do
  need_posint n
  prompts 0 "$n" >"$TMP/in.jsonl"
  wall=() rss=()
  for ((r = 1; r <= (ROUNDS < 3 ? ROUNDS : 3); r++)); do
    rm -f "$TMP/out.jsonl"
    read -r w m < <(batch "$TMP/in.jsonl" "$TMP/out.jsonl" --no-progress)
    wall+=("$w") rss+=("$m")
    log "fresh $n, round $r: wall $w s, peak RSS $(mb "$m") MB"
  done
  memory_rows+="| $n | $(median %.1f "${wall[@]}") | $(mb "$(median %.0f "${rss[@]}")") ($(for k in "${rss[@]}"; do printf '%s ' "$(mb "$k")"; done)) |"$'\n'
done

cat <<MD
### Resume and memory of \`flexllm batch\` ($(git_rev), $(cpu_desc))

Command: \`ROUNDS=$ROUNDS DONE_LIST="$DONE_LIST" NEW=$NEW SIZES="$SIZES" C=$C bench/resume_bench.sh\`
(nginx fixed reply, bench/nginx/nginx.conf, on CPU 0; the client on CPU 1)

| done + new | command: first new request after process start, s (median; runs) | command wall s | command peak RSS MB | library (batch_bench --prefill, a vector of inputs): first new request after the batch starts, s |
|---|---|---|---|---|
${resume_rows}
| fresh run of N items | wall s (median) | peak RSS MB (median; runs) |
|---|---|---|
${memory_rows}
MD
exit "$FAILED"
