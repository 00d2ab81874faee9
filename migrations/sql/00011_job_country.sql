-- Where an on-site job is done: the matching engine's hard filter keeps an on-site job's list to
-- freelancers of its country. NULL: unknown (remote jobs need none). Same conventions as 00003_core.sql.

-- +goose Up
ALTER TABLE core.jobs ADD COLUMN country char(2) CHECK (country ~ '^[A-Z]{2}$');
COMMENT ON COLUMN core.jobs.country IS 'ISO 3166-1 alpha-2, upper case: where an on-site job is done; NULL when unknown.';

-- +goose Down
ALTER TABLE core.jobs DROP COLUMN country;
