-- converge.verify_webhook_hmac: base64 HMAC-SHA256 of the raw body bytes.

-- A vector computed outside PostgreSQL (openssl dgst -sha256 -hmac hush -binary | base64).
SELECT converge.verify_webhook_hmac(
         convert_to('{"id":450789469,"email":"bob@example.com","total_price":"199.00"}', 'UTF8'),
         'LKVowXC/HOX8gJPIdsWQAm6khvSD+xRn9PLqs7k0aJk=', 'hush') AS known_vector;

-- pgcrypto as an independent oracle over many bodies, including binary and
-- non-UTF-8 bytes, empty and large ones: every correct signature verifies,
-- every body with a flipped bit or another secret does not.
CREATE EXTENSION pgcrypto;
CREATE TEMP TABLE bodies AS
SELECT i, CASE i % 4
            WHEN 0 THEN convert_to(format('{"id":%s,"note":"caf\u00e9 %s"}', i, repeat('x', i)), 'UTF8')
            WHEN 1 THEN decode(md5(i::text) || md5((i * 7)::text), 'hex')
            WHEN 2 THEN '\xff00fe01'::bytea || int4send(i)
            ELSE convert_to(repeat('abc', i * 100), 'UTF8') END AS body
  FROM generate_series(0, 199) i
UNION ALL SELECT -1, ''::bytea
UNION ALL SELECT -2, convert_to(repeat('0123456789', 200000), 'UTF8');
SELECT count(*) AS bodies,
       count(*) FILTER (WHERE converge.verify_webhook_hmac(body, encode(hmac(body, 'shpss_secret', 'sha256'), 'base64'), 'shpss_secret')) AS valid,
       count(*) FILTER (WHERE converge.verify_webhook_hmac(body, encode(hmac(body, 'shpss_other', 'sha256'), 'base64'), 'shpss_secret')) AS other_secret,
       count(*) FILTER (WHERE converge.verify_webhook_hmac(body || '\x00'::bytea, encode(hmac(body, 'shpss_secret', 'sha256'), 'base64'), 'shpss_secret')) AS body_extended,
       count(*) FILTER (WHERE length(body) > 0 AND converge.verify_webhook_hmac(set_bit(body, 0, 1 - get_bit(body, 0)), encode(hmac(body, 'shpss_secret', 'sha256'), 'base64'), 'shpss_secret')) AS bit_flipped
  FROM bodies;

-- Malformed, wrong, empty and NULL headers are false, never an error.
SELECT format('%L', h) AS header,
       converge.verify_webhook_hmac(convert_to('{"id":450789469,"email":"bob@example.com","total_price":"199.00"}', 'UTF8'), h, 'hush') AS valid
  FROM (VALUES ('LKVowXC/HOX8gJPIdsWQAm6khvSD+xRn9PLqs7k0aJk='),   -- right
               ('LKVowXC/HOX8gJPIdsWQAm6khvSD+xRn9PLqs7k0aJj='),   -- last char changed
               ('lKVowXC/HOX8gJPIdsWQAm6khvSD+xRn9PLqs7k0aJk='),   -- case changed
               ('LKVowXC/HOX8gJPIdsWQAm6khvSD+xRn9PLqs7k0aJl='),   -- non-canonical trailing bits
               ('LKVowXC/HOX8gJPIdsWQAm6khvSD+xRn9PLqs7k0aJk'),    -- padding missing
               ('LKVowXC_HOX8gJPIdsWQAm6khvSD-xRn9PLqs7k0aJk='),   -- base64url alphabet
               (' LKVowXC/HOX8gJPIdsWQAm6khvSD+xRn9PLqs7k0aJk='),  -- whitespace
               ('LKVowXC/HOX8gJPIdsWQAm6khvSD+xRn9PLqs7k0aJk=='),
               ('2ca568c170bf1ce4fc8093c876c590026ea486f483fb1467f4f2eab3b9346899'), -- hex, not base64
               ('not base64 at all!!!!!!!!!!!!!!!!!!!!!!!!!!'),
               ('===================================+========'),
               (''), (NULL)) AS t(h);

SELECT converge.verify_webhook_hmac(NULL, 'LKVowXC/HOX8gJPIdsWQAm6khvSD+xRn9PLqs7k0aJk=', 'hush') AS null_body;

-- The secret is configuration: missing or empty is an error, not a false.
\set VERBOSITY default
SELECT converge.verify_webhook_hmac('\x00'::bytea, 'LKVowXC/HOX8gJPIdsWQAm6khvSD+xRn9PLqs7k0aJk=', NULL);
SELECT converge.verify_webhook_hmac('\x00'::bytea, 'LKVowXC/HOX8gJPIdsWQAm6khvSD+xRn9PLqs7k0aJk=', '');
