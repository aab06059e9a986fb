#!/usr/bin/env bash
# startup.sh: the `flexllm` command's start-up time, measured with hyperfine on one CPU.
#
#   In each of ROUNDS rounds, one hyperfine run (no shell: -N; WARMUP warm-up and RUNS timed runs
#   of each command) times, pinned to CPU $CPU with taskset:
#     /bin/true                      the floor: what spawning any process costs here
#     flexllm --version              the target (≤ 20 ms)
#     flexllm --help                 every subcommand registered, the help text formatted
#     flexllm batch --help           one subcommand's help
#     empty main, same libraries     `int main() {}` linked (g++ --no-as-needed) against the
#                                    binary's own NEEDED list: what loading, relocating and
#                                    initialising those shared libraries costs without any of
#                                    flexllm's code (left out when g++ or readelf is missing)
#     python3 -c pass                the bare Python interpreter, a floor under any Python CLI
#                                    (Python flexllm imports for 0.35-0.45 s on top of it;
#                                    left out when python3 is missing)
#   Per round: median and mean wall of each; then the median over the rounds, and the part above
#   the /bin/true floor. Start-up facts next to it: binary size, shared libraries loaded, the
#   dynamic linker's relocation statistics, the system calls of one `--version`.
#
# Usage: bench/startup.sh [FLEXLLM_BIN]
# Env:   FLEXLLM_BIN (default build/release/apps/flexllm/flexllm), ROUNDS (3), RUNS (200),
#        WARMUP (20), CPU (1).
# Needs: hyperfine taskset jq (Debian packages hyperfine util-linux jq); g++, readelf and strace
#        are optional.
# Progress goes to stderr; a markdown block for bench/RESULTS.md goes to stdout.
# Exit status: 0 if every run worked, 1 otherwise, 2 on bad usage.
set -euo pipefail

BENCH_NAME=startup
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
MEDIAN_NONE="—"

usage() {
  sed -n '/^# Usage:/,/^# Exit status:/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

[[ $# -le 1 && ${1:-} != -* ]] || usage
FLEXLLM_BIN=${1:-${FLEXLLM_BIN:-$REPO_ROOT/build/release/apps/flexllm/flexllm}}
ROUNDS=${ROUNDS:-3}
RUNS=${RUNS:-200}
WARMUP=${WARMUP:-20}
CPU=${CPU:-1}
need_posint ROUNDS RUNS WARMUP
[[ $CPU =~ ^[0-9]+$ ]] || die "CPU must be a CPU number, got '$CPU'"
need_tools hyperfine taskset jq awk
[[ -x $FLEXLLM_BIN && -f $FLEXLLM_BIN ]] ||
  die "$FLEXLLM_BIN is missing: build it (ninja -C build/release -j2 flexllm_cli)"
FLEXLLM_BIN="$(cd "$(dirname "$FLEXLLM_BIN")" && pwd)/$(basename "$FLEXLLM_BIN")" # before the cd below
BIN=$(rel "$FLEXLLM_BIN")

bench_setup
cd "$REPO_ROOT" # the commands are shown (and run) with repo-relative paths

# The commands, in the order of the table; each must succeed on its own first.
labels=("/bin/true" "flexllm --version" "flexllm --help" "flexllm batch --help")
cmds=("/bin/true" "$BIN --version" "$BIN --help" "$BIN batch --help")
if command -v g++ >/dev/null && command -v readelf >/dev/null; then
  mapfile -t needed < <(readelf -d "$FLEXLLM_BIN" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
  printf 'int main() { return 0; }\n' >"$TMP/empty.cpp"
  if g++ -O2 "$TMP/empty.cpp" -o "$TMP/empty_same_libs" -Wl,--no-as-needed \
    "${needed[@]/#/-l:}" 2>"$TMP/err"; then
    labels+=("empty main, same libraries")
    cmds+=("$TMP/empty_same_libs")
  else
    log "could not link the empty program against ${needed[*]}: $(tail -n 3 "$TMP/err")"
  fi
fi
# The interpreter itself, not a wrapper such as a pyenv shim (a shell script).
if python=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null) && [[ -x $python ]]; then
  labels+=("python3 -c pass")
  cmds+=("$python -c pass")
fi
for c in "${cmds[@]}"; do
  # shellcheck disable=SC2086 # the command lines are plain words
  $c >/dev/null 2>"$TMP/err" || die "'$c' failed: $(tail -n 3 "$TMP/err")"
done

# --- the rounds ---------------------------------------------------------------------------------
declare -A med mean # [round,index] -> ms
FAILED=0
for ((r = 1; r <= ROUNDS; r++)); do
  log "round $r/$ROUNDS: hyperfine, $RUNS runs of each command on CPU $CPU"
  if ! taskset -c "$CPU" hyperfine -N --style none --warmup "$WARMUP" --runs "$RUNS" \
    --export-json "$TMP/r$r.json" "${cmds[@]}" >"$TMP/r$r.out" 2>&1; then
    log "hyperfine failed: $(tail -n 5 "$TMP/r$r.out")"
    FAILED=1
    continue
  fi
  for i in "${!cmds[@]}"; do
    med[$r,$i]=$(jq -r ".results[$i].median * 1000" "$TMP/r$r.json")
    mean[$r,$i]=$(jq -r ".results[$i].mean * 1000" "$TMP/r$r.json")
  done
done

# --- start-up facts ---------------------------------------------------------------------------
size=$(stat -c %s "$FLEXLLM_BIN")
nlibs=$(ldd "$FLEXLLM_BIN" | grep -c '=>' || true)
libs=$(ldd "$FLEXLLM_BIN" | awk '/=>/ { sub(/\.so.*/, "", $1); printf "%s%s", sep, $1; sep = " " }')
ldstats=$(LD_DEBUG=statistics "$FLEXLLM_BIN" --version 2>&1 >/dev/null |
  sed -n 's/^[[:space:]]*[0-9]*:[[:space:]]*//p' | grep -E 'total startup time|time needed for relocation|number of relocations:|relocations from cache' || true)
if command -v strace >/dev/null; then
  syscalls=$(strace -f -c -o "$TMP/strace" "$FLEXLLM_BIN" --version >/dev/null 2>&1 &&
    awk '$NF == "total" { print $4 }' "$TMP/strace")
  opens=$(strace -f -e trace=openat -o "$TMP/opens" "$FLEXLLM_BIN" --version >/dev/null 2>&1 &&
    grep -vc ENOENT "$TMP/opens")
fi

# --- summary (stdout) ---------------------------------------------------------------------------
over_rounds() { # over_rounds med|mean INDEX: the median over the rounds for command INDEX
  local r v=()
  for ((r = 1; r <= ROUNDS; r++)); do
    if [[ $1 == med ]]; then v+=("${med[$r,$2]:-}"); else v+=("${mean[$r,$2]:-}"); fi
  done
  median '%.2f' "${v[@]}"
}

floor=$(over_rounds med 0)
version=$(over_rounds med 1)
echo "### flexllm start-up ($(git_rev), $(date +%F), $(cpu_desc), $ROUNDS rounds)"
echo
echo '```'
echo "taskset -c $CPU hyperfine -N --warmup $WARMUP --runs $RUNS \\"
shown=("${cmds[@]//"$TMP"/\$TMP}")
printf "  '%s' \\\\\n" "${shown[@]:0:${#shown[@]}-1}"
printf "  '%s'\n" "${shown[-1]}"
echo '```'
if [[ " ${cmds[*]} " == *" $TMP/empty_same_libs "* ]]; then
  echo
  echo "\$TMP/empty_same_libs: \`int main() { return 0; }\` built with \`g++ -O2 -Wl,--no-as-needed ${needed[*]/#/-l:}\`."
fi
echo
printf '| command |'
for ((r = 1; r <= ROUNDS; r++)); do printf ' round %d median ms |' "$r"; done
printf ' median ms | mean ms (median of rounds) | above /bin/true ms |\n|---|'
for ((r = 1; r <= ROUNDS + 3; r++)); do printf -- '---|'; done
echo
for i in "${!cmds[@]}"; do
  printf "| \`%s\` |" "${labels[$i]}"
  for ((r = 1; r <= ROUNDS; r++)); do printf ' %s |' "$(median '%.2f' "${med[$r,$i]:-}")"; done
  mi=$(over_rounds med "$i")
  above=$(awk -v a="$mi" -v b="$floor" 'BEGIN { if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/) printf "%.2f", a - b; else print "—" }')
  printf ' **%s** | %s | %s |\n' "$mi" "$(over_rounds mean "$i")" "$above"
done
echo
echo "Target \`flexllm --version\` ≤ 20 ms: $(awk -v v="$version" 'BEGIN { if (v !~ /^[0-9.]+$/) print "no figure"; else if (v <= 20) print "met (" v " ms)"; else print "missed (" v " ms)" }')."
echo
echo "Binary: $BIN, $((size / 1024)) KiB; $nlibs shared libraries ($libs)."
[[ -n ${syscalls:-} ]] && echo "One \`--version\`: ${syscalls} system calls, ${opens:-?} files opened (strace -f)."
if [[ -n $ldstats ]]; then
  echo
  echo "\`LD_DEBUG=statistics $BIN --version\`:"
  echo '```'
  printf '%s\n' "$ldstats"
  echo '```'
fi
((FAILED == 0))
