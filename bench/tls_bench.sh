#!/usr/bin/env bash
# tls_bench.sh: flexllm's native https:// transport (TLS + HTTP/2) at scale, next to h2load (the
# HTTP/2 limit), aiohttp and openai-node (both HTTP/1.1 over TLS), in the same rounds and against
# the same servers. Servers on CPU 0, each client on CPU 1; the servers' certificates come from a
# private CA (bench/tls/tls.sh ca) that every client trusts through its environment only, with
# verification on (checked once at the start: flexllm without the CA must fail).
#
#   S2-TLS  `flexllm mock --latency LATENCY_MS` behind `bench/tls/tls.sh proxy` (nginx TLS +
#           HTTP/2, STREAMS streams per connection, kept-alive HTTP/1.1 to the mock):
#             C=S2_C N=S2_N: flexllm batch; h2load on the fewest connections the stream limit
#                            allows, C spread over them (-c 8 -m 125); aiohttp; openai-node
#             C=S2B_C N=S2B_N: the same (h2load -c 2 -m 100), and h2load -c 1 -m S2B_C (above the
#                            server's stream limit: shown, not a reference)
#           ideal wall = N / C x latency.
#   S1-TLS  `bench/tls/tls.sh fixed` (nginx's fixed reply over TLS + HTTP/2, no latency):
#           flexllm batch of S1_N prompts at C=S1_C vs h2load -n S1_N -c 1 -m S1_C (one
#           connection): req/s and their ratio; flexllm's CPU per request over TLS next to the same
#           batch over plain http:// (bench/nginx/nginx.conf, 127.0.0.1:18080). S1_REPS times per
#           round (its runs last about a second); ratios are taken between runs of the same turn.
#   GOAWAY  `bench/tls/tls.sh fixed … GA_K` (a GOAWAY every GA_K requests on a connection): flexllm
#           batch N=GA_N at C=GA_C; failed items and the requests nginx processed (its access log).
#
# For every run: wall (the process's, GNU time %e, start-up included, for every client alike),
# failed items, peak RSS, CPU seconds (user+sys), and from nginx's access log of that run the
# connections that carried requests (distinct $connection values) and the requests it processed.
# A run that exits non-zero, times out or has a failed item is FAILED and left out of the
# medians. flexllm is copied to $TMP at the start, so a rebuild during the run does not change it.
#
# Usage: bench/tls_bench.sh
# Env: ROUNDS (3), S2_N (10000), S2_C (1000), S2B_N (2000), S2B_C (200), LATENCY_MS (200),
#      STREAMS (128), S1_N (20000), S1_C (100), S1_REPS (3: S1-TLS runs per round, its runs are
#      short and this machine noisy), GA_N (20000), GA_C (1000), GA_K (1000),
#      PEERS ("h2load aiohttp openai-node": the peers to run), PORT (28443: the TLS servers use
#      PORT, PORT+1, PORT+2), FLEXLLM_BIN (build/release/apps/flexllm/flexllm),
#      OPENAI_NODE_MODULES (build/bench/node_modules; `npm install openai` there once if missing),
#      CLIENT_TIMEOUT (300 s per client run), PAUSE (1 s between runs).
# Needs: nginx (http_ssl, http_v2) openssl curl taskset timeout /usr/bin/time, h2load
#        (nghttp2-client), /usr/bin/python3 with aiohttp (python3-aiohttp), node and npm.
# Progress goes to stderr; a markdown block for bench/RESULTS.md goes to stdout.
# Exit status: 0 if every run succeeded, 1 otherwise, 2 on bad usage.
set -euo pipefail

BENCH_NAME=tls_bench
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
MEDIAN_NONE="—"

[[ $# -eq 0 ]] || { sed -n '/^# Usage:/,/^# Exit status:/p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
# The command as the summary shows it: ROUNDS and whatever else the environment set.
SHOWN_ENV="ROUNDS=${ROUNDS:-3}"
for v in S2_N S2_C S2B_N S2B_C LATENCY_MS STREAMS S1_N S1_C S1_REPS GA_N GA_C GA_K PEERS PORT FLEXLLM_BIN \
  OPENAI_NODE_MODULES CLIENT_TIMEOUT PAUSE; do
  if [[ -n ${!v+set} ]]; then
    if [[ ${!v} == *" "* ]]; then SHOWN_ENV+=" $v=\"${!v}\""; else SHOWN_ENV+=" $v=${!v}"; fi
  fi
done
ROUNDS=${ROUNDS:-3}
S2_N=${S2_N:-10000}
S2_C=${S2_C:-1000}
S2B_N=${S2B_N:-2000}
S2B_C=${S2B_C:-200}
LATENCY_MS=${LATENCY_MS:-200}
STREAMS=${STREAMS:-128}
S1_N=${S1_N:-20000}
S1_C=${S1_C:-100}
S1_REPS=${S1_REPS:-3}
GA_N=${GA_N:-20000}
GA_C=${GA_C:-1000}
GA_K=${GA_K:-1000}
PEERS=${PEERS:-"h2load aiohttp openai-node"}
PORT=${PORT:-28443}
FLEXLLM_BIN=${FLEXLLM_BIN:-$REPO_ROOT/build/release/apps/flexllm/flexllm}
NPM_PREFIX="$REPO_ROOT/build/bench"
OPENAI_NODE_MODULES=${OPENAI_NODE_MODULES:-$NPM_PREFIX/node_modules}
CLIENT_TIMEOUT=${CLIENT_TIMEOUT:-300}
PAUSE=${PAUSE:-1}
PYTHON=/usr/bin/python3
TLS_SH="$REPO_ROOT/bench/tls/tls.sh"
PEER_DIR="$REPO_ROOT/bench/peers"
REQUEST_JSON="$PEER_DIR/request.json"
MODEL=mock-model

need_posint ROUNDS S2_N S2_C S2B_N S2B_C LATENCY_MS STREAMS S1_N S1_C S1_REPS GA_N GA_C GA_K PORT CLIENT_TIMEOUT
[[ $PAUSE =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "PAUSE must be a number of seconds, got '$PAUSE'"
((PORT + 2 < 65536)) || die "PORT must leave room for PORT+2"
need_tools nginx openssl curl taskset timeout awk sed sort
[[ -x /usr/bin/time ]] || die "/usr/bin/time is missing (Debian package time)"
[[ -x $FLEXLLM_BIN ]] ||
  die "build first: cmake --build build/release -j2 --target flexllm_cli (needs $FLEXLLM_BIN)"
[[ -f $REQUEST_JSON ]] || die "missing $REQUEST_JSON"
peer_on() { [[ " $PEERS " == *" $1 "* ]]; }
for p in $PEERS; do
  case "$p" in h2load | aiohttp | openai-node) ;; *) die "PEERS: unknown peer '$p'" ;; esac
done
peer_on h2load && need_tools h2load
peer_on openai-node && need_tools node npm
if peer_on aiohttp; then
  AIOHTTP_VERSION=$(timeout 30 "$PYTHON" -c 'import aiohttp; print(aiohttp.__version__)' 2>/dev/null) ||
    die "$PYTHON cannot import aiohttp (apt-get install python3-aiohttp, or leave aiohttp out of PEERS)"
fi
# The same descriptor limit for every client (C=1000 over HTTP/1.1 needs 1000 sockets).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)

OPENAI_VERSION=""
peer_on openai-node && ensure_openai_node

bench_setup
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
FLEX="$TMP/flexllm"
cp "$FLEXLLM_BIN" "$FLEX"
FLEX_BUILT=$(date -u -r "$FLEXLLM_BIN" '+%Y-%m-%d %H:%M UTC')
REV=$(git_rev) # at the start: others may commit while this runs

# --- servers ------------------------------------------------------------------------------------
for p in "$PORT" $((PORT + 1)) $((PORT + 2)); do
  ! port_open "$p" || die "127.0.0.1:$p is already in use (set PORT to another base)"
done
P_PROXY=$PORT P_FIXED=$((PORT + 1)) P_GOAWAY=$((PORT + 2))
D_PROXY="$TMP/proxy" D_FIXED="$TMP/fixed" D_GOAWAY="$TMP/goaway"
for d in "$D_PROXY" "$D_FIXED" "$D_GOAWAY"; do
  "$TLS_SH" ca "$d" 2>"$TMP/ca.err" || die "tls.sh ca failed: $(tail -n 3 "$TMP/ca.err")"
done

# start_bg NAME CMD...: CMD in the background, stdout/stderr to $TMP/NAME.{out,err}; sets BG_PID
start_bg() {
  local name=$1
  shift
  "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" &
  BG_PID=$!
  PIDS+=("$BG_PID")
}

# The latency server: flexllm mock on CPU 0 on a free port (it prints its base URL first).
start_bg mock taskset -c 0 "$FLEX" mock --port 0 --latency "$LATENCY_MS"
MOCK_PID=$BG_PID
mock_port() { sed -n 's|^http://127\.0\.0\.1:\([0-9][0-9]*\)/v1$|\1|p' "$TMP/mock.out" | head -n 1; }
mock_ready() { [[ -n $(mock_port) ]]; }
poll_ready 100 "$MOCK_PID" mock mock_ready || die "flexllm mock printed no URL in 10 s"
MOCK_PORT=$(mock_port)
wait_http "http://127.0.0.1:$MOCK_PORT/v1/models" "$MOCK_PID" mock

start_bg proxy "$TLS_SH" proxy "$D_PROXY" "$P_PROXY" "$MOCK_PORT" "$STREAMS"
PROXY_PID=$BG_PID
start_bg fixed "$TLS_SH" fixed "$D_FIXED" "$P_FIXED"
FIXED_PID=$BG_PID
start_bg goaway "$TLS_SH" fixed "$D_GOAWAY" "$P_GOAWAY" "$GA_K"
GOAWAY_PID=$BG_PID
poll_ready 100 "$PROXY_PID" proxy "$TLS_SH" check "$D_PROXY" "$P_PROXY" ||
  die "the TLS proxy does not answer over HTTP/2 on $P_PROXY"
poll_ready 100 "$FIXED_PID" fixed "$TLS_SH" check "$D_FIXED" "$P_FIXED" ||
  die "the TLS fixed server does not answer over HTTP/2 on $P_FIXED"
poll_ready 100 "$GOAWAY_PID" goaway "$TLS_SH" check "$D_GOAWAY" "$P_GOAWAY" ||
  die "the TLS GOAWAY server does not answer over HTTP/2 on $P_GOAWAY"
start_nginx # plain http:// on 127.0.0.1:$NGINX_PORT (bench/nginx/nginx.conf)
log "servers: mock :$MOCK_PORT (latency $LATENCY_MS ms) behind TLS proxy :$P_PROXY;" \
  "TLS fixed :$P_FIXED; TLS fixed, GOAWAY every $GA_K :$P_GOAWAY; plain nginx :$NGINX_PORT"

URL_PROXY="https://127.0.0.1:$P_PROXY/v1"
URL_FIXED="https://127.0.0.1:$P_FIXED/v1"
URL_GOAWAY="https://127.0.0.1:$P_GOAWAY/v1"
URL_PLAIN="http://127.0.0.1:$NGINX_PORT/v1"

# --- inputs -------------------------------------------------------------------------------------
# flexllm's input: request.json's messages as {"messages": …} records, the report id varied.
# h2load's body: request.json itself (h2load sends one body for every request).
make_input() { # make_input N FILE
  awk -v n="$1" '{ text = text $0 } END {
    if (!match(text, /"messages":\[[^]]*\]/)) exit 1
    msgs = substr(text, RSTART + 11, RLENGTH - 11)
    for (i = 0; i < n; i++) { s = msgs; sub(/000000/, sprintf("%06d", i), s); printf "{\"messages\": %s}\n", s }
  }' "$REQUEST_JSON" >"$2" || die "cannot read the messages of $REQUEST_JSON"
}
declare -A INPUT
for n in "$S2_N" "$S2B_N" "$S1_N" "$GA_N" 1; do
  [[ -n ${INPUT[$n]-} ]] && continue
  INPUT[$n]="$TMP/in$n.jsonl"
  make_input "$n" "${INPUT[$n]}"
done
: >"$TMP/no-ca.pem"

# Verification is on: without the CA flexllm must refuse the server, with it succeed.
if SSL_CERT_FILE="$TMP/no-ca.pem" SSL_CERT_DIR="$TMP" timeout 30 "$FLEX" batch "${INPUT[1]}" \
  -o "$TMP/check.jsonl" --base-url "$URL_FIXED" -m "$MODEL" -c 1 --retry-times 0 --no-progress \
  >/dev/null 2>"$TMP/check.err"; then
  die "flexllm accepted the server without its CA: certificate verification is off"
fi
grep -q 'certificate' "$TMP/check.jsonl" ||
  log "note: flexllm without the CA failed, but not on the certificate: $(tail -n 1 "$TMP/check.err")"
rm -f "$TMP/check.jsonl"
SSL_CERT_FILE="$D_FIXED/ca.pem" timeout 30 "$FLEX" batch "${INPUT[1]}" -o "$TMP/check.jsonl" \
  --base-url "$URL_FIXED" -m "$MODEL" -c 1 --no-progress >/dev/null 2>"$TMP/check.err" ||
  die "flexllm fails with the CA: $(tail -n 3 "$TMP/check.err")"

# --- one client run -----------------------------------------------------------------------------
FAILURES=0
# RES[KEY,I,FIELD]: the I-th run of a case (1 … NRUNS[KEY]); FIELD: round status note wall loop
# failed rss cpu conns reqs. Runs of the same I of cases in one group ran in the same turn.
declare -A RES NRUNS


# secs DURATION: h2load's "2.19s" / "950.21ms" / "870us" in seconds
secs() { awk -v d="$1" 'BEGIN { v = d + 0; if (d ~ /us$/) v /= 1e6; else if (d ~ /ms$/) v /= 1e3; printf "%.4f", v }'; }

# client_cmd CLIENT URL N C [M]: the client's command line (an array in CMD) and its environment
# variable for the CA (CA_VAR). CLIENT: flexllm, h2load (-c C -m M), aiohttp, openai-node.
client_cmd() {
  local client=$1 url=$2 n=$3 c=$4 m=${5:-}
  case "$client" in
    flexllm)
      CA_VAR=SSL_CERT_FILE
      CMD=("$FLEX" batch "${INPUT[$n]}" -o "$TMP/out.jsonl" --base-url "$url" -m "$MODEL" -c "$c" --no-progress)
      ;;
    h2load)
      CA_VAR="" # h2load does not verify certificates
      CMD=(h2load -n "$n" -c "$c" -m "$m" -d "$REQUEST_JSON" -H 'content-type: application/json'
        -H 'authorization: Bearer sk-bench-0000000000000000' "$url/chat/completions")
      ;;
    aiohttp)
      CA_VAR=SSL_CERT_FILE
      CMD=("$PYTHON" "$PEER_DIR/aiohttp_batch.py" --base-url "$url" -n "$n" -c "$c" --model "$MODEL")
      ;;
    openai-node)
      CA_VAR=NODE_EXTRA_CA_CERTS
      CMD=(node "$PEER_DIR/openai_node.js" --node-modules "$OPENAI_NODE_MODULES" --base-url "$url"
        -n "$n" -c "$c" --model "$MODEL")
      ;;
    *) die "internal: unknown client $client" ;;
  esac
}

# shown_cmd CLIENT URL N C SERVER_DIR [M]: the command line as the summary shows it ($P, $F and
# $G: the server directories of the proxy, the fixed server and the GOAWAY server)
shown_cmd() {
  local a out="taskset -c 1" sdir=$5
  client_cmd "$1" "$2" "$3" "$4" "${6:-}"
  [[ -n $CA_VAR && -n $sdir ]] && out="$CA_VAR=$sdir/ca.pem $out"
  for a in "${CMD[@]}"; do
    [[ $a == "$FLEX" ]] && a=build/release/apps/flexllm/flexllm
    [[ $a == *" "* ]] && a="'$a'"
    out+=" ${a/#"$REPO_ROOT/"/}"
  done
  out=${out//"$D_PROXY"/\$P}
  out=${out//"$D_FIXED"/\$F}
  out=${out//"$D_GOAWAY"/\$G}
  printf '%s\n' "${out//"$TMP"/\$TMP}"
}

# access_log_settle DIR: wait out nginx's buffered access log (flushed every 100 ms)
access_log_settle() { sleep 0.3; }

# run KEY ROUND CLIENT URL N C SERVER_DIR [M]: one run, judged; results in RES[KEY,I,*] for the
# case's next run number I
run() {
  local key=$1 round=$2 client=$3 url=$4 n=$5 c=$6 sdir=$7 m=${8:-} name json ok failed note="" loop=""
  local r=$((${NRUNS[$key]:-0} + 1))
  NRUNS[$key]=$r
  RES[$key,$r,round]=$round
  name="${key//[^a-z0-9]/_}-$r"
  client_cmd "$client" "$url" "$n" "$c" "$m"
  access_log_settle
  [[ -n $sdir ]] && : >"$sdir/access.log"
  rm -f "$TMP/out.jsonl"
  if [[ -n $CA_VAR && -n $sdir ]]; then
    run_timed "$name" env "$CA_VAR=$sdir/ca.pem" "${CMD[@]}"
  else
    run_timed "$name" "${CMD[@]}"
  fi
  case "$client" in
    flexllm)
      ok=0
      [[ -f $TMP/out.jsonl ]] && ok=$(grep -c '^{"index":[0-9]*,"status":"success"' "$TMP/out.jsonl" || true)
      failed=$((n - ok))
      ;;
    h2load)
      ok=$(sed -n 's/^status codes: \([0-9]*\) 2xx.*/\1/p' "$TMP/$name.out")
      failed=$((n - ${ok:-0}))
      loop=$(sed -n 's/^finished in \([0-9.]*[mu]*s\),.*/\1/p' "$TMP/$name.out")
      [[ -n $loop ]] && loop=$(secs "$loop")
      ;;
    *)
      json=$(grep '^{' "$TMP/$name.out" | tail -n 1 || true)
      ok=$(json_field ok "$json")
      failed=$((n - ${ok:-0}))
      loop=$(json_field loop_s "$json")
      ;;
  esac
  if ((RUN_RC != 0)); then
    note="exit $RUN_RC"
  elif ((failed != 0)); then
    note="$failed failed"
  elif [[ -z $TIME_E ]]; then
    note="no GNU time figures"
  fi
  RES[$key,$r,failed]=$failed
  RES[$key,$r,wall]=$TIME_E
  RES[$key,$r,loop]=$loop
  RES[$key,$r,cpu]=""
  RES[$key,$r,rss]=""
  [[ -n $TIME_U ]] && RES[$key,$r,cpu]=$(awk -v u="$TIME_U" -v s="$TIME_S" 'BEGIN { printf "%.2f", u + s }')
  [[ -n $TIME_M ]] && RES[$key,$r,rss]=$(awk -v k="$TIME_M" 'BEGIN { printf "%.1f", k / 1024 }')
  RES[$key,$r,conns]="" RES[$key,$r,reqs]=""
  if [[ -n $sdir ]]; then
    access_log_settle
    RES[$key,$r,reqs]=$(wc -l <"$sdir/access.log")
    RES[$key,$r,conns]=$(sort -u "$sdir/access.log" | wc -l)
  fi
  if [[ -n $note ]]; then
    RES[$key,$r,status]=FAILED
    RES[$key,$r,note]=$note
    FAILURES=$((FAILURES + 1))
    log "  $key: FAILED ($note); $(tail -n 3 "$TMP/$name.out" "$TMP/$name.err" 2>/dev/null | tr '\n' ' ' | cut -c1-400)"
  else
    RES[$key,$r,status]=ok
    RES[$key,$r,note]=""
    log "  $key: wall ${TIME_E} s${loop:+ (loop $loop s)}, cpu ${RES[$key,$r,cpu]} s," \
      "peak RSS ${RES[$key,$r,rss]} MB${sdir:+, nginx: ${RES[$key,$r,reqs]} requests on ${RES[$key,$r,conns]} connections}"
  fi
}

# --- the runs -----------------------------------------------------------------------------------
# h2load's shape for C in flight: the fewest connections the server's stream limit allows, C
# spread evenly over them (C=1000, 128 streams: 8 x 125).
h2_conns() { echo $((($1 + STREAMS - 1) / STREAMS)); }
h2_streams() { echo $((($1 + $(h2_conns "$1") - 1) / $(h2_conns "$1"))); }

# A case: KEY|CLIENT|URL|N|C|SERVER_DIR|H2LOAD_M, in groups run in turn; within a group the start
# order rotates from round to round.
CASES_BIG=() CASES_SMALL=() CASES_S1=() CASES_GA=()
add_case() { # add_case GROUP KEY CLIENT URL N C SERVER_DIR [M]
  local -n group=$1
  group+=("$2|$3|$4|$5|$6|$7|${8:-}")
}
add_case CASES_BIG big:flexllm flexllm "$URL_PROXY" "$S2_N" "$S2_C" "$D_PROXY"
peer_on h2load && add_case CASES_BIG big:h2load h2load "$URL_PROXY" "$S2_N" "$(h2_conns "$S2_C")" \
  "$D_PROXY" "$(h2_streams "$S2_C")"
peer_on aiohttp && add_case CASES_BIG big:aiohttp aiohttp "$URL_PROXY" "$S2_N" "$S2_C" "$D_PROXY"
peer_on openai-node && add_case CASES_BIG big:openai-node openai-node "$URL_PROXY" "$S2_N" "$S2_C" "$D_PROXY"
add_case CASES_SMALL small:flexllm flexllm "$URL_PROXY" "$S2B_N" "$S2B_C" "$D_PROXY"
if peer_on h2load; then
  add_case CASES_SMALL small:h2load h2load "$URL_PROXY" "$S2B_N" "$(h2_conns "$S2B_C")" \
    "$D_PROXY" "$(h2_streams "$S2B_C")"
  ((S2B_C > STREAMS)) &&
    add_case CASES_SMALL small:h2load-1conn h2load "$URL_PROXY" "$S2B_N" 1 "$D_PROXY" "$S2B_C"
fi
peer_on aiohttp && add_case CASES_SMALL small:aiohttp aiohttp "$URL_PROXY" "$S2B_N" "$S2B_C" "$D_PROXY"
peer_on openai-node && add_case CASES_SMALL small:openai-node openai-node "$URL_PROXY" "$S2B_N" "$S2B_C" "$D_PROXY"
add_case CASES_S1 s1:flexllm flexllm "$URL_FIXED" "$S1_N" "$S1_C" "$D_FIXED"
peer_on h2load && add_case CASES_S1 s1:h2load h2load "$URL_FIXED" "$S1_N" 1 "$D_FIXED" "$S1_C"
add_case CASES_S1 s1:flexllm-http flexllm "$URL_PLAIN" "$S1_N" "$S1_C" ""
add_case CASES_GA goaway:flexllm flexllm "$URL_GOAWAY" "$GA_N" "$GA_C" "$D_GOAWAY"

# case_field CASE INDEX: one |-separated field of a case (0 KEY … 6 M)
case_field() {
  local IFS='|' f
  read -r -a f <<<"$1|"
  printf '%s' "${f[$2]}"
}

ROUND_LOAD=()
RUNS=0
run_group() { # run_group ROUND TURN NAME CASE...: the cases once, the start order rotated by TURN
  local r=$1 turn=$2 label=$3 i k nc
  shift 3
  local cases=("$@")
  nc=${#cases[@]}
  log "== round $r/$ROUNDS, $label"
  for ((i = 0; i < nc; i++)); do
    k=${cases[$(((i + turn - 1) % nc))]}
    ((RUNS++ == 0)) || sleep "$PAUSE"
    run "$(case_field "$k" 0)" "$r" "$(case_field "$k" 1)" "$(case_field "$k" 2)" \
      "$(case_field "$k" 3)" "$(case_field "$k" 4)" "$(case_field "$k" 5)" "$(case_field "$k" 6)"
  done
}

log "tls_bench: $ROUNDS round(s), load average $LOAD_BEFORE, nofile $NOFILE, peers: ${PEERS:-none}"
for ((r = 1; r <= ROUNDS; r++)); do
  ROUND_LOAD+=("$(cut -d' ' -f1 /proc/loadavg)")
  run_group "$r" "$r" "S2-TLS C=$S2_C N=$S2_N (latency $LATENCY_MS ms)" "${CASES_BIG[@]}"
  run_group "$r" "$r" "S2-TLS C=$S2B_C N=$S2B_N (latency $LATENCY_MS ms)" "${CASES_SMALL[@]}"
  for ((t = 1; t <= S1_REPS; t++)); do
    run_group "$r" $(((r - 1) * S1_REPS + t)) "S1-TLS N=$S1_N C=$S1_C (fixed reply), turn $t/$S1_REPS" "${CASES_S1[@]}"
  done
  run_group "$r" "$r" "GOAWAY every $GA_K requests, N=$GA_N C=$GA_C" "${CASES_GA[@]}"
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# --- summary ------------------------------------------------------------------------------------
calc() { awk "BEGIN { $1 }"; } # calc 'printf "%.1f", 1/3'
ok_run() { [[ ${RES[$1,$2,status]-} == ok ]]; }
have() { [[ -n ${RES[$1,1,status]-} ]]; } # the case ran

nruns() { echo "${NRUNS[$1]:-0}"; }

# val KEY I METRIC N C: one derived value of the I-th run if it was ok ("" otherwise)
val() {
  local key=$1 r=$2 metric=$3 n=$4 c=$5 wall cpu
  ok_run "$key" "$r" || return 0
  wall=${RES[$key,$r,wall]} cpu=${RES[$key,$r,cpu]}
  case "$metric" in
    xideal) calc "printf \"%.2f\", $wall / ($n / $c * $LATENCY_MS / 1000)" ;;
    rps) calc "printf \"%.0f\", $n / $wall" ;;
    us_req) calc "printf \"%.1f\", $cpu / $n * 1e6" ;;
    xn) calc "printf \"%.4f\", ${RES[$key,$r,reqs]} / $n" ;;
    *) printf '%s' "${RES[$key,$r,$metric]-}" ;;
  esac
}

# med KEY METRIC FMT N C: the median over the ok runs
med() {
  local key=$1 metric=$2 fmt=$3 n=${4:-1} c=${5:-1} r vals=()
  for ((r = 1; r <= $(nruns "$key"); r++)); do vals+=("$(val "$key" "$r" "$metric" "$n" "$c")"); done
  median "$fmt" "${vals[@]}"
}

# best KEY METRIC N: the largest value over the ok runs (for req/s: the least disturbed run)
best() {
  local key=$1 metric=$2 n=${3:-1} r
  for ((r = 1; r <= $(nruns "$key"); r++)); do val "$key" "$r" "$metric" "$n" 1; echo; done |
    { grep -E '^[0-9]+(\.[0-9]+)?$' || true; } | sort -g | tail -n 1
}

# best_ratio KEY_A KEY_B METRIC N: A's best / B's best ("—" if either has no ok run)
best_ratio() {
  local a b
  a=$(best "$1" "$3" "$4") b=$(best "$2" "$3" "$4")
  if [[ -n $a && -n $b ]]; then calc "printf \"%.2f\", $a / $b"; else echo —; fi
}

# each KEY FIELD: the field of every run ("—" where a run has none), space-separated
each() {
  local key=$1 field=$2 r out=()
  for ((r = 1; r <= $(nruns "$key"); r++)); do out+=("${RES[$key,$r,$field]:-—}"); done
  printf '%s' "${out[*]}"
}

# worst KEY FIELD: the largest value over all runs (failed ones too)
worst() {
  local key=$1 field=$2 r
  for ((r = 1; r <= $(nruns "$key"); r++)); do printf '%s\n' "${RES[$key,$r,$field]-}"; done |
    { grep -E '^[0-9]+(\.[0-9]+)?$' || true; } | sort -g | tail -n 1
}

# ratio_med KEY_A KEY_B METRIC: the median over the turns of A's METRIC / B's in the same turn
# (both ok)
ratio_med() {
  local a=$1 b=$2 metric=$3 n=${4:-1} c=${5:-1} r vals=() va vb
  for ((r = 1; r <= $(nruns "$a"); r++)); do
    if ! ok_run "$a" "$r" || ! ok_run "$b" "$r"; then continue; fi
    va=$(val "$a" "$r" "$metric" "$n" "$c") vb=$(val "$b" "$r" "$metric" "$n" "$c")
    vals+=("$(calc "printf \"%.3f\", $va / $vb")")
  done
  median %.2f "${vals[@]}"
}

runs_ok() {
  local key=$1 r ok=0 n
  n=$(nruns "$key")
  for ((r = 1; r <= n; r++)); do ok_run "$key" "$r" && ok=$((ok + 1)); done
  if ((ok == n)); then echo "$ok/$n"; else echo "$ok/$n (**$((n - ok)) FAILED**)"; fi
}

label() { # label KEY: the client as the tables name it
  case "$1" in
    *:flexllm) echo "flexllm batch (HTTP/2)" ;;
    *:flexllm-http) echo "flexllm batch over plain http:// (HTTP/1.1, bench/nginx/nginx.conf)" ;;
    big:h2load | small:h2load | s1:h2load)
      echo "h2load -c ${RES[${1}_c]-?} -m ${RES[${1}_m]-?} (HTTP/2)"
      ;;
    small:h2load-1conn) echo "h2load -c 1 -m $S2B_C (HTTP/2; capped at $STREAMS streams by the server)" ;;
    *:aiohttp) echo "aiohttp (HTTP/1.1 only)" ;;
    *:openai-node) echo "openai-node (fetch: HTTP/1.1 only)" ;;
  esac
}
for k in "${CASES_BIG[@]}" "${CASES_SMALL[@]}" "${CASES_S1[@]}"; do
  RES[$(case_field "$k" 0)_c]=$(case_field "$k" 4)
  RES[$(case_field "$k" 0)_m]=$(case_field "$k" 6)
done

met() { # met COND_AWK: "met" or "**not met**"
  if [[ -n $1 ]] && calc "exit !($1)"; then echo met; else echo "**not met**"; fi
}

s2_table() { # s2_table N C CASE...
  local n=$1 c=$2 k key
  shift 2
  echo "| client | wall s | × ideal | × flexllm | failed (per round) | CPU s | peak RSS MB | connections (per round) | runs ok |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for k in "$@"; do
    key=$(case_field "$k" 0)
    echo "| $(label "$key") | $(med "$key" wall %.2f) | $(med "$key" xideal %.2f "$n" "$c") |" \
      "$(if [[ $key == *:flexllm ]]; then echo 1; else ratio_med "$key" "${key%%:*}:flexllm" wall; fi) |" \
      "$(each "$key" failed) | $(med "$key" cpu %.2f) | $(med "$key" rss %.1f) | $(each "$key" conns) | $(runs_ok "$key") |"
  done
}

per_round() { # per_round N C CASE...: the details table of a group
  local n=$1 c=$2 k key r
  shift 2
  echo "| round | client | wall s | client's own loop s | failed | CPU s | peak RSS MB | nginx requests | connections | status |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  for ((r = 1; r <= $(nruns "$(case_field "$1" 0)"); r++)); do
    for k in "$@"; do
      key=$(case_field "$k" 0)
      echo "| ${RES[$key,$r,round]-} | $key | ${RES[$key,$r,wall]:-—} | ${RES[$key,$r,loop]:-—} | ${RES[$key,$r,failed]:-—} |" \
        "${RES[$key,$r,cpu]:-—} | ${RES[$key,$r,rss]:-—} | ${RES[$key,$r,reqs]:-—} | ${RES[$key,$r,conns]:-—} |" \
        "$(if ok_run "$key" "$r"; then echo ok; else echo "**FAILED** (${RES[$key,$r,note]-})"; fi) |"
    done
  done
}

commands() { # commands CASE...: the client commands of a group
  local k
  for k in "$@"; do
    shown_cmd "$(case_field "$k" 1)" "$(case_field "$k" 2)" "$(case_field "$k" 3)" \
      "$(case_field "$k" 4)" "$(case_field "$k" 5)" "$(case_field "$k" 6)"
  done
}

NGINX_VERSION=$(nginx -v 2>&1 | sed 's|.*nginx/||')
VERSIONS="nginx $NGINX_VERSION, $(openssl version | cut -d' ' -f1-2)"
peer_on h2load && VERSIONS+=", h2load $(h2load --version 2>/dev/null | sed -n 's|.*nghttp2/||p')"
peer_on aiohttp && VERSIONS+=", aiohttp $AIOHTTP_VERSION (/usr/bin/python3 $("$PYTHON" -c 'import sys; print(sys.version.split()[0])'))"
peer_on openai-node && VERSIONS+=", node $(node --version), openai-node $OPENAI_VERSION"
IDEAL_BIG=$(calc "printf \"%.1f\", $S2_N / $S2_C * $LATENCY_MS / 1000")
IDEAL_SMALL=$(calc "printf \"%.1f\", $S2B_N / $S2B_C * $LATENCY_MS / 1000")

# the targets
T_FAILED=$(worst big:flexllm failed)
T_H2=$(if have big:h2load; then ratio_med big:flexllm big:h2load wall; else echo —; fi)
T_RSS=$(worst big:flexllm rss)
T_CONNS=$(worst big:flexllm conns)
T_SMALL=$(med small:flexllm xideal %.2f "$S2B_N" "$S2B_C")
T_S1=$(if have s1:h2load; then ratio_med s1:flexllm s1:h2load rps "$S1_N"; else echo —; fi)
T_S1_BEST=$(best_ratio s1:flexllm s1:h2load rps "$S1_N")
T_GA_FAILED=$(worst goaway:flexllm failed)
T_GA_XN=$(worst goaway:flexllm reqs)
T_GA_XN=$(if [[ -n $T_GA_XN ]]; then calc "printf \"%.4f\", $T_GA_XN / $GA_N"; fi)

cat <<MD
### HTTPS at scale: TLS + HTTP/2 ($(date -u '+%Y-%m-%d %H:%M UTC'), rev $REV, $(cpu_desc))

Command: \`$SHOWN_ENV bench/tls_bench.sh\`. Servers on CPU 0, each client on CPU 1 (\`taskset\`)
under \`timeout -k 5 $CLIENT_TIMEOUT /usr/bin/time -f '%e %U %S %M'\`; the client order rotates
from round to round; medians over the OK runs. flexllm: build/release/apps/flexllm/flexllm
(built $FLEX_BUILT). $VERSIONS. nofile $NOFILE. Load average before / after: $LOAD_BEFORE /
$LOAD_AFTER; at the start of each round: $(IFS=,; r="${ROUND_LOAD[*]}"; echo "${r//,/, }").

Wall = the client process's wall time (GNU time %e: start-up, reading input and writing flexllm's
checkpoint included, for every client alike). Connections and requests come from the TLS nginx's
access log of that run (\`\$connection\` per request: connections that carried requests). Every
client verifies the server's certificate (private CA in \$D/ca.pem, trusted through the
environment variable shown) except h2load, which cannot. flexllm's input \$TMP/inN.jsonl holds N
\`{"messages": …}\` records, the messages of bench/peers/request.json with its report id set to the
line's index (the peers send the same requests; h2load sends request.json as it is).

\`\`\`
bench/tls/tls.sh ca \$P; bench/tls/tls.sh ca \$F; bench/tls/tls.sh ca \$G
taskset -c 0 build/release/apps/flexllm/flexllm mock --port 0 --latency $LATENCY_MS   # port $MOCK_PORT
bench/tls/tls.sh proxy \$P $P_PROXY $MOCK_PORT $STREAMS    # nginx TLS + HTTP/2 -> the mock, CPU 0
bench/tls/tls.sh fixed \$F $P_FIXED             # nginx TLS + HTTP/2, fixed reply, CPU 0
bench/tls/tls.sh fixed \$G $P_GOAWAY $GA_K        # the same, GOAWAY after $GA_K requests per connection
mkdir -p \$RUN && taskset -c 0 nginx -p \$RUN -e stderr -c bench/nginx/nginx.conf   # plain http://
\`\`\`

**S2-TLS, C=$S2_C N=$S2_N** (mock latency $LATENCY_MS ms behind the TLS proxy, $STREAMS streams per
connection; ideal wall N/C × latency = $IDEAL_BIG s)

\`\`\`
$(commands "${CASES_BIG[@]}")
\`\`\`

$(s2_table "$S2_N" "$S2_C" "${CASES_BIG[@]}")

**S2-TLS, C=$S2B_C N=$S2B_N** (the same servers; ideal $IDEAL_SMALL s)

\`\`\`
$(commands "${CASES_SMALL[@]}")
\`\`\`

$(s2_table "$S2B_N" "$S2B_C" "${CASES_SMALL[@]}")

**S1-TLS, N=$S1_N C=$S1_C** (nginx's fixed reply, no latency; req/s = N / wall; $S1_REPS turns per round,
$((ROUNDS * S1_REPS)) runs of each; ratios between runs of the same turn, and between the fastest runs:
on this shared machine a run either side of a turn may be slowed by others)

\`\`\`
$(commands "${CASES_S1[@]}")
\`\`\`

| client | req/s | × h2load (one connection) | fastest run req/s | × h2load's fastest | CPU µs/req | peak RSS MB | connections (per run) | runs ok |
|---|---|---|---|---|---|---|---|---|
$(for k in "${CASES_S1[@]}"; do
  key=$(case_field "$k" 0)
  echo "| $(label "$key") | $(med "$key" rps %.0f "$S1_N") | $(if have s1:h2load; then ratio_med "$key" s1:h2load rps "$S1_N"; else echo —; fi) |" \
    "$(best "$key" rps "$S1_N") | $(best_ratio "$key" s1:h2load rps "$S1_N") |" \
    "$(med "$key" us_req %.1f "$S1_N") | $(med "$key" rss %.1f) | $(each "$key" conns) | $(runs_ok "$key") |"
done)

flexllm's CPU per request over TLS + HTTP/2 / over plain http://: **$(ratio_med s1:flexllm s1:flexllm-http us_req "$S1_N")** (median per turn)

**GOAWAY every $GA_K requests, N=$GA_N C=$GA_C** (nginx's fixed reply)

\`\`\`
$(commands "${CASES_GA[@]}")
\`\`\`

| client | wall s | failed (per round) | requests nginx processed (per round) | × N (worst) | connections (per round) | runs ok |
|---|---|---|---|---|---|---|
| $(label goaway:flexllm) | $(med goaway:flexllm wall %.2f) | $(each goaway:flexllm failed) | $(each goaway:flexllm reqs) | ${T_GA_XN:-—} | $(each goaway:flexllm conns) | $(runs_ok goaway:flexllm) |

**Targets**

| target | measured | |
|---|---|---|
| C=$S2_C N=$S2_N: 0 failed | failed per round: $(each big:flexllm failed) | $(met "\"$T_FAILED\" != \"\" && $T_FAILED == 0") |
| C=$S2_C N=$S2_N: wall ≤ 1.25 × h2load's ($(h2_conns "$S2_C") conn × $(h2_streams "$S2_C") streams) | $T_H2 × (median per round) | $(met "\"$T_H2\" != \"—\" && $T_H2 <= 1.25") |
| C=$S2_C N=$S2_N: peak RSS ≤ 100 MB | ${T_RSS:-—} MB (worst) | $(met "\"$T_RSS\" != \"\" && $T_RSS <= 100") |
| C=$S2_C N=$S2_N: connections ≤ 10 | ${T_CONNS:-—} (worst) | $(met "\"$T_CONNS\" != \"\" && $T_CONNS <= 10") |
| C=$S2B_C N=$S2B_N: wall ≤ 1.25 × ideal ($IDEAL_SMALL s) | $T_SMALL × | $(met "\"$T_SMALL\" != \"—\" && $T_SMALL <= 1.25") |
| S1-TLS: ≥ 0.5 × h2load's req/s on one connection | $T_S1 × (median per turn; fastest run vs fastest run: $T_S1_BEST ×) | $(met "\"$T_S1\" != \"—\" && $T_S1 >= 0.5") |
| GOAWAY every $GA_K: 0 failed, requests ≤ 1.01 × N | failed $(each goaway:flexllm failed); × N ${T_GA_XN:-—} (worst) | $(met "\"$T_GA_FAILED\" != \"\" && $T_GA_FAILED == 0 && \"$T_GA_XN\" != \"\" && $T_GA_XN <= 1.01") |

<details><summary>Per round</summary>

S2-TLS C=$S2_C N=$S2_N:

$(per_round "$S2_N" "$S2_C" "${CASES_BIG[@]}")

S2-TLS C=$S2B_C N=$S2B_N:

$(per_round "$S2B_N" "$S2B_C" "${CASES_SMALL[@]}")

S1-TLS N=$S1_N C=$S1_C:

$(per_round "$S1_N" "$S1_C" "${CASES_S1[@]}")

GOAWAY every $GA_K, N=$GA_N C=$GA_C:

$(per_round "$GA_N" "$GA_C" "${CASES_GA[@]}")

</details>

MB = MiB (GNU time %M / 1024).
MD

if ((FAILURES > 0)); then
  log "tls_bench: $FAILURES failed run(s), see the log above"
  exit 1
fi
log "tls_bench: done"
