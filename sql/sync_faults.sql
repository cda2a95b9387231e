-- Faults: every failure the mock can inject, during the backfill and during
-- incremental pages.  Each sync ends complete and exact, and the retries are
-- counted in converge.sync_status.
SET converge.request_timeout = '1s';      -- the injected timeout answers after 3 s

-- One store per fault, all with the same seed (so the same orders): the
-- fault is queued before the first sync, so it hits the backfill.
\! for f in http_500 http_502 http_503 http_429 http_401 throttled timeout malformed_json truncated connection_reset bulk_failed bulk_expired bulk_canceled bulk_in_progress token_503 token_429 download_truncated download_503 download_reset; do $MOCKCTL create-store "f-$(echo $f | tr _ -)" --orders 40 --seed 3 -q; done
\! for f in http_500 http_502 http_503 http_401 malformed_json truncated bulk_failed bulk_expired bulk_canceled bulk_in_progress; do $MOCKCTL fault "f-$(echo $f | tr _ -)" $f > /dev/null; done
\! $MOCKCTL fault f-http-429 http_429 --retry-after 0.3 > /dev/null
\! $MOCKCTL fault f-throttled throttled --count 2 > /dev/null
\! $MOCKCTL fault f-timeout timeout --delay 3 > /dev/null
\! $MOCKCTL fault f-token-503 http_503 --endpoint token --count 2 > /dev/null
\! $MOCKCTL fault f-token-429 http_429 --endpoint token --retry-after 0.2 > /dev/null
\! $MOCKCTL fault f-download-truncated truncated --endpoint bulk_download > /dev/null
\! $MOCKCTL fault f-download-503 http_503 --endpoint bulk_download --count 2 > /dev/null
-- libcurl itself retries once when a reused connection is reset: two resets reach converge
\! $MOCKCTL fault f-connection-reset connection_reset --count 2 > /dev/null
\! $MOCKCTL fault f-download-reset connection_reset --endpoint bulk_download --count 2 > /dev/null

CREATE TEMP TABLE fault_sources AS
SELECT f AS fault, converge.create_source('Fault ' || f, 'f-' || replace(f, '_', '-'),
                                          'cid-f-' || replace(f, '_', '-'), 'secret-f-' || replace(f, '_', '-')) AS src
  FROM unnest(ARRAY['http_500', 'http_502', 'http_503', 'http_429', 'http_401', 'throttled', 'timeout',
                    'malformed_json', 'truncated', 'connection_reset', 'bulk_failed', 'bulk_expired',
                    'bulk_canceled', 'bulk_in_progress', 'token_503', 'token_429', 'download_truncated',
                    'download_503', 'download_reset']) AS f;

DO $$
DECLARE s record;
BEGIN
  FOR s IN SELECT src FROM fault_sources ORDER BY src LOOP
    CALL sync_until_idle(s.src);
  END LOOP;
END $$;

-- Every store has the same orders: compare each mirror with one export.
CREATE TEMP TABLE exp (j jsonb);
\copy exp (j) FROM PROGRAM '$MOCKCTL export f-http-500' WITH (FORMAT csv, QUOTE E'\x01', DELIMITER E'\x02')
SELECT f.fault, st.phase,
       (SELECT sum(mismatched) + sum(abs(expected - stored)) FROM mirror_diff(f.src)) AS differences,
       st.retries > 0 OR st.throttled > 0 OR r.restarts > 0 AS retried,
       st.throttled > 0 AS counted_throttled,
       e.recorded AS errors_recorded,
       st.error_active
  FROM fault_sources f
  JOIN converge.sync_status st ON st.source_id = f.src
  CROSS JOIN LATERAL (SELECT count(*) FILTER (WHERE kind = 'bulk_operation') AS restarts,
                             string_agg(DISTINCT kind, ',' ORDER BY kind) AS recorded
                        FROM converge.sync_errors x WHERE x.source_id = f.src) AS r
  CROSS JOIN LATERAL (SELECT r.recorded) AS e
 ORDER BY f.src;

-- The malformed and truncated answers are kept for inspection.
SELECT f.fault, x.kind, x.message, x.payload IS NOT NULL AS has_payload
  FROM fault_sources f JOIN converge.sync_errors x ON x.source_id = f.src
 WHERE f.fault IN ('malformed_json', 'truncated')
 ORDER BY f.src, x.id;

-- Incremental: eleven failures in a row on one store's page requests.
\! $MOCKCTL add-order f-http-500 --items 3 > /dev/null
\! $MOCKCTL refund f-http-500 '#1003' > /dev/null
\! for f in http_500 http_502 http_503 throttled malformed_json truncated http_401; do $MOCKCTL fault f-http-500 $f > /dev/null; done
\! $MOCKCTL fault f-http-500 connection_reset --count 2 > /dev/null
\! $MOCKCTL fault f-http-500 http_429 --retry-after 0.2 > /dev/null
\! $MOCKCTL fault f-http-500 timeout --delay 3 > /dev/null
SELECT src AS inc FROM fault_sources WHERE fault = 'http_500' \gset
SELECT retries AS retries_before, throttled AS throttled_before FROM converge.sync_status WHERE source_id = :inc \gset
SET converge.max_retries = 12;
CALL converge.sync(:inc);
SELECT outcome, retries + throttled >= 10 AS retried_each, throttled >= 2 AS throttles_counted
  FROM converge.sync_runs WHERE source_id = :inc ORDER BY id DESC LIMIT 1;
SELECT retries - :retries_before >= 8 AS status_counts_retries, error_active FROM converge.sync_status WHERE source_id = :inc;
TRUNCATE exp;
\copy exp (j) FROM PROGRAM '$MOCKCTL export f-http-500' WITH (FORMAT csv, QUOTE E'\x01', DELIMITER E'\x02')
SELECT * FROM mirror_diff(:inc);
\! $MOCKCTL faults f-http-500

-- More failures in a row than converge.max_retries: the pass gives up,
-- records a transient error and backs off; the next pass succeeds.
SET converge.max_retries = 2;
\! $MOCKCTL add-order f-http-500 --items 1 > /dev/null
\! $MOCKCTL fault f-http-500 http_503 --count 3 > /dev/null
CALL converge.sync(:inc);
SELECT phase, error_active, last_error, last_error_detail ~ '^Gave up after 3 attempts' AS gave_up,
       next_attempt_at > now() AS backing_off
  FROM converge.sync_status WHERE source_id = :inc;
CALL converge.sync(:inc);
SELECT phase, error_active, orders FROM converge.sync_status WHERE source_id = :inc;
RESET converge.max_retries;

-- Throttling: with the bucket drained by someone else, the first request is
-- THROTTLED; from then on requests are paced and nothing else is.
\! $MOCKCTL add-order f-http-500 --items 1 > /dev/null
\! $MOCKCTL bucket f-http-500 --available 0 > /dev/null
SELECT throttled AS throttled_before FROM converge.sync_status WHERE source_id = :inc \gset
CALL converge.sync(:inc);
SELECT throttled - :throttled_before AS throttled_answers, error_active FROM converge.sync_status WHERE source_id = :inc;
