-- Sources: creating, validating, changing and dropping them; secrets stay
-- unreadable to ordinary roles.  Also defines the helpers the sync tests use.

-- Helpers (test only): sync until the source is idle and incremental, and
-- compare the mirror with the mock's canonical export loaded into temp table exp.
CREATE PROCEDURE public.sync_until_idle(src bigint, max_passes int DEFAULT 40)
LANGUAGE plpgsql AS $$
BEGIN
  FOR i IN 1..max_passes LOOP
    CALL converge.sync(src);
    COMMIT;
    EXIT WHEN EXISTS (SELECT 1 FROM converge.sync_status s WHERE s.source_id = src AND s.phase = 'incremental')
          AND (SELECT outcome FROM converge.sync_runs r WHERE r.source_id = src ORDER BY id DESC LIMIT 1) = 'completed';
  END LOOP;
END $$;

-- Wait until a query returns true (other sessions' commits become visible).
CREATE FUNCTION public.wait_until(condition text, seconds float8 DEFAULT 60)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE ok boolean;
BEGIN
  FOR i IN 1..(seconds * 20)::int LOOP
    PERFORM pg_stat_clear_snapshot();   -- pg_stat_activity is otherwise frozen for the transaction
    EXECUTE condition INTO ok;
    IF ok THEN RETURN true; END IF;
    PERFORM pg_sleep(0.05);
  END LOOP;
  RETURN false;
END $$;

CREATE FUNCTION public.gid(text) RETURNS bigint LANGUAGE sql IMMUTABLE
AS $$ SELECT nullif(regexp_replace($1, '^.*/', ''), '')::bigint $$;

CREATE FUNCTION public.money(j jsonb, set text, side text) RETURNS numeric LANGUAGE sql IMMUTABLE
AS $$ SELECT (j -> set -> side ->> 'amount')::numeric $$;

CREATE FUNCTION public.mirror_diff(src bigint)
RETURNS TABLE (what text, expected bigint, stored bigint, mismatched bigint)
LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY
  WITH e AS (
    SELECT gid(j->>'id') AS order_id, j->>'name' AS order_name, j->>'sourceName' AS source_name,
           converge.sales_channel(src, j->>'sourceName') AS sales_channel,
           ARRAY(SELECT jsonb_array_elements_text(j->'tags')) AS tags, (j->>'test')::boolean AS test,
           (j->>'createdAt')::timestamptz AS created_at, (j->>'processedAt')::timestamptz AS processed_at,
           (j->>'updatedAt')::timestamptz AS updated_at, (j->>'cancelledAt')::timestamptz AS cancelled_at,
           j->>'email' AS email, j->>'currencyCode' AS currency, j->>'presentmentCurrencyCode' AS presentment_currency,
           money(j, 'totalPriceSet', 'presentmentMoney') AS total_price, money(j, 'totalPriceSet', 'shopMoney') AS total_price_shop,
           money(j, 'subtotalPriceSet', 'presentmentMoney') AS subtotal_price, money(j, 'subtotalPriceSet', 'shopMoney') AS subtotal_price_shop,
           money(j, 'totalTaxSet', 'presentmentMoney') AS total_tax, money(j, 'totalTaxSet', 'shopMoney') AS total_tax_shop,
           money(j, 'totalShippingPriceSet', 'presentmentMoney') AS total_shipping, money(j, 'totalShippingPriceSet', 'shopMoney') AS total_shipping_shop,
           money(j, 'totalDiscountsSet', 'presentmentMoney') AS total_discounts, money(j, 'totalDiscountsSet', 'shopMoney') AS total_discounts_shop,
           money(j, 'totalRefundedSet', 'presentmentMoney') AS total_refunded, money(j, 'totalRefundedSet', 'shopMoney') AS total_refunded_shop,
           ARRAY(SELECT jsonb_array_elements_text(j->'discountCodes')) AS discount_codes,
           gid(j#>>'{customer,id}') AS customer_id, j#>>'{customer,email}' AS customer_email,
           j#>>'{billingAddress,countryCodeV2}' AS billing_country_code, j#>>'{shippingAddress,zip}' AS shipping_zip
      FROM exp),
  o AS (
    SELECT order_id, order_name, source_name, sales_channel, tags, test, created_at, processed_at, updated_at,
           cancelled_at, email, currency, presentment_currency, total_price, total_price_shop, subtotal_price,
           subtotal_price_shop, total_tax, total_tax_shop, total_shipping, total_shipping_shop, total_discounts,
           total_discounts_shop, total_refunded, total_refunded_shop, discount_codes, customer_id, customer_email,
           billing_country_code, shipping_zip
      FROM converge.orders WHERE source_id = src)
  SELECT 'orders', (SELECT count(*) FROM e), (SELECT count(*) FROM o),
         (SELECT count(*) FROM ((SELECT * FROM e EXCEPT ALL SELECT * FROM o) UNION ALL (SELECT * FROM o EXCEPT ALL SELECT * FROM e)) d);

  RETURN QUERY
  WITH e AS (
    SELECT gid(li->>'id') AS line_item_id, gid(x.j->>'id') AS order_id, (n - 1)::int AS position,
           gid(li#>>'{product,id}') AS product_id, gid(li#>>'{variant,id}') AS variant_id, li->>'sku' AS sku,
           li->>'name' AS name, li->>'variantTitle' AS variant_title, li->>'vendor' AS vendor,
           (li->>'quantity')::int AS quantity, (li->>'currentQuantity')::int AS current_quantity,
           money(li, 'originalUnitPriceSet', 'presentmentMoney') AS price, money(li, 'originalUnitPriceSet', 'shopMoney') AS price_shop
      FROM exp x, jsonb_array_elements(x.j->'lineItems') WITH ORDINALITY AS t(li, n)),
  o AS (
    SELECT line_item_id, order_id, position, product_id, variant_id, sku, name, variant_title, vendor, quantity,
           current_quantity, price, price_shop
      FROM converge.line_items WHERE source_id = src)
  SELECT 'line items', (SELECT count(*) FROM e), (SELECT count(*) FROM o),
         (SELECT count(*) FROM ((SELECT * FROM e EXCEPT ALL SELECT * FROM o) UNION ALL (SELECT * FROM o EXCEPT ALL SELECT * FROM e)) d);

  RETURN QUERY
  WITH e AS (
    SELECT gid(r->>'id') AS refund_id, gid(x.j->>'id') AS order_id, (r->>'createdAt')::timestamptz AS created_at,
           r->>'note' AS note, money(r, 'totalRefundedSet', 'presentmentMoney') AS total_refunded,
           money(r, 'totalRefundedSet', 'shopMoney') AS total_refunded_shop, r#>>'{totalRefundedSet,presentmentMoney,currencyCode}' AS currency
      FROM exp x, jsonb_array_elements(x.j->'refunds') r),
  o AS (SELECT refund_id, order_id, created_at, note, total_refunded, total_refunded_shop, currency
          FROM converge.refunds WHERE source_id = src)
  SELECT 'refunds', (SELECT count(*) FROM e), (SELECT count(*) FROM o),
         (SELECT count(*) FROM ((SELECT * FROM e EXCEPT ALL SELECT * FROM o) UNION ALL (SELECT * FROM o EXCEPT ALL SELECT * FROM e)) d);

  RETURN QUERY
  WITH e AS (
    SELECT gid(rl->>'id') AS refund_line_item_id, gid(r->>'id') AS refund_id, gid(x.j->>'id') AS order_id,
           gid(rl#>>'{lineItem,id}') AS line_item_id, (rl->>'quantity')::int AS quantity, rl->>'restockType' AS restock_type,
           money(rl, 'subtotalSet', 'presentmentMoney') AS subtotal, money(rl, 'subtotalSet', 'shopMoney') AS subtotal_shop
      FROM exp x, jsonb_array_elements(x.j->'refunds') r, jsonb_array_elements(r->'refundLineItems') rl),
  o AS (SELECT refund_line_item_id, refund_id, order_id, line_item_id, quantity, restock_type, subtotal, subtotal_shop
          FROM converge.refund_line_items WHERE source_id = src)
  SELECT 'refund line items', (SELECT count(*) FROM e), (SELECT count(*) FROM o),
         (SELECT count(*) FROM ((SELECT * FROM e EXCEPT ALL SELECT * FROM o) UNION ALL (SELECT * FROM o EXCEPT ALL SELECT * FROM e)) d);
END $$;


-- Fast waits for the rest of the suite.
ALTER DATABASE contrib_regression SET converge.bulk_poll_interval = '50ms';
ALTER DATABASE contrib_regression SET converge.retry_base_delay = '20ms';
ALTER DATABASE contrib_regression SET converge.retry_max_delay = '200ms';
\c

\! $MOCKCTL create-store src-one --orders 20 -q
\! $MOCKCTL create-store src-two --orders 20 -q

-- Creating: the store is validated and normalized, connected_at recorded, the
-- historical sync queued.
SELECT converge.create_source('Acme One', 'https://SRC-ONE.myshopify.com/', 'cid-src-one', 'secret-src-one') AS one \gset
SELECT name, store, client_id, api_version, upsell_delay, paused, connected_at <= now() AS connected,
       has_token, token_scopes, token_expires_at
  FROM converge.sources WHERE id = :one;
SELECT phase, backfill_step, next_attempt_at <= now() AS due FROM converge.sync_status WHERE source_id = :one;

-- Refusals.
\set VERBOSITY default
\set SHOW_CONTEXT never
SELECT converge.create_source('Elsewhere', 'evil.example.com', 'c', 's');
SELECT converge.create_source('Acme One again', 'src-one', 'c', 's');
SELECT converge.create_source('Acme One', 'src-two', 'c', 's');
SELECT converge.create_source('  ', 'src-two', 'c', 's');
SELECT converge.create_source('Two', 'src-two', '', 's');
SELECT converge.create_source('Two', 'src-two', 'c', NULL);
SELECT converge.create_source('Two', 'src-two', 'c', 's', api_version => '2026-13');
SELECT converge.rename_source(999, 'x');
\set VERBOSITY terse

-- The views never show secrets; the secrets table is closed to ordinary
-- roles, even if someone grants them SELECT on every table of the schema.
SELECT count(*) AS secret_columns_in_views FROM information_schema.columns
 WHERE table_schema = 'converge' AND table_name IN ('sources', 'sync_status')
   AND column_name IN ('client_secret', 'access_token');
CREATE ROLE converge_analyst;
GRANT SELECT ON ALL TABLES IN SCHEMA converge TO converge_analyst;
SET ROLE converge_analyst;
SELECT count(*) AS secrets_visible FROM converge.source_secrets;
SELECT count(*) AS sources_visible FROM converge.sources;
SELECT converge.create_source('Sneaky', 'src-two', 'c', 's');
CALL converge.sync(:one);
RESET ROLE;
REVOKE ALL ON ALL TABLES IN SCHEMA converge FROM converge_analyst;
DROP ROLE converge_analyst;

-- Changing a source.
SELECT converge.rename_source(:one, 'Acme One Store Backend');
SELECT converge.alter_source(:one, upsell_delay => true);
SELECT converge.set_credentials(:one, 'cid-src-one', 'secret-src-one');
SELECT name, upsell_delay FROM converge.sources WHERE id = :one;

-- Pause and resume: a paused source is not synced.
SELECT converge.pause_source(:one);
SELECT phase FROM converge.sync_status WHERE source_id = :one;
CALL converge.sync(:one);
SELECT count(*) AS runs_while_paused FROM converge.sync_runs WHERE source_id = :one;
SELECT converge.resume_source(:one);
CALL sync_until_idle(:one);
SELECT phase, orders > 0 AS has_orders, error_active FROM converge.sync_status WHERE source_id = :one;

-- Dropping keeps the data unless asked; with drop_data everything goes.
SELECT converge.create_source('Acme Two', 'src-two', 'cid-src-two', 'secret-src-two') AS two \gset
CALL sync_until_idle(:two);
SELECT converge.drop_source(:one);
SELECT count(*) AS kept_orders FROM converge.orders WHERE source_id = :one;
SELECT converge.drop_source(:two, drop_data => true);
SELECT (SELECT count(*) FROM converge.orders WHERE source_id = :two) AS orders,
       (SELECT count(*) FROM converge.line_items WHERE source_id = :two) AS line_items,
       (SELECT count(*) FROM converge.sync_runs WHERE source_id = :two) AS runs,
       (SELECT count(*) FROM converge.source_secrets WHERE source_id = :two) AS secrets;
DELETE FROM converge.orders WHERE source_id = :one;
DELETE FROM converge.line_items WHERE source_id = :one;
DELETE FROM converge.refunds WHERE source_id = :one;
DELETE FROM converge.refund_line_items WHERE source_id = :one;
