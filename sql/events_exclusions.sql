-- Exclusion rules: a channel rule (the Shopify sourceName or the Converge
-- type) and a tag rule (any casing) keep orders out of events, and their
-- refunds too; converge.excluded_orders names the rule; a tag added, or a
-- rule created, while a Placed Order is held drops it; removing a rule only
-- affects later events.
\! $MOCKCTL create-store ex-eu --orders 400 --seed 3 -q
SELECT converge.create_source('Exclusions EU', 'ex-eu', 'cid-ex-eu', 'secret-ex-eu', upsell_delay => true,
                              exclude_channels => '{pos}', exclude_tags => '{Exclude}') AS src \gset
SELECT kind, value FROM converge.exclusion_rules WHERE source_id = :src ORDER BY id;
CALL sync_until_idle(:src);

-- The tag comes in every casing; each rule keeps its orders out.
SELECT t AS tag, count(*) FROM converge.orders, unnest(tags) t
 WHERE source_id = :src AND lower(t) = 'exclude' GROUP BY t ORDER BY t;
SELECT rule_kind, rule_value, count(*) AS orders,
       count(*) FILTER (WHERE EXISTS (SELECT 1 FROM converge.events e
                                       WHERE e.source_id = x.source_id AND e.order_id = x.order_id)) AS with_events
  FROM converge.excluded_orders x WHERE source_id = :src GROUP BY 1, 2 ORDER BY 1;
SELECT count(*) FILTER (WHERE x.order_id IS NULL AND p.event_id IS NULL) AS included_without_event,
       count(*) FILTER (WHERE x.order_id IS NOT NULL AND p.event_id IS NOT NULL) AS excluded_with_event,
       count(*) FILTER (WHERE x.order_id IS NULL) AS included
  FROM converge.orders o
  LEFT JOIN (SELECT DISTINCT source_id, order_id FROM converge.excluded_orders) x USING (source_id, order_id)
  LEFT JOIN converge.placed_orders p USING (source_id, order_id)
 WHERE o.source_id = :src;
-- an excluded order's refunds give no event
SELECT count(*) AS refunds_of_excluded_orders, count(e.event_id) AS their_events
  FROM converge.refunds r
  JOIN (SELECT DISTINCT source_id, order_id FROM converge.excluded_orders) x USING (source_id, order_id)
  LEFT JOIN converge.received_refunds e ON e.source_id = r.source_id AND e.refund_id = r.refund_id
 WHERE r.source_id = :src;
-- an order matched by both rules is listed once per rule
SELECT order_name, source_name, tags, array_agg(rule_kind ORDER BY rule_kind) AS rules
  FROM converge.excluded_orders WHERE source_id = :src
 GROUP BY 1, 2, 3 HAVING count(*) > 1 ORDER BY 1 LIMIT 2;

-- New orders, held by the upsell delay: #1401 pos, #1402 tagged "exclude",
-- #1403 and #1404 web, #1405 web tagged Wholesale.
\! $MOCKCTL add-order ex-eu --source-name pos > /dev/null
\! $MOCKCTL add-order ex-eu --tags exclude > /dev/null
\! $MOCKCTL add-order ex-eu > /dev/null
\! $MOCKCTL add-order ex-eu > /dev/null
\! $MOCKCTL add-order ex-eu --tags Wholesale > /dev/null
CALL converge.sync(:src);
SELECT o.order_name, e.state FROM converge.orders o LEFT JOIN converge.placed_orders e USING (source_id, order_id)
 WHERE o.source_id = :src AND o.order_name > '#1400' ORDER BY 1;
-- the refund of an excluded new order: no event
\! $MOCKCTL refund ex-eu '#1401' > /dev/null
-- a tag added during the hold (another casing) drops the event
\! $MOCKCTL tag ex-eu '#1403' --add EXCLUDE
CALL converge.sync(:src);
-- a rule created during the hold drops the held events it matches
SELECT converge.add_exclusion(:src, 'tag', 'wholesale') > 0 AS rule_added;
SELECT converge.release_due_events(now() + interval '11 minutes') AS released;
SELECT o.order_name, e.state, e.dropped_reason
  FROM converge.orders o LEFT JOIN converge.events e ON e.source_id = o.source_id AND e.order_id = o.order_id
 WHERE o.source_id = :src AND o.order_name > '#1400' ORDER BY 1, e.event_name;

-- Removing a rule affects only later events: orders it excluded stay without
-- events, released events stay as they are, a new order with the tag gets one.
SELECT converge.remove_exclusion(:src, 'tag', 'EXCLUDE') AS removed;
\! $MOCKCTL touch ex-eu '#1402' > /dev/null
\! $MOCKCTL add-order ex-eu --tags Exclude > /dev/null
CALL converge.sync(:src);
SELECT o.order_name, o.tags, e.state
  FROM converge.orders o LEFT JOIN converge.placed_orders e USING (source_id, order_id)
 WHERE o.source_id = :src AND o.order_name IN ('#1402', '#1403', '#1404', '#1406') ORDER BY 1;
SELECT count(*) AS old_tagged_orders_without_events
  FROM converge.orders o WHERE o.source_id = :src AND o.order_name <= '#1400'
   AND EXISTS (SELECT 1 FROM unnest(o.tags) t WHERE lower(t) = 'exclude')
   AND NOT EXISTS (SELECT 1 FROM converge.events e WHERE e.source_id = o.source_id AND e.order_id = o.order_id);

-- Which stored orders a new rule would exclude, and what happens to their events.
SELECT sales_channel, event_state, count(*) FROM converge.preview_exclusion(:src, 'channel', 'marketplace')
 GROUP BY 1, 2 ORDER BY 1, 2;
SELECT count(*) AS test_orders FROM converge.preview_exclusion(:src, 'test');

-- Bad rules.
SELECT converge.add_exclusion(:src, 'country', 'DE');
SELECT converge.add_exclusion(:src, 'tag', '  ');
SELECT converge.add_exclusion(:src, 'test', 'yes');
SELECT converge.add_exclusion(999, 'tag', 'x');
-- the same rule twice is one rule
SELECT converge.add_exclusion(:src, 'channel', 'POS') = (SELECT id FROM converge.exclusion_rules
                                                         WHERE source_id = :src AND kind = 'channel') AS same_rule;

-- (leave nothing held for the tests that follow)
SELECT converge.drop_source(:src, drop_data => true);
