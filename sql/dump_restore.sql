-- converge in a database without pg_cron, and pg_dump / pg_restore of its
-- configuration into a new database.
CREATE DATABASE converge_dump_src;
CREATE DATABASE converge_dump_dst;
\c converge_dump_src
SELECT count(*) AS pg_cron_here FROM pg_extension WHERE extname = 'pg_cron';
CREATE EXTENSION converge;
SELECT converge.sales_channel('3890849') AS usable_without_pg_cron;
INSERT INTO converge.channel_mappings (source_id, shopify_source_name, converge_channel)
VALUES (NULL, '5551234', 'marketplace'), (NULL, 'pos', 'offline'), (3, 'pos', 'pos');
DELETE FROM converge.channel_mappings WHERE shopify_source_name = '5551234';
INSERT INTO converge.channel_mappings (source_id, shopify_source_name, converge_channel)
VALUES (NULL, '5551234', 'sms');

\! pg_dump -Fc -f "$CONVERGE_TMP/converge_dump.fc" -d converge_dump_src
\! pg_restore --exit-on-error -d converge_dump_dst "$CONVERGE_TMP/converge_dump.fc"

\c converge_dump_dst
SELECT id, source_id, shopify_source_name, converge_channel FROM converge.channel_mappings ORDER BY id;
SELECT converge.sales_channel('5551234') AS restored_global, converge.sales_channel('pos') AS restored_override,
       converge.sales_channel(3, 'pos') AS restored_source_override;
-- the identity sequence was dumped too: new rows do not collide
INSERT INTO converge.channel_mappings (shopify_source_name, converge_channel) VALUES ('amazon', 'web') RETURNING id;
-- and the validation trigger came back with the extension
INSERT INTO converge.channel_mappings (shopify_source_name, converge_channel) VALUES ('iphone', 'phone');

\c contrib_regression
DROP DATABASE converge_dump_src;
DROP DATABASE converge_dump_dst;
