-- converge.store_handle: accepted forms and every kind of refusal.

-- The forms users paste.
SELECT CASE WHEN length(s) > 40 THEN format('%s... (%s chars)', left(s, 5), length(s)) ELSE s END AS input,
       converge.store_handle(s) AS handle
  FROM (VALUES ('acme-eu'), ('ACME-EU'), ('acme-eu.myshopify.com'),
               ('https://acme-eu.myshopify.com/'), ('https://acme-eu.myshopify.com'),
               ('HTTPS://ACME-EU.MYSHOPIFY.COM/'), ('http://acme-eu.myshopify.com/'),
               ('acme-eu.myshopify.com/'), ('a'), ('a1-b2-c3'), ('7store'),
               (repeat('x', 63))) AS t(s);

SELECT converge.store_handle(NULL) IS NULL AS null_in_null_out;

-- Refusals: SQLSTATE and the detail naming the problem, in one table.
CREATE FUNCTION pg_temp.try_handle(store text, OUT handle text, OUT state text, OUT detail text)
LANGUAGE plpgsql AS $$
BEGIN
  handle := converge.store_handle(store);
EXCEPTION WHEN others THEN
  GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, detail = PG_EXCEPTION_DETAIL;
END $$;

SELECT CASE WHEN length(s) > 40 THEN format('%s... (%s chars)', left(s, 5), length(s)) ELSE format('%L', replace(replace(s, E'\n', '\n'), E'\t', '\t')) END AS input,
       r.*
  FROM (VALUES (''), (' '), ('acme eu'), (' acme-eu'), ('acme-eu '), (E'acme\teu'), (E'acme-eu\n'),
               ('acme_eu'), ('acme.eu'), ('acme-eu.myshopify.com.evil.com'),
               ('evil.com'), ('acme-eu.shopify.com'), ('myshopify.com'), ('.myshopify.com'),
               ('https://evil.com/'), ('https://acme-eu.myshopify.com.evil.com/'),
               ('https://acme-eu.myshopify.com/admin'), ('acme-eu.myshopify.com/admin/api'),
               ('https://acme-eu.myshopify.com//'), ('https://user@acme-eu.myshopify.com/'),
               ('https://user:pw@acme-eu.myshopify.com/'), ('acme-eu@evil.com'),
               ('https://acme-eu.myshopify.com:8443/'), ('acme-eu:443'),
               ('https://acme-eu.myshopify.com/?x=1'), ('acme-eu#frag'),
               ('ftp://acme-eu.myshopify.com/'), ('javascript://acme-eu'), ('https://'),
               ('-acme'), ('acme-'), ('acme/../evil'), ('acmé'), (repeat('x', 64)),
               ('%61cme'), ('acme%2eeu')) AS t(s),
       LATERAL pg_temp.try_handle(s) r;

-- What a user sees.
\set VERBOSITY default
SELECT converge.store_handle('https://acme-eu.myshopify.com:8443/');
SELECT converge.store_handle('shop.acme.com');
