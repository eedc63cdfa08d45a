-- Baseline of neonfcgi's own schema.
--
-- neonfcgi needs no tables of its own to serve: /health, /health/db and
-- /metrics only run SELECT 1. The one table it keeps is the migration
-- record, neonfcgi_schema_migrations, which `neonfcgi migrate` creates
-- before applying this file. This baseline documents that table in the
-- database itself, so whoever finds it (psql \dt+) knows what owns it.
--
-- Your own migrations follow as 0002_name.sql, 0003_name.sql, ...
-- (see "Migrations" in README.md).
COMMENT ON TABLE neonfcgi_schema_migrations IS
    'Applied neonfcgi migrations (MIGRATIONS_DIR/NNNN_name.sql): one row per file, '
    'with its SHA-256 checksum; written by `neonfcgi migrate`. Do not edit by hand.';
