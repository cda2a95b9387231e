-- A backend killed in the middle of a delivery run loses nothing: the
-- deliveries it had leased (the lease is committed before anything is sent)
-- come back when the lease expires, and are sent: at least once, never lost.
\getenv mock MOCK_SHOPIFY_URL
SET converge.allow_http_destinations = on;
\! $MOCKCTL create-store crash-dl --orders 10 --seed 41 -q
SELECT converge.create_source('Crash delivery', 'crash-dl', 'cid-crash-dl', 'secret-crash-dl') AS src \gset
CALL sync_until_idle(:src);
\! $MOCKCTL receiver slow > /dev/null
SELECT converge.create_destination('Slow', :'mock' || '/_receiver/slow', max_connections => 4) AS d \gset
\! $MOCKCTL receiver-fault slow hang --delay 3 --count 4
\! for i in $(seq 1 20); do $MOCKCTL add-order crash-dl > /dev/null; done
CALL converge.sync(:src);
SELECT count(*) AS queued FROM converge.deliveries WHERE destination_id = :d AND state = 'pending';

-- A run in another session (its leases last: time limit 1 s + 2 x timeout 2 s + 5 s);
-- killed while four requests hang.
\! PGOPTIONS='-c converge.allow_http_destinations=on -c converge.delivery_time_limit=1s -c converge.delivery_timeout=2s' psql -X -q -d contrib_regression -c 'CALL converge.deliver()' > /dev/null 2>&1 &
SELECT wait_until($$SELECT EXISTS (SELECT 1 FROM converge.deliveries WHERE leased_until IS NOT NULL)$$, 30) AS leased;
SELECT pg_sleep(0.5);
SELECT count(pg_terminate_backend(pid)) AS killed FROM pg_stat_activity
 WHERE query LIKE 'CALL converge.deliver()%' AND pid <> pg_backend_pid();
SELECT wait_until($$SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE query LIKE 'CALL converge.deliver()%'
                                       AND pid <> pg_backend_pid())$$, 30) AS gone;
SELECT count(*) FILTER (WHERE leased_until > now()) > 0 AS left_leased, count(*) FILTER (WHERE state <> 'delivered') > 0 AS undelivered
  FROM converge.deliveries WHERE destination_id = :d;

-- A run now leaves the leased ones alone; once the leases expire, all is delivered.
CALL converge.deliver();
SELECT count(*) FILTER (WHERE leased_until > now() AND state <> 'delivered') > 0 AS still_leased
  FROM converge.deliveries WHERE destination_id = :d;
SELECT wait_until($$SELECT NOT EXISTS (SELECT 1 FROM converge.deliveries WHERE leased_until > clock_timestamp())$$, 30) AS leases_expired;
CALL deliver_until_settled();
SELECT count(*) AS deliveries, count(*) FILTER (WHERE state = 'delivered') AS delivered
  FROM converge.deliveries WHERE destination_id = :d;
\copy received_in (j) FROM PROGRAM '$MOCKCTL received slow --clear' WITH (FORMAT csv, QUOTE E'\x01', DELIMITER E'\x02')
-- (a hung request that outlived the killed run's wait still got its late 200)
SELECT count(DISTINCT j->'body'->>'event_id') FILTER (WHERE j->>'answer' IN ('200', 'hang')) AS events_received_and_answered,
       count(*) >= 20 AS at_least_once
  FROM received_in;
TRUNCATE received_in;
SELECT count(converge.drop_destination(id)) AS dropped FROM converge.destination_settings;
