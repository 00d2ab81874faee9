-- Schemas and the trigger functions shared by every schema.
--
-- Every shard holds the same three schemas. Only these schemas are sharded: the online move machinery
-- publishes "TABLES IN SCHEMA auth, core, ai", so anything created in public (such as the migration
-- record table) stays with its shard and is never copied.

-- +goose Up
CREATE SCHEMA auth;
COMMENT ON SCHEMA auth IS 'Identity: users, credentials, tokens, API keys, OAuth identities, the email directory.';

CREATE SCHEMA core;
COMMENT ON SCHEMA core IS 'Marketplace data: profiles, settings, jobs, reviews, audit log.';

CREATE SCHEMA ai;
COMMENT ON SCHEMA ai IS 'Derived AI data (embeddings); can be rebuilt from core.';

-- set_updated_at keeps updated_at honest whatever the writer forgets. It is an ordinary (origin)
-- trigger, so a logical-replication apply worker, which runs with session_replication_role = replica,
-- does not fire it: a moved row keeps the timestamp it had on the source and checksums still match.
-- +goose StatementBegin
CREATE FUNCTION core.set_updated_at() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog
AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;
-- +goose StatementEnd
COMMENT ON FUNCTION core.set_updated_at() IS 'BEFORE UPDATE trigger: sets NEW.updated_at to the transaction time.';

-- reject_update makes a table append-only for updates. DELETE stays allowed on purpose: after an
-- online move the source shard is cleaned with DELETE ... WHERE ksid in the moved keyrange.
-- +goose StatementBegin
CREATE FUNCTION core.reject_update() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog
AS $$
BEGIN
    RAISE EXCEPTION '%.% is append-only: UPDATE is not allowed', TG_TABLE_SCHEMA, TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
END;
$$;
-- +goose StatementEnd
COMMENT ON FUNCTION core.reject_update() IS 'BEFORE UPDATE trigger: rejects every UPDATE (append-only tables).';

-- +goose Down
DROP FUNCTION core.reject_update();
DROP FUNCTION core.set_updated_at();
-- RESTRICT (the default): a schema that still holds objects means a later migration was not rolled
-- back, and dropping it would silently destroy data.
DROP SCHEMA ai;
DROP SCHEMA core;
DROP SCHEMA auth;
