-- The historical sync: a store of a few thousand orders, backfilled through a
-- bulk export, matches the mock's data exactly.
\! $MOCKCTL create-store backfill-eu --orders 3000 --seed 11 --currency EUR -q

SELECT converge.create_source('Backfill EU', 'backfill-eu', 'cid-backfill-eu', 'secret-backfill-eu') AS src \gset
SET converge.batch_size = 500;   -- several commits along the way
CALL sync_until_idle(:src);

SELECT phase, backfill_completed_at IS NOT NULL AS backfilled, orders, refunds, error_active, last_error,
       scope_warning, api_version_seen
  FROM converge.sync_status WHERE source_id = :src;

-- Exactness: every order, line item, refund and refund line item, field by field.
CREATE TEMP TABLE exp (j jsonb);
\copy exp (j) FROM PROGRAM '$MOCKCTL export backfill-eu' WITH (FORMAT csv, QUOTE E'\x01', DELIMITER E'\x02')
SELECT * FROM mirror_diff(:src);

-- The export is a constant number of requests (token, export start and
-- polls, one download), not one per order.
SELECT requests <= 40 AS constant_requests FROM converge.sync_runs WHERE source_id = :src ORDER BY id LIMIT 1;
\! $MOCKCTL counters backfill-eu graphql_orders

-- Spot values.
SELECT count(*) FILTER (WHERE order_id > 9007199254740992) > 0 AS ids_above_2_53,
       bool_and(order_id::text = data->>'legacyResourceId') AS ids_exact,
       count(DISTINCT presentment_currency) > 1 AS several_currencies,
       count(*) FILTER (WHERE presentment_currency <> currency AND total_price <> total_price_shop) > 0 AS converted_money,
       count(*) FILTER (WHERE 'exclude' = ANY (SELECT lower(t) FROM unnest(tags) t)) > 0 AS exclude_tags,
       count(*) FILTER (WHERE test) > 0 AS test_orders,
       count(*) FILTER (WHERE cancelled_at IS NOT NULL) > 0 AS cancelled_orders
  FROM converge.orders WHERE source_id = :src;
SELECT source_name, sales_channel, count(*) > 0 AS present
  FROM converge.orders WHERE source_id = :src GROUP BY 1, 2 ORDER BY 1 NULLS LAST;
SELECT count(*) AS orders_over_one_page FROM (
  SELECT order_id FROM converge.line_items WHERE source_id = :src GROUP BY 1 HAVING count(*) > 250) t;
SELECT count(*) FILTER (WHERE n > 1) > 0 AS orders_with_several_refunds FROM (
  SELECT order_id, count(*) n FROM converge.refunds WHERE source_id = :src GROUP BY 1) t;
SELECT count(*) FILTER (WHERE n > 1) > 0 AS customers_with_several_orders FROM (
  SELECT customer_id, count(*) n FROM converge.orders WHERE source_id = :src AND customer_id IS NOT NULL GROUP BY 1) t;
-- the first order as stored
SELECT order_name, source_name, sales_channel, tags, total_price, total_price_shop, currency, presentment_currency,
       (SELECT count(*) FROM converge.line_items l WHERE l.source_id = o.source_id AND l.order_id = o.order_id) AS items
  FROM converge.orders o WHERE source_id = :src AND order_name = '#1001';

-- Re-running the backfill stores nothing twice and changes nothing.
SELECT converge.resync_source(:src);
CALL sync_until_idle(:src);
SELECT * FROM mirror_diff(:src);
SELECT orders_synced AS rewritten_on_resync FROM converge.sync_runs WHERE source_id = :src ORDER BY id DESC LIMIT 1;

-- Progress is visible while it runs, and the run log says what happened.
SELECT phase, count(*) > 0 AS runs, bool_and(finished_at IS NOT NULL) AS finished
  FROM converge.sync_runs WHERE source_id = :src GROUP BY phase ORDER BY phase;
SELECT count(*) AS sync_errors FROM converge.sync_errors WHERE source_id = :src;
