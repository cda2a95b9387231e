-- Incremental sync: changes made in the store after the backfill (new
-- orders, an upsell, tags, a refund, a cancellation) are picked up by the
-- next pass; an order updated between two pages is not missed; an update
-- that shows up late (inside the overlap window) is not missed either.
-- (a Plus-sized bucket: this test is about changes, sync_faults.sql about throttling)
\! $MOCKCTL create-store inc-eu --orders 300 --seed 5 --restore-rate 1000 -q
SELECT converge.create_source('Incremental EU', 'inc-eu', 'cid-inc-eu', 'secret-inc-eu') AS src \gset
CALL sync_until_idle(:src);
SELECT phase, orders FROM converge.sync_status WHERE source_id = :src;

-- Changes in the store.
\! $MOCKCTL add-order inc-eu --source-name pos --items 2 --tags VIP > /dev/null
\! $MOCKCTL add-order inc-eu --source-name 3890849 --items 260 > /dev/null
\! $MOCKCTL add-order inc-eu --source-name web --items 1 --currency USD > /dev/null
\! $MOCKCTL upsell inc-eu '#1005' --items 2 > /dev/null
\! $MOCKCTL tag inc-eu '#1006' --add Exclude
\! $MOCKCTL tag inc-eu '#1007' --add 'Late Tag'
\! $MOCKCTL refund inc-eu '#1008' > /dev/null
\! $MOCKCTL refund inc-eu '#1008' --amount 1.00 > /dev/null
\! $MOCKCTL cancel inc-eu '#1009' --refund > /dev/null

CALL converge.sync(:src);
CREATE TEMP TABLE exp (j jsonb);
\copy exp (j) FROM PROGRAM '$MOCKCTL export inc-eu' WITH (FORMAT csv, QUOTE E'\x01', DELIMITER E'\x02')
SELECT * FROM mirror_diff(:src);
SELECT order_name, source_name, sales_channel, tags, cancelled_at IS NOT NULL AS cancelled,
       (SELECT count(*) FROM converge.line_items l WHERE l.source_id = o.source_id AND l.order_id = o.order_id) AS items,
       (SELECT count(*) FROM converge.refunds r WHERE r.source_id = o.source_id AND r.order_id = o.order_id) AS refunds
  FROM converge.orders o
 WHERE source_id = :src AND order_name IN ('#1005', '#1006', '#1007', '#1008', '#1009', '#1301', '#1302', '#1303')
 ORDER BY order_name;
SELECT outcome, orders_synced, refunds_synced > 0 AS refunds_synced FROM converge.sync_runs
 WHERE source_id = :src ORDER BY id DESC LIMIT 1;

-- A pass with nothing new writes nothing (the overlap re-reads, it does not rewrite).
CALL converge.sync(:src);
SELECT outcome, orders_synced FROM converge.sync_runs WHERE source_id = :src ORDER BY id DESC LIMIT 1;

-- Page boundaries: 40 orders change, so the pass reads several pages; just
-- before the second page is served, one order of the first page changes again.
\! for n in $(seq 1010 1049); do $MOCKCTL touch inc-eu "#$n" > /dev/null; done
\! $MOCKCTL schedule inc-eu --after 2 tag '#1010' --add Boundary > /dev/null
CALL converge.sync(:src);
SELECT requests >= 4 AS several_pages FROM converge.sync_runs WHERE source_id = :src ORDER BY id DESC LIMIT 1;
\! $MOCKCTL scheduled inc-eu | python3 -c "import json, sys; d = json.load(sys.stdin); print('applied', len(d['applied']), 'pending', len(d['scheduled']))"
CALL converge.sync(:src);
TRUNCATE exp;
\copy exp (j) FROM PROGRAM '$MOCKCTL export inc-eu' WITH (FORMAT csv, QUOTE E'\x01', DELIMITER E'\x02')
SELECT * FROM mirror_diff(:src);
SELECT tags FROM converge.orders WHERE source_id = :src AND order_name = '#1010';

-- An update that becomes visible late, stamped a minute before the cursor.
SELECT to_char((synced_through - interval '60 seconds') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS late
  FROM converge.sync_status WHERE source_id = :src \gset
\setenv LATE_TS :late
\! $MOCKCTL tag inc-eu '#1050' --add 'Seen Late' --updated-at "$LATE_TS" > /dev/null
CALL converge.sync(:src);
SELECT tags FROM converge.orders WHERE source_id = :src AND order_name = '#1050';
SELECT phase, error_active FROM converge.sync_status WHERE source_id = :src;

-- A long backlog (a source that was away for a long time): after
-- converge.catchup_pages pages the pass switches to a catch-up export of the
-- orders updated since its cursor (no query points, backfill speed), then
-- goes on page by page from when the export started.
UPDATE converge.sync_state SET cursor_updated_at = '2024-01-01' WHERE source_id = :src;
\! $MOCKCTL reset-counters inc-eu
SET converge.catchup_pages = 2;
CALL converge.sync(:src);
\! $MOCKCTL counters inc-eu graphql_bulk_start
SELECT phase, error_active, synced_through > now() - interval '1 hour' AS cursor_moved FROM converge.sync_status WHERE source_id = :src;
SELECT outcome, orders_synced FROM converge.sync_runs WHERE source_id = :src ORDER BY id DESC LIMIT 1;
TRUNCATE exp;
\copy exp (j) FROM PROGRAM '$MOCKCTL export inc-eu' WITH (FORMAT csv, QUOTE E'\x01', DELIMITER E'\x02')
SELECT * FROM mirror_diff(:src);
-- recent changes do not trigger a catch-up; they are read page by page
\! for n in $(seq 1060 1099); do $MOCKCTL touch inc-eu "#$n" > /dev/null; done
\! $MOCKCTL tag inc-eu '#1200' --add 'After Catch-up'
\! $MOCKCTL reset-counters inc-eu
CALL converge.sync(:src);
\! $MOCKCTL counters inc-eu graphql_bulk_start
SELECT tags FROM converge.orders WHERE source_id = :src AND order_name = '#1200';
RESET converge.catchup_pages;
