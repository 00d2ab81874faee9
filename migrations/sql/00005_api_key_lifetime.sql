-- API keys may expire: a key is refused from expires_at on. NULL is a key without expiry (every key
-- made before this migration). Same conventions as 00002_auth.sql.

-- +goose Up
ALTER TABLE auth.api_keys ADD COLUMN expires_at timestamptz CHECK (expires_at > created_at);
COMMENT ON COLUMN auth.api_keys.expires_at IS 'When the key stops working; NULL for a key that does not expire.';

-- +goose Down
ALTER TABLE auth.api_keys DROP COLUMN expires_at;
