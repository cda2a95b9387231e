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
