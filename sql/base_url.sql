-- converge.shopify_base_url: a superuser-only URL template; converge.store_url
-- builds Admin API URLs from it with a validated handle.
-- The library loads on first use; its setting then shows in pg_settings.
SELECT converge.store_handle('acme-eu');
SELECT boot_val AS default_template,
       reset_val ~ '^http://127\.0\.0\.1:[0-9]+/\{store\}$' AS configured_for_mock, context
  FROM pg_settings WHERE name = 'converge.shopify_base_url';
-- As the test cluster is configured, URLs point at the mock (its port varies).
SELECT converge.store_url('acme-eu', '/admin/oauth/access_token')
       ~ '^http://127\.0\.0\.1:[0-9]+/acme-eu/admin/oauth/access_token$' AS mock_url;

SET converge.shopify_base_url = 'https://{store}.myshopify.com';
SELECT converge.store_url('acme-eu') AS base,
       converge.store_url('ACME-EU.myshopify.com', '/admin/oauth/access_token') AS token,
       converge.store_url('acme-eu', 'admin/api/2026-10/graphql.json') AS graphql;

SET converge.shopify_base_url = 'http://127.0.0.1:9/shops/{store}/';
SELECT converge.store_url('acme-eu', '/admin/oauth/access_token');
SET converge.shopify_base_url = 'https://{store}.myshopify.com';

-- The handle is validated before any URL is built.
SELECT converge.store_url('evil.com/x', '/admin');
SELECT converge.store_url('acme-eu', NULL) IS NULL AS strict;

-- Bad templates are refused at SET time.
SET converge.shopify_base_url = 'ftp://{store}.example';
SET converge.shopify_base_url = 'https://acme.myshopify.com';
SET converge.shopify_base_url = 'https://{store}.myshopify.com/?x=1';
SET converge.shopify_base_url = 'https://{store}.my shopify.com';
SHOW converge.shopify_base_url;

-- Ordinary roles can read it but never change it.
CREATE ROLE converge_regress_user;
SET ROLE converge_regress_user;
SHOW converge.shopify_base_url;
SET converge.shopify_base_url = 'https://{store}.attacker.example';
SELECT set_config('converge.shopify_base_url', 'https://{store}.attacker.example', false);
ALTER ROLE converge_regress_user SET converge.shopify_base_url = 'https://{store}.attacker.example';
RESET ROLE;
DROP ROLE converge_regress_user;
RESET converge.shopify_base_url;
