#!/usr/bin/env bash
# Sync benchmark (not a test): backfill and incremental throughput against the
# mock Shopify store on loopback, on a throwaway cluster.
#
#   bash bench/sync_bench.sh [ORDERS]          (default 100000)
#   BENCH_CONF="converge.backfill_workers = 2" bash bench/sync_bench.sh   (extra server settings)
#
# The cluster is durable (fsync, synchronous_commit and full_page_writes on)
# with 2 GB of shared buffers.  Prints, for the backfill: orders/s, MB/s, API requests and the backend's
# peak private memory (for ORDERS and for ORDERS/10, to show it does not grow
# with the store), next to a hand-written set-based SQL load of the same JSONL
# (COPY into jsonb, then INSERT ... SELECT); for incremental sync: orders/s
# with an unthrottled bucket, and under Standard-plan limits the share of
# throttled answers and the use of the bucket's sustainable rate.
set -euo pipefail
ORDERS=${1:-100000}
STANDARD_SECONDS=${STANDARD_SECONDS:-120}

. "$(dirname "$0")/lib.sh"

# Run CALL converge.sync(src) in its own session, sampling its memory.
sync_measured() {
  local src=$1 out=$2
  measure_backend "CALL converge.sync($src)" "$out" \
    -c "SET converge.sync_time_limit = '30min'" -c "SET converge.bulk_poll_interval = '100ms'"
}

backfill() {  # backfill STORE ORDERS -> prints a report line
  local store=$1 n=$2 src peak
  $MOCKCTL create-store "$store" --orders "$n" --big-order-every 0 --bucket-max 1000000 --restore-rate 1000000 -q
  src=$(q "SELECT converge.create_source('$store', '$store', 'cid-$store', 'secret-$store')")
  sync_measured "$src" "$CONVERGE_TMP/$store.peak"
  peak=$(cat "$CONVERGE_TMP/$store.peak")
  q "SELECT format('backfill %s orders: load %s s -> %s orders/s, %s MB/s (file %s MB, %s objects); export wait %s s; end to end %s orders/s; API requests %s; backend peak private memory %s MB',
                   s.orders, round(extract(epoch FROM st.backfill_completed_at - st.bulk_ready_at), 2),
                   round(s.orders / extract(epoch FROM st.backfill_completed_at - st.bulk_ready_at)),
                   round(st.bulk_file_size / 1e6 / extract(epoch FROM st.backfill_completed_at - st.bulk_ready_at), 1),
                   round(st.bulk_file_size / 1e6), st.bulk_object_count,
                   round(extract(epoch FROM st.bulk_ready_at - r.started_at), 2),
                   round(s.orders / extract(epoch FROM st.backfill_completed_at - r.started_at)),
                   r.requests, round($peak / 1024.0, 1))
       FROM converge.sync_status s JOIN converge.sync_state st USING (source_id)
       JOIN LATERAL (SELECT * FROM converge.sync_runs WHERE source_id = s.source_id ORDER BY id LIMIT 1) r ON true
      WHERE s.source_id = $src"
  echo "$src" >"$CONVERGE_TMP/$store.src"
}

log "backfill benchmark: $ORDERS orders (and $((ORDERS / 10)) to compare memory)"
backfill "bench-small" $((ORDERS / 10))
backfill "bench-big" "$ORDERS"
echo "  mock counters for the big store: $($MOCKCTL counters bench-big | tr '\n' ' ')"

log "baseline: hand-written set-based SQL load of the same JSONL (COPY into jsonb, INSERT ... SELECT)"
src=$(cat "$CONVERGE_TMP/bench-big.src")
url=$(q "SELECT bulk_url FROM converge.sync_state WHERE source_id = $src")
python3 -c "import urllib.request, sys; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])" "$url" "$CONVERGE_TMP/export.jsonl"
chmod 644 "$CONVERGE_TMP/export.jsonl"
start=$(date +%s.%N)
psql -X -q -v ON_ERROR_STOP=1 <<SQL
CREATE SCHEMA base;
CREATE TABLE base.orders (LIKE converge.orders INCLUDING ALL);
CREATE TABLE base.line_items (LIKE converge.line_items INCLUDING ALL);
CREATE TABLE base.refunds (LIKE converge.refunds INCLUDING ALL);
CREATE TABLE base.stage (j jsonb);
CREATE FUNCTION base.gid(text) RETURNS bigint LANGUAGE sql IMMUTABLE AS \$\$ SELECT regexp_replace(\$1, '^.*/', '')::bigint \$\$;
COPY base.stage FROM '$CONVERGE_TMP/export.jsonl' WITH (FORMAT csv, QUOTE E'\x01', DELIMITER E'\x02');
INSERT INTO base.orders (source_id, order_id, order_name, source_name, sales_channel, tags, test, created_at, processed_at,
       updated_at, cancelled_at, email, currency, presentment_currency, total_price, total_price_shop, subtotal_price,
       total_tax, total_shipping, total_discounts, total_refunded, customer_id, customer_email, billing_country_code, data)
SELECT 1, base.gid(j->>'id'), j->>'name', j->>'sourceName', converge.sales_channel(j->>'sourceName'),
       ARRAY(SELECT jsonb_array_elements_text(j->'tags')), (j->>'test')::boolean, (j->>'createdAt')::timestamptz,
       (j->>'processedAt')::timestamptz, (j->>'updatedAt')::timestamptz, (j->>'cancelledAt')::timestamptz, j->>'email',
       j->>'currencyCode', j->>'presentmentCurrencyCode', (j#>>'{totalPriceSet,presentmentMoney,amount}')::numeric,
       (j#>>'{totalPriceSet,shopMoney,amount}')::numeric, (j#>>'{subtotalPriceSet,presentmentMoney,amount}')::numeric,
       (j#>>'{totalTaxSet,presentmentMoney,amount}')::numeric, (j#>>'{totalShippingPriceSet,presentmentMoney,amount}')::numeric,
       (j#>>'{totalDiscountsSet,presentmentMoney,amount}')::numeric, (j#>>'{totalRefundedSet,presentmentMoney,amount}')::numeric,
       base.gid(j#>>'{customer,id}'), j#>>'{customer,email}', j#>>'{billingAddress,countryCodeV2}', j
  FROM base.stage WHERE NOT j ? '__parentId';
INSERT INTO base.line_items (source_id, line_item_id, order_id, position, product_id, variant_id, sku, name, title,
       variant_title, vendor, quantity, price, price_shop)
SELECT 1, base.gid(j->>'id'), base.gid(j->>'__parentId'), 0, base.gid(j#>>'{product,id}'), base.gid(j#>>'{variant,id}'),
       j->>'sku', j->>'name', j->>'title', j->>'variantTitle', j->>'vendor', (j->>'quantity')::int,
       (j#>>'{originalUnitPriceSet,presentmentMoney,amount}')::numeric, (j#>>'{originalUnitPriceSet,shopMoney,amount}')::numeric
  FROM base.stage WHERE j->>'id' LIKE 'gid://shopify/LineItem/%';
INSERT INTO base.refunds (source_id, refund_id, order_id, created_at, note, total_refunded, total_refunded_shop, currency)
SELECT 1, base.gid(r->>'id'), base.gid(j->>'id'), (r->>'createdAt')::timestamptz, r->>'note',
       (r#>>'{totalRefundedSet,presentmentMoney,amount}')::numeric, (r#>>'{totalRefundedSet,shopMoney,amount}')::numeric,
       r#>>'{totalRefundedSet,presentmentMoney,currencyCode}'
  FROM base.stage, jsonb_array_elements(j->'refunds') r WHERE NOT j ? '__parentId';
SQL
end=$(date +%s.%N)
n=$(q "SELECT count(*) FROM base.orders")
echo "baseline SQL load of the same file: $n orders in $(echo "$start $end" | awk '{printf "%.2f", $2 - $1}') s -> $(echo "$start $end $n" | awk '{printf "%d", $3 / ($2 - $1)}') orders/s"

incremental() {  # incremental STORE ORDERS CATCHUP_PAGES LABEL
  local store=$1 n=$2 pages=$3 label=$4 src
  $MOCKCTL create-store "$store" --orders "$n" --big-order-every 0 --bucket-max 1000000 --restore-rate 1000000 -q
  src=$(q "SELECT converge.create_source('$store', '$store', 'cid-$store', 'secret-$store')")
  # every order changed since the cursor: a backlog of n orders
  q "UPDATE converge.sync_state SET phase = 'incremental', cursor_updated_at = '2000-01-01' WHERE source_id = $src" >/dev/null
  psql -X -q -c "SET converge.sync_time_limit = '30min'" -c "SET converge.bulk_poll_interval = '100ms'" \
       -c "SET converge.catchup_pages = $pages" -c "CALL converge.sync($src)"
  q "SELECT format('incremental, %s: %s orders in %s s -> %s orders/s; %s requests (%s GraphQL order queries, %s exports), %s throttled',
                   '$label', s.orders, round(extract(epoch FROM r.finished_at - r.started_at), 2),
                   round(s.orders / extract(epoch FROM r.finished_at - r.started_at)), r.requests,
                   '$($MOCKCTL counters "$store" graphql_orders)', '$($MOCKCTL counters "$store" graphql_bulk_start)', r.throttled)
       FROM converge.sync_status s JOIN LATERAL (SELECT * FROM converge.sync_runs WHERE source_id = s.source_id
                                                  ORDER BY id DESC LIMIT 1) r ON true
      WHERE s.source_id = $src"
}

log "incremental benchmark, unthrottled bucket: pages only (catchup_pages = 0), then a long backlog (catch-up export)"
incremental bench-pages $((ORDERS / 10)) 0 "GraphQL pages only"
incremental bench-catchup "$ORDERS" 20 "long backlog, default settings"

log "Standard plan (bucket 2000, 100 points/s): incremental for ${STANDARD_SECONDS} s"
$MOCKCTL create-store bench-standard --orders 5000 --big-order-every 0 -q
src=$(q "SELECT converge.create_source('bench-standard', 'bench-standard', 'cid-bench-standard', 'secret-bench-standard')")
q "UPDATE converge.sync_state SET phase = 'incremental', cursor_updated_at = '2000-01-01' WHERE source_id = $src" >/dev/null
# pages only: this measures pacing against the bucket, not the catch-up export
psql -X -q -c "SET converge.sync_time_limit = '${STANDARD_SECONDS}s'" -c "SET converge.catchup_pages = 0" -c "CALL converge.sync($src)"
actual=$($MOCKCTL counters bench-standard points_actual)
q "SELECT format('standard plan: %s requests, %s throttled (%s per 100), %s orders in %s s; points used %s = %s %% of 2000 + 100/s x elapsed (the bucket''s whole allowance)',
                 r.requests, r.throttled, round(100.0 * r.throttled / greatest(r.requests, 1), 2), r.orders_synced,
                 round(extract(epoch FROM r.finished_at - r.started_at), 1), $actual,
                 round(100.0 * $actual / (2000 + 100 * extract(epoch FROM r.finished_at - r.started_at)), 1))
     FROM converge.sync_runs r WHERE source_id = $src ORDER BY id DESC LIMIT 1"
echo "command: bash bench/sync_bench.sh $ORDERS"
