# shellcheck shell=bash
# Shared by test/run (the test suite) and test/demo (the main job): install
# what is missing, build and install the extension, start a throwaway
# PostgreSQL cluster (as an unprivileged user: PostgreSQL refuses root) and
# the mock Shopify server, and stop everything on exit.

CONVERGE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_BIN=/usr/lib/postgresql/15/bin
PG_CONFIG=$PG_BIN/pg_config
PG_USER=postgres          # created by postgresql-common
PACKAGES=(postgresql-15 postgresql-server-dev-15 postgresql-15-cron
          libcurl4-openssl-dev libssl-dev python3 make gcc)

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

install_packages() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || die "missing packages (${missing[*]}); run as root to install them"
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

build_and_install() {
  log "building and installing the extension"
  local out
  out=$(cd "$CONVERGE_ROOT" && make -s PG_CONFIG="$PG_CONFIG" 2>&1 && make -s PG_CONFIG="$PG_CONFIG" install 2>&1) \
    || { printf '%s\n' "$out" >&2; die "build failed"; }
}

# Everything below lives in one private directory, removed on exit.
make_workdir() {
  CONVERGE_TMP=$(mktemp -d /tmp/converge.XXXXXX)
  chmod 755 "$CONVERGE_TMP"
  export CONVERGE_TMP
  trap stop_all EXIT
}

start_mock() {
  local portfile=$CONVERGE_TMP/mock.port i
  log "starting the mock Shopify server"
  python3 "$CONVERGE_ROOT/test/mock_shopify/server.py" --host 127.0.0.1 --port 0 \
    --port-file "$portfile" --quiet "$@" >"$CONVERGE_TMP/mock.log" 2>&1 &
  MOCK_PID=$!
  for i in $(seq 1 300); do
    [ -s "$portfile" ] && break
    kill -0 "$MOCK_PID" 2>/dev/null || { cat "$CONVERGE_TMP/mock.log" >&2; die "mock server died"; }
    sleep 0.1
  done
  [ -s "$portfile" ] || die "mock server did not start"
  MOCK_PORT=$(cat "$portfile")
  export MOCK_PORT MOCK_SHOPIFY_URL="http://127.0.0.1:$MOCK_PORT"
  export MOCKCTL="python3 $CONVERGE_ROOT/test/mock_shopify/mockctl.py"
}

# start_cluster CRON_DB: a cluster on a private unix socket (no TCP port to
# collide with), pg_cron preloaded and bound to CRON_DB, converge pointed at
# the mock server.
start_cluster() {
  local cron_db=$1
  id "$PG_USER" >/dev/null 2>&1 || die "user $PG_USER does not exist (postgresql-common creates it)"
  chown "$PG_USER" "$CONVERGE_TMP"
  log "starting a throwaway PostgreSQL 15 cluster as $PG_USER"
  runuser -u "$PG_USER" -- "$PG_BIN/initdb" -D "$CONVERGE_TMP/data" -U postgres -A trust \
    --locale=C.UTF-8 --encoding=UTF8 --no-sync >"$CONVERGE_TMP/initdb.log" 2>&1 \
    || { cat "$CONVERGE_TMP/initdb.log" >&2; die "initdb failed"; }
  cat >>"$CONVERGE_TMP/data/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$CONVERGE_TMP'
shared_preload_libraries = 'pg_cron'
cron.database_name = '$cron_db'
cron.use_background_workers = on
max_worker_processes = 16
fsync = off
synchronous_commit = off
full_page_writes = off
lc_messages = 'C'
log_min_messages = warning
converge.shopify_base_url = 'http://127.0.0.1:${MOCK_PORT:-1}/{store}'
CONF
  # later lines win: a caller (the benchmark) may add its own settings
  [ -n "${CONVERGE_PG_CONF:-}" ] && printf '%s\n' "$CONVERGE_PG_CONF" >>"$CONVERGE_TMP/data/postgresql.conf"
  runuser -u "$PG_USER" -- "$PG_BIN/pg_ctl" -D "$CONVERGE_TMP/data" -l "$CONVERGE_TMP/postgres.log" \
    -w -t 60 start >/dev/null || { cat "$CONVERGE_TMP/postgres.log" >&2; die "PostgreSQL did not start"; }
  CLUSTER_STARTED=1
  export PGHOST=$CONVERGE_TMP PGPORT=5432 PGUSER=postgres PGDATABASE=postgres
  export PATH=$PG_BIN:$PATH
}

stop_all() {
  local rc=$?
  if [ -n "${CLUSTER_STARTED:-}" ]; then
    runuser -u "$PG_USER" -- "$PG_BIN/pg_ctl" -D "$CONVERGE_TMP/data" -m fast -w stop >/dev/null 2>&1 \
      || runuser -u "$PG_USER" -- "$PG_BIN/pg_ctl" -D "$CONVERGE_TMP/data" -m immediate -w stop >/dev/null 2>&1
  fi
  if [ -n "${MOCK_PID:-}" ]; then
    kill "$MOCK_PID" 2>/dev/null && wait "$MOCK_PID" 2>/dev/null
  fi
  [ -n "${CONVERGE_TMP:-}" ] && [ -z "${CONVERGE_KEEP_TMP:-}" ] && rm -rf "$CONVERGE_TMP"
  exit "$rc"
}
