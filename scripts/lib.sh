# shellcheck shell=bash
# Helpers shared by the scripts in this directory. Source it (it does not set shell options).
#
# Environment honoured:
#   WORKUP_STATE_DIR        state: data, logs, pid files, python venv (default: <repo>/.state)
#   WORKUP_START_TIMEOUT    seconds to wait for a service's port (default: 60)

# shellcheck disable=SC2034 # the variables below are used by the sourcing scripts
WORKUP_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE_DIR="${WORKUP_STATE_DIR:-$WORKUP_ROOT/.state}"
LOG_DIR="$STATE_DIR/log"
RUN_DIR="$STATE_DIR/run"
START_TIMEOUT="${WORKUP_START_TIMEOUT:-60}"

# A fresh shell (CI) may not have sourced ~/.cargo/env.
CARGO_BIN_DIR="${CARGO_HOME:-$HOME/.cargo}/bin"
if [[ -d "$CARGO_BIN_DIR" && ":$PATH:" != *":$CARGO_BIN_DIR:"* ]]; then
    PATH="$PATH:$CARGO_BIN_DIR"
fi

log() { printf '==> %s\n' "$*"; }
warn() { printf '==> WARNING: %s\n' "$*" >&2; }
die() {
    printf '==> ERROR: %s\n' "$*" >&2
    exit 1
}

# Milliseconds since the epoch, and the time since such a stamp as "1.2s".
now_ms() { date +%s%3N; }
since() {
    local ms=$(($(now_ms) - $1))
    printf '%d.%ds' $((ms / 1000)) $(((ms % 1000) / 100))
}

# Prints the last lines of a log file (to stderr), if it exists.
show_log_tail() {
    local file=$1 lines=${2:-30}
    if [[ -s "$file" ]]; then
        printf -- '--- last %s lines of %s ---\n' "$lines" "$file" >&2
        tail -n "$lines" "$file" >&2
        printf -- '---\n' >&2
    fi
}

# Runs a command as root: directly when root, through non-interactive sudo otherwise.
as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n -- "$@"
    else
        die "not root and sudo is not installed: cannot run '$*'"
    fi
}

# Runs a command as the postgres system user.
as_postgres() {
    if [[ $EUID -eq 0 ]]; then
        runuser -u postgres -- "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n -u postgres -- "$@"
    else
        die "not root and sudo is not installed: cannot run '$*' as postgres"
    fi
}

# True when a TCP connection to host:port succeeds.
port_open() {
    # shellcheck disable=SC2016 # $0 and $1 are expanded by the inner bash
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null
}

# Waits until host:port accepts connections. Fails (with the log's tail) when the deadline
# passes, or when the process of the given pid file (optional) exits first.
wait_for_port() {
    local name=$1 host=$2 port=$3 logfile=$4 pidfile=${5:-} pid
    local deadline=$((SECONDS + START_TIMEOUT))
    until port_open "$host" "$port"; do
        pid=""
        [[ -n "$pidfile" && -r "$pidfile" ]] && pid=$(head -n1 "$pidfile" | tr -dc '0-9')
        if [[ -n "$pid" ]] && ! pid_alive "$pid"; then
            show_log_tail "$logfile"
            die "$name: the process (pid $pid) exited before listening on $host:$port (log: $logfile)"
        fi
        if ((SECONDS >= deadline)); then
            show_log_tail "$logfile"
            die "$name: not listening on $host:$port after ${START_TIMEOUT}s (log: $logfile)"
        fi
        sleep 0.2
    done
}

# Prints the pid recorded in a pid file when that process is alive and its command line
# contains the given text (guards against a recycled pid); fails otherwise.
live_pid() {
    local file=$1 pattern=$2 pid cmdline
    [[ -r "$file" ]] || return 1
    pid=$(head -n1 "$file" 2>/dev/null | tr -dc '0-9')
    if [[ -z "$pid" ]] || ! pid_alive "$pid"; then
        return 1
    fi
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ "$cmdline" == *"$pattern"* ]] || return 1
    printf '%s\n' "$pid"
}

# Starts a command in the background, detached from this shell (own session, no stdin, output
# appended to the log), from the state directory (so that no project .env file is picked up),
# and records its pid. Closes fd 9 (infra.sh's lock).
start_detached() {
    local logfile=$1 pidfile=$2
    shift 2
    (cd "$STATE_DIR" && exec setsid nohup "$@" >>"$logfile" 2>&1 </dev/null 9>&-) &
    printf '%s\n' "$!" >"$pidfile"
}

# True while a process runs (a zombie waiting for its parent to reap it does not count).
pid_alive() {
    local state
    kill -0 "$1" 2>/dev/null || return 1
    state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null) || return 1
    [[ -n "$state" && "$state" != Z ]]
}

# Stops a process: SIGTERM, then SIGKILL after 15 s.
stop_pid() {
    local pid=$1 deadline=$((SECONDS + 15))
    kill -TERM "$pid" 2>/dev/null || return 0
    while pid_alive "$pid"; do
        if ((SECONDS >= deadline)); then
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.2
            break
        fi
        sleep 0.1
    done
}

# Installs the Debian packages that are not installed yet (apt-get update only then).
ensure_apt_packages() {
    local missing=() pkg status
    for pkg in "$@"; do
        status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
        [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
    done
    if ((${#missing[@]} == 0)); then
        log "apt: already installed: $*"
        return 0
    fi
    command -v apt-get >/dev/null 2>&1 || die "apt: apt-get not found; install by hand: ${missing[*]}"
    local started apt_log="$LOG_DIR/apt.log"
    started=$(now_ms)
    log "apt: installing ${missing[*]} (log: $apt_log)"
    if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=300 update \
        >>"$apt_log" 2>&1 </dev/null; then
        show_log_tail "$apt_log"
        die "apt: apt-get update failed"
    fi
    if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=300 \
        install --no-install-recommends "${missing[@]}" >>"$apt_log" 2>&1 </dev/null; then
        show_log_tail "$apt_log"
        die "apt: installing ${missing[*]} failed"
    fi
    log "apt: installed ${missing[*]} ($(since "$started"))"
}
