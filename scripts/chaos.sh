#!/usr/bin/env bash
# The chaos soak (scenarios/src/bin/chaos.rs): builds every service, starts the local
# infrastructure, then runs the platform as separate processes under the marketplace load while
# faults are injected on a seeded schedule, and checks the invariants at the end. It stops and
# restarts the local infrastructure's servers (broker, PostgreSQL, Redis, CQL emulator) as
# faults: run no tests or platform against them meanwhile.
#
#   bash scripts/chaos.sh                            3 minutes, a random seed (printed)
#   bash scripts/chaos.sh --seed 42 --duration 600   repeat a seed, 10 minutes
#   bash scripts/chaos.sh --help                     every option
#
# WORKUP_PROFILE=release runs the release binaries (default debug). Exits 1 on a violation.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
profile="${WORKUP_PROFILE:-debug}"
case "$profile" in
  debug) build_flags=() ;;
  release) build_flags=(--release) ;;
  *) echo "WORKUP_PROFILE must be debug or release, not $profile" >&2; exit 2 ;;
esac
bash "$here/infra.sh" up
echo "==> chaos: building the services ($profile)"
(cd "$root" && cargo build --quiet "${build_flags[@]}" --workspace --bins)
exec "${CARGO_TARGET_DIR:-$root/target}/$profile/chaos" "$@"
