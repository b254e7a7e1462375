#!/usr/bin/env bash
# Local infrastructure for development and CI, on loopback only.
#
#   scripts/infra.sh up     [service...]   install what is missing, start what is not running
#   scripts/infra.sh status [service...]   one line per service; exits 1 if any is not up
#   scripts/infra.sh down   [service...]   stop what `up` started (by pid file)
#   scripts/infra.sh restart service...    stop and start again (PostgreSQL: a fast restart of
#                                          its cluster, every connection dropped); for faults
#   scripts/infra.sh reset kafka           stop the broker, delete its storage (every topic and
#                                          message), start it empty: tansu's SQLite file grows
#                                          without bound across test runs and slows it down
#
# Services: postgres redis kafka mongo cql (default: all). Idempotent: every step skips what is
# already installed or listening. Runs as root or through passwordless sudo, without a terminal.
#
# Environment (defaults in brackets):
#   WORKUP_STATE_DIR [<repo>/.state]   data, logs (log/), pid files (run/), python venv (venv/)
#   WORKUP_PG_PORT [5432]  WORKUP_REDIS_PORT [6379]  WORKUP_KAFKA_PORT [9092]
#   WORKUP_MONGO_PORT [27017]  WORKUP_CQL_PORT [9042]
#   WORKUP_START_TIMEOUT [60]          seconds to wait for a service's port
#   WORKUP_PG_ADMIN_URL [unset]        superuser URL for a PostgreSQL not managed by Debian's
#                                      tooling (default: peer auth as the postgres system user)
#   WORKUP_PYTHON [python3]            interpreter for the venv of the MongoDB-protocol server
#   CARGO_TARGET_DIR, CARGO_HOME       honoured by the cargo steps
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
set +m

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

HOST=127.0.0.1
PG_PORT="${WORKUP_PG_PORT:-5432}"
REDIS_PORT="${WORKUP_REDIS_PORT:-6379}"
KAFKA_PORT="${WORKUP_KAFKA_PORT:-9092}"
MONGO_PORT="${WORKUP_MONGO_PORT:-27017}"
CQL_PORT="${WORKUP_CQL_PORT:-9042}"
PYTHON="${WORKUP_PYTHON:-python3}"
PG_MAX_CONNECTIONS=300

TANSU_VERSION=0.6.0
NX27017_VERSION=0.8.1
ALL_SERVICES=(postgres redis kafka mongo cql)
# chromium: headless, for the scenario tests that render the services' /docs page and
# query-api's /ops page.
APT_PACKAGES=(postgresql redis-server cmake libcurl4-openssl-dev pkg-config libssl-dev build-essential
    ca-certificates chromium)

REDIS_PID="$RUN_DIR/redis.pid"
KAFKA_PID="$RUN_DIR/kafka.pid"
MONGO_PID="$RUN_DIR/mongo.pid"
CQL_PID="$RUN_DIR/cql.pid"
# The broker's SQLite storage, relative to $STATE_DIR (where tansu runs: see up_kafka).
TANSU_DB=tansu/tansu.db

usage() {
    sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 2
}

# ---------------------------------------------------------------------------------------------
# apt

step_apt() {
    local packages=("${APT_PACKAGES[@]}")
    if ! command -v "$PYTHON" >/dev/null 2>&1; then
        packages+=(python3 python3-venv)
    elif ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
        packages+=(python3-venv)
    fi
    ensure_apt_packages "${packages[@]}"
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL: the Debian cluster (postgres refuses to run as root; pg_ctlcluster handles that).

# Prints "version name status logfile" of the Debian cluster on the port, if any.
pg_cluster_on_port() {
    command -v pg_lsclusters >/dev/null 2>&1 || return 0
    pg_lsclusters -h 2>/dev/null | awk -v port="$PG_PORT" '$3 == port { print $1, $2, $4, $7; exit }'
}

pg_newest_version() {
    local dir version=""
    for dir in /usr/lib/postgresql/*/bin/postgres; do
        [[ -x "$dir" ]] || continue
        dir=${dir#/usr/lib/postgresql/}
        version=${dir%%/*}
    done
    printf '%s\n' "$version"
}

pg_start() {
    local started cluster version name status logfile
    started=$(now_ms)
    cluster=$(pg_cluster_on_port)
    if [[ -z "$cluster" ]]; then
        version=$(pg_newest_version)
        [[ -n "$version" ]] || die "postgres: no PostgreSQL server installed under /usr/lib/postgresql"
        name=main
        if [[ -n "$(pg_lsclusters -h 2>/dev/null | awk -v v="$version" '$1 == v && $2 == "main"')" ]]; then
            name=workup # "main" exists on another port: a cluster of our own for this port
        fi
        log "postgres: creating Debian cluster $version/$name on port $PG_PORT"
        as_root pg_createcluster "$version" "$name" --port "$PG_PORT" >>"$LOG_DIR/postgres-setup.log" 2>&1 \
            </dev/null || {
            show_log_tail "$LOG_DIR/postgres-setup.log"
            die "postgres: pg_createcluster $version $name failed"
        }
        cluster=$(pg_cluster_on_port)
    fi
    read -r version name status logfile <<<"$cluster"
    # Tests race 50 writers on their own connections, several test binaries at once.
    as_root pg_conftool "$version" "$name" set max_connections "$PG_MAX_CONNECTIONS" \
        >>"$LOG_DIR/postgres-setup.log" 2>&1 </dev/null || die "postgres: pg_conftool failed"
    if ! as_root pg_ctlcluster "$version" "$name" start >>"$LOG_DIR/postgres-setup.log" 2>&1 </dev/null 9>&-; then
        show_log_tail "$LOG_DIR/postgres-setup.log"
        show_log_tail "$logfile"
        die "postgres: pg_ctlcluster $version $name start failed"
    fi
    wait_for_port postgres "$HOST" "$PG_PORT" "$logfile"
    touch "$RUN_DIR/postgres.started-by-infra"
    log "postgres: started Debian cluster $version/$name on $HOST:$PG_PORT ($(since "$started"))"
}

pg_workup_url() { printf 'postgres://workup:workup@%s:%s/workup' "$HOST" "$PG_PORT"; }

# True when role workup can log in to database workup and may create databases.
pg_workup_ready() {
    local out
    out=$(PGCONNECT_TIMEOUT=5 psql "$(pg_workup_url)" -XAtq -c \
        "select r.rolcreatedb and d.datdba = r.oid from pg_roles r, pg_database d
         where r.rolname = current_user and d.datname = current_database()" 2>/dev/null </dev/null) || return 1
    [[ "$out" == t ]]
}

pg_admin_psql() {
    if [[ -n "${WORKUP_PG_ADMIN_URL:-}" ]]; then
        psql "$WORKUP_PG_ADMIN_URL" "$@"
    else
        as_postgres psql -p "$PG_PORT" -d postgres "$@"
    fi
}

pg_ensure_role() {
    local started
    started=$(now_ms)
    if pg_workup_ready; then
        log "postgres: role and database workup already present ($(pg_workup_url))"
        return 0
    fi
    if ! pg_admin_psql -X -q -v ON_ERROR_STOP=1 >>"$LOG_DIR/postgres-setup.log" 2>&1 <<'SQL'; then
SELECT 'CREATE ROLE workup' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'workup')
\gexec
ALTER ROLE workup WITH LOGIN CREATEDB PASSWORD 'workup';
SELECT 'CREATE DATABASE workup OWNER workup' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'workup')
\gexec
ALTER DATABASE workup OWNER TO workup;
SQL
        show_log_tail "$LOG_DIR/postgres-setup.log"
        die "postgres: could not create role/database workup as superuser (set WORKUP_PG_ADMIN_URL for a server not run by Debian's tooling)"
    fi
    pg_workup_ready || die "postgres: role workup still cannot use database workup over TCP ($(pg_workup_url)); check pg_hba.conf"
    log "postgres: ensured role workup (LOGIN CREATEDB) and database workup ($(since "$started"))"
}

up_postgres() {
    if port_open "$HOST" "$PG_PORT"; then
        log "postgres: already listening on $HOST:$PG_PORT"
    else
        pg_start
    fi
    pg_ensure_role
}

# ---------------------------------------------------------------------------------------------
# Redis

up_redis() {
    local started pid logfile="$LOG_DIR/redis.log"
    if port_open "$HOST" "$REDIS_PORT"; then
        if pid=$(live_pid "$REDIS_PID" redis-server); then
            log "redis: already running on $HOST:$REDIS_PORT (pid $pid)"
        else
            log "redis: already listening on $HOST:$REDIS_PORT (not started by infra.sh; reused)"
        fi
        return 0
    fi
    command -v redis-server >/dev/null 2>&1 || die "redis: redis-server not found (apt step skipped?)"
    started=$(now_ms)
    mkdir -p "$STATE_DIR/redis"
    rm -f "$REDIS_PID"
    redis-server --daemonize yes --bind "$HOST" --port "$REDIS_PORT" --dir "$STATE_DIR/redis" \
        --pidfile "$REDIS_PID" --logfile "$logfile" >"$LOG_DIR/redis.out" 2>&1 </dev/null 9>&- || {
        show_log_tail "$LOG_DIR/redis.out"
        die "redis: redis-server failed to start"
    }
    wait_for_port redis "$HOST" "$REDIS_PORT" "$logfile" "$REDIS_PID"
    # It listens before it has loaded its snapshot, answering LOADING until then.
    local deadline=$((SECONDS + START_TIMEOUT))
    until [[ "$(redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]; do
        ((SECONDS < deadline)) || die "redis: listening but not answering PING after ${START_TIMEOUT}s (log: $logfile)"
        sleep 0.1
    done
    pid=$(live_pid "$REDIS_PID" redis-server || echo '?')
    log "redis: started on $HOST:$REDIS_PORT (pid $pid, log $logfile, $(since "$started"))"
}

# ---------------------------------------------------------------------------------------------
# Kafka protocol: the tansu broker (SQLite storage engine)

tansu_bin() {
    if command -v tansu >/dev/null 2>&1; then
        command -v tansu
    elif [[ -x "$CARGO_BIN_DIR/tansu" ]]; then
        printf '%s\n' "$CARGO_BIN_DIR/tansu"
    else
        return 1
    fi
}

install_tansu() {
    local started install_log="$LOG_DIR/tansu-install.log"
    command -v cargo >/dev/null 2>&1 || die "kafka: cargo not found; install Rust (rustup) first"
    started=$(now_ms)
    log "kafka: installing tansu $TANSU_VERSION: cargo install tansu --version $TANSU_VERSION --locked --features libsql (takes about 8-14 minutes; log: $install_log)"
    if ! cargo install tansu --version "$TANSU_VERSION" --locked --features libsql >>"$install_log" 2>&1 </dev/null; then
        show_log_tail "$install_log"
        die "kafka: cargo install tansu failed"
    fi
    log "kafka: installed tansu $TANSU_VERSION ($(since "$started"))"
}

# True when the broker answers a Metadata (v0) request. A port check is not enough: when a tansu
# 0.6.0 storage task panics, the broker keeps listening but closes every connection.
kafka_answers() {
    # shellcheck disable=SC2016 # $0 and $1 are expanded by the inner bash
    timeout 5 bash -c '
        exec 3<>"/dev/tcp/$0/$1" || exit 1
        printf "\x00\x00\x00\x13\x00\x03\x00\x00\x00\x00\x00\x01\x00\x05infra\x00\x00\x00\x00" >&3
        [[ $(head -c 8 <&3 | wc -c) -eq 8 ]]' "$HOST" "$KAFKA_PORT" 2>/dev/null
}

up_kafka() {
    local started pid tansu logfile="$LOG_DIR/kafka.log"
    if port_open "$HOST" "$KAFKA_PORT"; then
        pid=$(live_pid "$KAFKA_PID" tansu || true)
        if kafka_answers; then
            if [[ -n "$pid" ]]; then
                tansu_index_headers
                log "kafka: already running on $HOST:$KAFKA_PORT (pid $pid)"
            else
                log "kafka: already listening on $HOST:$KAFKA_PORT (not started by infra.sh; reused)"
            fi
            return 0
        fi
        [[ -n "$pid" ]] || die "kafka: $HOST:$KAFKA_PORT accepts connections but does not answer Kafka requests, and it was not started by infra.sh"
        log "kafka: tansu (pid $pid) listens but no longer answers (a storage task panicked? see $logfile); restarting it"
        stop_pid "$pid"
        rm -f "$KAFKA_PID"
    fi
    if tansu=$(tansu_bin); then
        log "kafka: tansu already installed ($tansu)"
    else
        install_tansu
        tansu=$(tansu_bin) || die "kafka: tansu still not found after cargo install"
    fi
    started=$(now_ms)
    mkdir -p "$STATE_DIR/${TANSU_DB%/*}"
    # tansu 0.6.0 resolves the sqlite:// path against its working directory (an absolute path
    # gets the working directory prefixed), and start_detached runs it from $STATE_DIR.
    start_detached "$logfile" "$KAFKA_PID" "$tansu" broker \
        --cluster-id workup-local \
        --listener-url "tcp://$HOST:$KAFKA_PORT" \
        --advertised-listener-url "tcp://$HOST:$KAFKA_PORT" \
        --storage-engine "sqlite://$TANSU_DB"
    wait_for_port kafka "$HOST" "$KAFKA_PORT" "$logfile" "$KAFKA_PID"
    if ! kafka_answers; then
        show_log_tail "$logfile"
        die "kafka: tansu listens on $HOST:$KAFKA_PORT but does not answer a Metadata request (log: $logfile)"
    fi
    tansu_index_headers
    log "kafka: started tansu on $HOST:$KAFKA_PORT (pid $(cat "$KAFKA_PID"), log $logfile, $(since "$started"))"
}

# tansu 0.6.0's SQLite schema has no index on record headers: every fetched record then scans
# the whole header table, and once it holds some 100k rows fetches stall the broker for
# seconds (group sessions time out). The broker has created its schema once it answers.
tansu_index_headers() {
    "$PYTHON" - "$STATE_DIR/$TANSU_DB" >>"$LOG_DIR/kafka-index.log" 2>&1 </dev/null <<'PY' ||
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=30)
db.execute("CREATE INDEX IF NOT EXISTS header_by_record ON header (topition, offset_id)")
db.commit()
PY
        die "kafka: could not index tansu's header table (log: $LOG_DIR/kafka-index.log)"
}

# ---------------------------------------------------------------------------------------------
# MongoDB protocol: nx-27017 (PyPI) in a virtualenv

VENV="$STATE_DIR/venv"

ensure_nx27017() {
    local started pip_log="$LOG_DIR/pip.log"
    if [[ -x "$VENV/bin/nx-27017" ]]; then
        log "mongo: nx-27017 already installed ($VENV)"
        return 0
    fi
    started=$(now_ms)
    if [[ ! -x "$VENV/bin/python" ]]; then
        "$PYTHON" -m venv "$VENV" >>"$pip_log" 2>&1 </dev/null || {
            show_log_tail "$pip_log"
            die "mongo: '$PYTHON -m venv $VENV' failed (is python3-venv installed?)"
        }
    fi
    log "mongo: installing nx-27017==$NX27017_VERSION into $VENV (log: $pip_log)"
    "$VENV/bin/python" -m pip install --no-input --disable-pip-version-check -q \
        "nx-27017==$NX27017_VERSION" >>"$pip_log" 2>&1 </dev/null || {
        show_log_tail "$pip_log"
        die "mongo: pip install nx-27017 failed"
    }
    log "mongo: installed nx-27017 $NX27017_VERSION ($(since "$started"))"
}

up_mongo() {
    local started pid logfile="$LOG_DIR/mongo.log"
    if port_open "$HOST" "$MONGO_PORT"; then
        if pid=$(live_pid "$MONGO_PID" nx-27017); then
            log "mongo: already running on $HOST:$MONGO_PORT (pid $pid)"
        else
            log "mongo: already listening on $HOST:$MONGO_PORT (not started by infra.sh; reused)"
        fi
        return 0
    fi
    ensure_nx27017
    started=$(now_ms)
    mkdir -p "$STATE_DIR/mongo"
    rm -f "$MONGO_PID"
    (cd "$STATE_DIR" && "$VENV/bin/nx-27017" --data-dir "$STATE_DIR/mongo" --host "$HOST" -p "$MONGO_PORT" \
        --pid-file "$MONGO_PID" --log-file "$logfile" -d >"$LOG_DIR/mongo.out" 2>&1 </dev/null 9>&-) || {
        show_log_tail "$LOG_DIR/mongo.out"
        die "mongo: nx-27017 failed to start"
    }
    wait_for_port mongo "$HOST" "$MONGO_PORT" "$logfile" "$MONGO_PID"
    pid=$(live_pid "$MONGO_PID" nx-27017 || echo '?')
    log "mongo: started nx-27017 on $HOST:$MONGO_PORT (pid $pid, log $logfile, $(since "$started"))"
}

# ---------------------------------------------------------------------------------------------
# CQL: the project's emulator (tools/cql-emulator)

cargo_target_dir() {
    local dir
    dir=$(cd "$WORKUP_ROOT" && cargo metadata --format-version 1 --no-deps 2>/dev/null </dev/null |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p') || true
    printf '%s\n' "${dir:-${CARGO_TARGET_DIR:-$WORKUP_ROOT/target}}"
}

up_cql() {
    local started pid bin build_log="$LOG_DIR/cql-build.log" logfile="$LOG_DIR/cql.log"
    if port_open "$HOST" "$CQL_PORT"; then
        if pid=$(live_pid "$CQL_PID" cql-emulator); then
            log "cql: already running on $HOST:$CQL_PORT (pid $pid)"
        else
            log "cql: already listening on $HOST:$CQL_PORT (not started by infra.sh; reused)"
        fi
        return 0
    fi
    command -v cargo >/dev/null 2>&1 || die "cql: cargo not found; install Rust (rustup) first"
    started=$(now_ms)
    log "cql: building the emulator: cargo build --workspace --bin cql-emulator (log: $build_log)"
    if ! (cd "$WORKUP_ROOT" && cargo build --workspace --bin cql-emulator) >>"$build_log" 2>&1 </dev/null; then
        show_log_tail "$build_log"
        die "cql: cargo build --workspace --bin cql-emulator failed"
    fi
    bin="$(cargo_target_dir)/debug/cql-emulator"
    [[ -x "$bin" ]] || die "cql: built, but $bin is missing"
    log "cql: built $bin ($(since "$started"))"
    started=$(now_ms)
    start_detached "$logfile" "$CQL_PID" env "WORKUP_CQL_LISTEN=$HOST:$CQL_PORT" "$bin"
    wait_for_port cql "$HOST" "$CQL_PORT" "$logfile" "$CQL_PID"
    log "cql: started cql-emulator on $HOST:$CQL_PORT (pid $(cat "$CQL_PID"), log $logfile, $(since "$started"))"
}

# ---------------------------------------------------------------------------------------------
# down

# Stops a service started by `up` (by its pid file); leaves anything else alone.
down_service() {
    local name=$1 pidfile=$2 pattern=$3 port=$4 pid started
    if pid=$(live_pid "$pidfile" "$pattern"); then
        started=$(now_ms)
        stop_pid "$pid"
        rm -f "$pidfile"
        log "$name: stopped (pid $pid, $(since "$started"))"
    else
        rm -f "$pidfile"
        if port_open "$HOST" "$port"; then
            log "$name: listening on $HOST:$port but not started by infra.sh; left alone"
        else
            log "$name: not running"
        fi
    fi
}

down_postgres() {
    local cluster version name status logfile
    cluster=$(pg_cluster_on_port)
    if [[ -n "$cluster" ]]; then
        read -r version name status logfile <<<"$cluster"
        local how="was already running"
        [[ -e "$RUN_DIR/postgres.started-by-infra" ]] && how="started by infra.sh up"
        log "postgres: left running (Debian cluster $version/$name, $status, $how; a system service: stop it with pg_ctlcluster $version $name stop)"
    elif port_open "$HOST" "$PG_PORT"; then
        log "postgres: listening on $HOST:$PG_PORT, not a Debian cluster; left alone"
    else
        log "postgres: not running"
        rm -f "$RUN_DIR/postgres.started-by-infra"
    fi
}

restart_postgres() {
    local cluster version name status logfile
    cluster=$(pg_cluster_on_port)
    [[ -n "$cluster" ]] || die "postgres: no Debian cluster on port $PG_PORT to restart"
    read -r version name status logfile <<<"$cluster"
    as_root pg_ctlcluster "$version" "$name" restart -m fast >>"$LOG_DIR/postgres-setup.log" 2>&1 </dev/null 9>&- || {
        show_log_tail "$logfile"
        die "postgres: pg_ctlcluster $version $name restart failed"
    }
    wait_for_port postgres "$HOST" "$PG_PORT" "$logfile" ""
}

down_redis() { down_service redis "$REDIS_PID" redis-server "$REDIS_PORT"; }
down_kafka() { down_service kafka "$KAFKA_PID" tansu "$KAFKA_PORT"; }
down_mongo() { down_service mongo "$MONGO_PID" nx-27017 "$MONGO_PORT"; }
down_cql() { down_service cql "$CQL_PID" cql-emulator "$CQL_PORT"; }

# ---------------------------------------------------------------------------------------------
# status

STATUS_DOWN=0

status_line() {
    local name=$1 port=$2 pid=$3 note=$4 state=up
    if ! port_open "$HOST" "$port"; then
        state=down
        STATUS_DOWN=1
    elif [[ "$name" == kafka ]] && ! kafka_answers; then
        state=stuck
        note="listens but does not answer Kafka requests; restart: scripts/infra.sh up kafka${note:+ ($note)}"
        STATUS_DOWN=1
    fi
    printf '%-9s %-5s %-16s pid %-8s %s\n' "$name" "$state" "$HOST:$port" "$pid" "$note"
}

status_service() {
    local name=$1 pidfile=$2 pattern=$3 port=$4 pid note
    if pid=$(live_pid "$pidfile" "$pattern"); then
        note="started by infra.sh"
    else
        pid=-
        note=""
        port_open "$HOST" "$port" && note="not started by infra.sh"
    fi
    status_line "$name" "$port" "$pid" "$note"
}

status_postgres() {
    local cluster version name status logfile pid=- note=""
    cluster=$(pg_cluster_on_port)
    if [[ -n "$cluster" ]]; then
        read -r version name status logfile <<<"$cluster"
        note="Debian cluster $version/$name"
        [[ -e "$RUN_DIR/postgres.started-by-infra" ]] && note="$note, started by infra.sh"
        if [[ -r "/var/run/postgresql/$version-$name.pid" ]]; then
            pid=$(head -n1 "/var/run/postgresql/$version-$name.pid")
        fi
    fi
    status_line postgres "$PG_PORT" "$pid" "$note"
}

status_redis() { status_service redis "$REDIS_PID" redis-server "$REDIS_PORT"; }
status_kafka() { status_service kafka "$KAFKA_PID" tansu "$KAFKA_PORT"; }
status_mongo() { status_service mongo "$MONGO_PID" nx-27017 "$MONGO_PORT"; }
status_cql() { status_service cql "$CQL_PID" cql-emulator "$CQL_PORT"; }

# ---------------------------------------------------------------------------------------------

main() {
    [[ $# -ge 1 ]] || usage
    local command=$1 service started
    shift
    local services=("$@")
    ((${#services[@]})) || services=("${ALL_SERVICES[@]}")
    for service in "${services[@]}"; do
        [[ " ${ALL_SERVICES[*]} " == *" $service "* ]] || die "unknown service '$service' (known: ${ALL_SERVICES[*]})"
    done

    mkdir -p "$STATE_DIR" "$LOG_DIR" "$RUN_DIR"
    # One up/down at a time per state directory (a second one waits for the first). Every
    # command that leaves a server behind closes fd 9, or the server would hold the lock.
    if [[ "$command" == up || "$command" == down || "$command" == restart || "$command" == reset ]]; then
        exec 9>"$STATE_DIR/infra.lock"
        if ! flock -n 9; then
            log "waiting for another infra.sh up/down using $STATE_DIR"
            flock -w 1800 9 || die "another infra.sh still holds $STATE_DIR/infra.lock"
        fi
    fi

    case "$command" in
    up)
        started=$(now_ms)
        step_apt
        for service in "${services[@]}"; do "up_$service"; done
        log "up: done in $(since "$started") (state: $STATE_DIR)"
        ;;
    down)
        local reversed=()
        for service in "${services[@]}"; do reversed=("$service" "${reversed[@]}"); done
        for service in "${reversed[@]}"; do "down_$service"; done
        ;;
    restart)
        [[ $# -ge 1 ]] || die "restart: name the services to restart (known: ${ALL_SERVICES[*]})"
        for service in "${services[@]}"; do
            started=$(now_ms)
            if [[ "$service" == postgres ]]; then
                restart_postgres
            else
                "down_$service"
                "up_$service"
            fi
            log "$service: restarted in $(since "$started")"
        done
        ;;
    reset)
        [[ "${services[*]}" == kafka ]] || die "reset: only kafka's storage can be reset (scripts/infra.sh reset kafka)"
        down_kafka
        rm -f "$STATE_DIR/$TANSU_DB"*
        up_kafka
        log "kafka: reset: the broker started on empty storage"
        ;;
    status)
        for service in "${services[@]}"; do "status_$service"; done
        return "$STATUS_DOWN"
        ;;
    *) usage ;;
    esac
}

main "$@"
