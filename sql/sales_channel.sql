-- converge.sales_channel: the product's mapping table, row for row, and the
-- fallback to web.

-- The built-in table exactly as the product specifies it.
SELECT * FROM converge.default_channel_mappings();

-- Every row maps through both forms of the function.
SELECT d.shopify_source_name, converge.sales_channel(d.shopify_source_name) AS one_arg,
       converge.sales_channel(1, d.shopify_source_name) AS for_source,
       converge.sales_channel(d.shopify_source_name) = d.converge_channel AS matches
  FROM converge.default_channel_mappings() d;

-- Anything else, or nothing, is web: unknown apps, Shopify's own protected
-- values without a row, near misses (the match is exact), empty and NULL.
SELECT CASE WHEN length(s) > 40 THEN format('%s... (%s chars)', left(s, 5), length(s)) ELSE format('%L', s) END AS source_name, converge.sales_channel(s) AS channel,
       converge.sales_channel(42, s) AS for_source
  FROM (VALUES ('iphone'), ('android'), ('5551234'), ('some_custom_app'), ('WEB'), ('Pos'),
               ('pos '), (' pos'), ('edit order'), ('Amazon'), ('128754974730'), ('1287549747'),
               (''), (NULL), (repeat('x', 300))) AS t(s);
SELECT converge.sales_channel(NULL::bigint, 'pos') AS no_source, converge.sales_channel(NULL, NULL) AS nothing;

-- The valid Converge types, and every default maps to one of them.
SELECT * FROM converge.sales_channel_types();
SELECT array_agg(t) AS types FROM (SELECT converge.sales_channel_types() AS t) s;
SELECT count(*) AS defaults_to_invalid_types
  FROM converge.default_channel_mappings() d
 WHERE d.converge_channel NOT IN (SELECT converge.sales_channel_types());

-- It is cheap enough for the sync path: a million calls, no error, all web or mapped.
SELECT converge.sales_channel((ARRAY['web','pos','3890849', NULL, 'x'])[1 + i % 5]) AS channel, count(*)
  FROM generate_series(1, 1000000) i GROUP BY 1 ORDER BY 1;
