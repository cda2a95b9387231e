-- Destinations: what is forwarded (ready events released after the
-- destination was created, of the sources and event names it follows; never
-- historic, held, dropped or excluded ones), the exact request (envelope,
-- headers, signature), batching, replay, and who may see what.
\getenv mock MOCK_SHOPIFY_URL
CREATE PROCEDURE public.deliver_until_settled(seconds float8 DEFAULT 30)
LANGUAGE plpgsql AS $$
DECLARE until timestamptz := clock_timestamp() + make_interval(secs => seconds);
BEGIN
  LOOP
    CALL converge.deliver();
    COMMIT;
    EXIT WHEN NOT EXISTS (SELECT 1 FROM converge.deliveries d JOIN converge.destination_settings s ON s.id = d.destination_id
                           WHERE d.state IN ('pending', 'retrying') AND NOT s.paused)
           OR clock_timestamp() > until;
    PERFORM pg_sleep(0.05);
  END LOOP;
END $$;
CREATE TABLE public.received (receiver text, j jsonb);
CREATE TABLE public.received_in (j jsonb);

-- URLs: https, or http to this machine when a superuser allows it.
\set VERBOSITY default
SELECT converge.destination_url('https://Hooks.Example.com/converge?k=1');
SELECT converge.destination_url('ftp://hooks.example.com/');
SELECT converge.destination_url('http://hooks.example.com/converge');
SELECT converge.destination_url('https://user:pw@hooks.example.com/');
SELECT converge.destination_url('https://hooks.example.com/#frag');
SELECT converge.destination_url('not a url');
SELECT converge.destination_url('http://127.0.0.1:9/x');
SET converge.allow_http_destinations = on;
SELECT converge.destination_url('http://127.0.0.1:9/x');
SELECT converge.destination_url('http://127.attacker.example/x');
SELECT converge.destination_url('http://127.0.0.1.nip.io/x');
SELECT converge.destination_url('https://user@hooks.example.com/?token=SECRET');
\set VERBOSITY terse

-- Two stores; the first with the upsell delay and an exclusion rule.
\! $MOCKCTL create-store dst-a --orders 40 --seed 21 -q
\! $MOCKCTL create-store dst-b --orders 40 --seed 22 -q
SELECT converge.create_source('Dest A', 'dst-a', 'cid-dst-a', 'secret-dst-a', upsell_delay => true,
                              exclude_tags => '{Exclude}') AS a \gset
SELECT converge.create_source('Dest B', 'dst-b', 'cid-dst-b', 'secret-dst-b') AS b \gset
\! $MOCKCTL receiver all --secret 'whsec-all-0123456789' > /dev/null
\! $MOCKCTL receiver b-only > /dev/null
\! $MOCKCTL receiver refunds --secret 'whsec-refunds-0123456789' > /dev/null
\! $MOCKCTL receiver batched > /dev/null
SELECT converge.create_destination('All', :'mock' || '/_receiver/all', 'whsec-all-0123456789') AS d_all \gset
SELECT converge.create_destination('B only', :'mock' || '/_receiver/b-only', sources => ARRAY[:b]::bigint[]) AS d_b \gset
SELECT converge.create_destination('Refunds', :'mock' || '/_receiver/refunds', 'whsec-refunds-0123456789',
                                   event_names => '{Received Refund}') AS d_refunds \gset
SELECT converge.create_destination('Batched', :'mock' || '/_receiver/batched', batch_size => 3) AS d_batched \gset
SELECT name, sources IS NULL AS all_sources, event_names, batch_size, max_connections, paused, signed
  FROM converge.destinations ORDER BY id;
SELECT converge.create_destination('All', 'https://x.example.com/');
SELECT converge.create_destination('Bad names', 'https://x.example.com/', event_names => '{Signed Up}');
SELECT converge.create_destination('Bad source', 'https://x.example.com/', sources => '{999}');

-- History is never forwarded, even while the backfill runs.
CALL sync_until_idle(:a);
CALL sync_until_idle(:b);
SELECT count(*) AS deliveries_after_backfill FROM converge.deliveries;

-- New activity: A: #1041 (held by the delay), #1042 tagged Exclude, a refund on
-- historic #1001; B: #1041, a refund on #1002.
\! $MOCKCTL add-order dst-a --items 2 > /dev/null
\! $MOCKCTL add-order dst-a --tags Exclude > /dev/null
\! $MOCKCTL refund dst-a '#1001' > /dev/null
\! $MOCKCTL add-order dst-b --items 1 > /dev/null
\! $MOCKCTL refund dst-b '#1002' > /dev/null
CALL converge.sync(:a);
CALL converge.sync(:b);
SELECT s.name, e.event_name, e.state, count(*) FROM converge.events e JOIN converge.sources s ON s.id = e.source_id
 WHERE e.state <> 'historic' AND e.source_id IN (:a, :b) GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;
CALL deliver_until_settled();
-- held #1041 of A waits; a destination created now does not get what was released before
SELECT converge.create_destination('Late', :'mock' || '/_receiver/late') AS d_late \gset
\! $MOCKCTL receiver late > /dev/null
SELECT converge.release_due_events(now() + interval '11 minutes') AS released;
CALL deliver_until_settled();

\copy received_in (j) FROM PROGRAM '$MOCKCTL received all --clear' WITH (FORMAT csv, QUOTE E'\x01', DELIMITER E'\x02')
WITH m AS (DELETE FROM received_in RETURNING j) INSERT INTO received SELECT 'all', j FROM m;
\copy received_in (j) FROM PROGRAM '$MOCKCTL received b-only --clear' WITH (FORMAT csv, QUOTE E'\x01', DELIMITER E'\x02')
WITH m AS (DELETE FROM received_in RETURNING j) INSERT INTO received SELECT 'b-only', j FROM m;
\copy received_in (j) FROM PROGRAM '$MOCKCTL received refunds --clear' WITH (FORMAT csv, QUOTE E'\x01', DELIMITER E'\x02')
WITH m AS (DELETE FROM received_in RETURNING j) INSERT INTO received SELECT 'refunds', j FROM m;
\copy received_in (j) FROM PROGRAM '$MOCKCTL received batched --clear' WITH (FORMAT csv, QUOTE E'\x01', DELIMITER E'\x02')
WITH m AS (DELETE FROM received_in RETURNING j) INSERT INTO received SELECT 'batched', j FROM m;
\copy received_in (j) FROM PROGRAM '$MOCKCTL received late --clear' WITH (FORMAT csv, QUOTE E'\x01', DELIMITER E'\x02')
WITH m AS (DELETE FROM received_in RETURNING j) INSERT INTO received SELECT 'late', j FROM m;
-- What each receiver got, by event (once each, nothing historic, held-then-released included).
SELECT r.receiver, e.event_name, s.name AS source, count(*) AS requests, count(DISTINCT e.event_id) AS events
  FROM received r
  CROSS JOIN LATERAL (SELECT CASE WHEN jsonb_typeof(r.j->'body') = 'array' THEN r.j->'body' ELSE jsonb_build_array(r.j->'body') END AS b) x
  CROSS JOIN LATERAL jsonb_array_elements(x.b) ev
  JOIN converge.events e ON e.event_id = ev->>'event_id'
  JOIN converge.sources s ON s.id = e.source_id
 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;
SELECT count(*) AS forwarded_but_not_forwardable
  FROM received r, jsonb_array_elements(CASE WHEN jsonb_typeof(r.j->'body') = 'array' THEN r.j->'body'
                                             ELSE jsonb_build_array(r.j->'body') END) ev
  JOIN converge.events e ON e.event_id = ev->>'event_id'
 WHERE e.state <> 'ready' OR EXISTS (SELECT 1 FROM converge.excluded_orders x WHERE x.source_id = e.source_id AND x.order_id = e.order_id);
-- every ready event reached every destination that follows it
SELECT d.name, count(*) AS should_get, count(*) FILTER (WHERE x.state = 'delivered') AS delivered
  FROM converge.destination_settings d
  JOIN converge.events e ON e.state = 'ready' AND (d.sources IS NULL OR e.source_id = ANY (d.sources))
                        AND (d.event_names IS NULL OR e.event_name = ANY (d.event_names)) AND e.released_at >= d.created_at
  LEFT JOIN converge.deliveries x ON x.destination_id = d.id AND x.event_id = e.event_id
 GROUP BY d.id, d.name ORDER BY d.id;

-- The request: the envelope (exactly these keys, in this order), headers, signature.
SELECT DISTINCT j->'keys' AS envelope_keys_as_sent FROM received WHERE receiver IN ('all', 'batched');
SELECT count(*) AS requests,
       count(*) FILTER (WHERE r.j->>'content_type' = 'application/json') AS json,
       count(*) FILTER (WHERE r.j->>'idempotency_key' = e.event_id) AS idempotency_key_is_event_id,
       count(*) FILTER (WHERE (r.j->>'signature_valid')::boolean AND (r.j->>'signature_fresh')::boolean) AS signed_and_fresh,
       count(*) FILTER (WHERE r.j->'body'->'properties' = e.properties AND r.j->'body'->'profile_properties' = e.profile_properties
                          AND r.j->'body'->'aliases' = to_jsonb(e.aliases) AND r.j->'body'->>'event_name' = e.event_name
                          AND (r.j->'body'->>'timestamp')::timestamptz = e.occurred_at
                          AND r.j->'body'->>'timestamp' ~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$') AS envelope_matches_event
  FROM received r JOIN converge.events e ON e.event_id = r.j->'body'->>'event_id'
 WHERE r.receiver IN ('all', 'refunds');
SELECT count(*) AS unsigned_requests, count(*) FILTER (WHERE j->>'signature' IS NULL) AS without_signature
  FROM received WHERE receiver = 'b-only';
SELECT jsonb_array_length(j->'body') AS events_in_request, j->>'idempotency_key' LIKE 'batch-%' AS batch_key
  FROM received WHERE receiver = 'batched' ORDER BY 1 DESC;

SELECT name, status, pending, retrying, delivered, dead, last_error, latency_p50 IS NOT NULL AS has_latency
  FROM converge.delivery_status ORDER BY destination_id;

-- Replay: everything the destination follows released in the window, again;
-- never historic events.
SELECT converge.replay(:d_refunds, (SELECT created_at FROM converge.destinations WHERE id = :d_refunds)) AS queued;
CALL deliver_until_settled();
\copy received_in (j) FROM PROGRAM '$MOCKCTL received refunds --clear' WITH (FORMAT csv, QUOTE E'\x01', DELIMITER E'\x02')
WITH m AS (DELETE FROM received_in RETURNING j) INSERT INTO received SELECT 'refunds', j FROM m;
SELECT count(*) AS requests, count(DISTINCT j->'body'->>'event_id') AS events,
       bool_and(j->'body'->>'event_name' = 'Received Refund') AS only_refunds
  FROM received WHERE receiver = 'refunds';
SELECT converge.replay(:d_refunds, now() + interval '1 hour', now() + interval '2 hours') AS nothing_released_then;
SELECT converge.replay(:d_refunds, now(), now() - interval '1 hour');

-- Pausing keeps deliveries queued; resuming sends them.
SELECT converge.pause_destination(:d_b);
\! $MOCKCTL add-order dst-b > /dev/null
CALL converge.sync(:b);
CALL deliver_until_settled();
SELECT name, status, pending FROM converge.delivery_status WHERE destination_id = :d_b;
SELECT converge.resume_destination(:d_b);
CALL deliver_until_settled();
SELECT name, status, pending, delivered FROM converge.delivery_status WHERE destination_id = :d_b;

-- Secrets stay with the owner.
CREATE ROLE converge_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA converge TO converge_reader;
SET ROLE converge_reader;
SELECT count(*) AS secrets_visible FROM converge.destination_secrets;
SELECT signed FROM converge.destinations WHERE id = :d_all;
SELECT converge.create_destination('Sneaky', 'https://x.example.com/');
RESET ROLE;
REVOKE ALL ON ALL TABLES IN SCHEMA converge FROM converge_reader;
DROP ROLE converge_reader;

-- A stored http:// URL is checked again at send time: with the setting off, nothing goes.
SET converge.allow_http_destinations = off;
\! $MOCKCTL add-order dst-b > /dev/null
CALL converge.sync(:b);
CALL converge.deliver();
SELECT name, pending, last_error FROM converge.delivery_status WHERE destination_id = :d_b;
SET converge.allow_http_destinations = on;
CALL deliver_until_settled();
SELECT name, pending, delivered FROM converge.delivery_status WHERE destination_id = :d_b;

-- deliver() commits as it goes: not inside a transaction block.
BEGIN;
CALL converge.deliver();
ROLLBACK;

-- Changing and dropping.
SELECT converge.alter_destination(:d_batched, batch_size => 10, event_names => '{Placed Order}');
SELECT name, batch_size, event_names FROM converge.destinations WHERE id = :d_batched;
SELECT converge.alter_destination(:d_batched, all_event_names => true, url => 'ftp://nope/');
SELECT converge.drop_destination(:d_late);
SELECT count(*) AS late_deliveries FROM converge.deliveries WHERE destination_id = :d_late;

-- (the next tests bring their own)
SELECT count(converge.drop_destination(id)) AS dropped FROM converge.destination_settings;
