-- The extension installs into a database that has pg_cron (the test cluster
-- preloads it); dump_restore.sql installs it where pg_cron is absent.
CREATE EXTENSION pg_cron;
CREATE EXTENSION converge;

SELECT e.extname, e.extversion, n.nspname AS schema, e.extrelocatable
  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
 WHERE e.extname IN ('converge', 'pg_cron')
 ORDER BY 1;

-- Every member object, and all of them in schema converge.
SELECT pg_describe_object(classid, objid, 0) AS member
  FROM pg_depend
 WHERE refclassid = 'pg_extension'::regclass
   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'converge')
   AND deptype = 'e'
 ORDER BY 1;

SELECT count(*) AS functions_outside_schema
  FROM pg_depend d JOIN pg_proc p ON d.classid = 'pg_proc'::regclass AND p.oid = d.objid
 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'converge')
   AND p.pronamespace <> 'converge'::regnamespace;

-- Tables holding configuration are dumped by pg_dump.
SELECT unnest(extconfig)::regclass AS dumped, unnest(extcondition) AS condition
  FROM pg_extension WHERE extname = 'converge' ORDER BY 1;

-- Not relocatable: the C code addresses its objects as converge.*.
ALTER EXTENSION converge SET SCHEMA public;

-- The settings are reserved: a typo is not silently a new placeholder.
SET converge.no_such_setting = 'x';
