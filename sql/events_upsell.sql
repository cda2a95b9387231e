-- The post-purchase upsell delay: a new order's Placed Order is held until
-- 10 minutes (a per-source length) after it was placed; an upsell during the
-- hold is folded in; at release it is built from the order as it stands and
-- frozen (NOTIFY converge_events); later changes do not touch it.  With the
-- delay off the event is ready at once.  Historic orders are never held.
\! $MOCKCTL create-store up-eu --orders 60 --seed 4 -q
\! $MOCKCTL create-store nd-eu --orders 20 --seed 5 -q
SELECT converge.create_source('Upsell EU', 'up-eu', 'cid-up-eu', 'secret-up-eu', upsell_delay => true) AS src \gset
SELECT converge.create_source('No delay EU', 'nd-eu', 'cid-nd-eu', 'secret-nd-eu') AS nodelay \gset
CALL sync_until_idle(:src);
CALL sync_until_idle(:nodelay);
SELECT source_id = :src AS upsell_source, state, count(*), count(release_at) AS with_release_time
  FROM converge.events WHERE source_id IN (:src, :nodelay) GROUP BY 1, 2 ORDER BY 1, 2;

-- #1061: held until placed + 10 minutes.
\! $MOCKCTL add-order up-eu --items 1 > /dev/null
CALL converge.sync(:src);
CREATE TEMP VIEW o1061 AS
SELECT e.state, e.release_at - o.created_at AS hold, jsonb_array_length(e.properties -> 'items') AS items,
       (e.properties ->> 'total_price')::numeric = o.total_price AS total_is_the_orders, o.total_price,
       e.released_at IS NOT NULL AS released
  FROM converge.events e JOIN converge.orders o USING (source_id, order_id)
 WHERE e.source_id = :src AND o.order_name = '#1061' AND e.event_name = 'Placed Order';
SELECT state, hold, items, total_is_the_orders, released FROM o1061;

-- The upsell (3 minutes later on the real clock): two items more, a higher total.
SELECT total_price AS total_before FROM o1061 \gset
\! $MOCKCTL upsell up-eu '#1061' --items 2 > /dev/null
CALL converge.sync(:src);
SELECT state, items, total_is_the_orders, total_price > :total_before AS total_raised FROM o1061;
-- a refund during the hold is held with its order
\! $MOCKCTL refund up-eu '#1061' > /dev/null
CALL converge.sync(:src);
SELECT event_name, state, release_at = (SELECT release_at FROM converge.placed_orders
                                          WHERE source_id = :src AND order_name = '#1061') AS released_with_order
  FROM converge.events WHERE source_id = :src AND order_id = (SELECT order_id FROM converge.orders
                                                               WHERE source_id = :src AND order_name = '#1061')
 ORDER BY event_name;

-- Not due yet: nothing is released.  Due (the clock moved 11 minutes): released, with notifications.
SELECT converge.release_due_events() AS released_now;
\! psql -X -q -d contrib_regression -c 'LISTEN converge_events' -c "SELECT converge.release_due_events(now() + interval '11 minutes') AS released" 2>&1 | sed -E 's/PID [0-9]+/PID n/'
SELECT state, items, total_is_the_orders, released FROM o1061;
SELECT event_name, state FROM converge.events WHERE source_id = :src AND state <> 'historic' ORDER BY event_name;

-- After release: another upsell changes the order, not its released event;
-- a refund is an event of its own, ready at once.
CREATE TEMP TABLE released AS SELECT * FROM converge.events WHERE source_id = :src AND state = 'ready';
\! $MOCKCTL upsell up-eu '#1061' --items 1 > /dev/null
\! $MOCKCTL refund up-eu '#1061' --amount 2.00 > /dev/null
CALL converge.sync(:src);
SELECT (SELECT count(*) FROM converge.line_items l JOIN converge.orders o USING (source_id, order_id)
         WHERE o.source_id = :src AND o.order_name = '#1061') AS order_items_now,
       (SELECT count(*) FROM (SELECT * FROM released EXCEPT SELECT * FROM converge.events) d) AS released_events_changed;
SELECT event_name, state, released_at IS NOT NULL AS released FROM converge.events
 WHERE source_id = :src AND state <> 'historic' ORDER BY event_name, occurred_at;

-- The length is a setting of the source; changing it leaves held events alone.
SELECT converge.alter_source(:src, upsell_delay_length => '30 minutes');
\! $MOCKCTL add-order up-eu > /dev/null
CALL converge.sync(:src);
SELECT o.order_name, e.state, e.release_at - o.created_at AS hold
  FROM converge.placed_orders e JOIN converge.orders o USING (source_id, order_id)
 WHERE e.source_id = :src AND o.order_name = '#1062';
-- a held event follows a change of the channel mappings; a released one does not
INSERT INTO converge.channel_mappings (source_id, shopify_source_name, converge_channel) VALUES (:src, 'web', 'mobile_app');
SELECT o.order_name, e.state, e.sales_channel, e.properties ->> '$sales_channel_type' AS property
  FROM converge.events e JOIN converge.orders o USING (source_id, order_id)
 WHERE e.source_id = :src AND o.order_name IN ('#1061', '#1062') AND e.event_name = 'Placed Order' ORDER BY 1;
DELETE FROM converge.channel_mappings WHERE source_id = :src;
SELECT sales_channel FROM converge.placed_orders WHERE source_id = :src AND order_name = '#1062';
SELECT converge.alter_source(:src, upsell_delay_length => '0 minutes');
SELECT converge.create_source('Bad delay', 'bad-delay', 'c', 's', upsell_delay_length => '2 days');

-- Delay off: ready as soon as it is synced, and announced.
\! $MOCKCTL add-order nd-eu --items 2 > /dev/null
\setenv NODELAY :nodelay
\! psql -X -q -d contrib_regression -c 'LISTEN converge_events' -c "CALL converge.sync($NODELAY)" 2>&1 | sed -E 's/PID [0-9]+/PID n/'
SELECT e.state, e.release_at, e.released_at IS NOT NULL AS released, e.items_count
  FROM converge.placed_orders e WHERE e.source_id = :nodelay AND e.state <> 'historic';

-- (leave nothing held for the tests that follow)
SELECT converge.drop_source(:src, drop_data => true);
SELECT converge.drop_source(:nodelay, drop_data => true);
