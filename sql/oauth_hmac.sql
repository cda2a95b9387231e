-- converge.verify_oauth_hmac: the install/callback query-string HMAC.

-- The vector from Shopify's JS SDK tests (secret 'my super secret key'), with
-- timestamp 1700000000; the hex MAC was computed outside PostgreSQL over
-- code=some%20code%20goes%20here&shop=the%20shop%20URL&state=some%20nonce%20passed%20from%20auth&timestamp=1700000000
\set q 'code=some%20code%20goes%20here&shop=the%20shop%20URL&state=some%20nonce%20passed%20from%20auth&timestamp=1700000000'
\set mac '10207991f5c2c65c114b70a3c3544ce1d00a236ea4ab034793de0d6407be9165'
SELECT converge.verify_oauth_hmac(:'q' || '&hmac=' || :'mac', 'my super secret key') AS sdk_vector;

-- The same parameters in any order, hmac anywhere, with a leading '?',
-- spaces sent as '+', needless %-escapes, an upper-case MAC, a signature
-- parameter (dropped like hmac): all the same message.
SELECT label, converge.verify_oauth_hmac(q, 'my super secret key') AS valid
  FROM (VALUES
    ('reordered', 'timestamp=1700000000&hmac=' || :'mac' || '&state=some%20nonce%20passed%20from%20auth&shop=the%20shop%20URL&code=some%20code%20goes%20here'),
    ('leading ?', '?' || :'q' || '&hmac=' || :'mac'),
    ('plus for space', 'code=some+code+goes+here&shop=the+shop+URL&state=some+nonce+passed+from+auth&timestamp=1700000000&hmac=' || :'mac'),
    ('needless escape', replace(:'q', 'URL', '%55%52%4c') || '&hmac=' || :'mac'),
    ('upper-case mac', :'q' || '&hmac=' || upper(:'mac')),
    ('with signature', :'q' || '&signature=abc&hmac=' || :'mac'),
    ('empty pairs', '&&' || :'q' || '&&hmac=' || :'mac' || '&')
  ) AS t(label, q);

-- Everything that must not verify.
SELECT label, converge.verify_oauth_hmac(q, s) AS valid
  FROM (VALUES
    ('wrong secret', :'q' || '&hmac=' || :'mac', 'my super secret kez'),
    ('value changed', replace(:'q', 'nonce', 'nonse') || '&hmac=' || :'mac', 'my super secret key'),
    ('parameter added', :'q' || '&host=x&hmac=' || :'mac', 'my super secret key'),
    ('parameter removed', replace(:'q', '&timestamp=1700000000', '') || '&hmac=' || :'mac', 'my super secret key'),
    ('mac changed', :'q' || '&hmac=' || overlay(:'mac' placing '0' from 64), 'my super secret key'),
    ('mac truncated', :'q' || '&hmac=' || left(:'mac', 63), 'my super secret key'),
    ('mac not hex', :'q' || '&hmac=' || repeat('z', 64), 'my super secret key'),
    ('mac base64', :'q' || '&hmac=EgeZH1wsZcEUtwo8NUTOHQCiNupKsDR5Pe DWQHvpFl', 'my super secret key'),
    ('two macs', :'q' || '&hmac=' || :'mac' || '&hmac=' || :'mac', 'my super secret key'),
    ('no mac', :'q', 'my super secret key'),
    ('empty mac', :'q' || '&hmac=', 'my super secret key'),
    ('broken escape', 'code=%zz&hmac=' || :'mac', 'my super secret key'),
    ('truncated escape', 'code=abc%2&hmac=' || :'mac', 'my super secret key'),
    ('empty query', '', 'my super secret key'),
    ('null query', NULL, 'my super secret key')
  ) AS t(label, q, s);

-- Signatures made with pgcrypto over queries with characters that need
-- encoding (as encodeURIComponent does) verify; the raw form does not.
CREATE EXTENSION IF NOT EXISTS pgcrypto;
SELECT converge.verify_oauth_hmac(
         'shop=acme-eu.myshopify.com&host=YWRtaW4uc2hvcGlmeS5jb20vc3RvcmUvYWNtZQ%3D%3D&state=a%2Fb%26c&timestamp=1700000000&hmac='
         || encode(hmac('host=YWRtaW4uc2hvcGlmeS5jb20vc3RvcmUvYWNtZQ%3D%3D&shop=acme-eu.myshopify.com&state=a%2Fb%26c&timestamp=1700000000', 'k', 'sha256'), 'hex'),
         'k') AS encoded_message,
       converge.verify_oauth_hmac(
         'shop=acme-eu.myshopify.com&host=YWRtaW4uc2hvcGlmeS5jb20vc3RvcmUvYWNtZQ%3D%3D&state=a%2Fb%26c&timestamp=1700000000&hmac='
         || encode(hmac('host=YWRtaW4uc2hvcGlmeS5jb20vc3RvcmUvYWNtZQ==&shop=acme-eu.myshopify.com&state=a/b&c&timestamp=1700000000', 'k', 'sha256'), 'hex'),
         'k') AS raw_message;

-- Freshness: with max_age the timestamp must be recent.
SELECT converge.verify_oauth_hmac(:'q' || '&hmac=' || :'mac', 'my super secret key', '90 seconds') AS stale_vector,
       converge.verify_oauth_hmac(:'q' || '&hmac=' || :'mac', 'my super secret key', NULL) AS unchecked;
SELECT label, converge.verify_oauth_hmac(q || '&hmac=' || encode(hmac(q, 'k', 'sha256'), 'hex'), 'k', '90 seconds') AS valid
  FROM (SELECT 'now' AS label, 'shop=acme-eu.myshopify.com&timestamp=' || extract(epoch FROM now())::bigint AS q
        UNION ALL SELECT '60 s ago', 'shop=acme-eu.myshopify.com&timestamp=' || (extract(epoch FROM now())::bigint - 60)
        UNION ALL SELECT '60 s ahead', 'shop=acme-eu.myshopify.com&timestamp=' || (extract(epoch FROM now())::bigint + 60)
        UNION ALL SELECT '10 min ago', 'shop=acme-eu.myshopify.com&timestamp=' || (extract(epoch FROM now())::bigint - 600)
        UNION ALL SELECT 'no timestamp', 'shop=acme-eu.myshopify.com'
        UNION ALL SELECT 'bad timestamp', 'shop=acme-eu.myshopify.com&timestamp=17e8'
        UNION ALL SELECT 'far future', 'shop=acme-eu.myshopify.com&timestamp=9223372036854775807'
        UNION ALL SELECT 'far past', 'shop=acme-eu.myshopify.com&timestamp=-9223372036854775807') AS t;

\set VERBOSITY default
SELECT converge.verify_oauth_hmac(:'q' || '&hmac=' || :'mac', NULL);
SELECT converge.verify_oauth_hmac(:'q' || '&hmac=' || :'mac', '');
