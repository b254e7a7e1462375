#!/usr/bin/env bash
# Run every test: start the local infrastructure the integration tests need (installing what
# is missing), then the whole workspace's tests. Exits non-zero when any test fails.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$here/infra.sh" up
cd "$here/.."
echo "==> tests: cargo test --workspace"
cargo test --workspace "$@"
