#!/usr/bin/env bash
# The whole platform on this machine: the local infrastructure (scripts/infra.sh) plus the
# services command-api, query-api, projectors, sagas, the withdrawal worker and the simulated
# payout provider it pays out through, each in the background with its log and pid file under the
# state folder.
#
#   bash scripts/platform.sh up       install what is missing, start everything, wait until ready
#   bash scripts/platform.sh down     stop the services, then the infrastructure
#   bash scripts/platform.sh status   one line per service instance
#   bash scripts/platform.sh scale <service> <n>
#                                     run n instances of command-api, query-api, projectors, sagas
#                                     or withdrawal-worker on this machine (not payout-provider):
#                                     instance 1 is the one `up` starts; instance i > 1 listens on
#                                     the base port + 100*(i-1) and has `<service>.<i>.pid/.log`;
#                                     scaling down stops the highest-numbered ones (SIGTERM, then
#                                     waits for them to exit)
#
# WORKUP_PROFILE=release builds and runs the release binaries (for benchmarks); default debug.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
state="${WORKUP_STATE_DIR:-$root/.state}"
target="${CARGO_TARGET_DIR:-$root/target}"
profile="${WORKUP_PROFILE:-debug}"
case "$profile" in
  debug) build_flags=() ;;
  release) build_flags=(--release) ;;
  *) echo "WORKUP_PROFILE must be debug or release, not $profile" >&2; exit 2 ;;
esac
services=(command-api query-api projectors sagas payout-provider withdrawal-worker)

port_of() {
  case "$1" in
    command-api) echo "${WORKUP_COMMAND_API_PORT:-8080}" ;;
    query-api) echo "${WORKUP_QUERY_API_PORT:-8081}" ;;
    projectors) echo "${WORKUP_PROJECTORS_PORT:-8082}" ;;
    sagas) echo "${WORKUP_SAGAS_PORT:-8084}" ;;
    withdrawal-worker) echo "${WORKUP_WITHDRAWAL_WORKER_PORT:-8085}" ;;
    payout-provider) echo "${WORKUP_PAYOUT_PORT:-8086}" ;;
  esac
}

# The variable a service reads its port from (infra/src/config.rs); empty: not scalable.
port_var_of() {
  case "$1" in
    command-api) echo WORKUP_COMMAND_API_PORT ;;
    query-api) echo WORKUP_QUERY_API_PORT ;;
    projectors) echo WORKUP_PROJECTORS_PORT ;;
    sagas) echo WORKUP_SAGAS_PORT ;;
    withdrawal-worker) echo WORKUP_WITHDRAWAL_WORKER_PORT ;;
  esac
}

# Instance i of a service: 1 is the one `up` starts (today's port, pid and log files); i > 1
# listens on the base port + 100*(i-1), with `<service>.<i>.pid` and `<service>.<i>.log`.
instance_port() { echo $(($(port_of "$1") + 100 * ($2 - 1))); }
instance_file() { if (($2 == 1)); then echo "$1"; else echo "$1.$2"; fi; }
pid_file() { echo "$state/run/$(instance_file "$1" "$2").pid"; }
log_file() { echo "$state/logs/$(instance_file "$1" "$2").log"; }
instance_running() { [[ -f "$(pid_file "$1" "$2")" ]] && kill -0 "$(cat "$(pid_file "$1" "$2")")" 2>/dev/null; }

# The numbers of the extra instances (2, 3, ...) a service has pid files for, in order.
extra_instances() {
  local file
  for file in "$state/run/$1".*.pid; do
    [[ -e "$file" ]] || continue
    file="${file##*/$1.}"
    file="${file%.pid}"
    if [[ "$file" =~ ^[0-9]+$ ]]; then echo "$file"; fi
  done | sort -n
}

# SIGTERM instance i and wait (at most 30 s, then SIGKILL) until it has exited.
stop_instance() {
  local service="$1" i="$2" pid deadline
  if instance_running "$service" "$i"; then
    pid="$(cat "$(pid_file "$service" "$i")")"
    echo "==> $service #$i: stopping (pid $pid, port $(instance_port "$service" "$i"))"
    kill "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 30))
    while kill -0 "$pid" 2>/dev/null; do
      if ((SECONDS > deadline)); then
        echo "!! $service #$i (pid $pid) did not exit within 30 s of SIGTERM; sending SIGKILL" >&2
        kill -9 "$pid" 2>/dev/null || true
      fi
      sleep 0.2
    done
    echo "==> $service #$i: stopped"
  fi
  rm -f "$(pid_file "$service" "$i")"
}

# Wait until instance i answers its readiness probe; on failure show its log and exit.
wait_ready() {
  local service="$1" i="$2" port deadline
  port="$(instance_port "$service" "$i")"
  deadline=$((SECONDS + 60))
  until curl -fsS "http://127.0.0.1:$port/$(probe_of "$service")" >/dev/null 2>&1; do
    if ! instance_running "$service" "$i" || ((SECONDS > deadline)); then
      echo "!! $service #$i did not become ready on port $port; last log lines:" >&2
      tail -n 30 "$(log_file "$service" "$i")" >&2 || true
      exit 1
    fi
    sleep 0.5
  done
}

# The simulator has no dependencies to be ready for: it is ready once it answers.
probe_of() { if [[ "$1" == payout-provider ]]; then echo health; else echo ready; fi; }

running() { [[ -f "$state/run/$1.pid" ]] && kill -0 "$(cat "$state/run/$1.pid")" 2>/dev/null; }

up() {
  # A development stack: the services run without a production token secret (README).
  export WORKUP_ENV="${WORKUP_ENV:-dev}"
  bash "$here/infra.sh" up
  echo "==> services: building ${services[*]} ($profile build; the first one takes several minutes)"
  (cd "$root" && cargo build --quiet "${build_flags[@]}" --workspace --bins)
  mkdir -p "$state/run" "$state/logs"
  for service in "${services[@]}"; do
    if running "$service"; then
      echo "==> $service: already running (pid $(cat "$state/run/$service.pid"))"
      continue
    fi
    echo "==> $service: starting on 127.0.0.1:$(port_of "$service") (log $state/logs/$service.log)"
    nohup "$target/$profile/$service" >>"$state/logs/$service.log" 2>&1 &
    echo $! >"$state/run/$service.pid"
  done
  for service in "${services[@]}"; do
    local port deadline
    port="$(port_of "$service")"
    deadline=$((SECONDS + 60))
    until curl -fsS "http://127.0.0.1:$port/$(probe_of "$service")" >/dev/null 2>&1; do
      if ! running "$service" || ((SECONDS > deadline)); then
        echo "!! $service did not become ready on port $port; last log lines:" >&2
        tail -n 30 "$state/logs/$service.log" >&2 || true
        exit 1
      fi
      sleep 0.5
    done
    echo "==> $service: ready at http://127.0.0.1:$port"
  done
  echo "WorkUp-RS is up: commands on http://127.0.0.1:$(port_of command-api)/api/v1, queries on http://127.0.0.1:$(port_of query-api)/api/v1"
}

down() {
  # Every instance has exited (drained, offsets committed) before the infrastructure stops.
  for service in "${services[@]}"; do
    local i
    for i in $(extra_instances "$service" | sort -rn) 1; do
      stop_instance "$service" "$i"
    done
  done
  bash "$here/infra.sh" down
}

status() {
  for service in "${services[@]}"; do
    if running "$service"; then
      echo "$service: up on 127.0.0.1:$(port_of "$service") (pid $(cat "$state/run/$service.pid"))"
    else
      echo "$service: down"
    fi
    local i
    for i in $(extra_instances "$service"); do
      if instance_running "$service" "$i"; then
        echo "$service #$i: up on 127.0.0.1:$(instance_port "$service" "$i") (pid $(cat "$(pid_file "$service" "$i")"))"
      else
        echo "$service #$i: down (stale pid file $(pid_file "$service" "$i"))"
      fi
    done
  done
  bash "$here/infra.sh" status
}

# Run exactly n instances of a service: start the missing ones, each on its own port, and wait
# until they are ready; stop the instances numbered above n, highest first. Consumers (projectors,
# sagas, the withdrawal worker's intake) of every instance join the same consumer groups and split
# the partitions (README, "Running more instances").
scale() {
  local service="${1:-}" n="${2:-}" var binary i port
  if [[ "$service" == payout-provider ]]; then
    echo "scale payout-provider: refused: it simulates the one external payout provider the withdrawal worker pays through (at WORKUP_PAYOUT_PROVIDER_URL); scale withdrawal-worker instead" >&2
    exit 2
  fi
  var="$(port_var_of "$service")"
  if [[ -z "$var" ]]; then
    echo "usage: $0 scale command-api|query-api|projectors|sagas|withdrawal-worker <n>" >&2
    exit 2
  fi
  if ! [[ "$n" =~ ^[0-9]+$ ]] || ((n < 1)); then
    echo "scale $service: the number of instances must be 1 or more, not '$n' (\`$0 down\` stops everything)" >&2
    exit 2
  fi
  binary="$target/$profile/$service"
  if [[ ! -x "$binary" ]]; then
    echo "scale $service: no $binary; start the platform first (\`$0 up\`)" >&2
    exit 1
  fi
  export WORKUP_ENV="${WORKUP_ENV:-dev}"
  mkdir -p "$state/run" "$state/logs"
  for i in $(extra_instances "$service" | sort -rn); do
    if ((i > n)); then
      stop_instance "$service" "$i"
    fi
  done
  local started=()
  for ((i = 1; i <= n; i++)); do
    if instance_running "$service" "$i"; then
      continue
    fi
    port="$(instance_port "$service" "$i")"
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "!! $service #$i: port $port is taken by another process; free it or set $var" >&2
      exit 1
    fi
    echo "==> $service #$i: starting on 127.0.0.1:$port (log $(log_file "$service" "$i"))"
    env "$var=$port" nohup "$binary" >>"$(log_file "$service" "$i")" 2>&1 &
    echo $! >"$(pid_file "$service" "$i")"
    started+=("$i")
  done
  for i in "${started[@]}"; do
    wait_ready "$service" "$i"
  done
  for ((i = 1; i <= n; i++)); do
    echo "$service #$i: ready at http://127.0.0.1:$(instance_port "$service" "$i") (pid $(cat "$(pid_file "$service" "$i")"), log $(log_file "$service" "$i"))"
  done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  scale) shift; scale "$@" ;;
  *) echo "usage: $0 up|down|status|scale <service> <n>" >&2; exit 2 ;;
esac
