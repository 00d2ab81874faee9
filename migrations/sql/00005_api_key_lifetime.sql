-- API keys may expire, and remember the login session that created them. expires_at: a key is
-- refused from then on; NULL is a key without expiry (every key made before this migration).
-- created_by_family: the refresh-token family (auth.refresh_token_families.id) of the session whose
-- access token created the key; NULL for keys made before this migration. No foreign key: the
-- record outlives the family's rows. Same conventions as 00002_auth.sql.

-- +goose Up
ALTER TABLE auth.api_keys
    ADD COLUMN expires_at timestamptz CHECK (expires_at > created_at),
    ADD COLUMN created_by_family bytea CHECK (octet_length(created_by_family) = 20);
COMMENT ON COLUMN auth.api_keys.expires_at IS 'When the key stops working; NULL for a key that does not expire.';
COMMENT ON COLUMN auth.api_keys.created_by_family IS 'The refresh-token family (login session) whose access token created the key.';

-- +goose Down
ALTER TABLE auth.api_keys DROP COLUMN created_by_family, DROP COLUMN expires_at;
