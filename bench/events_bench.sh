#!/usr/bin/env bash
# Events benchmark (not a test): what event generation adds to the backfill,
# and how fast converge.release_due_events() releases held events.
#
#   bash bench/events_bench.sh [ORDERS] [ROUNDS]      (defaults 100000, 3; ROUNDS 0: the release only)
#
# Backfill: the same store (ORDERS orders, ~3 line items each, ~6 % refunded)
# is backfilled ROUNDS times with converge.generate_events off and ROUNDS
# times with it on, alternating, on the durable cluster of bench/lib.sh.
# Reports the load phase (download, parse, store: what converge does) and end
# to end (with the mock's export wait), the median of each, and the overhead.
# Release: a source connected before all of its orders (so every order is new)
# with the upsell delay on is backfilled: every Placed Order is held and due;
# one call of release_due_events() releases them all.
set -euo pipefail
ORDERS=${1:-100000}
ROUNDS=${2:-3}
. "$(dirname "$0")/lib.sh"

# backfill STORE EVENTS(on|off) -> "load_seconds end_to_end_seconds events"
backfill() {
  local store=$1 events=$2 src
  $MOCKCTL create-store "$store" --orders "$ORDERS" --seed 42 --big-order-every 0 \
    --bucket-max 1000000 --restore-rate 1000000 -q
  # the export workers read database settings, not the session's
  psql -X -q -c "ALTER DATABASE bench SET converge.generate_events = $events"
  src=$(q "SELECT converge.create_source('$store', '$store', 'cid-$store', 'secret-$store')")
  psql -X -q -c "SET converge.sync_time_limit = '30min'" -c "SET converge.bulk_poll_interval = '100ms'" \
       -c "CALL converge.sync($src)"
  q "SELECT round(extract(epoch FROM st.backfill_completed_at - st.bulk_ready_at), 3) || ' ' ||
            round(extract(epoch FROM st.backfill_completed_at - r.started_at), 3) || ' ' ||
            (SELECT count(*) FROM converge.events WHERE source_id = $src)
       FROM converge.sync_state st
       JOIN LATERAL (SELECT * FROM converge.sync_runs WHERE source_id = st.source_id ORDER BY id LIMIT 1) r ON true
      WHERE st.source_id = $src"
  # keep the database the same size for every round
  q "SELECT converge.drop_source($src, drop_data => true)" >/dev/null
  q "VACUUM" >/dev/null
  $MOCKCTL delete-store "$store" >/dev/null
}

if [ "$ROUNDS" -gt 0 ]; then
  log "backfill of $ORDERS orders, events off and on, $ROUNDS rounds (alternating)"
  off=() on=()
  for r in $(seq 1 "$ROUNDS"); do
    if [ $((r % 2)) -eq 1 ]; then
      a=$(backfill "ev-off-$r" off); b=$(backfill "ev-on-$r" on)
    else
      b=$(backfill "ev-on-$r" on); a=$(backfill "ev-off-$r" off)
    fi
    echo "  round $r: events off: load ${a%% *} s (end to end $(echo "$a" | cut -d' ' -f2) s), events on: load ${b%% *} s (end to end $(echo "$b" | cut -d' ' -f2) s), $(echo "$b" | cut -d' ' -f3) events"
    off+=("$a"); on+=("$b")
  done
  psql -X -q -c "ALTER DATABASE bench RESET converge.generate_events"
  median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
  off_load=$(printf '%s\n' "${off[@]}" | cut -d' ' -f1 | median)
  on_load=$(printf '%s\n' "${on[@]}" | cut -d' ' -f1 | median)
  off_e2e=$(printf '%s\n' "${off[@]}" | cut -d' ' -f2 | median)
  on_e2e=$(printf '%s\n' "${on[@]}" | cut -d' ' -f2 | median)
  awk -v a="$off_load" -v b="$on_load" -v c="$off_e2e" -v d="$on_e2e" -v n="$ORDERS" 'BEGIN {
    printf "backfill, median of the rounds: load phase %.2f s without events, %.2f s with (+%.0f %%, %d orders/s); end to end %.2f s -> %.2f s (+%.0f %%)\n",
           a, b, 100 * (b - a) / a, n / b, c, d, 100 * (d - c) / c }'

fi

log "release: $ORDERS held Placed Orders, all due"
$MOCKCTL create-store ev-release --orders "$ORDERS" --seed 43 --big-order-every 0 \
  --bucket-max 1000000 --restore-rate 1000000 -q
src=$(q "SELECT converge.create_source('ev-release', 'ev-release', 'cid-ev-release', 'secret-ev-release', upsell_delay => true)")
q "UPDATE converge.source_settings SET connected_at = '2000-01-01' WHERE id = $src" >/dev/null
psql -X -q -c "SET converge.sync_time_limit = '30min'" -c "SET converge.bulk_poll_interval = '100ms'" \
     -c "CALL converge.sync($src)"
q "VACUUM ANALYZE converge.events" >/dev/null
held=$(q "SELECT count(*) FROM converge.events WHERE source_id = $src AND state = 'held'")
out=$(psql -X -At -c "SELECT clock_timestamp()" -c "SELECT converge.release_due_events()" -c "SELECT clock_timestamp()")
t0=$(echo "$out" | sed -n 1p); n=$(echo "$out" | sed -n 2p); t1=$(echo "$out" | sed -n 3p)
q "SELECT format('release_due_events(): %s of %s held events released in %s s (%s events/s), committed',
                 $n, $held, round(extract(epoch FROM '$t1'::timestamptz - '$t0'::timestamptz), 3),
                 round($n / extract(epoch FROM '$t1'::timestamptz - '$t0'::timestamptz)))"
q "SELECT format('  states now: %s', string_agg(state || ' ' || n, ', ')) FROM (SELECT state, count(*) n FROM converge.events WHERE source_id = $src GROUP BY 1) s"
echo "command: bash bench/events_bench.sh $ORDERS $ROUNDS"
