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
  upsell_delay_length interval NOT NULL DEFAULT '10 minutes'
                CONSTRAINT sources_upsell_delay_length_check
                CHECK (upsell_delay_length > '0' AND upsell_delay_length <= '1 day'),
  paused        boolean NOT NULL DEFAULT false,
  -- whole seconds, like Shopify's times: an order placed in the second of connecting is new
  connected_at  timestamptz NOT NULL DEFAULT date_trunc('second', now()),
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
  history_complete_at   timestamptz,   -- the first historical sync finished (never reset)
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
  upsell_delay boolean DEFAULT false, api_version text DEFAULT '2026-10',
  exclude_channels text[] DEFAULT '{}', exclude_tags text[] DEFAULT '{}',
  upsell_delay_length interval DEFAULT '10 minutes')
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

  PERFORM converge._check_upsell_delay_length(upsell_delay_length);

  INSERT INTO converge.source_settings (name, store, client_id, api_version, upsell_delay, upsell_delay_length)
  VALUES (clean_name, handle, btrim(client_id), api_version, upsell_delay, upsell_delay_length)
  RETURNING id INTO new_id;
  INSERT INTO converge.source_secrets (source_id, client_secret) VALUES (new_id, client_secret);
  PERFORM converge.add_exclusion(new_id, 'channel', c) FROM unnest(exclude_channels) c;
  PERFORM converge.add_exclusion(new_id, 'tag', t) FROM unnest(exclude_tags) t;
  -- queue the historical sync: the next pass (or the next pg_cron run) starts it
  INSERT INTO converge.sync_state (source_id, next_attempt_at) VALUES (new_id, now());
  RETURN new_id;
END $$;
COMMENT ON FUNCTION converge.create_source(text, text, text, text, boolean, text, text[], text[], interval) IS
  'Add a Shopify store with its exclusion rules; records connected_at (historic vs new) and queues its historical sync';

CREATE FUNCTION converge._check_upsell_delay_length(length interval)
RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF length IS NULL OR length <= '0' OR length > '1 day' THEN
    RAISE EXCEPTION 'invalid upsell delay length "%"', length
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Give a positive interval of at most one day; the default is 10 minutes.';
  END IF;
END $$;

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

CREATE FUNCTION converge.alter_source(source bigint, upsell_delay boolean DEFAULT NULL, api_version text DEFAULT NULL,
                                      upsell_delay_length interval DEFAULT NULL)
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
  IF upsell_delay_length IS NOT NULL THEN
    PERFORM converge._check_upsell_delay_length(upsell_delay_length);
  END IF;
  -- events already held keep the release time they were given
  UPDATE converge.source_settings
     SET upsell_delay = coalesce(alter_source.upsell_delay, source_settings.upsell_delay),
         api_version = coalesce(alter_source.api_version, source_settings.api_version),
         upsell_delay_length = coalesce(alter_source.upsell_delay_length, source_settings.upsell_delay_length)
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
    DELETE FROM converge.deliveries d USING converge.events e WHERE e.event_id = d.event_id AND e.source_id = source;
    DELETE FROM converge.events WHERE source_id = source;
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
  'Remove a source (and its secrets and exclusion rules); its orders, refunds, events and logs are kept unless drop_data';

REVOKE EXECUTE ON FUNCTION converge.create_source(text, text, text, text, boolean, text, text[], text[], interval),
  converge.rename_source(bigint, text), converge.set_credentials(bigint, text, text),
  converge.alter_source(bigint, boolean, text, interval), converge.pause_source(bigint),
  converge.resume_source(bigint), converge.resync_source(bigint),
  converge.drop_source(bigint, boolean) FROM PUBLIC;

------------------------------------------------------------------------------
-- Events: one Placed Order per included order, one Received Refund per refund
--
-- Rows are generated by converge._order_events(), which the sync calls in the
-- transaction that stores the orders and refunds.  What an event says is
-- defined once, by the views _placed_order_facts, _placed_order_items,
-- _received_refund_facts and _received_refund_items (over _order_facts);
-- which orders are excluded, once, by the view excluded_orders.
------------------------------------------------------------------------------

CREATE TABLE converge.exclusion_rules (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  source_id   bigint NOT NULL REFERENCES converge.source_settings (id) ON DELETE CASCADE,
  kind        text NOT NULL CONSTRAINT exclusion_rules_kind_check CHECK (kind IN ('channel', 'tag', 'test')),
  value       text CONSTRAINT exclusion_rules_value_check
              CHECK (CASE WHEN kind = 'test' THEN value IS NULL ELSE btrim(value) <> '' END),
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX exclusion_rules_unique ON converge.exclusion_rules (source_id, kind, lower(coalesce(value, '')));
COMMENT ON TABLE converge.exclusion_rules IS
  'Per source: orders to keep out of events. channel: a Shopify sourceName or a Converge sales channel type; tag: an order tag; test: test orders. Matching is case-insensitive.';

-- The one definition of what a rule matches.
CREATE FUNCTION converge._rule_matches(kind text, value text, source_name text, sales_channel text,
                                       tags text[], test boolean)
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE kind
         WHEN 'channel' THEN lower(value) = lower(source_name) OR lower(value) = sales_channel
         WHEN 'tag' THEN lower(value) = ANY (lower(tags::text)::text[])
         WHEN 'test' THEN test
       END;

CREATE VIEW converge.excluded_orders AS
SELECT o.source_id, o.order_id, o.order_name, o.created_at, o.source_name,
       converge.sales_channel(o.source_id, o.source_name) AS sales_channel, o.tags, o.test,
       r.id AS rule_id, r.kind AS rule_kind, r.value AS rule_value
  FROM converge.exclusion_rules r
  JOIN converge.orders o ON o.source_id = r.source_id
 WHERE converge._rule_matches(r.kind, r.value, o.source_name, converge.sales_channel(o.source_id, o.source_name),
                              o.tags, o.test);
COMMENT ON VIEW converge.excluded_orders IS
  'Every stored order an exclusion rule keeps out of events, once per rule that matches it';

CREATE TABLE converge.events (
  event_id            text COLLATE "C" PRIMARY KEY,   -- compared bytewise: cheaper, and ids are ASCII
  source_id           bigint NOT NULL,
  event_name          text COLLATE "C" NOT NULL CONSTRAINT events_name_check CHECK (event_name IN ('Placed Order', 'Received Refund')),
  occurred_at         timestamptz NOT NULL,
  order_id            bigint NOT NULL,
  refund_id           bigint,
  sales_channel       text NOT NULL,
  properties          jsonb COMPRESSION lz4 NOT NULL,   -- large ones are compressed: lz4 costs a fraction of pglz
  profile_properties  jsonb COMPRESSION lz4 NOT NULL,
  aliases             text[] NOT NULL,
  state               text NOT NULL CONSTRAINT events_state_check CHECK (state IN ('historic', 'held', 'ready', 'dropped')),
  release_at          timestamptz,
  released_at         timestamptz,
  dropped_reason      text,
  created_at          timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT events_refund_check CHECK ((event_name = 'Received Refund') = (refund_id IS NOT NULL)),
  CONSTRAINT events_held_check CHECK (state <> 'held' OR (release_at IS NOT NULL AND released_at IS NULL)),
  CONSTRAINT events_ready_check CHECK (state <> 'ready' OR released_at IS NOT NULL)
);
COMMENT ON TABLE converge.events IS
  'Converge events: historic (before the source was connected; never forwarded), held (upsell delay, or waiting for the historical sync), ready (released, frozen), dropped (excluded before release)';
CREATE INDEX events_source_name_time_idx ON converge.events (source_id, event_name, occurred_at);
CREATE INDEX events_held_idx ON converge.events (source_id, order_id) WHERE state = 'held';
CREATE INDEX events_state_idx ON converge.events (state, released_at) WHERE state <> 'historic';

-- A released event is frozen: nothing rewrites what was (or will be) forwarded.
CREATE FUNCTION converge._event_frozen()
RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  RAISE EXCEPTION 'event % was released and cannot change', OLD.event_id
    USING ERRCODE = 'object_not_in_prerequisite_state', DETAIL = format('It was released at %s.', OLD.released_at),
          HINT = 'Released events are immutable; refunds and later changes arrive as events of their own.';
END $$;
CREATE TRIGGER events_frozen BEFORE UPDATE ON converge.events
  FOR EACH ROW WHEN (OLD.released_at IS NOT NULL AND
                     (NEW.properties IS DISTINCT FROM OLD.properties
                      OR NEW.profile_properties IS DISTINCT FROM OLD.profile_properties
                      OR NEW.aliases IS DISTINCT FROM OLD.aliases
                      OR NEW.occurred_at IS DISTINCT FROM OLD.occurred_at
                      OR NEW.sales_channel IS DISTINCT FROM OLD.sales_channel
                      OR NEW.released_at IS DISTINCT FROM OLD.released_at
                      OR NEW.event_id IS DISTINCT FROM OLD.event_id))
  EXECUTE FUNCTION converge._event_frozen();

CREATE FUNCTION converge.event_id(store text, kind text, id bigint)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN 'shopify:' || store || ':' || kind || ':' || id::text;
COMMENT ON FUNCTION converge.event_id(text, text, bigint) IS
  'The stable event id of an order (kind order) or a refund (kind refund) of a store';

-- What every event of an order says about the order and its buyer: one
-- address (billing, else shipping), the customer's first order decided from
-- the synced history (by customer id, else by email).
CREATE VIEW converge._order_facts AS
SELECT o.source_id, o.order_id, o.order_name, o.created_at, coalesce(o.processed_at, o.created_at) AS placed_at,
       o.total_price, o.total_tax, o.total_shipping, o.total_discounts, o.total_price_shop, o.total_tax_shop,
       o.total_shipping_shop, o.total_discounts_shop, o.discount_codes,
       coalesce(o.presentment_currency, o.currency) AS currency, o.currency AS shop_currency,
       s.store, converge.event_id(s.store, 'order', o.order_id) AS event_id,
       converge.sales_channel(o.source_id, o.source_name) AS sales_channel,
       CASE WHEN o.customer_id IS NOT NULL THEN NOT EXISTS (
              SELECT 1 FROM converge.orders p
               WHERE p.source_id = o.source_id AND p.customer_id = o.customer_id AND p.created_at <= o.created_at
                 AND (p.created_at < o.created_at OR p.order_id < o.order_id))
            WHEN o.email IS NOT NULL THEN NOT EXISTS (
              SELECT 1 FROM converge.orders p
               WHERE p.source_id = o.source_id AND lower(p.email) = lower(o.email) AND p.created_at <= o.created_at
                 AND (p.created_at < o.created_at OR p.order_id < o.order_id))
       END AS is_new_customer,
       coalesce(o.email, o.customer_email) AS buyer_email,
       coalesce(o.phone, o.customer_phone) AS buyer_phone,
       coalesce(o.customer_first_name, o.billing_first_name) AS buyer_first_name,
       coalesce(o.customer_last_name, o.billing_last_name) AS buyer_last_name,
       CASE WHEN a.billing THEN o.billing_city ELSE o.shipping_city END AS buyer_city,
       CASE WHEN a.billing THEN o.billing_country_code ELSE o.shipping_country_code END AS buyer_country_code,
       CASE WHEN a.billing THEN o.billing_province_code ELSE o.shipping_province_code END AS buyer_state,
       CASE WHEN a.billing THEN o.billing_zip ELSE o.shipping_zip END AS buyer_zip,
       array_remove(ARRAY['urn:email:' || lower(coalesce(o.email, o.customer_email)),
                          'urn:user_id:' || o.customer_id::text], NULL) AS aliases
  FROM converge.orders o
  JOIN converge.source_settings s ON s.id = o.source_id
 CROSS JOIN LATERAL (SELECT num_nonnulls(o.billing_city, o.billing_country_code, o.billing_province_code,
                                         o.billing_zip) > 0 AS billing) a;

-- The events' contents (src/event_payload.c turns them into JSON): the
-- leading _columns are fixed; every other column is a property of that name,
-- "p.$..." ones profile fields too; NULL is an absent key.  Items carry the
-- event's currency.
CREATE VIEW converge._placed_order_facts AS
SELECT f.source_id AS _source_id, f.order_id AS _key, f.event_id AS _event_id, f.order_id AS _order_id,
       f.placed_at AS _occurred_at, f.created_at AS _created_at, f.sales_channel AS _sales_channel, f.aliases AS _aliases,
       f.order_id::text AS id, f.order_name,
       f.total_price, f.total_tax, f.total_shipping, f.total_discounts AS total_discount,
       nullif(array_to_string(f.discount_codes, ','), '') AS coupon, f.currency,
       f.shop_currency, f.total_price_shop, f.total_tax_shop, f.total_shipping_shop,
       f.total_discounts_shop AS total_discount_shop,
       f.sales_channel AS "$sales_channel_type", f.is_new_customer AS "$is_new_customer",
       f.buyer_email AS "p.$email", f.buyer_phone AS "p.$phone_number", f.buyer_first_name AS "p.$first_name",
       f.buyer_last_name AS "p.$last_name", f.buyer_city AS "p.$city", f.buyer_country_code AS "p.$country_code",
       f.buyer_state AS "p.$state", f.buyer_zip AS "p.$zip_code"
  FROM converge._order_facts f;

-- price: what the buyer paid per unit (after line-level discounts)
CREATE VIEW converge._placed_order_items AS
SELECT li.source_id AS _source_id, li.order_id AS _key, li.position AS _position,
       li.product_id::text AS product_id, li.variant_id::text AS variant_id, li.sku, li.title AS name,
       li.variant_title AS variant_name, coalesce(li.discounted_price, li.price) AS price,
       coalesce(li.discounted_price_shop, li.price_shop) AS price_shop, li.quantity, li.vendor
  FROM converge.line_items li;

CREATE VIEW converge._received_refund_facts AS
SELECT r.source_id AS _source_id, r.refund_id AS _key, converge.event_id(f.store, 'refund', r.refund_id) AS _event_id,
       r.order_id AS _order_id, r.created_at AS _occurred_at, r.created_at AS _created_at,
       f.sales_channel AS _sales_channel, f.aliases AS _aliases,
       r.refund_id::text AS id, r.order_id::text AS order_id, f.order_name,
       r.total_refunded, coalesce(r.currency, f.currency) AS currency,
       f.shop_currency, r.total_refunded_shop,
       f.sales_channel AS "$sales_channel_type",
       f.buyer_email AS "p.$email", f.buyer_phone AS "p.$phone_number", f.buyer_first_name AS "p.$first_name",
       f.buyer_last_name AS "p.$last_name", f.buyer_city AS "p.$city", f.buyer_country_code AS "p.$country_code",
       f.buyer_state AS "p.$state", f.buyer_zip AS "p.$zip_code"
  FROM converge.refunds r
  JOIN converge._order_facts f ON f.source_id = r.source_id AND f.order_id = r.order_id;

-- price: the refunded unit price; quantity: the refunded quantity
CREATE VIEW converge._received_refund_items AS
SELECT rli.source_id AS _source_id, rli.refund_id AS _key, rli.refund_line_item_id AS _position,
       li.product_id::text AS product_id, li.variant_id::text AS variant_id, li.sku, li.title AS name,
       li.variant_title AS variant_name, rli.price, rli.price_shop, rli.quantity, li.vendor
  FROM converge.refund_line_items rli
  LEFT JOIN converge.line_items li ON li.source_id = rli.source_id AND li.line_item_id = rli.line_item_id;

CREATE FUNCTION converge._event_payloads(event_name text, source bigint, ids bigint[])
RETURNS TABLE (key bigint, event_id text, order_id bigint, occurred_at timestamptz, created_at timestamptz,
               sales_channel text, aliases text[], properties jsonb, profile jsonb)
LANGUAGE C VOLATILE STRICT
AS 'MODULE_PATHNAME', 'converge_event_payloads';
COMMENT ON FUNCTION converge._event_payloads(text, bigint, bigint[]) IS
  'Internal: the contents of the events of these orders (Placed Order) or refunds (Received Refund), from the _facts and _items views';

-- The functions below work on a batch's rows, one index probe per row.  They
-- run with nested loops only: during a backfill the statistics lag far
-- behind the tables, and the planner would rather hash whole tables (or
-- evaluate a view for every order once per event).

-- Held events of excluded orders (and the refunds held with them) are dropped.
CREATE FUNCTION converge._drop_excluded(source bigint DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET jit = off
SET enable_hashjoin = off SET enable_mergejoin = off
AS $$
DECLARE n bigint;
BEGIN
  -- no rule, nothing to drop (refunds held with a dropped order are dropped with it)
  IF NOT EXISTS (SELECT 1 FROM converge.exclusion_rules r WHERE source IS NULL OR r.source_id = source) THEN
    RETURN 0;
  END IF;
  UPDATE converge.events e
     SET state = 'dropped', release_at = NULL,
         dropped_reason = format('excluded by the %s rule%s', x.rule_kind, ' "' || x.rule_value || '"')
    FROM converge.excluded_orders x
   WHERE e.state = 'held' AND (source IS NULL OR e.source_id = source)
     AND x.source_id = e.source_id AND x.order_id = e.order_id;
  GET DIAGNOSTICS n = ROW_COUNT;
  UPDATE converge.events e
     SET state = 'dropped', release_at = NULL, dropped_reason = 'its order''s Placed Order was dropped'
    FROM converge.events po, converge.source_settings s
   WHERE e.state = 'held' AND e.event_name = 'Received Refund' AND (source IS NULL OR e.source_id = source)
     AND s.id = e.source_id AND po.event_id = converge.event_id(s.store, 'order', e.order_id)
     AND po.state = 'dropped';
  RETURN n;
END $$;

-- Held events are rebuilt whenever what they say may have changed (their
-- order, the channel mappings), so that each one is, until its release, the
-- event of its order as it stands; the release only freezes it.
CREATE FUNCTION converge._refresh_held(source bigint DEFAULT NULL, order_ids bigint[] DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET jit = off
SET enable_hashjoin = off SET enable_mergejoin = off
AS $$
DECLARE
  g record;
  n bigint := 0;
  m bigint;
BEGIN
  FOR g IN
    SELECT e.source_id, e.event_name, array_agg(coalesce(e.refund_id, e.order_id)) AS ids
      FROM converge.events e
     WHERE e.state = 'held' AND (source IS NULL OR e.source_id = source)
       AND (order_ids IS NULL OR e.order_id = ANY (order_ids))
     GROUP BY e.source_id, e.event_name
  LOOP
    UPDATE converge.events e
       SET occurred_at = p.occurred_at, sales_channel = p.sales_channel, properties = p.properties,
           profile_properties = p.profile, aliases = p.aliases
      FROM converge._event_payloads(g.event_name, g.source_id, g.ids) p
     WHERE e.event_id = p.event_id AND e.state = 'held';
    GET DIAGNOSTICS m = ROW_COUNT;
    n := n + m;
  END LOOP;
  RETURN n;
END $$;

CREATE FUNCTION converge._channel_mappings_refresh()
RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM converge._refresh_held();
  RETURN NULL;
END $$;
-- (fires after channel_mappings_changed, which drops this backend's mapping cache)
CREATE TRIGGER channel_mappings_refresh_held
  AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON converge.channel_mappings
  FOR EACH STATEMENT EXECUTE FUNCTION converge._channel_mappings_refresh();

-- Called by the sync, in the transaction that stored the orders: order_ids
-- are the orders it wrote (inserted says which are new to the mirror),
-- refund_ids the refunds new to it.
CREATE FUNCTION converge._order_events(source bigint, order_ids bigint[], inserted boolean[], refund_ids bigint[])
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET jit = off
SET enable_hashjoin = off SET enable_mergejoin = off
SET work_mem = '64MB'   -- a batch's events (~1 KB each) stay in memory on their way to the table
AS $$
DECLARE
  s record;
  new_orders bigint[];
  held bigint[];
  ready text[];
BEGIN
  SELECT ss.store, ss.connected_at, ss.upsell_delay, ss.upsell_delay_length,
         st.history_complete_at IS NOT NULL AS complete,
         EXISTS (SELECT 1 FROM converge.exclusion_rules r WHERE r.source_id = source) AS has_rules
    INTO s
    FROM converge.source_settings ss LEFT JOIN converge.sync_state st ON st.source_id = ss.id
   WHERE ss.id = source;
  IF NOT FOUND THEN
    RETURN;
  END IF;

  -- An order's Placed Order is decided when the order first arrives: an
  -- excluded order gets none; a historic one is never held; a new one is held
  -- for the upsell delay, or until the historical sync is complete (its
  -- $is_new_customer needs the whole history).
  SELECT array_agg(c.order_id) INTO new_orders
    FROM unnest(order_ids, inserted) AS c(order_id, is_new)
   WHERE c.is_new
     AND (NOT s.has_rules OR
          NOT EXISTS (SELECT 1 FROM converge.excluded_orders x WHERE x.source_id = source AND x.order_id = c.order_id));
  IF new_orders IS NOT NULL THEN
    WITH ins AS (
      INSERT INTO converge.events AS e (event_id, source_id, event_name, occurred_at, order_id, sales_channel,
                                        properties, profile_properties, aliases, state, release_at, released_at)
      SELECT p.event_id, source, 'Placed Order', p.occurred_at, p.order_id, p.sales_channel,
             p.properties, p.profile, p.aliases, d.state,
             CASE WHEN d.state = 'held' THEN p.created_at + CASE WHEN s.upsell_delay THEN s.upsell_delay_length ELSE '0' END END,
             CASE WHEN d.state = 'ready' THEN clock_timestamp() END
        FROM converge._event_payloads('Placed Order', source, new_orders) p
       CROSS JOIN LATERAL (SELECT CASE WHEN p.created_at < s.connected_at THEN 'historic'
                                       WHEN s.upsell_delay OR NOT s.complete THEN 'held'
                                       ELSE 'ready' END AS state) d
      ON CONFLICT (event_id) DO NOTHING
      RETURNING e.event_id, e.state)
    SELECT array_agg(r.event_id) INTO ready FROM (SELECT event_id FROM ins WHERE state = 'ready') r
     CROSS JOIN LATERAL pg_notify('converge_events', r.event_id);
    PERFORM converge._queue_deliveries(ready);
  END IF;

  -- Changes to an order while its events are held are folded in.
  SELECT array_agg(c.order_id) INTO held
    FROM unnest(order_ids, inserted) AS c(order_id, is_new)
   WHERE NOT c.is_new
     AND EXISTS (SELECT 1 FROM converge.events e
                  WHERE e.source_id = source AND e.order_id = c.order_id AND e.state = 'held');
  IF held IS NOT NULL THEN
    PERFORM converge._refresh_held(source, held);
    PERFORM converge._drop_excluded(source);
  END IF;

  -- A refund's event, when its order has a Placed Order that was not dropped
  -- and is not excluded now; held with its order's.
  IF refund_ids IS NOT NULL THEN
    WITH ins AS (
      INSERT INTO converge.events AS e (event_id, source_id, event_name, occurred_at, order_id, refund_id, sales_channel,
                                        properties, profile_properties, aliases, state, release_at, released_at)
      SELECT p.event_id, source, 'Received Refund', p.occurred_at, p.order_id, p.key, p.sales_channel,
             p.properties, p.profile, p.aliases, d.state,
             CASE WHEN d.state = 'held' THEN coalesce(po.release_at, p.created_at) END,
             CASE WHEN d.state = 'ready' THEN clock_timestamp() END
        FROM converge._event_payloads('Received Refund', source, refund_ids) p
        JOIN converge.events po ON po.event_id = converge.event_id(s.store, 'order', p.order_id) AND po.state <> 'dropped'
       CROSS JOIN LATERAL (SELECT CASE WHEN p.created_at < s.connected_at THEN 'historic'
                                       WHEN po.state = 'held' OR NOT s.complete THEN 'held'
                                       ELSE 'ready' END AS state) d
       WHERE NOT EXISTS (SELECT 1 FROM converge.excluded_orders x WHERE x.source_id = source AND x.order_id = p.order_id)
      ON CONFLICT (event_id) DO NOTHING
      RETURNING e.event_id, e.state)
    SELECT array_agg(r.event_id) INTO ready FROM (SELECT event_id FROM ins WHERE state = 'ready') r
     CROSS JOIN LATERAL pg_notify('converge_events', r.event_id);
    PERFORM converge._queue_deliveries(ready);
  END IF;
END $$;

-- Once the first historical sync is complete: every order's history is
-- there, so the historic events' $is_new_customer is settled, and new events
-- held for it can be released.
CREATE FUNCTION converge._history_complete(source bigint)
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET jit = off
SET enable_hashjoin = off SET enable_mergejoin = off
AS $$
BEGIN
  UPDATE converge.sync_state SET history_complete_at = clock_timestamp()
   WHERE source_id = source AND history_complete_at IS NULL;
  IF NOT FOUND THEN
    RETURN;
  END IF;
  -- Parts of the export load in parallel: a customer's earlier order may
  -- have been stored after a later one, which then said it was the first
  -- (historic events, and new ones held until now).
  -- (An order that is not the first never becomes the first: orders are
  -- never removed.)
  UPDATE converge.events e
     SET properties = jsonb_set(e.properties, '{$is_new_customer}', 'false')
   WHERE e.source_id = source AND e.event_name = 'Placed Order' AND e.state IN ('historic', 'held')
     AND e.properties -> '$is_new_customer' = 'true'
     AND NOT (SELECT f.is_new_customer FROM converge._order_facts f
               WHERE f.source_id = e.source_id AND f.order_id = e.order_id);
END $$;

CREATE FUNCTION converge.release_due_events(as_of timestamptz DEFAULT now())
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET jit = off
-- (a set-based pass over all due events: the planner's joins are right here)
AS $$
DECLARE
  n bigint;
  m bigint;
  ready text[];
BEGIN
  PERFORM converge._drop_excluded();

  -- A held event is already its order as it stands (see _refresh_held): the
  -- release freezes it.  Placed Orders first, then the refunds held with them.
  WITH rel AS (
    UPDATE converge.events e
       SET state = 'ready', released_at = clock_timestamp()
      FROM converge.sync_state st
     WHERE e.state = 'held' AND e.release_at <= as_of AND e.event_name = 'Placed Order'
       AND st.source_id = e.source_id AND st.history_complete_at IS NOT NULL
    RETURNING e.event_id)
  SELECT array_agg(rel.event_id) INTO ready FROM rel CROSS JOIN LATERAL pg_notify('converge_events', rel.event_id);
  n := coalesce(cardinality(ready), 0);
  PERFORM converge._queue_deliveries(ready);
  WITH rel AS (
    UPDATE converge.events e
       SET state = 'ready', released_at = clock_timestamp()
      FROM converge.sync_state st
     WHERE e.state = 'held' AND e.release_at <= as_of AND e.event_name = 'Received Refund'
       AND st.source_id = e.source_id AND st.history_complete_at IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM converge.events po
                        WHERE po.source_id = e.source_id AND po.order_id = e.order_id AND po.state = 'held'
                          AND po.event_name = 'Placed Order')
    RETURNING e.event_id)
  SELECT array_agg(rel.event_id) INTO ready FROM rel CROSS JOIN LATERAL pg_notify('converge_events', rel.event_id);
  m := coalesce(cardinality(ready), 0);
  PERFORM converge._queue_deliveries(ready);
  RETURN n + m;
END $$;
COMMENT ON FUNCTION converge.release_due_events(timestamptz) IS
  'Release the held events due at as_of: each is its order as it stands (held events are rebuilt whenever their order changes), set ready and frozen (NOTIFY converge_events with its id); held events of excluded orders are dropped. Returns how many were released. pg_cron runs it every minute.';

------------------------------------------------------------------------------
-- Exclusion rules: managing them
------------------------------------------------------------------------------

CREATE FUNCTION converge._exclusion_rules_changed()
RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM converge._drop_excluded();
  RETURN NULL;
END $$;
CREATE TRIGGER exclusion_rules_changed AFTER INSERT OR UPDATE ON converge.exclusion_rules
  FOR EACH STATEMENT EXECUTE FUNCTION converge._exclusion_rules_changed();

CREATE FUNCTION converge.add_exclusion(source bigint, kind text, value text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE new_id bigint;
BEGIN
  PERFORM converge._source_or_error(source);
  IF kind IS NULL OR kind NOT IN ('channel', 'tag', 'test') THEN
    RAISE EXCEPTION 'unknown exclusion kind "%"', kind
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Use channel (a Shopify sourceName such as pos, or a Converge type such as marketplace), tag (an order tag such as Exclude) or test (test orders).';
  END IF;
  IF kind = 'test' AND value IS NOT NULL THEN
    RAISE EXCEPTION 'a test rule takes no value' USING ERRCODE = 'invalid_parameter_value',
      HINT = 'SELECT converge.add_exclusion(source, ''test'') excludes the store''s test orders.';
  END IF;
  IF kind <> 'test' AND coalesce(btrim(value), '') = '' THEN
    RAISE EXCEPTION 'a % rule needs a value', kind USING ERRCODE = 'invalid_parameter_value',
      HINT = CASE kind WHEN 'tag' THEN 'For example SELECT converge.add_exclusion(source, ''tag'', ''Exclude'').'
                       ELSE 'For example SELECT converge.add_exclusion(source, ''channel'', ''pos'').' END;
  END IF;
  INSERT INTO converge.exclusion_rules (source_id, kind, value)
  VALUES (source, kind, btrim(value))
  ON CONFLICT DO NOTHING
  RETURNING id INTO new_id;
  IF new_id IS NULL THEN
    SELECT r.id INTO new_id FROM converge.exclusion_rules r
     WHERE r.source_id = source AND r.kind = add_exclusion.kind
       AND lower(coalesce(r.value, '')) = lower(coalesce(btrim(add_exclusion.value), ''));
  END IF;
  RETURN new_id;
END $$;
COMMENT ON FUNCTION converge.add_exclusion(bigint, text, text) IS
  'Exclude a source''s orders by channel (Shopify sourceName or Converge type), tag, or test; case-insensitive; returns the rule id. Applies to events not yet released: held events of matching orders are dropped.';

CREATE FUNCTION converge.remove_exclusion(source bigint, kind text, value text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM converge._source_or_error(source);
  DELETE FROM converge.exclusion_rules r
   WHERE r.source_id = source AND r.kind = remove_exclusion.kind
     AND lower(coalesce(r.value, '')) = lower(coalesce(btrim(remove_exclusion.value), ''));
  RETURN FOUND;
END $$;
COMMENT ON FUNCTION converge.remove_exclusion(bigint, text, text) IS
  'Remove an exclusion rule; orders that arrive later are no longer excluded by it (events already decided stay as they are)';

CREATE FUNCTION converge.preview_exclusion(source bigint, kind text, value text DEFAULT NULL)
RETURNS TABLE (order_id bigint, order_name text, created_at timestamptz, source_name text, sales_channel text,
               tags text[], event_state text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
  SELECT o.order_id, o.order_name, o.created_at, o.source_name,
         converge.sales_channel(o.source_id, o.source_name), o.tags, e.state
    FROM converge.orders o
    LEFT JOIN converge.events e
      ON e.source_id = o.source_id AND e.order_id = o.order_id AND e.event_name = 'Placed Order'
   WHERE o.source_id = preview_exclusion.source
     AND converge._rule_matches(preview_exclusion.kind, btrim(preview_exclusion.value), o.source_name,
                                converge.sales_channel(o.source_id, o.source_name), o.tags, o.test)
   ORDER BY o.created_at, o.order_id;
END;
COMMENT ON FUNCTION converge.preview_exclusion(bigint, text, text) IS
  'The stored orders a rule would exclude, with the state of their Placed Order (only held ones would still change)';

------------------------------------------------------------------------------
-- Events: what users query
------------------------------------------------------------------------------

CREATE VIEW converge.placed_orders AS
SELECT e.event_id, e.source_id, e.order_id, e.properties ->> 'order_name' AS order_name,
       e.sales_channel, (e.properties ->> 'total_price')::numeric AS revenue, e.properties ->> 'currency' AS currency,
       (e.properties ->> 'total_price_shop')::numeric AS revenue_shop, e.properties ->> 'shop_currency' AS shop_currency,
       (e.properties ->> '$is_new_customer')::boolean AS is_new_customer,
       jsonb_array_length(e.properties -> 'items') AS items_count,
       e.properties ->> 'coupon' AS coupon, e.properties ->> '$email' AS email,
       e.state, e.occurred_at, e.release_at, e.released_at
  FROM converge.events e
 WHERE e.event_name = 'Placed Order';
COMMENT ON VIEW converge.placed_orders IS 'Placed Order events with their main properties as typed columns';

CREATE VIEW converge.received_refunds AS
SELECT e.event_id, e.source_id, e.order_id, e.refund_id, e.properties ->> 'order_name' AS order_name,
       e.sales_channel, (e.properties ->> 'total_refunded')::numeric AS refunded, e.properties ->> 'currency' AS currency,
       (e.properties ->> 'total_refunded_shop')::numeric AS refunded_shop, e.properties ->> 'shop_currency' AS shop_currency,
       jsonb_array_length(e.properties -> 'items') AS items_count, e.properties ->> '$email' AS email,
       e.state, e.occurred_at, e.release_at, e.released_at
  FROM converge.events e
 WHERE e.event_name = 'Received Refund';
COMMENT ON VIEW converge.received_refunds IS 'Received Refund events with their main properties as typed columns';

CREATE VIEW converge.event_counts AS
SELECT s.id AS source_id, s.name, e.event_name, e.state, count(e.event_id) AS events
  FROM converge.source_settings s
  JOIN converge.events e ON e.source_id = s.id
 GROUP BY s.id, s.name, e.event_name, e.state;
COMMENT ON VIEW converge.event_counts IS 'How many events of each name each source has in each state';

SELECT pg_catalog.pg_extension_config_dump('converge.exclusion_rules', '');
SELECT pg_catalog.pg_extension_config_dump('converge.exclusion_rules_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('converge.events', '');

REVOKE EXECUTE ON FUNCTION converge.add_exclusion(bigint, text, text), converge.remove_exclusion(bigint, text, text),
  converge.release_due_events(timestamptz), converge._order_events(bigint, bigint[], boolean[], bigint[]),
  converge._history_complete(bigint), converge._drop_excluded(bigint),
  converge._event_payloads(text, bigint, bigint[]), converge._refresh_held(bigint, bigint[]) FROM PUBLIC;

------------------------------------------------------------------------------
-- Destinations: where ready events are forwarded, over HTTP
------------------------------------------------------------------------------

CREATE FUNCTION converge.destination_url(url text)
RETURNS text
LANGUAGE C STABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'converge_destination_url_sql';
COMMENT ON FUNCTION converge.destination_url(text) IS
  'The URL as deliveries will use it; refuses anything but https:// (or http:// to this machine, when converge.allow_http_destinations is on)';

CREATE TABLE converge.destination_settings (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name             text NOT NULL CONSTRAINT destination_settings_name_unique UNIQUE
                   CONSTRAINT destinations_name_check CHECK (btrim(name) <> ''),
  url              text NOT NULL,
  sources          bigint[],      -- NULL: every source
  event_names      text[]         -- NULL: every event name
                   CONSTRAINT destinations_event_names_check
                   CHECK (event_names <@ ARRAY['Placed Order', 'Received Refund'] AND cardinality(event_names) > 0),
  batch_size       integer NOT NULL DEFAULT 1
                   CONSTRAINT destinations_batch_size_check CHECK (batch_size BETWEEN 1 AND 500),
  max_connections  integer NOT NULL DEFAULT 8
                   CONSTRAINT destinations_max_connections_check CHECK (max_connections BETWEEN 1 AND 64),
  paused           boolean NOT NULL DEFAULT false,
  created_at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
COMMENT ON TABLE converge.destination_settings IS
  'HTTP endpoints that receive ready events (the view converge.destinations shows them); secrets live in converge.destination_secrets';

CREATE TABLE converge.destination_secrets (
  destination_id  bigint PRIMARY KEY REFERENCES converge.destination_settings (id) ON DELETE CASCADE,
  secret          text NOT NULL
);
ALTER TABLE converge.destination_secrets ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON converge.destination_secrets FROM PUBLIC;

-- The circuit breaker and the last outcome, per destination.
CREATE TABLE converge.destination_state (
  destination_id        bigint PRIMARY KEY REFERENCES converge.destination_settings (id) ON DELETE CASCADE,
  consecutive_failures  integer NOT NULL DEFAULT 0,
  circuit_open_until    timestamptz,
  last_success_at       timestamptz,
  last_error            text,
  last_error_at         timestamptz
);

-- One row per (destination, event).  A running converge.deliver() leases the
-- rows it sends (leased_until, committed before sending): a backend that dies
-- while sending leaves leases that expire, and the events are sent again.
CREATE TABLE converge.deliveries (
  destination_id    bigint NOT NULL,
  event_id          text COLLATE "C" NOT NULL,
  state             text NOT NULL DEFAULT 'pending'
                    CONSTRAINT deliveries_state_check CHECK (state IN ('pending', 'retrying', 'delivered', 'dead')),
  attempts          integer NOT NULL DEFAULT 0,
  next_attempt_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
  leased_until      timestamptz,
  queued_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
  first_attempt_at  timestamptz,
  delivered_at      timestamptz,
  last_status       integer,
  last_error        text,
  last_response     text,
  PRIMARY KEY (destination_id, event_id)
);
COMMENT ON TABLE converge.deliveries IS
  'One row per event and destination: pending, retrying (next_attempt_at), delivered, or dead (retries exhausted or refused); converge.replay() queues them again';
CREATE INDEX deliveries_due_idx ON converge.deliveries (next_attempt_at) WHERE state IN ('pending', 'retrying');
CREATE INDEX deliveries_state_idx ON converge.deliveries (destination_id, state);
CREATE INDEX deliveries_delivered_idx ON converge.deliveries (destination_id, delivered_at) WHERE state = 'delivered';

-- Queue ready events for the destinations that follow them (and existed when
-- the event was released); called wherever events become ready.
CREATE FUNCTION converge._queue_deliveries(event_ids text[])
RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET jit = off
AS $$
DECLARE n bigint;
BEGIN
  IF event_ids IS NULL THEN
    RETURN 0;
  END IF;
  -- waits for a destination being created (it locks the table against this
  -- mode first): its created_at is then either before these releases, and it
  -- is seen here, or after them, and it rightly gets none of them
  LOCK TABLE converge.destination_settings IN SHARE MODE;
  IF NOT EXISTS (SELECT 1 FROM converge.destination_settings) THEN
    RETURN 0;
  END IF;
  INSERT INTO converge.deliveries (destination_id, event_id, queued_at, next_attempt_at)
  SELECT d.id, e.event_id, e.released_at, clock_timestamp()
    FROM converge.events e
    JOIN converge.destination_settings d
      ON (d.sources IS NULL OR e.source_id = ANY (d.sources))
     AND (d.event_names IS NULL OR e.event_name = ANY (d.event_names))
     AND d.created_at <= e.released_at
   WHERE e.event_id = ANY (event_ids) AND e.state = 'ready'
  ON CONFLICT DO NOTHING;
  GET DIAGNOSTICS n = ROW_COUNT;
  RETURN n;
END $$;

CREATE FUNCTION converge._destination_or_error(destination bigint)
RETURNS converge.destination_settings
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE d converge.destination_settings;
BEGIN
  SELECT * INTO d FROM converge.destination_settings WHERE id = destination;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'destination % does not exist', destination
      USING ERRCODE = 'no_data_found', HINT = 'SELECT id, name, url FROM converge.destinations lists them.';
  END IF;
  RETURN d;
END $$;

CREATE FUNCTION converge._check_destination(sources bigint[], event_names text[])
RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE missing bigint;
BEGIN
  SELECT s INTO missing FROM unnest(sources) s
   WHERE s IS NULL OR NOT EXISTS (SELECT 1 FROM converge.source_settings WHERE id = s) LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'source % does not exist', coalesce(missing::text, 'NULL')
      USING ERRCODE = 'no_data_found',
            HINT = 'List existing source ids (SELECT id, name FROM converge.sources), or pass NULL for every source.';
  END IF;
  IF event_names IS NOT NULL AND (cardinality(event_names) = 0
     OR NOT event_names <@ ARRAY['Placed Order', 'Received Refund']) THEN
    RAISE EXCEPTION 'invalid event names %', event_names
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Events are named Placed Order and Received Refund; pass NULL for both.';
  END IF;
END $$;

CREATE FUNCTION converge.create_destination(
  name text, url text, secret text DEFAULT NULL, sources bigint[] DEFAULT NULL, event_names text[] DEFAULT NULL,
  batch_size integer DEFAULT 1, max_connections integer DEFAULT 8)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  clean_url text := converge.destination_url(url);
  new_id bigint;
BEGIN
  LOCK TABLE converge.destination_settings IN SHARE ROW EXCLUSIVE MODE;   -- see _queue_deliveries
  IF coalesce(btrim(name), '') = '' THEN
    RAISE EXCEPTION 'a destination needs a name' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF EXISTS (SELECT 1 FROM converge.destination_settings d WHERE d.name = btrim(create_destination.name)) THEN
    RAISE EXCEPTION 'a destination named "%" already exists', btrim(name)
      USING ERRCODE = 'unique_violation', HINT = 'Choose another name, or change it with converge.alter_destination().';
  END IF;
  IF secret = '' THEN
    RAISE EXCEPTION 'an empty secret signs nothing' USING ERRCODE = 'invalid_parameter_value',
      HINT = 'Pass NULL for unsigned requests, or a secret of 16 characters or more.';
  END IF;
  PERFORM converge._check_destination(sources, event_names);
  INSERT INTO converge.destination_settings (name, url, sources, event_names, batch_size, max_connections)
  VALUES (btrim(name), clean_url, sources, event_names, batch_size, max_connections)
  RETURNING id INTO new_id;
  INSERT INTO converge.destination_state (destination_id) VALUES (new_id);
  IF secret IS NOT NULL THEN
    INSERT INTO converge.destination_secrets (destination_id, secret) VALUES (new_id, secret);
  END IF;
  RETURN new_id;
END $$;
COMMENT ON FUNCTION converge.create_destination(text, text, text, bigint[], text[], integer, integer) IS
  'Forward the events released from now on (of these sources and event names; NULL: all) to url, signed with secret when given';

CREATE FUNCTION converge.alter_destination(
  destination bigint, url text DEFAULT NULL, secret text DEFAULT NULL, sources bigint[] DEFAULT NULL,
  event_names text[] DEFAULT NULL, batch_size integer DEFAULT NULL, max_connections integer DEFAULT NULL,
  all_sources boolean DEFAULT false, all_event_names boolean DEFAULT false, unsigned boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM converge._destination_or_error(destination);
  PERFORM converge._check_destination(sources, event_names);
  UPDATE converge.destination_settings d
     SET url = coalesce(converge.destination_url(alter_destination.url), d.url),
         sources = CASE WHEN all_sources THEN NULL ELSE coalesce(alter_destination.sources, d.sources) END,
         event_names = CASE WHEN all_event_names THEN NULL ELSE coalesce(alter_destination.event_names, d.event_names) END,
         batch_size = coalesce(alter_destination.batch_size, d.batch_size),
         max_connections = coalesce(alter_destination.max_connections, d.max_connections)
   WHERE d.id = destination;
  IF unsigned THEN
    DELETE FROM converge.destination_secrets WHERE destination_id = destination;
  ELSIF secret IS NOT NULL THEN
    INSERT INTO converge.destination_secrets (destination_id, secret) VALUES (destination, secret)
    ON CONFLICT (destination_id) DO UPDATE SET secret = EXCLUDED.secret;
  END IF;
END $$;

CREATE FUNCTION converge.pause_destination(destination bigint)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM converge._destination_or_error(destination);
  UPDATE converge.destination_settings SET paused = true WHERE id = destination;
END $$;

CREATE FUNCTION converge.resume_destination(destination bigint)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM converge._destination_or_error(destination);
  UPDATE converge.destination_settings SET paused = false WHERE id = destination;
  -- a manual resume closes the circuit too
  UPDATE converge.destination_state SET circuit_open_until = NULL, consecutive_failures = 0
   WHERE destination_id = destination;
END $$;

CREATE FUNCTION converge.drop_destination(destination bigint)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM converge._destination_or_error(destination);
  DELETE FROM converge.deliveries WHERE destination_id = destination;
  DELETE FROM converge.destination_settings WHERE id = destination;
END $$;

-- Queue events again: the ready events the destination follows, released in
-- [since, until) (also before the destination existed: it is asked for); never
-- historic, held or dropped ones.
CREATE FUNCTION converge.replay(destination bigint, since timestamptz, until timestamptz DEFAULT now())
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  d converge.destination_settings := converge._destination_or_error(destination);
  n bigint;
BEGIN
  IF since IS NULL OR until IS NULL OR since >= until THEN
    RAISE EXCEPTION 'replay needs since < until' USING ERRCODE = 'invalid_parameter_value',
      HINT = 'For example converge.replay(1, now() - interval ''1 day'').';
  END IF;
  INSERT INTO converge.deliveries AS x (destination_id, event_id, queued_at, next_attempt_at)
  SELECT d.id, e.event_id, clock_timestamp(), clock_timestamp()
    FROM converge.events e
   WHERE e.state = 'ready' AND e.released_at >= since AND e.released_at < until
     AND (d.sources IS NULL OR e.source_id = ANY (d.sources))
     AND (d.event_names IS NULL OR e.event_name = ANY (d.event_names))
  ON CONFLICT (destination_id, event_id) DO UPDATE
     SET state = 'pending', attempts = 0, next_attempt_at = clock_timestamp(), queued_at = clock_timestamp(),
         first_attempt_at = NULL, delivered_at = NULL, leased_until = NULL;
  GET DIAGNOSTICS n = ROW_COUNT;
  RETURN n;
END $$;
COMMENT ON FUNCTION converge.replay(bigint, timestamptz, timestamptz) IS
  'Send again the ready events the destination follows that were released in [since, until); returns how many were queued';

CREATE FUNCTION converge.replay_dead(destination bigint)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE n bigint;
BEGIN
  PERFORM converge._destination_or_error(destination);
  UPDATE converge.deliveries
     SET state = 'pending', attempts = 0, next_attempt_at = clock_timestamp(), queued_at = clock_timestamp(),
         first_attempt_at = NULL, leased_until = NULL
   WHERE destination_id = destination AND state = 'dead';
  GET DIAGNOSTICS n = ROW_COUNT;
  RETURN n;
END $$;
COMMENT ON FUNCTION converge.replay_dead(bigint) IS 'Queue the dead deliveries of a destination again; returns how many';

CREATE PROCEDURE converge.deliver(linger boolean DEFAULT false)
LANGUAGE C
AS 'MODULE_PATHNAME', 'converge_deliver';
COMMENT ON PROCEDURE converge.deliver(boolean) IS
  'Send the due deliveries concurrently, committing as it goes, until none is due (linger: until converge.delivery_time_limit, looking for new ones every second); pg_cron runs CALL converge.deliver(linger => true) every minute';

CREATE VIEW converge.destinations AS
SELECT d.id, d.name,
       -- a query string may carry a token: shown masked
       regexp_replace(d.url, '\?.*$', '?...') AS url, d.sources, d.event_names, d.batch_size, d.max_connections, d.paused,
       st.circuit_open_until > now() AS circuit_open, st.circuit_open_until, st.consecutive_failures,
       k.secret IS NOT NULL AS signed, d.created_at
  FROM converge.destination_settings d
  LEFT JOIN converge.destination_state st ON st.destination_id = d.id
  LEFT JOIN converge.destination_secrets k ON k.destination_id = d.id;
COMMENT ON VIEW converge.destinations IS 'Every destination with its settings and circuit breaker; never its secret (nor the query string of its URL)';

CREATE VIEW converge.delivery_status AS
SELECT d.id AS destination_id, d.name,
       CASE WHEN d.paused THEN 'paused' WHEN st.circuit_open_until > now() THEN 'circuit open' ELSE 'active' END AS status,
       coalesce(c.pending, 0) AS pending, coalesce(c.retrying, 0) AS retrying,
       coalesce(c.delivered, 0) AS delivered, coalesce(c.dead, 0) AS dead,
       st.last_success_at, st.last_error, st.last_error_at, st.consecutive_failures, st.circuit_open_until,
       l.p50 AS latency_p50, l.p95 AS latency_p95
  FROM converge.destination_settings d
  LEFT JOIN converge.destination_state st ON st.destination_id = d.id
  LEFT JOIN LATERAL (
    SELECT count(*) FILTER (WHERE x.state = 'pending') AS pending, count(*) FILTER (WHERE x.state = 'retrying') AS retrying,
           count(*) FILTER (WHERE x.state = 'delivered') AS delivered, count(*) FILTER (WHERE x.state = 'dead') AS dead
      FROM converge.deliveries x WHERE x.destination_id = d.id) c ON true
  LEFT JOIN LATERAL (
    -- from the event's release to its delivery, over the last day
    SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x.delivered_at - x.queued_at) AS p50,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY x.delivered_at - x.queued_at) AS p95
      FROM converge.deliveries x
     WHERE x.destination_id = d.id AND x.state = 'delivered' AND x.delivered_at > now() - interval '1 day') l ON true;
COMMENT ON VIEW converge.delivery_status IS
  'Per destination: pending, retrying, delivered and dead deliveries, last success and error, circuit breaker, p50/p95 latency from release to delivery over the last day';

SELECT pg_catalog.pg_extension_config_dump('converge.destination_settings', '');
SELECT pg_catalog.pg_extension_config_dump('converge.destination_settings_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('converge.destination_secrets', '');
SELECT pg_catalog.pg_extension_config_dump('converge.destination_state', '');
SELECT pg_catalog.pg_extension_config_dump('converge.deliveries', '');

REVOKE EXECUTE ON FUNCTION converge.create_destination(text, text, text, bigint[], text[], integer, integer),
  converge.alter_destination(bigint, text, text, bigint[], text[], integer, integer, boolean, boolean, boolean),
  converge.pause_destination(bigint), converge.resume_destination(bigint), converge.drop_destination(bigint),
  converge.replay(bigint, timestamptz, timestamptz), converge.replay_dead(bigint),
  converge._queue_deliveries(text[]) FROM PUBLIC;
REVOKE EXECUTE ON PROCEDURE converge.deliver(boolean) FROM PUBLIC;

------------------------------------------------------------------------------
-- What users look at
------------------------------------------------------------------------------

CREATE VIEW converge.sources AS
SELECT s.id, s.name, s.store, s.client_id, s.api_version, s.upsell_delay, s.upsell_delay_length, s.paused,
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
            HINT = 'Add pg_cron to shared_preload_libraries and CREATE EXTENSION pg_cron in the database named by cron.database_name; or run CALL converge.sync_all(), SELECT converge.release_due_events() and CALL converge.deliver() every minute from any scheduler (for example: psql -c ''CALL converge.sync_all()'').';
  END IF;
  FOR job_name, command IN VALUES ('converge-sync', 'CALL converge.sync_all()'),
                                  ('converge-release', 'SELECT converge.release_due_events()'),
                                  ('converge-deliver', 'CALL converge.deliver(linger => true)') LOOP
    EXECUTE 'SELECT cron.schedule($1, $2, $3)' INTO job_id USING job_name, schedule, command;
    RETURN NEXT;
  END LOOP;
END $$;
COMMENT ON FUNCTION converge.schedule(text) IS
  'Create (or update) the pg_cron jobs that run converge: converge-sync runs CALL converge.sync_all(), converge-release SELECT converge.release_due_events(), converge-deliver CALL converge.deliver(linger => true)';

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
