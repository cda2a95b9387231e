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
