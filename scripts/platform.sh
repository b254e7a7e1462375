#!/usr/bin/env bash
# The whole platform on this machine: the local infrastructure (scripts/infra.sh) plus the
# services command-api, query-api, projectors, sagas, the withdrawal worker and the simulated
# payout provider it pays out through, each in the background with its log and pid file under the
# state folder.
#
#   bash scripts/platform.sh up       install what is missing, start everything, wait until ready
#   bash scripts/platform.sh down     stop the services, then the infrastructure
#   bash scripts/platform.sh status   one line per service
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
  for service in "${services[@]}"; do
    if running "$service"; then
      echo "==> $service: stopping (pid $(cat "$state/run/$service.pid"))"
      kill "$(cat "$state/run/$service.pid")" 2>/dev/null || true
    fi
    rm -f "$state/run/$service.pid"
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
  done
  bash "$here/infra.sh" status
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
