#!/usr/bin/env bash
# demo.sh: the autopilot-pattern article's stack on loopback, every piece under autopilot.
#
#   examples/demo.sh         build, start Consul, customers, sales and nginx, scale customers
#                            1 -> 3 -> 1 through nginx, then run until Ctrl-C
#   examples/demo.sh stop    stop everything a demo started (also: make demo-stop)
#
# Everything lives in $DEMO_RUN_DIR (default /tmp/autopilot-demo): logs/, pids/, bin/ and the nginx
# prefix (its rendered nginx.conf). Each long-running piece is started in its own session, whose id
# is the pid in pids/NAME.pid, so stopping it can reach every process it started (autopilot puts
# the app in a process group of its own, but the session stays the same).
#
# Ports (all on 127.0.0.1; a busy one is replaced by the next free one up, and all are printed) can
# be changed with DEMO_NGINX_PORT, DEMO_CONSUL_PORT (HTTP; the agent's other ports follow it),
# DEMO_CUSTOMERS_PORT (the first of three) and DEMO_SALES_PORT.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
run=${DEMO_RUN_DIR:-/tmp/autopilot-demo}
nginx_port=${DEMO_NGINX_PORT:-8080}
consul_port=${DEMO_CONSUL_PORT:-18500}
customers_port=${DEMO_CUSTOMERS_PORT:-4000}
sales_port=${DEMO_SALES_PORT:-3000}
# Debian keeps nginx in /usr/sbin, which is not on every user's PATH.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

# alive PID: the process exists and is not a zombie.
alive() { [[ -n ${1:-} ]] && [[ -e /proc/$1 ]] && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }

# session_pids SID: every live process of session SID.
session_pids() { ps -e -o pid=,sid=,stat= | awk -v s="$1" '$2 == s && $3 !~ /^Z/ { print $1 }'; }

# stop_one NAME [TIMEOUT]: SIGTERM the session leader (autopilot, which deregisters, runs preStop,
# stops its app and exits), then SIGKILL whatever is left in its session after TIMEOUT seconds.
stop_one() {
  local name=$1 timeout=${2:-15} f pid
  f=$run/pids/$name.pid
  [[ -f $f ]] || return 0
  pid=$(<"$f")
  if alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < timeout * 10; i++)); do
      alive "$pid" || break
      sleep 0.1
    done
  fi
  local left
  left=$(session_pids "$pid")
  if [[ -n $left ]]; then
    echo "demo: $name: still running after ${timeout}s, killing: $left" >&2
    # shellcheck disable=SC2086
    kill -KILL $left 2>/dev/null || true
  fi
  rm -f "$f"
}

stop_all() {
  if ! compgen -G "$run/pids/*.pid" >/dev/null; then
    echo "demo: nothing to stop (no pid files in $run/pids)"
    return 0
  fi
  say "stopping the demo"
  local names=() f
  for f in "$run"/pids/*.pid; do
    [[ -e $f ]] || continue
    f=${f##*/}
    [[ $f == consul.pid ]] || names+=("${f%.pid}")
  done
  # The apps first, in parallel (each one drains for its preStop), Consul last so that they can
  # deregister.
  local jobs=()
  for n in "${names[@]}"; do
    stop_one "$n" &
    jobs+=($!)
  done
  # Not a bare wait: the pieces themselves are this shell's background jobs too.
  ((${#jobs[@]} == 0)) || wait "${jobs[@]}"
  stop_one consul
  echo "stopped; logs are in $run/logs"
}

# start NAME ENV... -- CMD...: run CMD in its own session with ENV, log to logs/NAME.log.
start() {
  local name=$1 envs=()
  shift
  while [[ $1 != -- ]]; do envs+=("$1"); shift; done
  shift
  # A non-interactive shell's background job is not a process group leader, so setsid(1) calls
  # setsid(2) and execs: $! is the command itself and its session id.
  env "${envs[@]}" setsid "$@" >"$run/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$run/pids/$name.pid"
}

# wait_for SECONDS WHAT CMD...: poll CMD until it succeeds.
wait_for() {
  local secs=$1 what=$2
  shift 2
  for ((i = 0; i < secs * 10; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  die "timed out after ${secs}s waiting for $what (logs: $run/logs)"
}

consul_api() { curl -fsS "http://127.0.0.1:$consul_port$1"; }

# passing NAME: the number of passing instances of service NAME.
passing() { consul_api "/v1/health/service/$1?passing=1" | grep -oE '"Service": *[{]' | wc -l; }
has_passing() { [[ $(passing "$1") -eq $2 ]]; }

# upstream NAME: the upstream block for NAME in the rendered nginx.conf.
upstream() { awk -v n="$1" '$1 == "upstream" && $2 == n { p = 1 } p { print } p && /}/ { exit }' "$run/nginx/nginx.conf"; }
upstream_servers() { upstream "$1" | grep -c '^ *server ' || true; }
has_upstreams() { [[ $(upstream_servers "$1") -eq $2 ]]; }

# nginx_reaches N: up to 20 requests through nginx see N different customers instances (the
# rendered file is in place before nginx's reload has taken effect).
nginx_reaches() {
  local seen
  seen=$(for _ in $(seq 20); do
    curl -fsS -D - -o /dev/null "http://127.0.0.1:$nginx_port/customers/data" | grep -i '^x-instance:' | tr -d '\r'
  done | sort -u | wc -l)
  [[ $seen -eq $1 ]]
}

# through_nginx N: N requests to /customers/data via nginx, printing who answered.
through_nginx() {
  local i hdr
  for ((i = 1; i <= $1; i++)); do
    hdr=$(curl -fsS -D - -o /dev/null "http://127.0.0.1:$nginx_port/customers/data") || { echo "  request $i: FAILED"; continue; }
    printf '  request %d: answered by %s\n' "$i" "$(grep -i '^x-instance:' <<<"$hdr" | tr -d '\r' | cut -d' ' -f2)"
  done
}

start_customers() {
  local n=$1 port=${customers_ports[$1]}
  start "customers-$n" PORT="$port" CONSUL_HTTP_ADDR="127.0.0.1:$consul_port" -- \
    "$autopilot" -config "$root/examples/customers/autopilot.json" -- "$run/bin/customers"
}

if [[ ${1:-} == stop ]]; then
  stop_all
  exit 0
fi
[[ $# -eq 0 ]] || die "usage: $0 [stop]"

if [[ -d $run/pids ]] && compgen -G "$run/pids/*.pid" >/dev/null; then
  for f in "$run"/pids/*.pid; do
    alive "$(<"$f")" && die "a demo is already running (see $run/pids); stop it with: make demo-stop"
  done
fi
# Start afresh, but only ever delete a directory a demo made.
if [[ -e $run ]]; then
  [[ -d $run/pids ]] || die "$run exists and is not a demo run dir (no pids/): set DEMO_RUN_DIR elsewhere"
  rm -rf "$run"
fi
mkdir -p "$run"/{logs,pids,bin,nginx}
# nginx's workers drop root for nobody and must reach the temp dirs under its prefix.
chmod 755 "$run" "$run/nginx"

say "building autopilot and the example apps"
# AUTOPILOT_BIN runs a binary built elsewhere instead.
autopilot=${AUTOPILOT_BIN:-$root/bin/autopilot}
[[ -n ${AUTOPILOT_BIN:-} ]] || make -s -C "$root" build
(cd "$root" && go build -o "$run/bin/customers" ./examples/customers && go build -o "$run/bin/sales" ./examples/sales)

say "getting Consul (scripts/consul-bin.sh builds it once, which takes a few minutes)"
consul=$("$root/scripts/consul-bin.sh")

need_pkgs=()
command -v nginx >/dev/null || need_pkgs+=(nginx)
command -v curl >/dev/null || need_pkgs+=(curl)
if ((${#need_pkgs[@]})); then
  say "installing ${need_pkgs[*]} with apt-get"
  sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}"
fi

# The preferred ports, or the next free ones: the demo must not fail because something else on the
# machine (another Consul, a dev server) has the usual ones.
taken=" "
busy() { [[ $taken == *" $1 "* ]] || (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# pick VAR: set VAR to its value or the next port up that is free.
pick() {
  local _port=${!1}
  while busy "$_port"; do _port=$((_port + 1)); done
  taken+="$_port "
  printf -v "$1" %d "$_port"
}
pick nginx_port
pick consul_port
consul_server_port=$((consul_port + 1)) && pick consul_server_port
consul_serf_lan_port=$((consul_server_port + 1)) && pick consul_serf_lan_port
consul_serf_wan_port=$((consul_serf_lan_port + 1)) && pick consul_serf_wan_port
pick sales_port
customers_ports=()
p=$customers_port
for i in 1 2 3; do
  pick p
  customers_ports[i]=$p
done

# From here on, however the script ends (Ctrl-C, a failed step, make demo-stop), it stops what it
# started.
trap stop_all EXIT
trap 'exit 130' INT TERM

say "starting consul agent -dev on 127.0.0.1:$consul_port"
start consul -- "$consul" agent -dev -bind 127.0.0.1 -client 127.0.0.1 -node autopilot-demo \
  -hcl "ports { http = $consul_port, server = $consul_server_port, serf_lan = $consul_serf_lan_port, serf_wan = $consul_serf_wan_port, dns = -1, grpc = -1 }"
wait_for 30 "Consul's leader" sh -c "curl -fsS http://127.0.0.1:$consul_port/v1/status/leader | grep -q :"

say "starting customers (1 instance) and sales under autopilot"
start_customers 1
start sales PORT="$sales_port" CONSUL_HTTP_ADDR="127.0.0.1:$consul_port" -- \
  "$autopilot" -config "$root/examples/sales/autopilot.json" -- "$run/bin/sales"
wait_for 30 "customers and sales to pass their health checks" sh -c \
  "curl -fsS 'http://127.0.0.1:$consul_port/v1/health/service/customers?passing=1' | grep -q ServiceID &&
   curl -fsS 'http://127.0.0.1:$consul_port/v1/health/service/sales?passing=1' | grep -q ServiceID"

say "starting nginx under autopilot on 127.0.0.1:$nginx_port (prefix $run/nginx)"
start nginx CONSUL_HTTP_ADDR="127.0.0.1:$consul_port" NGINX_PORT="$nginx_port" NGINX_LISTEN="127.0.0.1:$nginx_port" \
  NGINX_PREFIX="$run/nginx" NGINX_PID="$run/nginx/nginx.pid" -- \
  "$autopilot" -config "$root/examples/nginx/autopilot.json" -- \
  nginx -p "$run/nginx/" -e stderr -c "$run/nginx/nginx.conf" -g "daemon off;"
wait_for 30 "nginx to answer /health" curl -fsS "http://127.0.0.1:$nginx_port/health"
wait_for 30 "nginx to proxy /customers" curl -fsS "http://127.0.0.1:$nginx_port/customers/data"

cat <<EOF

  Consul UI/API   http://127.0.0.1:$consul_port/ui/
  nginx           http://127.0.0.1:$nginx_port/customers/data
                  http://127.0.0.1:$nginx_port/sales/data
  customers       http://127.0.0.1:${customers_ports[1]}/data (then also :${customers_ports[2]} and :${customers_ports[3]})
  sales           http://127.0.0.1:$sales_port/data
  rendered config $run/nginx/nginx.conf
  logs            $run/logs/

EOF
say "GET /sales/data through nginx (sales fetched the customers' records through Consul)"
curl -fsS "http://127.0.0.1:$nginx_port/sales/data"

say "upstream customers with 1 instance"
upstream customers
through_nginx 3

say "scaling customers to 3"
start_customers 2
start_customers 3
wait_for 30 "3 passing customers in Consul" has_passing customers 3
wait_for 30 "3 servers in the customers upstream" has_upstreams customers 3
upstream customers
wait_for 30 "nginx to use all 3 customers instances" nginx_reaches 3
through_nginx 6

say "scaling customers back to 1 (each leaves Consul and the upstream before it stops)"
stop_one customers-3 &
stop3=$!
stop_one customers-2 &
stop2=$!
wait_for 30 "1 server in the customers upstream" has_upstreams customers 1
upstream customers
wait "$stop3" "$stop2"
through_nginx 3

say "the demo keeps running: try the URLs above; Ctrl-C or 'make demo-stop' stops it"
# Exit once the pieces are gone (make demo-stop from another shell).
while [[ -f $run/pids/consul.pid ]] && alive "$(<"$run/pids/consul.pid")"; do
  sleep 1
done
