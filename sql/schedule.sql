-- pg_cron runs the sync: converge.schedule() creates the job, pg_cron runs
-- it successfully, converge.unschedule() removes it.  Where pg_cron is
-- absent, schedule() says how to run the sync by hand.
\! $MOCKCTL create-store cron-eu --orders 50 -q
SELECT converge.create_source('Cron EU', 'cron-eu', 'cid-cron-eu', 'secret-cron-eu') AS src \gset

SELECT * FROM converge.schedule();
SELECT jobname, schedule, command, database = current_database() AS here, active
  FROM cron.job WHERE jobname LIKE 'converge-%' ORDER BY jobname;
-- scheduling again updates the job rather than adding one
SELECT job_name FROM converge.schedule('* * * * *');
SELECT count(*) AS jobs FROM cron.job WHERE jobname LIKE 'converge-%';

-- pg_cron starts jobs on the minute: wait for the first run.
SELECT wait_until($$SELECT EXISTS (SELECT 1 FROM cron.job_run_details d JOIN cron.job j USING (jobid)
                                    WHERE j.jobname = 'converge-sync' AND d.status IN ('succeeded', 'failed'))$$, 100) AS ran;
SELECT d.status, d.return_message FROM cron.job_run_details d JOIN cron.job j USING (jobid)
 WHERE j.jobname = 'converge-sync' ORDER BY d.runid LIMIT 1;
SELECT wait_until(format('SELECT phase = ''incremental'' FROM converge.sync_status WHERE source_id = %s', :src), 30)
       AS synced_by_pg_cron;
SELECT orders FROM converge.sync_status WHERE source_id = :src;
-- the release job runs every minute too
SELECT wait_until($$SELECT EXISTS (SELECT 1 FROM cron.job_run_details d JOIN cron.job j USING (jobid)
                                    WHERE j.jobname = 'converge-release' AND d.status IN ('succeeded', 'failed'))$$, 100) AS release_ran;
SELECT d.status, d.return_message FROM cron.job_run_details d JOIN cron.job j USING (jobid)
 WHERE j.jobname = 'converge-release' ORDER BY d.runid LIMIT 1;

SELECT converge.unschedule() AS removed;
SELECT count(*) AS jobs FROM cron.job WHERE jobname LIKE 'converge-%';

-- Without pg_cron.
CREATE DATABASE converge_nocron;
\c converge_nocron
CREATE EXTENSION converge;
\set VERBOSITY default
SELECT * FROM converge.schedule();
SELECT converge.unschedule() AS removed;
\c contrib_regression
DROP DATABASE converge_nocron;
