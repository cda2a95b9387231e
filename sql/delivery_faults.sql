-- Delivery faults: 500 then 200 (retried, delivered once recorded), 429 with
-- Retry-After, a hanging receiver (timeout, retried), 400 (dead at once, the
-- answer kept; replayed), a receiver down for a while (backoff, circuit
-- breaker, the other destinations unaffected, everything delivered after
-- recovery), and retries that outlive converge.delivery_max_age.
\getenv mock MOCK_SHOPIFY_URL
SET converge.allow_http_destinations = on;
-- retries wait 1-2 s; the test moves next_attempt_at instead of waiting
SET converge.delivery_retry_base = '2s';
SET converge.delivery_retry_max = '2s';
SET converge.delivery_timeout = '500ms';
SET converge.circuit_breaker_failures = 3;
SET converge.circuit_breaker_cooldown = '3s';
\! $MOCKCTL create-store flt-eu --orders 20 --seed 31 -q
SELECT converge.create_source('Faults EU', 'flt-eu', 'cid-flt-eu', 'secret-flt-eu') AS src \gset
CALL sync_until_idle(:src);
TRUNCATE received;

CREATE PROCEDURE public.retry_now()
LANGUAGE sql AS $$ UPDATE converge.deliveries SET next_attempt_at = now() WHERE state = 'retrying' $$;
\! $MOCKCTL receiver flaky > /dev/null
\! $MOCKCTL receiver healthy > /dev/null
SELECT converge.create_destination('Flaky', :'mock' || '/_receiver/flaky', max_connections => 2) AS flaky \gset
SELECT converge.create_destination('Healthy', :'mock' || '/_receiver/healthy') AS healthy \gset

-- 500, then 200: retried, and delivered once.
\! $MOCKCTL receiver-fault flaky http_500
\! $MOCKCTL add-order flt-eu > /dev/null
CALL converge.sync(:src);
CALL converge.deliver();
SELECT d.name, x.state, x.attempts, x.last_status, x.last_error, x.next_attempt_at > now() AS later
  FROM converge.deliveries x JOIN converge.destination_settings d ON d.id = x.destination_id ORDER BY d.id;
CALL retry_now();
CALL deliver_until_settled();
SELECT d.name, x.state, x.attempts, x.last_status FROM converge.deliveries x
  JOIN converge.destination_settings d ON d.id = x.destination_id ORDER BY d.id;
\copy received_in (j) FROM PROGRAM '$MOCKCTL received flaky --clear' WITH (FORMAT csv, QUOTE E'\x01', DELIMITER E'\x02')
SELECT j->>'answer' AS answer, j->>'idempotency_key' = x.event_id AS same_key
  FROM received_in, converge.deliveries x WHERE x.destination_id = :flaky ORDER BY j->>'at';
TRUNCATE received_in;
DELETE FROM converge.deliveries;

-- 429 with Retry-After: the next attempt waits that long (beyond the 2 s backoff cap).
\! $MOCKCTL receiver-fault flaky http_429 --retry-after 30
\! $MOCKCTL add-order flt-eu > /dev/null
CALL converge.sync(:src);
CALL converge.deliver();
SELECT x.state, x.last_status, round(extract(epoch FROM x.next_attempt_at - x.first_attempt_at)) AS waits_seconds
  FROM converge.deliveries x WHERE x.destination_id = :flaky;
CALL retry_now();
CALL deliver_until_settled();
SELECT x.state, x.attempts FROM converge.deliveries x WHERE x.destination_id = :flaky;
DELETE FROM converge.deliveries;

-- A receiver that hangs: the request times out and is tried again.
\! $MOCKCTL receiver-fault flaky hang --delay 3
\! $MOCKCTL add-order flt-eu > /dev/null
CALL converge.sync(:src);
CALL converge.deliver();
SELECT d.name, x.state, x.last_error LIKE 'timed out:%' AS timed_out FROM converge.deliveries x
  JOIN converge.destination_settings d ON d.id = x.destination_id ORDER BY d.id;
CALL retry_now();
CALL deliver_until_settled();
SELECT x.state, x.attempts FROM converge.deliveries x WHERE x.destination_id = :flaky;
DELETE FROM converge.deliveries;

-- 400: dead at once, with the answer; replay_dead queues it again.
\! $MOCKCTL receiver-fault flaky http_400
\! $MOCKCTL add-order flt-eu > /dev/null
CALL converge.sync(:src);
CALL deliver_until_settled();
SELECT x.state, x.attempts, x.last_status, x.last_error, x.last_response FROM converge.deliveries x
 WHERE x.destination_id = :flaky;
SELECT name, dead, last_error FROM converge.delivery_status WHERE destination_id = :flaky;
SELECT converge.replay_dead(:flaky) AS requeued;
CALL deliver_until_settled();
SELECT x.state, x.attempts, x.last_status FROM converge.deliveries x WHERE x.destination_id = :flaky;
DELETE FROM converge.deliveries;
\! $MOCKCTL received flaky --clear > /dev/null
\! $MOCKCTL received healthy --clear > /dev/null

-- Down for a while: connections reset.  After 3 failures in a row the
-- circuit opens; the healthy destination gets everything meanwhile.
\! $MOCKCTL receiver-down flaky on
\! for i in 1 2 3 4 5 6 7 8; do $MOCKCTL add-order flt-eu > /dev/null; done
CALL converge.sync(:src);
CALL converge.deliver();
-- 2 connections: the 3rd failure opens the circuit, a 4th request was under way; the rest is not sent
SELECT count(*) FILTER (WHERE attempts > 0) AS tried, count(*) FILTER (WHERE attempts = 0) AS not_sent
  FROM converge.deliveries WHERE destination_id = :flaky;
CALL converge.deliver();
SELECT name, status, pending + retrying AS waiting, delivered, consecutive_failures >= 3 AS failing
  FROM converge.delivery_status ORDER BY destination_id;
\! $MOCKCTL received flaky --clear > /dev/null
-- while the circuit is open nothing is sent to it
CALL converge.deliver();
\copy received_in (j) FROM PROGRAM '$MOCKCTL received flaky --clear' WITH (FORMAT csv, QUOTE E'\x01', DELIMITER E'\x02')
SELECT count(*) AS requests_while_open FROM received_in;
TRUNCATE received_in;
-- back up; after the cool-down everything is delivered
\! $MOCKCTL receiver-down flaky off
SELECT pg_sleep(3.2);
CALL retry_now();
CALL deliver_until_settled();
SELECT name, status, pending, retrying, delivered, dead, consecutive_failures FROM converge.delivery_status
 ORDER BY destination_id;
\copy received_in (j) FROM PROGRAM '$MOCKCTL received flaky --clear' WITH (FORMAT csv, QUOTE E'\x01', DELIMITER E'\x02')
SELECT count(DISTINCT j->'body'->>'event_id') AS distinct_events_received FROM received_in WHERE j->>'answer' = '200';
TRUNCATE received_in;
DELETE FROM converge.deliveries;

-- Retries end: a receiver failing for longer than converge.delivery_max_age.
SET converge.delivery_max_age = '1s';
SET converge.delivery_retry_base = '20ms';
SET converge.delivery_retry_max = '100ms';
SET converge.circuit_breaker_failures = 1000;
SELECT converge.pause_destination(:healthy);
\! $MOCKCTL receiver-fault flaky http_503 --count 1000
\! $MOCKCTL add-order flt-eu > /dev/null
CALL converge.sync(:src);
CALL deliver_until_settled(3);
SELECT x.state, x.attempts > 1 AS retried, x.last_status, x.last_error FROM converge.deliveries x
 WHERE x.destination_id = :flaky;

SELECT count(converge.drop_destination(id)) AS dropped FROM converge.destination_settings;
