-- converge.channel_mappings: user additions and overrides, per source or
-- global, validated, and seen at once by this and every other session.

-- A global addition and a global override of a default.
INSERT INTO converge.channel_mappings (source_id, shopify_source_name, converge_channel)
VALUES (NULL, '5551234', 'marketplace'),
       (NULL, 'pos', 'offline');
SELECT converge.sales_channel('5551234') AS added, converge.sales_channel('pos') AS overridden,
       converge.sales_channel(7, 'pos') AS for_any_source, converge.sales_channel('web') AS untouched;

-- A per-source override beats the global one, for that source only.
INSERT INTO converge.channel_mappings (source_id, shopify_source_name, converge_channel)
VALUES (7, 'pos', 'pos'), (7, 'iphone', 'mobile_app'), (8, '3890849', 'web');
SELECT s AS source_id, n AS source_name, converge.sales_channel(s, n) AS channel
  FROM (VALUES (7, 'pos'), (8, 'pos'), (NULL, 'pos'), (7, 'iphone'), (8, 'iphone'),
               (8, '3890849'), (7, '3890849'), (7, '5551234'), (7, NULL)) AS t(s, n)
 ORDER BY 1 NULLS FIRST, 2;
SELECT converge.sales_channel('iphone') AS one_arg_ignores_source_overrides;

SELECT * FROM converge.effective_channel_mappings ORDER BY origin DESC, source_id NULLS FIRST, shopify_source_name;

-- Refusals: an invalid type (with the list of valid ones), a duplicate, an empty or oversized name.
\set VERBOSITY default
INSERT INTO converge.channel_mappings (shopify_source_name, converge_channel) VALUES ('amazon', 'amazon');
INSERT INTO converge.channel_mappings (shopify_source_name, converge_channel) VALUES ('amazon', 'Marketplace');
INSERT INTO converge.channel_mappings (shopify_source_name, converge_channel) VALUES ('amazon', '');
UPDATE converge.channel_mappings SET converge_channel = 'instagram' WHERE shopify_source_name = 'pos';
INSERT INTO converge.channel_mappings (shopify_source_name, converge_channel) VALUES ('pos', 'web');
INSERT INTO converge.channel_mappings (source_id, shopify_source_name, converge_channel) VALUES (7, 'pos', 'web');
INSERT INTO converge.channel_mappings (shopify_source_name, converge_channel) VALUES ('', 'web');
INSERT INTO converge.channel_mappings (shopify_source_name, converge_channel) VALUES (repeat('x', 256), 'web');
INSERT INTO converge.channel_mappings (shopify_source_name, converge_channel) VALUES ('x', NULL);
-- nothing changed
SELECT count(*) FROM converge.channel_mappings;

-- Updates and deletes take effect in the same session at once...
UPDATE converge.channel_mappings SET converge_channel = 'sms' WHERE source_id IS NULL AND shopify_source_name = '5551234';
SELECT converge.sales_channel('5551234') AS after_update;
DELETE FROM converge.channel_mappings WHERE source_id IS NULL AND shopify_source_name = 'pos';
SELECT converge.sales_channel('pos') AS after_delete, converge.sales_channel(7, 'pos') AS source_override_kept;

-- ...a rolled-back change never does...
BEGIN;
INSERT INTO converge.channel_mappings (shopify_source_name, converge_channel) VALUES ('android', 'mobile_app');
SELECT converge.sales_channel('android') AS inside_transaction;
ROLLBACK;
SELECT converge.sales_channel('android') AS after_rollback;

-- ...and a change committed by another session is seen on the next call here
-- (this session has the mappings cached).
SELECT converge.sales_channel('android') AS cached_before;
\! psql -X -q -d contrib_regression -c "INSERT INTO converge.channel_mappings (shopify_source_name, converge_channel) VALUES ('android', 'mobile_app')"
SELECT converge.sales_channel('android') AS after_other_session;
\! psql -X -q -d contrib_regression -c "DELETE FROM converge.channel_mappings WHERE shopify_source_name = 'android'"
SELECT converge.sales_channel('android') AS after_other_session_delete;
INSERT INTO converge.channel_mappings (shopify_source_name, converge_channel) VALUES ('android', 'mobile_app');

TRUNCATE converge.channel_mappings;
SELECT converge.sales_channel('android') AS after_truncate, converge.sales_channel(7, 'pos') AS default_again;

-- Ordinary roles can read the mappings but not change them.
CREATE ROLE converge_regress_user;
SET ROLE converge_regress_user;
SELECT converge.sales_channel('pos');
SELECT count(*) FROM converge.channel_mappings;
INSERT INTO converge.channel_mappings (shopify_source_name, converge_channel) VALUES ('pos', 'web');
RESET ROLE;
DROP ROLE converge_regress_user;
