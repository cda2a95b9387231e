# Shared by the benchmarks: a durable throwaway cluster (fsync,
# synchronous_commit and full_page_writes on, 2 GB of shared buffers) with a
# database "bench" holding the extension, the mock Shopify server, and q().
# BENCH_CONF adds server settings.
. "$(dirname "${BASH_SOURCE[0]}")/../test/lib.sh"

export CONVERGE_PG_CONF="fsync = on
synchronous_commit = on
full_page_writes = on
shared_buffers = 2GB
wal_buffers = 64MB
max_wal_size = 8GB
checkpoint_timeout = 30min
${BENCH_CONF:-}"

install_packages
build_and_install
make_workdir
start_mock
start_cluster bench
createdb bench
export PGDATABASE=bench
psql -X -q -c "CREATE EXTENSION converge"
q() { psql -X -At -c "$1"; }

# measure_backend STATEMENT OUT [psql -c settings...]: run STATEMENT in its own
# session (after the settings), sampling the backend's private memory (RssAnon:
# what it allocated itself, not shared buffers); the peak in kB goes to OUT.
measure_backend() {
  local stmt=$1 out=$2 ppid pid="" peak=0 kb
  shift 2
  psql -X -q "$@" -c "$stmt" >"$out.log" 2>&1 &
  ppid=$!
  for _ in $(seq 1 400); do
    pid=$(q "SELECT pid FROM pg_stat_activity WHERE query = \$\$$stmt\$\$") && [ -n "$pid" ] && break
    sleep 0.02
  done
  while kill -0 "$ppid" 2>/dev/null; do
    kb=$(awk '/^RssAnon:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    [ "${kb:-0}" -gt "$peak" ] && peak=$kb
    sleep 0.05
  done
  wait "$ppid"
  echo "$peak" >"$out"
}
