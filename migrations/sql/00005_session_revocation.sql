-- Access tokens name their session (the refresh-token family), and a revoked family's tokens are
-- refused by every node within about a second (api/internal/revocation). Each node reads the families
-- revoked in the last access-token lifetime from every shard of its region every few seconds, so that
-- read needs an index on revoked_at; only revoked families are in it.

--
-- An API key records the session it was created in (family_id, no foreign key: the family may be
-- cleaned up before the key): a stolen session detected by refresh-token reuse also loses the keys
-- minted with it. Keys created before this column have none.

-- +goose Up
CREATE INDEX refresh_token_families_revoked_idx ON auth.refresh_token_families (revoked_at) WHERE revoked_at IS NOT NULL;
ALTER TABLE auth.api_keys ADD COLUMN family_id bytea CHECK (octet_length(family_id) = 20);
CREATE INDEX api_keys_family_idx ON auth.api_keys (ksid, family_id) WHERE family_id IS NOT NULL;

-- +goose Down
DROP INDEX auth.api_keys_family_idx;
ALTER TABLE auth.api_keys DROP COLUMN family_id;
DROP INDEX auth.refresh_token_families_revoked_idx;
