#!/bin/sh
# Entrypoint of the WorkUp-RS image: `workup <binary> [args...]` runs one of the binaries the
# image holds. `exec` makes the binary PID 1, so it receives SIGTERM itself and shuts down
# gracefully (every service stops on ctrl-c or SIGTERM).
set -eu

binaries="command-api relay query-api projectors sagas withdrawal-worker control payout-provider"

usage() {
    echo "usage: workup <binary> [args...]"
    echo "binaries: $binaries"
    echo "each binary takes --help; settings are WORKUP_* environment variables (see the README)"
}

case "${1:-}" in
    command-api | relay | query-api | projectors | sagas | withdrawal-worker | control | payout-provider)
        binary=$1
        shift
        exec "/usr/local/bin/$binary" "$@"
        ;;
    "" | -h | --help | help)
        usage
        [ -n "${1:-}" ] # exit 0 for an explicit help request, 1 for no argument
        ;;
    *)
        echo "workup: unknown binary '$1'" >&2
        usage >&2
        exit 2
        ;;
esac
