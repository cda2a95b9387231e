#!/usr/bin/env bash
# Delivery benchmark (not a test): EVENTS ready events, one per request, to a
# fast local receiver (nginx from Debian answering 204 on loopback, keep-alive),
# by one CALL converge.deliver() on the durable cluster of bench/lib.sh.
#
#   bash bench/delivery_bench.sh [EVENTS]          (default 50000)
#
# Prints events/s (first send to last delivery, and the whole call), requests
# nginx answered, the backend's peak private memory (for EVENTS and EVENTS/10:
# it must not grow with the backlog), and p50/p95 latency from release.
set -euo pipefail
EVENTS=${1:-50000}
export BENCH_CONF="converge.allow_http_destinations = on
${BENCH_CONF:-}"

. "$(dirname "$0")/lib.sh"
PACKAGES=(nginx-light)
install_packages

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$CONVERGE_TMP/nginx"
cat >"$CONVERGE_TMP/nginx/nginx.conf" <<CONF
worker_processes 1;
pid $CONVERGE_TMP/nginx/nginx.pid;
error_log $CONVERGE_TMP/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 120s;
  client_body_buffer_size 64k;
  client_body_temp_path $CONVERGE_TMP/nginx;
  server {
    listen 127.0.0.1:$port;
    location /events { return 204; }
  }
}
CONF
/usr/sbin/nginx -c "$CONVERGE_TMP/nginx/nginx.conf" -p "$CONVERGE_TMP/nginx"
trap '/usr/sbin/nginx -c "$CONVERGE_TMP/nginx/nginx.conf" -p "$CONVERGE_TMP/nginx" -s stop 2>/dev/null; stop_all' EXIT
receiver="$(/usr/sbin/nginx -v 2>&1 | sed 's/^nginx version: //') (1 worker, return 204) on 127.0.0.1:$port"

# ready_events STORE N: a source whose every order is new, backfilled and released: N-odd ready events
ready_events() {
  local store=$1 n=$2 src
  $MOCKCTL create-store "$store" --orders "$n" --big-order-every 0 --bucket-max 1000000 --restore-rate 1000000 -q
  src=$(q "SELECT converge.create_source('$store', '$store', 'cid-$store', 'secret-$store')")
  q "UPDATE converge.source_settings SET connected_at = '2000-01-01' WHERE id = $src" >/dev/null
  psql -X -q -c "SET converge.sync_time_limit = '30min'" -c "SET converge.bulk_poll_interval = '100ms'" \
       -c "CALL converge.sync($src)"
  echo "$src"
}

# deliver_measured DESTINATION LABEL: one CALL converge.deliver(), timed, memory sampled
deliver_measured() {
  local dest=$1 label=$2 t0 t1 peak
  t0=$(date +%s.%N)
  measure_backend "CALL converge.deliver()" "$CONVERGE_TMP/deliver.peak" -c "SET converge.delivery_time_limit = '10min'"
  t1=$(date +%s.%N)
  peak=$(cat "$CONVERGE_TMP/deliver.peak")
  q "SELECT format('%s: %s events delivered in %s s (first send to last delivery) -> %s events/s; the whole call %s s -> %s events/s; %s not delivered; backend peak private memory %s MB; latency from release p50 %s, p95 %s',
                   '$label', count(*) FILTER (WHERE x.state = 'delivered'),
                   round(extract(epoch FROM max(x.delivered_at) - min(x.first_attempt_at))::numeric, 2),
                   round(count(*) FILTER (WHERE x.state = 'delivered') / extract(epoch FROM max(x.delivered_at) - min(x.first_attempt_at))),
                   round(($t1 - $t0)::numeric, 2), round(count(*) FILTER (WHERE x.state = 'delivered') / ($t1 - $t0)),
                   count(*) FILTER (WHERE x.state <> 'delivered'), round($peak / 1024.0, 1),
                   s.latency_p50, s.latency_p95)
       FROM converge.deliveries x JOIN converge.delivery_status s ON s.destination_id = x.destination_id
      WHERE x.destination_id = $dest GROUP BY s.latency_p50, s.latency_p95"
}

run() {  # run STORE ORDERS LABEL
  local store=$1 n=$2 label=$3 src dest
  src=$(ready_events "$store" "$n")
  dest=$(q "SELECT converge.create_destination('$store', 'http://127.0.0.1:$port/events', 'bench-secret-0123456789',
                                                 sources => ARRAY[$src]::bigint[])")
  q "SELECT converge.release_due_events()" >/dev/null
  q "VACUUM ANALYZE converge.deliveries" >/dev/null
  log "$label: $(q "SELECT count(*) FROM converge.deliveries WHERE destination_id = $dest") deliveries queued (signed, one event per request)"
  deliver_measured "$dest" "$label"
}

# about 1.08 events per order (refunds): orders for EVENTS events
orders=$((EVENTS * 100 / 108))
run bench-dl-small $((orders / 10)) "$((EVENTS / 10)) events"
run bench-dl "$orders" "$EVENTS events"
echo "receiver: $receiver"
echo "command: bash bench/delivery_bench.sh $EVENTS"
