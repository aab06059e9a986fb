#!/usr/bin/env bash
# tls.sh: TLS + HTTP/2 fixtures for benchmarks of the https:// transport (bench/tls_bench.sh).
#
#   tls.sh ca DIR
#       A private CA (DIR/ca.pem, DIR/ca.key) and a server certificate it signed for 127.0.0.1 and
#       localhost (DIR/server.pem, DIR/server.key), ECDSA P-256, made with the openssl CLI. Kept
#       if DIR already holds all four and they still verify. The system trust store is not
#       touched: clients trust DIR/ca.pem through their environment, e.g.
#         SSL_CERT_FILE=DIR/ca.pem        flexllm (OpenSSL's default verify paths), curl, Python
#                                         (ssl.create_default_context, aiohttp)
#         NODE_EXTRA_CA_CERTS=DIR/ca.pem  node (https, fetch, openai-node)
#         curl --cacert DIR/ca.pem        explicitly
#       h2load does not verify the server's certificate at all (it has no option to).
#   tls.sh fixed DIR PORT [K]
#       nginx in the foreground on CPU 0, https://127.0.0.1:PORT (TLS 1.2/1.3, ALPN h2 and
#       http/1.1), http2_max_concurrent_streams 128, keepalive_requests K (default 10000000: an
#       HTTP/2 connection gets a GOAWAY after K requests), answering POST /v1/chat/completions and
#       GET /v1/models with the fixed replies of bench/nginx/nginx.conf (its config, rewritten).
#   tls.sh proxy DIR PORT UPSTREAM_PORT [S]
#       nginx in the foreground on CPU 0, https://127.0.0.1:PORT, http2_max_concurrent_streams S
#       (default 128), proxying every request to http://127.0.0.1:UPSTREAM_PORT over kept-alive
#       HTTP/1.1 connections (e.g. to `flexllm mock --port UPSTREAM_PORT --latency 200`).
#   tls.sh check DIR PORT
#       One POST /v1/chat/completions over HTTP/2 with curl, verifying the server against
#       DIR/ca.pem; exit 0 if it answered 200 over HTTP/2 (a readiness probe).
#
# fixed and proxy need `tls.sh ca DIR` first, and one DIR per running server: DIR is nginx's
# prefix (DIR/nginx.conf, DIR/nginx.pid, temp dirs). Each request is logged to DIR/access.log as
# its connection's serial number ($connection): the connections that carried requests are the
# distinct values, the requests nginx processed the lines (the log is buffered, written at least
# every 100 ms; truncate it between runs). The script execs nginx: its pid is nginx's master,
# and SIGTERM stops it. Stderr gets nginx's warnings and errors.
#
# Usage: bench/tls/tls.sh ca DIR | fixed DIR PORT [K] | proxy DIR PORT UPSTREAM_PORT [S] | check DIR PORT
# Needs: openssl, nginx with http_ssl and http_v2 (Debian nginx), taskset; curl for check.
# Exit status: 0 on success (fixed and proxy: nginx's own status), 1 on failure, 2 on bad usage.
set -euo pipefail

ME=tls.sh
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
FIXED_CONF="$REPO_ROOT/bench/nginx/nginx.conf"

die() {
  printf '%s: %s\n' "$ME" "$*" >&2
  exit 1
}
usage() {
  sed -n '/^# Usage:/,/^# Exit status:/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
need_tools() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || die "missing tool: $tool"
  done
}
need_port() { [[ $2 =~ ^[1-9][0-9]*$ && $2 -lt 65536 ]] || die "$1 must be a TCP port, got '$2'"; }
need_posint() { [[ $2 =~ ^[1-9][0-9]*$ ]] || die "$1 must be a positive integer, got '$2'"; }
abs_dir() { # abs_dir DIR: DIR made absolute (created if missing)
  mkdir -p "$1"
  (cd "$1" && pwd)
}

# --- certificates -------------------------------------------------------------------------------
certs_ok() { # the four files exist and the server certificate verifies against the CA
  local d=$1
  [[ -s $d/ca.pem && -s $d/ca.key && -s $d/server.pem && -s $d/server.key ]] &&
    openssl verify -CAfile "$d/ca.pem" "$d/server.pem" >/dev/null 2>&1
}

make_ca() {
  local d
  d=$(abs_dir "$1")
  if certs_ok "$d"; then
    printf '%s: keeping the CA and server certificate in %s\n' "$ME" "$d" >&2
    return 0
  fi
  local ext="$d/server.ext"
  (
    umask 077
    openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
      -keyout "$d/ca.key" -out "$d/ca.pem" -days 3650 -subj "/CN=flexllm bench CA" \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
      -keyout "$d/server.key" -out "$d/server.csr" -subj "/CN=localhost" 2>/dev/null
    printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=CA:FALSE" \
      "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" >"$ext"
    openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" \
      -set_serial "0x$(openssl rand -hex 16)" -days 825 -sha256 -extfile "$ext" \
      -out "$d/server.pem" 2>/dev/null
  ) || die "openssl failed to make the certificates in $d"
  rm -f "$d/server.csr" "$ext"
  chmod 644 "$d/ca.pem" "$d/server.pem"
  certs_ok "$d" || die "the server certificate in $d does not verify against its CA"
  printf '%s: CA %s/ca.pem, server certificate for 127.0.0.1 and localhost %s/server.pem\n' \
    "$ME" "$d" "$d" >&2
}

# --- nginx --------------------------------------------------------------------------------------
# listen_lines PORT STREAMS DIR: the TLS + HTTP/2 lines of a server block. nginx ≥ 1.25.1 turns
# HTTP/2 on with `http2 on;`, older ones with the listen parameter.
listen_lines() {
  local port=$1 streams=$2 d=$3 v h2_param=" http2" h2_line=""
  v=$(nginx -v 2>&1 | sed -n 's|.*nginx/\([0-9][0-9.]*\).*|\1|p')
  if [[ -n $v ]] && printf '%s\n%s\n' 1.25.1 "$v" | sort -V -C; then
    h2_param="" h2_line="        http2 on;"
  fi
  printf '%s\n' \
    "        listen 127.0.0.1:$port ssl$h2_param backlog=4096;" \
    ${h2_line:+"$h2_line"} \
    "        ssl_certificate $d/server.pem;" \
    "        ssl_certificate_key $d/server.key;" \
    "        ssl_protocols TLSv1.2 TLSv1.3;" \
    "        ssl_session_cache shared:TLS:10m;" \
    "        ssl_session_timeout 1h;" \
    "        http2_max_concurrent_streams $streams;"
}

# shellcheck disable=SC2016 # $connection is nginx's variable
LOG_LINES='    log_format conn "$connection";
    access_log access.log conn buffer=64k flush=100ms;'

run_nginx() { # run_nginx DIR: exec nginx with DIR/nginx.conf, DIR as its prefix, on CPU 0
  local d=$1
  nginx -t -q -p "$d/" -e stderr -c "$d/nginx.conf" || die "nginx rejects $d/nginx.conf"
  : >"$d/access.log"
  exec taskset -c 0 nginx -p "$d/" -e stderr -c "$d/nginx.conf"
}

server_dir() { # server_dir DIR: absolute DIR, which must hold the certificates
  local d
  [[ -d $1 ]] || die "no directory $1: run '$0 ca $1' first"
  d=$(cd "$1" && pwd)
  certs_ok "$d" || die "$d holds no verified certificates: run '$0 ca $1' first"
  printf '%s' "$d"
}

fixed() {
  local d port=$2 k=${3:-10000000} conf
  need_port PORT "$port"
  need_posint K "$k"
  d=$(server_dir "$1")
  [[ -f $FIXED_CONF ]] || die "missing $FIXED_CONF"
  # bench/nginx/nginx.conf with TLS + HTTP/2 on PORT, keepalive_requests K and the access log.
  conf=$(TLS_LISTEN="$(listen_lines "$port" 128 "$d")" TLS_K=$k TLS_LOG=$LOG_LINES awk '
    /^    access_log off;$/ { print ENVIRON["TLS_LOG"]; n++; next }
    /^    keepalive_requests [0-9]+;$/ { print "    keepalive_requests " ENVIRON["TLS_K"] ";"; n++; next }
    /^        listen 127\.0\.0\.1:[0-9]+ backlog=4096;$/ { print ENVIRON["TLS_LISTEN"]; n++; next }
    { print }
    END { if (n != 3) exit 1 }' "$FIXED_CONF") ||
    die "$FIXED_CONF no longer has the access_log, keepalive_requests and listen lines this rewrites"
  printf '# Written by bench/tls/tls.sh fixed from bench/nginx/nginx.conf.\n%s\n' "$conf" >"$d/nginx.conf"
  run_nginx "$d"
}

proxy() {
  local d port=$2 up=$3 streams=${4:-128}
  need_port PORT "$port"
  need_port UPSTREAM_PORT "$up"
  need_posint S "$streams"
  d=$(server_dir "$1")
  cat >"$d/nginx.conf" <<CONF
# Written by bench/tls/tls.sh proxy: TLS + HTTP/2 in front of http://127.0.0.1:$up.
worker_processes 1;
daemon off;
pid nginx.pid;
error_log stderr warn;

events {
    worker_connections 16384;
    multi_accept on;
}

http {
$LOG_LINES
    server_tokens off;
    keepalive_timeout 75s;
    keepalive_requests 10000000;
    client_body_buffer_size 64k;
    client_max_body_size 8m;
    client_body_temp_path client_body_temp;
    proxy_temp_path proxy_temp;
    fastcgi_temp_path fastcgi_temp;
    uwsgi_temp_path uwsgi_temp;
    scgi_temp_path scgi_temp;

    upstream llm {
        server 127.0.0.1:$up;
        keepalive 2048;
        keepalive_requests 10000000;
        keepalive_timeout 75s;
    }

    server {
$(listen_lines "$port" "$streams" "$d")

        location / {
            proxy_pass http://llm;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_read_timeout 300s;
            proxy_send_timeout 300s;
        }
    }
}
CONF
  run_nginx "$d"
}

check() {
  local d port=$2 out
  need_port PORT "$port"
  d=$(server_dir "$1")
  out=$(curl -s -o /dev/null -m 2 --http2 --cacert "$d/ca.pem" -X POST \
    -H 'Content-Type: application/json' -d '{"model":"mock-model","messages":[{"role":"user","content":"ping"}]}' \
    -w '%{http_code} %{http_version}' "https://127.0.0.1:$port/v1/chat/completions" 2>/dev/null) || true
  [[ $out == "200 2" ]]
}

[[ $# -ge 1 ]] || usage
cmd=$1
shift
case "$cmd" in
  ca)
    [[ $# -eq 1 ]] || usage
    need_tools openssl
    make_ca "$1"
    ;;
  fixed)
    [[ $# -eq 2 || $# -eq 3 ]] || usage
    need_tools nginx taskset openssl awk
    fixed "$@"
    ;;
  proxy)
    [[ $# -eq 3 || $# -eq 4 ]] || usage
    need_tools nginx taskset openssl
    proxy "$@"
    ;;
  check)
    [[ $# -eq 2 ]] || usage
    need_tools curl openssl
    check "$@"
    ;;
  -h | --help) usage ;;
  *) usage ;;
esac
