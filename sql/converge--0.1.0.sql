-- converge 0.1.0: Shopify orders and refunds in PostgreSQL
\echo Use "CREATE EXTENSION converge" to load this file. \quit

-- Nothing in the schema is readable by ordinary roles unless granted below.
REVOKE ALL ON SCHEMA converge FROM PUBLIC;
GRANT USAGE ON SCHEMA converge TO PUBLIC;

------------------------------------------------------------------------------
-- Store handles
------------------------------------------------------------------------------

CREATE FUNCTION converge.store_handle(store text)
RETURNS text
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'converge_store_handle_sql';
COMMENT ON FUNCTION converge.store_handle(text) IS
  'The handle of a Shopify store given as acme-eu, acme-eu.myshopify.com or https://acme-eu.myshopify.com/; refuses anything else';

CREATE FUNCTION converge.store_url(store text, path text DEFAULT '')
RETURNS text
LANGUAGE C STABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'converge_store_url_sql';
COMMENT ON FUNCTION converge.store_url(text, text) IS
  'The Admin API URL of a store (and path), built from converge.shopify_base_url';

------------------------------------------------------------------------------
-- Sales channels
------------------------------------------------------------------------------

CREATE FUNCTION converge.sales_channel_types()
RETURNS SETOF text
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'converge_sales_channel_types';
COMMENT ON FUNCTION converge.sales_channel_types() IS
  'The valid Converge sales channel types';

CREATE FUNCTION converge.default_channel_mappings(
  OUT shopify_source_name text, OUT converge_channel text, OUT description text)
RETURNS SETOF record
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'converge_default_channel_mappings';
COMMENT ON FUNCTION converge.default_channel_mappings() IS
  'The built-in mapping of Shopify sourceName values to Converge sales channel types';

-- User overrides.  source_id NULL: all sources.
CREATE TABLE converge.channel_mappings (
  id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  source_id           bigint,
  shopify_source_name text NOT NULL
    CONSTRAINT channel_mappings_source_name_check
    CHECK (shopify_source_name <> '' AND octet_length(shopify_source_name) <= 255),
  converge_channel    text NOT NULL,
  created_at          timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT channel_mappings_unique UNIQUE NULLS NOT DISTINCT (source_id, shopify_source_name)
);
COMMENT ON TABLE converge.channel_mappings IS
  'Additions to and overrides of the built-in sales channel mapping; a per-source row beats a global one (source_id NULL)';

CREATE FUNCTION converge.channel_mapping_check()
RETURNS trigger
LANGUAGE C
AS 'MODULE_PATHNAME', 'converge_channel_mapping_check';

CREATE FUNCTION converge.channel_mappings_changed()
RETURNS trigger
LANGUAGE C
AS 'MODULE_PATHNAME', 'converge_channel_mappings_changed';

CREATE TRIGGER channel_mappings_check
  BEFORE INSERT OR UPDATE ON converge.channel_mappings
  FOR EACH ROW EXECUTE FUNCTION converge.channel_mapping_check();

CREATE TRIGGER channel_mappings_changed
  AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON converge.channel_mappings
  FOR EACH STATEMENT EXECUTE FUNCTION converge.channel_mappings_changed();

SELECT pg_catalog.pg_extension_config_dump('converge.channel_mappings', '');
SELECT pg_catalog.pg_extension_config_dump('converge.channel_mappings_id_seq', '');

CREATE FUNCTION converge.sales_channel(source_name text)
RETURNS text
LANGUAGE C STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'converge_sales_channel_sql';
COMMENT ON FUNCTION converge.sales_channel(text) IS
  'The Converge sales channel type of a Shopify sourceName: global override, else built-in mapping, else web';

CREATE FUNCTION converge.sales_channel(source_id bigint, source_name text)
RETURNS text
LANGUAGE C STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'converge_sales_channel_for_source_sql';
COMMENT ON FUNCTION converge.sales_channel(bigint, text) IS
  'The Converge sales channel type of a Shopify sourceName for one source: its override, else a global one, else built-in, else web';

-- What every sourceName maps to now, and why.
CREATE VIEW converge.effective_channel_mappings AS
SELECT m.source_id, m.shopify_source_name, m.converge_channel,
       CASE WHEN m.source_id IS NULL THEN 'global override' ELSE 'source override' END AS origin
  FROM converge.channel_mappings m
UNION ALL
SELECT NULL::bigint, d.shopify_source_name, d.converge_channel, 'default'
  FROM converge.default_channel_mappings() d
 WHERE NOT EXISTS (SELECT 1 FROM converge.channel_mappings m
                    WHERE m.source_id IS NULL AND m.shopify_source_name = d.shopify_source_name);
COMMENT ON VIEW converge.effective_channel_mappings IS
  'Every explicit mapping in force: per-source and global overrides, and the defaults no global override replaces';

GRANT SELECT ON converge.channel_mappings, converge.effective_channel_mappings TO PUBLIC;

------------------------------------------------------------------------------
-- Signatures
------------------------------------------------------------------------------

CREATE FUNCTION converge.verify_webhook_hmac(body bytea, hmac_header text, secret text)
RETURNS boolean
LANGUAGE C IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'converge_verify_webhook_hmac';
COMMENT ON FUNCTION converge.verify_webhook_hmac(bytea, text, text) IS
  'True when X-Shopify-Hmac-Sha256 is base64(HMAC-SHA256(secret, raw body)); constant time; false for any malformed header';

CREATE FUNCTION converge.verify_oauth_hmac(query_string text, secret text)
RETURNS boolean
LANGUAGE C IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'converge_verify_oauth_hmac';

CREATE FUNCTION converge.verify_oauth_hmac(query_string text, secret text, max_age interval)
RETURNS boolean
LANGUAGE C VOLATILE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'converge_verify_oauth_hmac';
COMMENT ON FUNCTION converge.verify_oauth_hmac(text, text) IS
  'True when the hmac parameter of an OAuth install/callback query string is valid; constant time';
COMMENT ON FUNCTION converge.verify_oauth_hmac(text, text, interval) IS
  'As verify_oauth_hmac(text, text), and the timestamp parameter must be within max_age of now (Shopify''s SDKs use 90 seconds)';

------------------------------------------------------------------------------
-- The JSON parser the sync uses (strict, never half-accepts), for tests
------------------------------------------------------------------------------

CREATE FUNCTION converge._parse_json(json text)
RETURNS jsonb
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'converge_parse_json';
COMMENT ON FUNCTION converge._parse_json(text) IS
  'Internal: the JSON parser of the sync (same result as ::jsonb, errors as 22P02)';

------------------------------------------------------------------------------
-- Sources: one Shopify store each
------------------------------------------------------------------------------

CREATE TABLE converge.source_settings (
  id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name          text NOT NULL CONSTRAINT source_settings_name_unique UNIQUE
                CONSTRAINT sources_name_check CHECK (btrim(name) <> ''),
  store         text NOT NULL CONSTRAINT source_settings_store_unique UNIQUE,
  client_id     text NOT NULL CONSTRAINT sources_client_id_check CHECK (client_id <> ''),
  api_version   text NOT NULL DEFAULT '2026-10'
                CONSTRAINT sources_api_version_check CHECK (api_version ~ '^[0-9]{4}-(01|04|07|10)$'),
  upsell_delay  boolean NOT NULL DEFAULT false,
  paused        boolean NOT NULL DEFAULT false,
  connected_at  timestamptz NOT NULL DEFAULT now(),
  created_at    timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE converge.source_settings IS 'Shopify stores (the view converge.sources shows them); secrets live in converge.source_secrets';
COMMENT ON COLUMN converge.source_settings.connected_at IS
  'When the source was created: orders placed before it are historic, at or after it new';

-- Secrets: readable by the owner (and superusers) only.  Row level security
-- with no policy keeps them unreadable even if someone grants SELECT on every
-- table of the schema.
CREATE TABLE converge.source_secrets (
  source_id         bigint PRIMARY KEY REFERENCES converge.source_settings (id) ON DELETE CASCADE,
  client_secret     text NOT NULL,
  access_token      text,
  token_scopes      text,
  token_obtained_at timestamptz,
  token_expires_at  timestamptz
);
ALTER TABLE converge.source_secrets ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON converge.source_secrets FROM PUBLIC;

-- Where each source's sync stands.  The cursor and the backfill offset move
-- only in the transaction that stores the rows they cover.
CREATE TABLE converge.sync_state (
  source_id             bigint PRIMARY KEY REFERENCES converge.source_settings (id) ON DELETE CASCADE,
  phase                 text NOT NULL DEFAULT 'backfill'
                        CONSTRAINT sync_state_phase_check CHECK (phase IN ('backfill', 'incremental')),
  bulk_operation_id     text,
  bulk_since            timestamptz,   -- an export of the orders updated since (a catch-up); NULL: all
  bulk_status           text,
  bulk_started_at       timestamptz,
  bulk_ready_at         timestamptz,
  bulk_url              text,
  bulk_object_count     bigint,
  bulk_file_size        bigint,
  bulk_attempts         integer NOT NULL DEFAULT 0,
  backfill_completed_at timestamptz,
  cursor_updated_at     timestamptz,
  last_success_at       timestamptz,
  next_attempt_at       timestamptz,
  error_kind            text CONSTRAINT sync_state_error_kind_check CHECK (error_kind IN ('configuration', 'transient')),
  error_message         text,
  error_detail          text,
  error_hint            text,
  failures              integer NOT NULL DEFAULT 0,
  error_at              timestamptz,
  scope_warning         text,
  api_version_seen      text,
  api_requests          bigint NOT NULL DEFAULT 0,
  throttled             bigint NOT NULL DEFAULT 0,
  retries               bigint NOT NULL DEFAULT 0
);

-- The export file of a backfill, cut into parts at order boundaries so that
-- several processes can load it; each part's offset moves in the transaction
-- that stores its rows.
CREATE TABLE converge.backfill_parts (
  source_id     bigint NOT NULL REFERENCES converge.source_settings (id) ON DELETE CASCADE,
  part          integer NOT NULL,
  operation_id  text NOT NULL,        -- the export it belongs to: a stale part is never resumed
  start_offset  bigint NOT NULL,
  end_offset    bigint,
  next_offset   bigint NOT NULL,
  lines         bigint NOT NULL DEFAULT 0,
  done          boolean NOT NULL DEFAULT false,
  PRIMARY KEY (source_id, part)
);

------------------------------------------------------------------------------
-- The mirror: orders, line items, refunds
--
-- No foreign keys: a per-row RI check would halve the backfill rate.  The sync
-- writes an order and its children in one statement, and drop_source()
-- removes a source's rows explicitly.
------------------------------------------------------------------------------

CREATE TABLE converge.orders (
  source_id                bigint NOT NULL,
  order_id                 bigint NOT NULL,
  order_name               text,
  source_name              text,
  sales_channel            text NOT NULL,
  tags                     text[] NOT NULL DEFAULT '{}',
  test                     boolean NOT NULL DEFAULT false,
  created_at               timestamptz NOT NULL,
  processed_at             timestamptz,
  updated_at               timestamptz NOT NULL,
  cancelled_at             timestamptz,
  cancel_reason            text,
  closed_at                timestamptz,
  financial_status         text,
  fulfillment_status       text,
  email                    text,
  phone                    text,
  currency                 text,
  presentment_currency     text,
  total_price              numeric,
  subtotal_price           numeric,
  total_tax                numeric,
  total_shipping           numeric,
  total_discounts          numeric,
  total_refunded           numeric,
  current_total_price      numeric,
  total_price_shop         numeric,
  subtotal_price_shop      numeric,
  total_tax_shop           numeric,
  total_shipping_shop      numeric,
  total_discounts_shop     numeric,
  total_refunded_shop      numeric,
  current_total_price_shop numeric,
  discount_codes           text[] NOT NULL DEFAULT '{}',
  customer_id              bigint,
  customer_email           text,
  customer_first_name      text,
  customer_last_name       text,
  customer_phone           text,
  billing_first_name       text,
  billing_last_name        text,
  billing_city             text,
  billing_province_code    text,
  billing_country_code     text,
  billing_zip              text,
  shipping_city            text,
  shipping_province_code   text,
  shipping_country_code    text,
  shipping_zip             text,
  app_name                 text,
  data                     jsonb COMPRESSION lz4 NOT NULL,
  synced_at                timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (source_id, order_id)
);
COMMENT ON TABLE converge.orders IS
  'Every order of every source. Money columns are in the buyer''s (presentment) currency; *_shop columns in the shop currency. data is the order as Shopify returned it (without its line items and refund line items, which have their own tables).';
CREATE INDEX orders_source_created_idx ON converge.orders (source_id, created_at);
CREATE INDEX orders_source_customer_idx ON converge.orders (source_id, customer_id, created_at) WHERE customer_id IS NOT NULL;
CREATE INDEX orders_source_email_idx ON converge.orders (source_id, lower(email), created_at) WHERE email IS NOT NULL;
CREATE INDEX orders_source_name_idx ON converge.orders (source_id, order_name);

CREATE TABLE converge.line_items (
  source_id         bigint NOT NULL,
  line_item_id      bigint NOT NULL,
  order_id          bigint NOT NULL,
  position          integer NOT NULL,
  product_id        bigint,
  variant_id        bigint,
  sku               text,
  name              text,
  title             text,
  variant_title     text,
  vendor            text,
  quantity          integer NOT NULL,
  current_quantity  integer,
  price             numeric,
  price_shop        numeric,
  discounted_price      numeric,
  discounted_price_shop numeric,
  PRIMARY KEY (source_id, line_item_id)
);
COMMENT ON TABLE converge.line_items IS
  'Line items of each order; price is the unit price in the presentment currency, price_shop in the shop currency';
CREATE INDEX line_items_order_idx ON converge.line_items (source_id, order_id);

CREATE TABLE converge.refunds (
  source_id            bigint NOT NULL,
  refund_id            bigint NOT NULL,
  order_id             bigint NOT NULL,
  created_at           timestamptz NOT NULL,
  note                 text,
  total_refunded       numeric,
  total_refunded_shop  numeric,
  currency             text,
  PRIMARY KEY (source_id, refund_id)
);
COMMENT ON TABLE converge.refunds IS
  'Refunds of each order; total_refunded in the presentment currency (currency), total_refunded_shop in the shop currency';
CREATE INDEX refunds_order_idx ON converge.refunds (source_id, order_id);
CREATE INDEX refunds_source_created_idx ON converge.refunds (source_id, created_at);

CREATE TABLE converge.refund_line_items (
  source_id              bigint NOT NULL,
  refund_line_item_id    bigint NOT NULL,
  refund_id              bigint NOT NULL,
  order_id               bigint NOT NULL,
  line_item_id           bigint,
  quantity               integer NOT NULL,
  restock_type           text,
  price                  numeric,
  price_shop             numeric,
  subtotal               numeric,
  subtotal_shop          numeric,
  total_tax              numeric,
  total_tax_shop         numeric,
  PRIMARY KEY (source_id, refund_line_item_id)
);
CREATE INDEX refund_line_items_refund_idx ON converge.refund_line_items (source_id, refund_id);

------------------------------------------------------------------------------
-- Sync runs and errors: what happened, visible to users
------------------------------------------------------------------------------

CREATE TABLE converge.sync_runs (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  source_id       bigint NOT NULL,
  started_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
  finished_at     timestamptz,
  phase           text,
  outcome         text,
  orders_synced   bigint NOT NULL DEFAULT 0,
  refunds_synced  bigint NOT NULL DEFAULT 0,
  requests        bigint NOT NULL DEFAULT 0,
  throttled       bigint NOT NULL DEFAULT 0,
  retries         bigint NOT NULL DEFAULT 0,
  message         text
);
COMMENT ON TABLE converge.sync_runs IS
  'One row per sync pass of a source; rows older than converge.sync_runs_retention are pruned by the sync itself';
CREATE INDEX sync_runs_source_idx ON converge.sync_runs (source_id, started_at DESC);

CREATE TABLE converge.sync_errors (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  source_id    bigint NOT NULL,
  occurred_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
  kind         text NOT NULL,
  message      text NOT NULL,
  detail       text,
  payload      text
);
COMMENT ON TABLE converge.sync_errors IS
  'Everything the sync could not use as it came (a bad order, a malformed or truncated page, a failed request), kept for inspection; never silently dropped';
CREATE INDEX sync_errors_source_idx ON converge.sync_errors (source_id, occurred_at DESC);

------------------------------------------------------------------------------
-- Managing sources
------------------------------------------------------------------------------

CREATE FUNCTION converge.create_source(
  name text, store text, client_id text, client_secret text,
  upsell_delay boolean DEFAULT false, api_version text DEFAULT '2026-10')
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  handle text := converge.store_handle(store);
  clean_name text := btrim(name);
  existing record;
  new_id bigint;
BEGIN
  IF clean_name IS NULL OR clean_name = '' THEN
    RAISE EXCEPTION 'a source needs a name'
      USING ERRCODE = 'invalid_parameter_value', HINT = 'For example ''Acme EU Store Backend''.';
  END IF;
  IF coalesce(btrim(client_id), '') = '' OR coalesce(client_secret, '') = '' THEN
    RAISE EXCEPTION 'a source needs the Client ID and the Client Secret of the store''s app'
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Copy them from the app''s Settings page in the Shopify Dev Dashboard.';
  END IF;
  IF api_version IS NULL OR api_version !~ '^[0-9]{4}-(01|04|07|10)$' THEN
    RAISE EXCEPTION 'invalid Shopify API version "%"', api_version
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Versions are named YYYY-MM with a quarter''s first month, for example 2026-10.';
  END IF;
  SELECT s.id, s.name INTO existing FROM converge.source_settings s WHERE s.store = handle;
  IF FOUND THEN
    RAISE EXCEPTION 'store "%" already has a source', handle
      USING ERRCODE = 'unique_violation',
            DETAIL = format('Source %s (%s) syncs it.', existing.id, existing.name),
            HINT = 'Change that source with converge.set_credentials() or converge.rename_source(), or drop it with converge.drop_source() first.';
  END IF;
  SELECT s.id INTO existing FROM converge.source_settings s WHERE s.name = clean_name;
  IF FOUND THEN
    RAISE EXCEPTION 'a source named "%" already exists', clean_name
      USING ERRCODE = 'unique_violation', HINT = 'Choose another name.';
  END IF;

  INSERT INTO converge.source_settings (name, store, client_id, api_version, upsell_delay)
  VALUES (clean_name, handle, btrim(client_id), api_version, upsell_delay)
  RETURNING id INTO new_id;
  INSERT INTO converge.source_secrets (source_id, client_secret) VALUES (new_id, client_secret);
  -- queue the historical sync: the next pass (or the next pg_cron run) starts it
  INSERT INTO converge.sync_state (source_id, next_attempt_at) VALUES (new_id, now());
  RETURN new_id;
END $$;
COMMENT ON FUNCTION converge.create_source(text, text, text, text, boolean, text) IS
  'Add a Shopify store; records connected_at (historic vs new) and queues its historical sync';

CREATE FUNCTION converge._source_or_error(source bigint)
RETURNS converge.source_settings
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE s converge.source_settings;
BEGIN
  SELECT * INTO s FROM converge.source_settings WHERE id = source;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'source % does not exist', source
      USING ERRCODE = 'no_data_found', HINT = 'SELECT id, name, store FROM converge.sources lists them.';
  END IF;
  RETURN s;
END $$;

CREATE FUNCTION converge.rename_source(source bigint, name text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM converge._source_or_error(source);
  IF coalesce(btrim(name), '') = '' THEN
    RAISE EXCEPTION 'a source needs a name' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  UPDATE converge.source_settings SET name = btrim(rename_source.name) WHERE id = source;
END $$;

CREATE FUNCTION converge.set_credentials(source bigint, client_id text, client_secret text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM converge._source_or_error(source);
  IF coalesce(btrim(client_id), '') = '' OR coalesce(client_secret, '') = '' THEN
    RAISE EXCEPTION 'a source needs the Client ID and the Client Secret of the store''s app'
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Copy them from the app''s Settings page in the Shopify Dev Dashboard.';
  END IF;
  UPDATE converge.source_settings SET client_id = btrim(set_credentials.client_id) WHERE id = source;
  UPDATE converge.source_secrets
     SET client_secret = set_credentials.client_secret, access_token = NULL, token_scopes = NULL, token_expires_at = NULL
   WHERE source_id = source;
  -- new credentials deserve an immediate try
  UPDATE converge.sync_state
     SET error_kind = NULL, next_attempt_at = now()
   WHERE source_id = source;
END $$;

CREATE FUNCTION converge.alter_source(source bigint, upsell_delay boolean DEFAULT NULL, api_version text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM converge._source_or_error(source);
  IF api_version IS NOT NULL AND api_version !~ '^[0-9]{4}-(01|04|07|10)$' THEN
    RAISE EXCEPTION 'invalid Shopify API version "%"', api_version
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Versions are named YYYY-MM with a quarter''s first month, for example 2026-10.';
  END IF;
  UPDATE converge.source_settings
     SET upsell_delay = coalesce(alter_source.upsell_delay, source_settings.upsell_delay),
         api_version = coalesce(alter_source.api_version, source_settings.api_version)
   WHERE id = source;
END $$;

CREATE FUNCTION converge.pause_source(source bigint)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM converge._source_or_error(source);
  UPDATE converge.source_settings SET paused = true WHERE id = source;
END $$;

CREATE FUNCTION converge.resume_source(source bigint)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM converge._source_or_error(source);
  UPDATE converge.source_settings SET paused = false WHERE id = source;
  UPDATE converge.sync_state SET next_attempt_at = now() WHERE source_id = source;
END $$;

-- Start the historical sync over (for example once read_all_orders was granted).
CREATE FUNCTION converge.resync_source(source bigint)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM converge._source_or_error(source);
  UPDATE converge.sync_state
     SET phase = 'backfill', bulk_operation_id = NULL, bulk_since = NULL, bulk_status = NULL, bulk_started_at = NULL,
         bulk_ready_at = NULL, bulk_url = NULL, bulk_object_count = NULL, bulk_file_size = NULL,
         bulk_attempts = 0, backfill_completed_at = NULL, next_attempt_at = now(), error_kind = NULL
   WHERE source_id = source;
  DELETE FROM converge.backfill_parts WHERE source_id = source;
END $$;

CREATE FUNCTION converge.drop_source(source bigint, drop_data boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM converge._source_or_error(source);
  IF drop_data THEN
    DELETE FROM converge.refund_line_items WHERE source_id = source;
    DELETE FROM converge.refunds WHERE source_id = source;
    DELETE FROM converge.line_items WHERE source_id = source;
    DELETE FROM converge.orders WHERE source_id = source;
    DELETE FROM converge.sync_runs WHERE source_id = source;
    DELETE FROM converge.sync_errors WHERE source_id = source;
    DELETE FROM converge.channel_mappings WHERE source_id = source;
  END IF;
  DELETE FROM converge.source_settings WHERE id = source;   -- secrets and sync state go with it
END $$;
COMMENT ON FUNCTION converge.drop_source(bigint, boolean) IS
  'Remove a source (and its secrets); its orders, refunds and logs are kept unless drop_data';

REVOKE EXECUTE ON FUNCTION converge.create_source(text, text, text, text, boolean, text),
  converge.rename_source(bigint, text), converge.set_credentials(bigint, text, text),
  converge.alter_source(bigint, boolean, text), converge.pause_source(bigint),
  converge.resume_source(bigint), converge.resync_source(bigint),
  converge.drop_source(bigint, boolean) FROM PUBLIC;

------------------------------------------------------------------------------
-- What users look at
------------------------------------------------------------------------------

CREATE VIEW converge.sources AS
SELECT s.id, s.name, s.store, s.client_id, s.api_version, s.upsell_delay, s.paused,
       s.connected_at, s.created_at,
       k.access_token IS NOT NULL AS has_token, k.token_scopes, k.token_expires_at
  FROM converge.source_settings s
  LEFT JOIN converge.source_secrets k ON k.source_id = s.id;
COMMENT ON VIEW converge.sources IS 'Every source with its settings and token status; never its secrets';

CREATE VIEW converge.sync_status AS
SELECT s.id AS source_id, s.name, s.store,
       CASE WHEN s.paused THEN 'paused'
            WHEN st.error_kind = 'configuration' THEN 'error'
            WHEN st.phase = 'backfill' AND st.bulk_since IS NOT NULL THEN 'catching up'
            WHEN st.phase = 'backfill' THEN 'backfilling'
            ELSE 'incremental' END AS phase,
       CASE WHEN st.phase = 'backfill' THEN
         CASE WHEN st.bulk_url IS NOT NULL OR st.bulk_status = 'COMPLETED' THEN 'loading'
              WHEN st.bulk_operation_id IS NOT NULL THEN 'exporting'
              ELSE 'starting' END
       END AS backfill_step,
       p.lines AS backfill_objects_loaded,
       st.bulk_object_count AS backfill_objects_total,
       CASE WHEN st.phase = 'backfill' AND st.bulk_object_count > 0
            THEN round(100.0 * p.lines / st.bulk_object_count, 1) END AS backfill_percent,
       st.backfill_completed_at,
       (SELECT count(*) FROM converge.orders o WHERE o.source_id = s.id) AS orders,
       (SELECT count(*) FROM converge.refunds r WHERE r.source_id = s.id) AS refunds,
       st.cursor_updated_at AS synced_through,
       st.last_success_at,
       st.error_message AS last_error, st.error_detail AS last_error_detail, st.error_hint AS last_error_hint,
       st.error_at AS last_error_at,
       st.error_kind IS NOT NULL AS error_active,
       st.scope_warning,
       st.next_attempt_at,
       st.api_requests, st.throttled, st.retries,
       st.api_version_seen
  FROM converge.source_settings s
  JOIN converge.sync_state st ON st.source_id = s.id
  CROSS JOIN LATERAL (SELECT coalesce(sum(lines), 0)::bigint AS lines FROM converge.backfill_parts b
                       WHERE b.source_id = s.id) p;
COMMENT ON VIEW converge.sync_status IS
  'Per source: phase (backfilling with progress, incremental, paused, error), rows stored, last success, last error, API request, throttle and retry counts';

-- pg_dump keeps configuration and data.
SELECT pg_catalog.pg_extension_config_dump('converge.source_settings', '');
SELECT pg_catalog.pg_extension_config_dump('converge.source_settings_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('converge.source_secrets', '');
SELECT pg_catalog.pg_extension_config_dump('converge.sync_state', '');
SELECT pg_catalog.pg_extension_config_dump('converge.backfill_parts', '');
SELECT pg_catalog.pg_extension_config_dump('converge.orders', '');
SELECT pg_catalog.pg_extension_config_dump('converge.line_items', '');
SELECT pg_catalog.pg_extension_config_dump('converge.refunds', '');
SELECT pg_catalog.pg_extension_config_dump('converge.refund_line_items', '');
SELECT pg_catalog.pg_extension_config_dump('converge.sync_runs', '');
SELECT pg_catalog.pg_extension_config_dump('converge.sync_runs_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('converge.sync_errors', '');
SELECT pg_catalog.pg_extension_config_dump('converge.sync_errors_id_seq', '');

------------------------------------------------------------------------------
-- Running the sync
------------------------------------------------------------------------------

CREATE PROCEDURE converge.sync(source bigint)
LANGUAGE C
AS 'MODULE_PATHNAME', 'converge_sync';
COMMENT ON PROCEDURE converge.sync(bigint) IS
  'One time-boxed pass of whatever the source needs next (backfill step or incremental pages), committing as it goes; returns at once if another session is syncing the source';

CREATE PROCEDURE converge.sync_all()
LANGUAGE C
AS 'MODULE_PATHNAME', 'converge_sync_all';
COMMENT ON PROCEDURE converge.sync_all() IS
  'A pass over every due source (not paused, not waiting after an error), within converge.sync_time_limit; what pg_cron runs every minute';

REVOKE EXECUTE ON PROCEDURE converge.sync(bigint), converge.sync_all() FROM PUBLIC;

CREATE FUNCTION converge.schedule(schedule text DEFAULT '* * * * *')
RETURNS TABLE (job_name text, job_id bigint, command text)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN
    RAISE EXCEPTION 'pg_cron is not installed in this database'
      USING ERRCODE = 'feature_not_supported',
            HINT = 'Add pg_cron to shared_preload_libraries and CREATE EXTENSION pg_cron in the database named by cron.database_name; or run CALL converge.sync_all() every minute from any scheduler (for example: psql -c ''CALL converge.sync_all()'').';
  END IF;
  job_name := 'converge-sync';
  command := 'CALL converge.sync_all()';
  EXECUTE 'SELECT cron.schedule($1, $2, $3)' INTO job_id USING job_name, schedule, command;
  RETURN NEXT;
END $$;
COMMENT ON FUNCTION converge.schedule(text) IS
  'Create (or update) the pg_cron jobs that run converge: converge-sync runs CALL converge.sync_all()';

CREATE FUNCTION converge.unschedule()
RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE n integer := 0; j record;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN
    RETURN 0;
  END IF;
  FOR j IN EXECUTE 'SELECT jobname FROM cron.job WHERE jobname LIKE ''converge-%''' LOOP
    EXECUTE 'SELECT cron.unschedule($1)' USING j.jobname;
    n := n + 1;
  END LOOP;
  RETURN n;
END $$;
COMMENT ON FUNCTION converge.unschedule() IS 'Remove the pg_cron jobs of converge; returns how many';
REVOKE EXECUTE ON FUNCTION converge.schedule(text), converge.unschedule() FROM PUBLIC;
