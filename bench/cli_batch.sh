#!/usr/bin/env bash
# cli_batch.sh: what the `flexllm batch` command adds on top of the library's batch, against the
# fixed-response nginx of bench/nginx/nginx.conf (CPU 0; the client on CPU 1).
#
#   N prompt records ({"id": …, "prompt": "…"}) in a JSONL file; in ROUNDS alternating pairs:
#     library  batch_bench --iter --input IN_MSG --output OUT -c C  (iter_chat_completions_batch
#              over jsonl_messages of the same requests as {"messages": …} records, checkpointed:
#              the library alone, no metadata)
#     command  flexllm batch IN -o OUT -c C --no-progress        (input forms, metadata, config,
#              signal handling, process start: everything a user of the command gets)
#   Each run starts with no output file. Wall seconds and peak RSS from /usr/bin/time; medians,
#   and the median of the per-pair ratios command / library.
#
# Usage: bench/cli_batch.sh
# Env: ROUNDS (7), N (100000), C (100), FLEXLLM_BIN (build/release/apps/flexllm/flexllm),
#      BATCH_BENCH (build/release/bench/batch_bench).
# Needs: nginx taskset curl /usr/bin/time (Debian packages nginx util-linux curl time).
# Progress goes to stderr; a markdown block for bench/RESULTS.md goes to stdout.
# Exit status: 0 if every run succeeded, 1 otherwise, 2 on bad usage.
set -euo pipefail

BENCH_NAME=cli_batch
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
MEDIAN_NONE="—"

[[ $# -eq 0 ]] || { sed -n '/^# Usage:/,/^# Exit status:/p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
ROUNDS=${ROUNDS:-7}
N=${N:-100000}
C=${C:-100}
FLEXLLM_BIN=${FLEXLLM_BIN:-$REPO_ROOT/build/release/apps/flexllm/flexllm}
BATCH_BENCH=${BATCH_BENCH:-$REPO_ROOT/build/release/bench/batch_bench}
need_posint ROUNDS N C
need_tools nginx taskset curl awk
[[ -x /usr/bin/time ]] || die "/usr/bin/time is missing (Debian package time)"
[[ -x $FLEXLLM_BIN && -x $BATCH_BENCH ]] ||
  die "build first: cmake --build build/release (needs $FLEXLLM_BIN and $BATCH_BENCH)"

bench_setup
start_nginx
URL="http://127.0.0.1:$NGINX_PORT/v1"
# The same requests twice: as the command's prompt records (with an id kept as metadata), and as
# messages records for the library's jsonl_messages.
IN="$TMP/in.jsonl"
IN_MSG="$TMP/in_messages.jsonl"
awk -v n="$N" 'BEGIN { for (i = 0; i < n; i++)
  printf "{\"id\": %d, \"prompt\": \"Summarise item %d of the benchmark in one short sentence.\"}\n", i, i }' >"$IN"
awk -v n="$N" 'BEGIN { for (i = 0; i < n; i++)
  printf "{\"messages\": [{\"role\": \"user\", \"content\": \"Summarise item %d of the benchmark in one short sentence.\"}]}\n", i }' >"$IN_MSG"

# timed NAME CMD...: runs CMD on CPU 1 under /usr/bin/time; prints "WALL_S MAXRSS_KB" ("" on failure)
timed() {
  local name=$1
  shift
  rm -f "$TMP/out.jsonl"
  if /usr/bin/time -f '%e %M' -o "$TMP/time" taskset -c 1 "$@" >/dev/null 2>"$TMP/$name.err"; then
    cat "$TMP/time"
  else
    log "$name failed: $(tail -n 3 "$TMP/$name.err")"
    FAILED=1
  fi
}

FAILED=0
lib_wall=() cli_wall=() lib_rss=() cli_rss=() ratios=()
for ((r = 1; r <= ROUNDS; r++)); do
  order=(lib cli)
  ((r % 2 == 0)) && order=(cli lib)
  for who in "${order[@]}"; do
    if [[ $who == lib ]]; then
      read -r w m < <(timed lib "$BATCH_BENCH" --base-url "$URL" -n "$N" -c "$C" --iter \
        --input "$IN_MSG" --output "$TMP/out.jsonl")
      lib_wall+=("$w") lib_rss+=("$m")
    else
      read -r w m < <(timed cli "$FLEXLLM_BIN" batch "$IN" -o "$TMP/out.jsonl" --base-url "$URL" \
        -m bench-model -c "$C" --no-progress)
      cli_wall+=("$w") cli_rss+=("$m")
      lines=$(wc -l <"$TMP/out.jsonl")
      [[ $lines -eq $N ]] || { log "command wrote $lines records, not $N"; FAILED=1; }
    fi
  done
  ratios+=("$(awk -v a="${cli_wall[-1]}" -v b="${lib_wall[-1]}" 'BEGIN { printf "%.3f", a / b }')")
  log "round $r: library ${lib_wall[-1]} s, command ${cli_wall[-1]} s (ratio ${ratios[-1]})"
done

cat <<MD
### \`flexllm batch\` vs the library (N=$N, C=$C, checkpointed; $(git_rev), $(cpu_desc))

Command: \`ROUNDS=$ROUNDS N=$N C=$C bench/cli_batch.sh\` ($ROUNDS alternating pairs)

| | wall s (median) | req/s | peak RSS MB (median) |
|---|---|---|---|
| library: \`batch_bench --iter --input IN_MSG --output OUT\` | $(median %.2f "${lib_wall[@]}") | $(awk -v n="$N" -v w="$(median %.3f "${lib_wall[@]}")" 'BEGIN { printf "%.0f", n / w }') | $(awk -v k="$(median %.0f "${lib_rss[@]}")" 'BEGIN { printf "%.1f", k / 1024 }') |
| command: \`flexllm batch IN -o OUT\` | $(median %.2f "${cli_wall[@]}") | $(awk -v n="$N" -v w="$(median %.3f "${cli_wall[@]}")" 'BEGIN { printf "%.0f", n / w }') | $(awk -v k="$(median %.0f "${cli_rss[@]}")" 'BEGIN { printf "%.1f", k / 1024 }') |

Median per-pair ratio command / library (wall): **$(median %.3f "${ratios[@]}")**
MD
exit "$FAILED"
