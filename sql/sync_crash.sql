-- Crash safety: a backend killed in the middle of a backfill, and a pass
-- cancelled in the middle: the next pass completes, nothing duplicated or
-- missing.  Two passes on one source never both work.
\! $MOCKCTL create-store crash-eu --orders 20000 --seed 21 --big-order-every 0 -q
-- small batches (for the pass and its export loaders) so that the load is still running when it is killed
ALTER DATABASE contrib_regression SET converge.batch_size = 100;
SELECT converge.create_source('Crash EU', 'crash-eu', 'cid-crash-eu', 'secret-crash-eu') AS src \gset
\setenv CRASH_SRC :src

-- A pass in another session.
\! psql -X -q -d contrib_regression -c "CALL converge.sync($CRASH_SRC)" > /dev/null 2>&1 &
SELECT wait_until(format('SELECT backfill_objects_loaded > 0 FROM converge.sync_status WHERE source_id = %s', :src)) AS loading;

-- A second pass on the same source returns at once.
CALL converge.sync(:src);
-- the pass has a helper loading another part of the export
SELECT wait_until($$SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_type = 'converge export loader')$$, 10) AS loader_running;

-- Kill it mid-backfill, and the export loader it started.
SELECT count(*) FILTER (WHERE backend_type = 'converge export loader') AS loaders,
       bool_and(pg_terminate_backend(pid)) AS killed
  FROM pg_stat_activity
 WHERE (query LIKE 'CALL converge.sync(%' OR backend_type = 'converge export loader') AND pid <> pg_backend_pid();
SELECT wait_until($$SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity
                                        WHERE (query LIKE 'CALL converge.sync(%' OR backend_type = 'converge export loader')
                                          AND pid <> pg_backend_pid())$$) AS gone;
SELECT phase, backfill_objects_loaded > 0 AS partly_loaded, orders > 0 AND orders < 20000 AS partial_orders
  FROM converge.sync_status WHERE source_id = :src;

-- The next pass resumes from the committed offset and completes.
CALL sync_until_idle(:src);
CREATE TEMP TABLE exp (j jsonb);
\copy exp (j) FROM PROGRAM '$MOCKCTL export crash-eu' WITH (FORMAT csv, QUOTE E'\x01', DELIMITER E'\x02')
SELECT * FROM mirror_diff(:src);
\! $MOCKCTL counters crash-eu graphql_bulk_start
-- the killed pass is marked as such
SELECT outcome, finished_at IS NOT NULL AS closed FROM converge.sync_runs WHERE source_id = :src ORDER BY id LIMIT 1;

-- A cancelled pass (statement cancel, or a pg_cron job stopped) releases the
-- source and loses nothing either.
SELECT converge.resync_source(:src);
DELETE FROM converge.orders WHERE source_id = :src;
DELETE FROM converge.line_items WHERE source_id = :src;
DELETE FROM converge.refunds WHERE source_id = :src;
DELETE FROM converge.refund_line_items WHERE source_id = :src;
\! psql -X -q -d contrib_regression -c "CALL converge.sync($CRASH_SRC)" > /dev/null 2>&1 &
SELECT wait_until(format('SELECT backfill_objects_loaded > 0 FROM converge.sync_status WHERE source_id = %s', :src)) AS loading;
SELECT pg_cancel_backend(pid) AS cancelled FROM pg_stat_activity
 WHERE query LIKE 'CALL converge.sync(%' AND pid <> pg_backend_pid();
SELECT wait_until($$SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE query LIKE 'CALL converge.sync(%' AND state = 'active' AND pid <> pg_backend_pid())$$) AS stopped;
CALL sync_until_idle(:src);
SELECT * FROM mirror_diff(:src);
SELECT count(*) AS sync_errors FROM converge.sync_errors WHERE source_id = :src;
ALTER DATABASE contrib_regression RESET converge.batch_size;
