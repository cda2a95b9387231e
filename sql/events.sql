-- Events: exactly one Placed Order per order and one Received Refund per
-- refund, whichever path brought them; their properties as the product spec
-- lists them; every channel of the table end to end; historic vs new, also
-- while the backfill is running; $is_new_customer from the whole history
-- (the export is loaded by two processes at once here, so a customer's
-- orders arrive out of order); re-running the sync changes no event.
\! $MOCKCTL create-store ev-eu --orders 6000 --seed 11 --big-order-every 0 --restore-rate 1000 -q
SELECT converge.create_source('Events EU', 'ev-eu', 'cid-ev-eu', 'secret-ev-eu') AS src \gset
-- placed after the source was connected, before its backfill starts: in the export, and new
\! $MOCKCTL add-order ev-eu --source-name web --items 2 --email 'new.buyer@example.com' > /dev/null
-- placed while the backfill runs: arrives with the first incremental page
\! $MOCKCTL schedule ev-eu --after 1 add-order --source-name pos --items 1 > /dev/null
SET converge.backfill_workers = 1;
CALL sync_until_idle(:src);
SELECT (SELECT count(*) FROM converge.backfill_parts WHERE source_id = :src) AS export_parts,
       orders, refunds FROM converge.sync_status WHERE source_id = :src;

-- One event per order and per refund, no duplicates.
SELECT event_name, count(*) AS events, count(DISTINCT coalesce(refund_id, order_id)) AS distinct_objects
  FROM converge.events WHERE source_id = :src GROUP BY event_name ORDER BY event_name;
SELECT (SELECT count(*) FROM converge.orders o WHERE o.source_id = :src AND NOT EXISTS
          (SELECT 1 FROM converge.placed_orders p WHERE p.source_id = o.source_id AND p.order_id = o.order_id)) AS orders_without_event,
       (SELECT count(*) FROM converge.refunds r WHERE r.source_id = :src AND NOT EXISTS
          (SELECT 1 FROM converge.received_refunds e WHERE e.source_id = r.source_id AND e.refund_id = r.refund_id)) AS refunds_without_event;

-- Historic: placed (refunds: created) before connected_at.  The two new
-- orders wait for the historical sync to be complete, then are released.
SELECT e.event_name, e.state, (o.created_at >= s.connected_at) AS placed_after_connecting, count(*)
  FROM converge.events e JOIN converge.orders o USING (source_id, order_id) JOIN converge.sources s ON s.id = e.source_id
 WHERE e.source_id = :src AND e.event_name = 'Placed Order'
 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;
SELECT count(*) AS historic_refunds_created_after FROM converge.events e JOIN converge.sources s ON s.id = e.source_id
 WHERE e.source_id = :src AND e.event_name = 'Received Refund' AND e.state = 'historic' AND e.occurred_at >= s.connected_at;
SELECT converge.release_due_events() AS released;
SELECT properties ->> '$sales_channel_type' AS channel, state, released_at IS NOT NULL AS released
  FROM converge.events WHERE source_id = :src AND state <> 'historic' ORDER BY order_id;

-- Every row of the channel table, end to end; unknown and missing sourceName give web.
SELECT d.shopify_source_name, d.converge_channel,
       array_agg(DISTINCT e.properties ->> '$sales_channel_type') AS event_channels, count(e.*) > 0 AS seen
  FROM converge.default_channel_mappings() d
  LEFT JOIN converge.orders o ON o.source_id = :src AND o.source_name = d.shopify_source_name
  LEFT JOIN converge.placed_orders p ON p.source_id = o.source_id AND p.order_id = o.order_id
  LEFT JOIN converge.events e ON e.event_id = p.event_id
 GROUP BY 1, 2 ORDER BY 1;
SELECT coalesce(o.source_name, '(none)') AS source_name, array_agg(DISTINCT p.sales_channel) AS channels,
       array_agg(DISTINCT e.properties ->> '$sales_channel_type') AS property
  FROM converge.orders o JOIN converge.placed_orders p USING (source_id, order_id) JOIN converge.events e USING (event_id)
 WHERE o.source_id = :src
   AND (o.source_name IS NULL OR o.source_name NOT IN (SELECT shopify_source_name FROM converge.default_channel_mappings()))
 GROUP BY 1 ORDER BY 1;
-- An override changes the channel of later events.
INSERT INTO converge.channel_mappings (source_id, shopify_source_name, converge_channel) VALUES (:src, '5551234', 'marketplace');
\! $MOCKCTL add-order ev-eu --source-name 5551234 --items 1 > /dev/null
CALL converge.sync(:src);
SELECT o.source_name, e.sales_channel, e.properties ->> '$sales_channel_type' AS property, e.state
  FROM converge.events e JOIN converge.orders o USING (source_id, order_id)
 WHERE e.source_id = :src AND o.source_name = '5551234' AND e.state <> 'historic';
DELETE FROM converge.channel_mappings WHERE source_id = :src;

-- Properties against the store's own data (the mock's canonical export).
CREATE TEMP TABLE exp (j jsonb);
\copy exp (j) FROM PROGRAM '$MOCKCTL export ev-eu' WITH (FORMAT csv, QUOTE E'\x01', DELIMITER E'\x02')
CREATE TEMP VIEW expected_orders AS
SELECT gid(j->>'id') AS order_id, j,
       coalesce(j->>'email', j#>>'{customer,email}') AS email,
       coalesce(gid(j#>>'{customer,id}')::text, lower(j->>'email')) AS customer_key,
       (j->>'createdAt')::timestamptz AS created_at
  FROM exp;
SELECT count(*) AS orders_compared,
       count(*) FILTER (WHERE p.properties ->> 'id' IS DISTINCT FROM x.order_id::text
                          OR p.properties ->> 'order_name' IS DISTINCT FROM x.j->>'name') AS bad_ids,
       count(*) FILTER (WHERE (p.properties ->> 'total_price')::numeric IS DISTINCT FROM money(x.j, 'totalPriceSet', 'presentmentMoney')
                          OR (p.properties ->> 'total_tax')::numeric IS DISTINCT FROM money(x.j, 'totalTaxSet', 'presentmentMoney')
                          OR (p.properties ->> 'total_shipping')::numeric IS DISTINCT FROM money(x.j, 'totalShippingPriceSet', 'presentmentMoney')
                          OR (p.properties ->> 'total_discount')::numeric IS DISTINCT FROM money(x.j, 'totalDiscountsSet', 'presentmentMoney')
                          OR p.properties ->> 'currency' IS DISTINCT FROM x.j->>'presentmentCurrencyCode') AS bad_money,
       count(*) FILTER (WHERE (p.properties ->> 'total_price_shop')::numeric IS DISTINCT FROM money(x.j, 'totalPriceSet', 'shopMoney')
                          OR p.properties ->> 'shop_currency' IS DISTINCT FROM x.j->>'currencyCode') AS bad_shop_money,
       count(*) FILTER (WHERE p.properties ->> 'coupon' IS DISTINCT FROM
                          nullif(array_to_string(ARRAY(SELECT jsonb_array_elements_text(x.j->'discountCodes')), ','), '')) AS bad_coupons,
       count(*) FILTER (WHERE jsonb_array_length(p.properties -> 'items') <> jsonb_array_length(x.j->'lineItems')
                          OR (SELECT sum((i->>'quantity')::int) FROM jsonb_array_elements(p.properties -> 'items') i)
                             IS DISTINCT FROM (SELECT sum((i->>'quantity')::int) FROM jsonb_array_elements(x.j->'lineItems') i)
                          OR (SELECT array_agg(i->>'sku' ORDER BY n) FROM jsonb_array_elements(p.properties -> 'items') WITH ORDINALITY t(i, n))
                             IS DISTINCT FROM (SELECT array_agg(i->>'sku' ORDER BY n) FROM jsonb_array_elements(x.j->'lineItems') WITH ORDINALITY t(i, n))) AS bad_items,
       count(*) FILTER (WHERE p.properties ->> '$email' IS DISTINCT FROM x.email
                          OR p.profile_properties ->> '$email' IS DISTINCT FROM x.email
                          OR p.aliases IS DISTINCT FROM array_remove(ARRAY['urn:email:' || lower(x.email),
                                                                           'urn:user_id:' || gid(x.j#>>'{customer,id}')], NULL)) AS bad_buyer,
       count(*) FILTER (WHERE jsonb_path_exists(p.properties, 'strict $.** ? (@ == null)')
                          OR jsonb_path_exists(p.profile_properties, 'strict $.** ? (@ == null)')) AS json_nulls,
       count(*) FILTER (WHERE x.email IS NULL AND (p.properties ? '$email' OR p.aliases::text LIKE '%urn:email%')) AS invented_emails
  FROM expected_orders x JOIN converge.events p ON p.source_id = :src AND p.order_id = x.order_id AND p.event_name = 'Placed Order';

-- $is_new_customer: true exactly for each customer's first order (by customer id, else email).
SELECT count(*) FILTER (WHERE (p.properties ->> '$is_new_customer')::boolean IS DISTINCT FROM x.first) AS wrong,
       count(*) FILTER (WHERE x.first) AS first_orders, count(*) FILTER (WHERE NOT x.first) AS returning,
       count(*) FILTER (WHERE x.first IS NULL AND NOT p.properties ? '$is_new_customer') AS unknown_buyer
  FROM (SELECT order_id, CASE WHEN customer_key IS NOT NULL THEN
                 row_number() OVER (PARTITION BY customer_key ORDER BY created_at, order_id) = 1 END AS first
          FROM expected_orders) x
  JOIN converge.events p ON p.source_id = :src AND p.order_id = x.order_id AND p.event_name = 'Placed Order';

-- Refunds: one event each, with the refunded items.
SELECT count(*) AS refunds_compared,
       count(*) FILTER (WHERE (e.properties ->> 'total_refunded')::numeric IS DISTINCT FROM money(r.r, 'totalRefundedSet', 'presentmentMoney')
                          OR (e.properties ->> 'total_refunded_shop')::numeric IS DISTINCT FROM money(r.r, 'totalRefundedSet', 'shopMoney')
                          OR e.properties ->> 'order_id' IS DISTINCT FROM gid(r.j->>'id')::text) AS bad_amounts,
       count(*) FILTER (WHERE jsonb_array_length(e.properties -> 'items') <> jsonb_array_length(r.r -> 'refundLineItems')) AS bad_items,
       count(*) FILTER (WHERE e.properties ->> '$sales_channel_type' IS DISTINCT FROM
                          converge.sales_channel(:src, r.j->>'sourceName')) AS bad_channels
  FROM (SELECT j, r FROM exp, jsonb_array_elements(j->'refunds') r) r
  JOIN converge.events e ON e.source_id = :src AND e.refund_id = gid(r.r->>'id');

-- What an event looks like (an order in another currency, with a discount code and a refund).
SELECT jsonb_pretty(e.properties) AS properties, e.profile_properties, e.aliases, e.sales_channel
  FROM converge.events e
 WHERE e.source_id = :src AND e.event_name = 'Placed Order'
   AND e.properties ->> 'currency' <> e.properties ->> 'shop_currency' AND e.properties ? 'coupon'
   AND EXISTS (SELECT 1 FROM converge.events r WHERE r.source_id = e.source_id AND r.order_id = e.order_id
                                              AND r.event_name = 'Received Refund')
 ORDER BY e.order_id LIMIT 1 \gset ev_
\echo :ev_properties
\echo :ev_profile_properties :ev_aliases :ev_sales_channel
SELECT jsonb_pretty(r.properties) AS refund FROM converge.events r JOIN converge.events o USING (source_id, order_id)
 WHERE o.event_id = (SELECT event_id FROM converge.events e WHERE e.source_id = :src AND e.properties ->> 'id' =
                       (:'ev_properties'::jsonb) ->> 'id' AND e.event_name = 'Placed Order')
   AND r.event_name = 'Received Refund' ORDER BY r.refund_id LIMIT 1;
SELECT order_name, sales_channel, revenue, currency, revenue_shop, shop_currency, is_new_customer, items_count, coupon, state
  FROM converge.placed_orders WHERE source_id = :src ORDER BY order_id LIMIT 5;

-- Re-running the whole sync over the same data changes no event; neither do
-- later changes to orders whose events are historic or released.
CREATE TEMP TABLE before AS SELECT * FROM converge.events WHERE source_id = :src;
\! for n in $(seq 1001 1020) 7001 7002; do $MOCKCTL touch ev-eu "#$n" > /dev/null; done
\! $MOCKCTL tag ev-eu '#7001' --add Exclude
CALL converge.sync(:src);
SELECT orders_synced FROM converge.sync_runs WHERE source_id = :src ORDER BY id DESC LIMIT 1;
SELECT converge.resync_source(:src);
CALL sync_until_idle(:src);
SELECT (SELECT count(*) FROM converge.sync_runs WHERE source_id = :src AND phase = 'backfill') > 1 AS backfilled_again,
       (SELECT count(*) FROM (SELECT * FROM before EXCEPT SELECT * FROM converge.events WHERE source_id = :src) d) AS changed_or_missing,
       (SELECT count(*) FROM (SELECT * FROM converge.events WHERE source_id = :src EXCEPT SELECT * FROM before) d) AS new_or_changed;

-- Released events are frozen.
\set VERBOSITY terse
UPDATE converge.events SET properties = properties || '{"total_price": 0}'
 WHERE event_id = (SELECT event_id FROM converge.events WHERE source_id = :src AND state = 'ready' ORDER BY event_id LIMIT 1);
\set VERBOSITY default

SELECT converge.drop_source(:src, drop_data => true);
