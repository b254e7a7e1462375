#!/usr/bin/env bash
# Run every test: start the local infrastructure the integration tests need (installing what
# is missing), then the whole workspace's tests. Exits non-zero when any test fails.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$here/infra.sh" up
cd "$here/.."
# Every test makes its own database (t_<random>) and leaves it for inspection; a new run drops
# those of earlier runs first, or they fill the disk (about 8 MB each, thousands of them). Do not
# run two test runs at once against one PostgreSQL.
pg_url="${WORKUP_PG_URL:-postgres://workup:workup@127.0.0.1:5432/workup}"
leftovers=$(psql "$pg_url" -Atc "SELECT count(*) FROM pg_database WHERE datname LIKE 't\_%'")
if [ "$leftovers" != "0" ]; then
  echo "==> tests: dropping $leftovers test databases of earlier runs"
  psql "$pg_url" -Atc "SELECT format('DROP DATABASE IF EXISTS %I WITH (FORCE);', datname)
                       FROM pg_database WHERE datname LIKE 't\_%'" | psql -q "$pg_url"
fi
# The chaos soak's test (scenarios/tests/chaos.rs) runs the services' own binaries.
echo "==> tests: cargo build --workspace --bins"
cargo build --workspace --bins
echo "==> tests: cargo test --workspace"
cargo test --workspace "$@"
