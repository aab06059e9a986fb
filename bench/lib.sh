# shellcheck shell=bash
# lib.sh: helpers shared by the bench/*.sh harnesses.
#
# Source it near the top, after `set -euo pipefail` and after setting BENCH_NAME:
#   BENCH_NAME=mock_bench
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# It defines functions and constants only; bench_setup creates $TMP and installs the traps.
#
# Globals it sets: REPO_ROOT, NGINX_PORT, and (bench_setup) TMP, PIDS; start_nginx sets NGINX_PID.
# Globals it reads: BENCH_NAME (message prefix, temp dir name),
#   NGINX_CONF (default bench/nginx/nginx.conf), MEDIAN_NONE (median's "no value", n/a).

# shellcheck disable=SC2034 # REPO_ROOT and NGINX_PORT are for the sourcing script
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH_NAME="${BENCH_NAME:-$(basename "$0" .sh)}"
NGINX_PORT=18080 # fixed by bench/nginx/nginx.conf

# --- messages -----------------------------------------------------------------------------------
log() { printf '%s\n' "$*" >&2; }
die() {
  log "$BENCH_NAME: $*"
  exit 1
}
rel() { printf '%s' "${1#"$REPO_ROOT"/}"; } # repo path as shown in the summary

# --- input checks -------------------------------------------------------------------------------
need_tools() { # need_tools TOOL...: die on the first one not in PATH
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || die "missing tool: $tool"
  done
}

need_posint() { # need_posint VAR...: die unless each named variable holds a positive integer
  local v
  for v in "$@"; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, got '${!v}'"
  done
}

# --- process bookkeeping ------------------------------------------------------------------------
# bench_setup: private temp dir $TMP, empty PIDS; on exit stop every PID in PIDS and remove $TMP.
bench_setup() {
  TMP="$(mktemp -d "${TMPDIR:-/tmp}/$BENCH_NAME.XXXXXX")"
  PIDS=()
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

alive() { # alive PID: running and not a zombie
  local stat
  stat=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ $stat != Z* ]]
}

stop_pid() { # TERM, up to 5 s grace, then KILL; always reaps
  local pid=$1 i
  if kill "$pid" 2>/dev/null; then
    for ((i = 0; i < 50; i++)); do
      alive "$pid" || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

forget_pid() { # drop PID from PIDS
  local p keep=()
  for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}

stop_all() {
  local pid
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  PIDS=()
}

cleanup() {
  stop_all
  rm -rf "$TMP"
}

# --- readiness ----------------------------------------------------------------------------------
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; } # port_open PORT: accepts TCP

# http_code URL [METHOD]: the HTTP status of one bounded request ("000" if none)
http_code() {
  curl -s -o /dev/null -m 1 -X "${2:-GET}" -w '%{http_code}' "$1" 2>/dev/null || true
}
http_ok() { [[ $(http_code "$1") == 200 ]]; } # http_ok URL: GET answers 200

# poll_ready TRIES PID NAME CMD...: run CMD every 0.1 s until it succeeds (status 0) or TRIES
# attempts failed (status 1); dies at once when PID (the server NAME) has exited, showing the tail
# of $TMP/NAME.err.
poll_ready() {
  local tries=$1 pid=$2 name=$3 i
  shift 3
  for ((i = 0; i < tries; i++)); do
    "$@" && return 0
    alive "$pid" || die "$name exited early: $(tail -n 5 "$TMP/$name.err")"
    sleep 0.1
  done
  return 1
}

wait_port() { # wait_port PORT PID NAME: TCP readiness, 50 x 0.1 s
  poll_ready 50 "$2" "$3" port_open "$1" ||
    die "$3 does not accept connections on 127.0.0.1:$1 after 5 s"
}

wait_http() { # wait_http URL PID NAME: HTTP 200 readiness, 100 x 0.1 s
  poll_ready 100 "$2" "$3" http_ok "$1" || die "$3 does not answer $1 after 10 s"
}

# start_nginx: the fixed-response nginx (bench/nginx/nginx.conf, or $NGINX_CONF) on CPU 0 (127.0.0.1:$NGINX_PORT), run dir under
# $TMP, ready once GET /v1/models answers 200; sets NGINX_PID. Needs curl.
start_nginx() {
  local run="$TMP/nginx-run" conf="${NGINX_CONF:-$REPO_ROOT/bench/nginx/nginx.conf}"
  if port_open "$NGINX_PORT"; then
    die "127.0.0.1:$NGINX_PORT is already in use (another benchmark?); stop that server first"
  fi
  mkdir -p "$run"
  taskset -c 0 nginx -p "$run" -e stderr -c "$conf" >"$TMP/nginx.out" 2>"$TMP/nginx.err" &
  NGINX_PID=$!
  PIDS+=("$NGINX_PID")
  wait_http "http://127.0.0.1:$NGINX_PORT/v1/models" "$NGINX_PID" nginx
  log "nginx: pid $NGINX_PID, 127.0.0.1:$NGINX_PORT"
}

# --- output parsing -----------------------------------------------------------------------------
# json_field NAME JSON: the scalar value of "NAME" in a one-line JSON object, quotes stripped;
# tolerates a space after the colon (Python's json.dumps) and takes the first matching line.
json_field() { sed -n "s/.*\"$1\": *\"\{0,1\}\([^,}\"]*\).*/\1/p" <<<"$2" | head -n 1; }

median() { # median FORMAT VALUES...: printf-formatted median of the numeric ones ($MEDIAN_NONE if none)
  local fmt=$1
  shift
  printf '%s\n' "$@" | { grep -E '^[0-9]+(\.[0-9]+)?$' || true; } | sort -g |
    awk -v fmt="$fmt" -v none="${MEDIAN_NONE:-n/a}" '{ a[NR] = $1 } END {
      if (NR == 0) { print none; exit }
      m = int((NR + 1) / 2)
      printf fmt "\n", (NR % 2) ? a[m] : (a[m] + a[m + 1]) / 2 }'
}

wrk_rps() { awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$1"; } # wrk_rps FILE: req/s of a wrk run
wrk_errors() { grep -E 'Non-2xx|Socket errors' "$1"; }             # prints them; 1 if there are none

# --- summary header -----------------------------------------------------------------------------
git_rev() { # short HEAD, "(+ uncommitted changes)" when tracked files differ
  local rev
  rev=$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
  if [[ -n $(git -C "$REPO_ROOT" --no-optional-locks status --porcelain --untracked-files=no 2>/dev/null || true) ]]; then
    rev="$rev (+ uncommitted changes)"
  fi
  printf '%s' "$rev"
}

cpu_desc() { # "8 CPUs (model name)"
  local model
  model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
  printf '%s CPUs%s' "$(nproc)" "${model:+ ($model)}"
}

# --- timed client runs ---------------------------------------------------------------------------
# run_timed NAME CMD...: runs CMD on CPU 1 under GNU time and timeout ($CLIENT_TIMEOUT s), in the
# background so that INT/TERM and the EXIT trap reach it; stdout/stderr to $TMP/NAME.{out,err}.
# Sets RUN_RC and TIME_E TIME_U TIME_S TIME_M (empty if GNU time wrote nothing usable).
run_timed() {
  local name=$1 pid tline
  shift
  rm -f "$TMP/$name.time"
  timeout -k 5 "$CLIENT_TIMEOUT" /usr/bin/time -o "$TMP/$name.time" -f '%e %U %S %M' \
    taskset -c 1 "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" &
  pid=$!
  PIDS+=("$pid")
  RUN_RC=0
  wait "$pid" || RUN_RC=$?
  forget_pid "$pid"
  TIME_E="" TIME_U="" TIME_S="" TIME_M=""
  # GNU time prepends "Command exited with non-zero status N" etc.: the numbers are the last line
  tline=$(tail -n 1 "$TMP/$name.time" 2>/dev/null || true)
  if [[ $tline =~ ^([0-9.]+)\ ([0-9.]+)\ ([0-9.]+)\ ([0-9]+)$ ]]; then
    TIME_E=${BASH_REMATCH[1]} TIME_U=${BASH_REMATCH[2]} TIME_S=${BASH_REMATCH[3]}
    TIME_M=${BASH_REMATCH[4]}
  fi
  if ((RUN_RC == 124 || RUN_RC == 137)); then
    log "  $name: killed after the ${CLIENT_TIMEOUT} s limit"
  fi
}

# --- peers ---------------------------------------------------------------------------------------
# ensure_openai_node: npm-installs the openai package into $NPM_PREFIX once (build/ is
# git-ignored) unless $OPENAI_NODE_MODULES already holds it; sets OPENAI_VERSION.
ensure_openai_node() {
  if [[ ! -f $OPENAI_NODE_MODULES/openai/package.json ]]; then
    [[ $OPENAI_NODE_MODULES == "$NPM_PREFIX/node_modules" ]] ||
      die "OPENAI_NODE_MODULES=$OPENAI_NODE_MODULES holds no openai package"
    log "installing openai-node into $(rel "$NPM_PREFIX") (once)"
    mkdir -p "$NPM_PREFIX"
    timeout 300 npm install --prefix "$NPM_PREFIX" --no-audit --no-fund openai >&2 ||
      die "npm install openai failed (or leave openai-node out of the peers)"
  fi
  OPENAI_VERSION=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' \
    "$OPENAI_NODE_MODULES/openai/package.json" | head -n 1)
}
