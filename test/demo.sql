-- The demo the README's first command runs (see test/demo).
\pset footer off
CREATE EXTENSION pg_cron;
CREATE EXTENSION converge;

\echo
\echo '== Store handles: what users paste, and what is refused before any URL is built'
SELECT s AS "store as given", converge.store_handle(s) AS handle, converge.store_url(s, '/admin/api/2026-10/graphql.json') AS "Admin API URL (the mock)"
  FROM (VALUES ('acme-eu'), ('ACME-EU.myshopify.com'), ('https://acme-eu.myshopify.com/')) t(s);
\set ON_ERROR_STOP 0
\set VERBOSITY default
SELECT converge.store_handle('https://acme-eu.myshopify.com.evil.example:8443/admin');
\set ON_ERROR_STOP 1

\echo
\echo '== Sales channels: the built-in mapping of Shopify sourceName to Converge types'
SELECT shopify_source_name AS "Shopify sourceName", converge_channel AS "Converge channel", description
  FROM converge.default_channel_mappings();

\echo '== An override: another app id to marketplace (globally), and pos to offline for source 2 only'
INSERT INTO converge.channel_mappings (source_id, shopify_source_name, converge_channel)
VALUES (NULL, '5551234', 'marketplace'), (2, 'pos', 'offline');
SELECT s AS "sourceName", converge.sales_channel(s) AS "any source", converge.sales_channel(2, s) AS "source 2"
  FROM (VALUES ('5551234'), ('pos'), ('3890849'), ('some_unknown_app'), (NULL)) t(s);

\echo '== A mapping to something that is not a Converge type is refused'
\set ON_ERROR_STOP 0
INSERT INTO converge.channel_mappings (shopify_source_name, converge_channel) VALUES ('amazon', 'amazon_store');
\set ON_ERROR_STOP 1

\echo
\echo '== Webhook signatures (X-Shopify-Hmac-Sha256 over the raw body)'
CREATE EXTENSION pgcrypto;
WITH w(body) AS (SELECT convert_to('{"id":9007199254740993,"source_name":"web","total_price":"199.00"}', 'UTF8'))
SELECT label, converge.verify_webhook_hmac(body, header, 'shpss_demo_secret') AS valid
  FROM w, LATERAL (VALUES
    ('signed with the app secret', encode(hmac(body, 'shpss_demo_secret', 'sha256'), 'base64')),
    ('signed with another secret', encode(hmac(body, 'shpss_other', 'sha256'), 'base64')),
    ('not base64', 'definitely not a signature'),
    ('missing', NULL)) h(label, header);

\echo '== OAuth install query HMAC (the vector from Shopify''s JS SDK, timestamp 1700000000)'
SELECT converge.verify_oauth_hmac(
  'code=some%20code%20goes%20here&shop=the%20shop%20URL&state=some%20nonce%20passed%20from%20auth&timestamp=1700000000'
  '&hmac=10207991f5c2c65c114b70a3c3544ce1d00a236ea4ab034793de0d6407be9165', 'my super secret key') AS "valid",
       converge.verify_oauth_hmac(
  'code=some%20code%20goes%20here&shop=the%20shop%20URL&state=some%20nonce%20passed%20from%20auth&timestamp=1700000000'
  '&hmac=10207991f5c2c65c114b70a3c3544ce1d00a236ea4ab034793de0d6407be9165', 'my super secret key', '90 seconds') AS "valid and fresh (90 s)";

\echo
\echo '== A source: the mock store acme-eu (500 orders), connected with its Client ID and Secret,'
\echo '   upsell delay on, POS orders and orders tagged Exclude kept out of events'
SET converge.bulk_poll_interval = '100ms';
SELECT converge.create_source('Acme EU Store Backend', 'https://acme-eu.myshopify.com/', 'cid-acme-eu', 'secret-acme-eu',
                              upsell_delay => true, exclude_channels => '{pos}', exclude_tags => '{Exclude}') AS src \gset
SELECT id, name, store, api_version, upsell_delay, upsell_delay_length, connected_at IS NOT NULL AS connected, has_token
  FROM converge.sources;
SELECT kind, value FROM converge.exclusion_rules ORDER BY id;
\echo '== A destination, right away (history is never forwarded): a local receiver that checks the signature'
SET converge.allow_http_destinations = on;   -- http:// to this machine, for the demo; real ones are https://
\! $MOCKCTL receiver demo-hook --secret 'whsec_demo_0123456789abcdef' > /dev/null
\getenv mock MOCK_SHOPIFY_URL
SELECT converge.create_destination('Local receiver', :'mock' || '/_receiver/demo-hook', 'whsec_demo_0123456789abcdef') AS dest \gset
SELECT id, name, sources, event_names, batch_size, max_connections, signed FROM converge.destinations;

\echo '== CALL converge.sync(source): the historical sync (one bulk export, streamed into the tables)'
\timing on
CALL converge.sync(:src);
\timing off
SELECT phase, orders, refunds, backfill_objects_loaded AS objects, api_requests, throttled, retries, scope_warning
  FROM converge.sync_status;

\echo '== New activity in the store: web orders #1501 and #1502, a POS order #1503, an upsell on #1005,'
\echo '   a refund on #1008, a tag and a cancellation'
\! $MOCKCTL add-order acme-eu --items 1 --email 'first.time@example.com' > /dev/null
\! $MOCKCTL add-order acme-eu --source-name 3890849 --items 2 > /dev/null
\! $MOCKCTL add-order acme-eu --source-name pos --items 2 > /dev/null
\! $MOCKCTL upsell acme-eu '#1005' --items 1 > /dev/null
\! $MOCKCTL refund acme-eu '#1008' > /dev/null
\! $MOCKCTL tag acme-eu '#1010' --add Exclude
\! $MOCKCTL cancel acme-eu '#1012' > /dev/null
\echo '== The next pass reads only what changed (incremental, by updatedAt, with an overlap window)'
CALL converge.sync(:src);
SELECT id AS run, phase, outcome, orders_synced, refunds_synced, requests,
       round(extract(epoch FROM finished_at - started_at)::numeric, 2) AS seconds
  FROM converge.sync_runs ORDER BY id;

\echo '== #1501 is held by the upsell delay; the post-purchase upsell adds two items to it during the hold'
SELECT order_name, state, items_count, revenue, currency, release_at - occurred_at AS held_for
  FROM converge.placed_orders WHERE order_name = '#1501';
\! $MOCKCTL upsell acme-eu '#1501' --items 2 > /dev/null
CALL converge.sync(:src);
SELECT order_name, state, items_count, revenue, currency FROM converge.placed_orders WHERE order_name = '#1501';

\echo '== Orders with their sales channels'
SELECT order_name, source_name, sales_channel, tags, total_price, presentment_currency AS currency,
       total_price_shop, currency AS shop_currency,
       (SELECT count(*) FROM converge.line_items l WHERE l.source_id = o.source_id AND l.order_id = o.order_id) AS items,
       (SELECT count(*) FROM converge.refunds r WHERE r.source_id = o.source_id AND r.order_id = o.order_id) AS refunds,
       cancelled_at IS NOT NULL AS cancelled
  FROM converge.orders o
 WHERE order_name IN ('#1001', '#1002', '#1003', '#1004', '#1005', '#1008', '#1010', '#1012', '#1501')
 ORDER BY order_name;
SELECT sales_channel, count(*) AS orders, sum(total_price_shop) AS revenue_shop_currency
  FROM converge.orders GROUP BY 1 ORDER BY 2 DESC;

\echo
\echo '== Events: ten minutes later (the clock moved with as_of), the held events are released'
SELECT converge.release_due_events(now() + interval '11 minutes') AS released;
\echo '== How many events are historic (before connecting: never forwarded), held and ready'
SELECT event_name, state, events FROM converge.event_counts ORDER BY event_name, state;
\echo '== New Placed Order events (the upsell folded in) and a sample of historic ones'
(SELECT order_name, sales_channel, revenue, currency, revenue_shop, is_new_customer, items_count, coupon, state
   FROM converge.placed_orders WHERE state <> 'historic' ORDER BY occurred_at)
UNION ALL
(SELECT order_name, sales_channel, revenue, currency, revenue_shop, is_new_customer, items_count, coupon, state
   FROM converge.placed_orders WHERE state = 'historic' AND order_name IN ('#1001', '#1002', '#1004', '#1005'));
\echo '== Received Refund events (#1008 was refunded after connecting: ready)'
(SELECT order_name, sales_channel, refunded, currency, refunded_shop, items_count, state
   FROM converge.received_refunds WHERE state <> 'historic' ORDER BY occurred_at)
UNION ALL
(SELECT order_name, sales_channel, refunded, currency, refunded_shop, items_count, state
   FROM converge.received_refunds WHERE state = 'historic' ORDER BY occurred_at LIMIT 3);
\echo '== One released event as a destination will see it'
SELECT event_id, event_name, occurred_at, jsonb_pretty(properties) AS properties, aliases
  FROM converge.events WHERE state = 'ready' AND event_name = 'Placed Order' ORDER BY occurred_at LIMIT 1 \gx
\echo '== The exclusions that applied (no event for these orders, nor for their refunds)'
SELECT rule_kind, rule_value, count(*) AS orders, string_agg(order_name, ', ' ORDER BY order_name) FILTER (WHERE order_name > '#1500') AS "new among them"
  FROM converge.excluded_orders GROUP BY 1, 2 ORDER BY 1, 2;
\echo
\echo '== Forwarding: CALL converge.deliver() sends the ready events to the destination'
SELECT event_id, state FROM converge.deliveries ORDER BY queued_at;
CALL converge.deliver();
SELECT d.event_id, e.event_name, d.state, d.attempts, d.last_status FROM converge.deliveries d
  JOIN converge.events e USING (event_id) ORDER BY d.queued_at;
SELECT name, status, pending, retrying, delivered, dead, latency_p50, latency_p95 FROM converge.delivery_status;
\echo '== What the receiver got (Idempotency-Key, signature check, envelope)'
\! $MOCKCTL received demo-hook | python3 -c "import json, sys; [print(r['idempotency_key'], '| signature valid:', r['signature_valid'], '| fresh:', r['signature_fresh'], '|', ' '.join(r['keys'])) for r in map(json.loads, sys.stdin)]"

\echo '== What a new rule would exclude, before adding it: channel marketplace'
SELECT event_state, count(*) AS orders FROM converge.preview_exclusion(:src, 'channel', 'marketplace') GROUP BY 1;

\echo
\echo '== pg_cron keeps it running: converge.schedule()'
SELECT * FROM converge.schedule();
SELECT jobname, schedule, command FROM cron.job;
SELECT * FROM converge.sync_status \gx
