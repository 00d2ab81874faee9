-- Access tokens name their session (the refresh-token family), and a revoked family's tokens are
-- refused by every node within about a second (api/internal/revocation). Each node reads the families
-- revoked in the last access-token lifetime from every shard of its region every few seconds, so that
-- read needs an index on revoked_at; only revoked families are in it.

--
-- Refresh-token reuse also revokes the API keys created in the reused session
-- (api_keys.created_by_family, 00005): a stolen session's keys are as likely the thief's.

-- +goose Up
CREATE INDEX refresh_token_families_revoked_idx ON auth.refresh_token_families (revoked_at) WHERE revoked_at IS NOT NULL;
CREATE INDEX api_keys_created_by_family_idx ON auth.api_keys (ksid, created_by_family) WHERE created_by_family IS NOT NULL;

-- +goose Down
DROP INDEX auth.api_keys_created_by_family_idx;
DROP INDEX auth.refresh_token_families_revoked_idx;
