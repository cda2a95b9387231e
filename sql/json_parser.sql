-- The sync's own JSON parser gives exactly what jsonb_in gives, and refuses
-- exactly what jsonb_in refuses (it reports instead of throwing mid-sync).
CREATE TEMP TABLE docs (t text);
INSERT INTO docs VALUES
  ('{}'), ('[]'), ('{"a":1}'), ('  {"a" : [1, 2.5, -3, 0, -0.0, 1e3, 1E-2, 12345678901234567890123]}  '),
  ('{"b":1,"a":2,"aa":3,"a":4}'),                      -- duplicate keys: the last wins, keys sorted
  ('{"id":"gid:\/\/shopify\/Order\/9007199254740993"}'), -- escaped slashes, an id above 2^53
  ('{"s":"tab\there \"quoted\" back\\slash \u00e9 \ud83d\ude00 \/"}'),
  ('{"city":"Zürich","name":"Łódź 東京"}'),
  ('"a bare string"'), ('42'), ('true'), ('false'), ('null'), ('[null, true, {"x": [[]]}]'),
  ('{"amount":"19.99","n":9223372036854775807,"m":-9223372036854775808}'),
  (repeat('[', 900) || repeat(']', 900));
SELECT count(*) AS documents,
       count(*) FILTER (WHERE converge._parse_json(t) = t::jsonb) AS identical,
       count(*) FILTER (WHERE converge._parse_json(t)::text = (t::jsonb)::text) AS identical_text
  FROM docs;
SELECT converge._parse_json('{"b":1,"a":2,"aa":3,"a":4}') AS sorted_last_wins;

-- Refusals, with where and why (nesting beyond 1000 levels is refused here only).
CREATE FUNCTION pg_temp.try_parse(t text, OUT ours text, OUT jsonb_in_refuses boolean)
LANGUAGE plpgsql AS $$
BEGIN
  BEGIN
    PERFORM converge._parse_json(t);
    ours := 'accepted';
  EXCEPTION WHEN invalid_text_representation THEN
    ours := SQLERRM;
  END;
  BEGIN
    PERFORM t::jsonb;
    jsonb_in_refuses := false;
  EXCEPTION WHEN others THEN
    jsonb_in_refuses := true;
  END;
END $$;
SELECT CASE WHEN length(t) > 40 THEN format('%s... (%s chars)', left(t, 5), length(t)) ELSE format('%L', t) END AS input, r.*
  FROM (VALUES (''), ('{'), ('{"a":1'), ('{"a":1,}'), ('[1,]'), ('{"a" 1}'), ('{a:1}'), ('"unterminated'),
               (E'"control \x01 char"'), ('"bad \q escape"'), ('"\u12"'), ('"\ud83d"'), ('"\u0000"'),
               ('01'), ('1.'), ('.5'), ('-'), ('1e'), ('tru'), ('nul'), ('{"a":1} x'), ('[1] [2]'),
               (repeat('[', 1001) || repeat(']', 1001))) AS v(t),
       LATERAL pg_temp.try_parse(t) r;
