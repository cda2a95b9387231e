-- Configuration problems put the source in a visible error state, with a
-- hint that says what to fix, and are not retried in a tight loop.
\! $MOCKCTL create-store cfg-secret --orders 10 -q
\! $MOCKCTL create-store cfg-uninstalled --orders 10 --not-installed -q
\! $MOCKCTL create-store cfg-scope --orders 400 --scopes read_orders -q

SELECT converge.create_source('Wrong secret', 'cfg-secret', 'cid-cfg-secret', 'not-the-secret') AS bad_secret \gset
SELECT converge.create_source('Unknown store', 'cfg-nowhere', 'cid-x', 'secret-x') AS unknown \gset
SELECT converge.create_source('Not installed', 'cfg-uninstalled', 'cid-cfg-uninstalled', 'secret-cfg-uninstalled') AS uninstalled \gset
SELECT converge.create_source('No read_all_orders', 'cfg-scope', 'cid-cfg-scope', 'secret-cfg-scope') AS scope \gset

\set VERBOSITY terse
CALL converge.sync(:bad_secret);
CALL converge.sync(:unknown);
CALL converge.sync(:uninstalled);
\set VERBOSITY default

SELECT name, phase, last_error, last_error_detail, last_error_hint, error_active,
       next_attempt_at BETWEEN now() + interval '14 minutes' AND now() + interval '16 minutes' AS retried_in_15_minutes,
       orders
  FROM converge.sync_status WHERE source_id IN (:bad_secret, :unknown, :uninstalled) ORDER BY source_id;

-- No tight loop: sync_all skips them until they are due, and one pass made one token request.
\! $MOCKCTL reset-counters cfg-secret
CALL converge.sync_all();
\! $MOCKCTL counters cfg-secret token
SELECT count(*) AS runs FROM converge.sync_runs WHERE source_id = :bad_secret;

-- Fixing the credentials clears the state and makes the source due at once.
SELECT converge.set_credentials(:bad_secret, 'cid-cfg-secret', 'secret-cfg-secret');
SELECT phase, error_active, next_attempt_at <= now() AS due FROM converge.sync_status WHERE source_id = :bad_secret;
CALL sync_until_idle(:bad_secret);
SELECT phase, error_active, orders FROM converge.sync_status WHERE source_id = :bad_secret;

-- A token without read_all_orders: the sync works, with a visible warning,
-- and only the orders of the last 60 days are there.
\! $MOCKCTL add-order cfg-scope > /dev/null
CALL sync_until_idle(:scope);
SELECT phase, error_active, scope_warning FROM converge.sync_status WHERE source_id = :scope;
SELECT token_scopes FROM converge.sources WHERE id = :scope;
SELECT count(*) > 0 AS some_orders, bool_and(created_at >= now() - interval '60 days') AS only_recent_orders,
       count(*) < 401 AS missing_older_orders
  FROM converge.orders WHERE source_id = :scope;

-- Once the scope is granted, resync_source() reads the whole history.
\! $MOCKCTL settings cfg-scope scopes=read_orders,read_all_orders > /dev/null
SELECT converge.set_credentials(:scope, 'cid-cfg-scope', 'secret-cfg-scope');
SELECT converge.resync_source(:scope);
CALL sync_until_idle(:scope);
SELECT phase, scope_warning, orders FROM converge.sync_status WHERE source_id = :scope;

-- An expired token is renewed ahead of its expiry; a revoked one after a 401.
\! $MOCKCTL expire-tokens cfg-scope > /dev/null
\! $MOCKCTL add-order cfg-scope > /dev/null
\! $MOCKCTL reset-counters cfg-scope
CALL converge.sync(:scope);
\! $MOCKCTL counters cfg-scope token
SELECT error_active, orders FROM converge.sync_status WHERE source_id = :scope;
UPDATE converge.source_secrets SET token_expires_at = now() + interval '1 second', token_obtained_at = now() - interval '1 day'
 WHERE source_id = :scope;
\! $MOCKCTL reset-counters cfg-scope
CALL converge.sync(:scope);
\! $MOCKCTL counters cfg-scope token
SELECT has_token, token_expires_at > now() + interval '1 hour' AS renewed FROM converge.sources WHERE id = :scope;

-- Clean up: these sources stay out of the scheduler test.
SELECT converge.drop_source(id, drop_data => true) FROM converge.sources WHERE id IN (:unknown, :uninstalled);
