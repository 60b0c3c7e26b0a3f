# Shared by scripts/demo, scripts/test and bench/: installs what a fresh
# Debian 12 machine lacks, and starts/stops throwaway clusters.
# Source it; do not run it.

PG_MAJOR=15
PG_BIN=/usr/lib/postgresql/$PG_MAJOR/bin
PG_CONFIG=$PG_BIN/pg_config
PGRX_VERSION=0.18.1
PROJECT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="$HOME/.cargo/bin:$PATH"

log() { printf '\n== %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Everything is idempotent: a warm machine skips straight through.
ensure_dependencies() {
    local packages="postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR libclang-dev clang sudo"
    local missing=""
    for p in $packages; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
    done
    if [ -n "$missing" ]; then
        log "installing Debian packages:$missing"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
    fi
    if ! command -v cargo-pgrx >/dev/null || ! cargo pgrx --version 2>/dev/null | grep -q "$PGRX_VERSION"; then
        log "installing cargo-pgrx $PGRX_VERSION (takes a few minutes once)"
        cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
    fi
    if ! grep -qs "pg$PG_MAJOR = \"$PG_CONFIG\"" "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
        log "pointing pgrx at PostgreSQL $PG_MAJOR"
        cargo pgrx init --pg$PG_MAJOR "$PG_CONFIG"
    fi
}

# Builds and installs the extension into the system PostgreSQL 15.
install_extension() {
    log "building and installing pg_partition_predict (${1:-debug})"
    local profile_flag=""
    [ "${1:-debug}" = release ] && profile_flag="--release"
    (cd "$PROJECT_ROOT" && as_root env "PATH=$PATH" "HOME=$HOME" ${CARGO_HOME:+CARGO_HOME=$CARGO_HOME} \
        cargo pgrx install $profile_flag --pg-config "$PG_CONFIG") >&2
}

# start_cluster DIR PORT [extra postgresql.conf lines...]
# initdb (as the postgres OS user: initdb refuses root) and start on a
# private port with the socket in DIR, library preloaded.
start_cluster() {
    local dir=$1 port=$2
    shift 2
    as_root mkdir -p "$dir"
    as_root chown postgres:postgres "$dir"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        as_root sudo -u postgres "$PG_BIN/initdb" -D "$dir/data" --auth=trust -U postgres >/dev/null
        {
            echo "port = $port"
            echo "listen_addresses = ''"
            echo "unix_socket_directories = '$dir'"
            echo "shared_preload_libraries = 'pg_partition_predict'"
            for line in "$@"; do echo "$line"; done
        } | as_root sudo -u postgres tee -a "$dir/data/postgresql.conf" >/dev/null
    fi
    as_root sudo -u postgres "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start >/dev/null
}

stop_cluster() {
    as_root sudo -u postgres "$PG_BIN/pg_ctl" -D "$1/data" -m fast -w stop >/dev/null 2>&1 || true
}
