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
