-- Access tokens name their session (the refresh-token family), and a revoked family's tokens are
-- refused by every node within about a second (api/internal/revocation). Each node reads the families
-- revoked in the last access-token lifetime from every shard of its region every few seconds, so that
-- read needs an index on revoked_at; only revoked families are in it.

-- +goose Up
CREATE INDEX refresh_token_families_revoked_idx ON auth.refresh_token_families (revoked_at) WHERE revoked_at IS NOT NULL;

-- +goose Down
DROP INDEX auth.refresh_token_families_revoked_idx;
