-- Identity tables.
--
-- Conventions shared by every sharded table (see docs/schema.md):
--   * ksid: the owner's 8-byte big-endian keyspace ID, the first column of the primary key, so that a
--     keyrange is a primary-key range and the primary key is the replica identity a row filter needs.
--   * ids are 20-byte entity IDs (6 bytes ms time | 8 bytes owner ksid | 1 byte kind | 5 bytes entropy).
--     No CHECK ties the embedded ksid to the row's ksid: a user relocated to another region gets a new
--     ksid, while the IDs that clients already hold stay valid.
--   * Foreign keys only point at rows of the same owner (same ksid), which always live on the same
--     shard. They cascade, so erasing a user removes everything the user owns on the shard.
--   * Hashes are SHA-256 (32 bytes); secrets themselves are never stored.

-- +goose Up
CREATE TABLE auth.users (
    ksid             bytea       NOT NULL CHECK (octet_length(ksid) = 8),
    id               bytea       NOT NULL CHECK (octet_length(id) = 20),
    email            text        NOT NULL CHECK (octet_length(email) BETWEEN 3 AND 320),
    email_normalized text        NOT NULL CHECK (email_normalized = lower(email_normalized)
                                                 AND position('@' IN email_normalized) > 1
                                                 AND octet_length(email_normalized) <= 320),
    name             text        NOT NULL CHECK (btrim(name) <> '' AND char_length(name) <= 200),
    role             text        NOT NULL CHECK (role IN ('client', 'freelancer', 'admin', 'sre', 'compliance')),
    region           text        NOT NULL CHECK (btrim(region) <> '' AND char_length(region) <= 64),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    deleted_at       timestamptz CHECK (deleted_at >= created_at),
    PRIMARY KEY (ksid, id),
    -- Unique per shard only. Uniqueness across shards and regions is the job of auth.email_claims.
    CONSTRAINT users_email_normalized_key UNIQUE (email_normalized)
);
COMMENT ON TABLE auth.users IS 'One row per user, on the shard of the user''s ksid. The email lives only in the home region.';
COMMENT ON COLUMN auth.users.region IS 'Home region code; the top byte of ksid encodes the same region.';
COMMENT ON COLUMN auth.users.deleted_at IS 'Soft delete; the email stays reserved until erasure removes the row.';
CREATE TRIGGER users_set_updated_at BEFORE UPDATE ON auth.users
    FOR EACH ROW EXECUTE FUNCTION core.set_updated_at();

CREATE TABLE auth.credentials (
    ksid          bytea       NOT NULL CHECK (octet_length(ksid) = 8),
    user_id       bytea       NOT NULL CHECK (octet_length(user_id) = 20),
    -- PHC string, e.g. $argon2id$v=19$m=65536,t=3,p=2$<salt>$<hash>: the parameters travel with the
    -- hash, so they can be raised later and old hashes still verify (and get rehashed on login).
    password_hash text        NOT NULL CHECK (password_hash ~ '^\$argon2id\$v=[0-9]+\$m=[0-9]+,t=[0-9]+,p=[0-9]+\$[^$]+\$[^$]+$'),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (ksid, user_id),
    FOREIGN KEY (ksid, user_id) REFERENCES auth.users (ksid, id) ON DELETE CASCADE
);
COMMENT ON TABLE auth.credentials IS 'Password hash (argon2id, PHC string) of a user; absent for OAuth-only users.';
CREATE TRIGGER credentials_set_updated_at BEFORE UPDATE ON auth.credentials
    FOR EACH ROW EXECUTE FUNCTION core.set_updated_at();

CREATE TABLE auth.refresh_token_families (
    ksid           bytea       NOT NULL CHECK (octet_length(ksid) = 8),
    id             bytea       NOT NULL CHECK (octet_length(id) = 20),
    user_id        bytea       NOT NULL CHECK (octet_length(user_id) = 20),
    created_at     timestamptz NOT NULL DEFAULT now(),
    revoked_at     timestamptz CHECK (revoked_at >= created_at),
    revoked_reason text        CHECK (char_length(revoked_reason) <= 200),
    PRIMARY KEY (ksid, id),
    FOREIGN KEY (ksid, user_id) REFERENCES auth.users (ksid, id) ON DELETE CASCADE,
    CONSTRAINT refresh_token_families_reason_needs_revoked CHECK (revoked_reason IS NULL OR revoked_at IS NOT NULL)
);
COMMENT ON TABLE auth.refresh_token_families IS 'A login session: every rotated refresh token of one login belongs to one family; reuse of a used token revokes the family.';
CREATE INDEX refresh_token_families_user_idx ON auth.refresh_token_families (ksid, user_id);

CREATE TABLE auth.refresh_tokens (
    ksid       bytea       NOT NULL CHECK (octet_length(ksid) = 8),
    token_hash bytea       NOT NULL CHECK (octet_length(token_hash) = 32),
    family_id  bytea       NOT NULL CHECK (octet_length(family_id) = 20),
    user_id    bytea       NOT NULL CHECK (octet_length(user_id) = 20),
    issued_at  timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz CHECK (used_at >= issued_at),
    PRIMARY KEY (ksid, token_hash),
    FOREIGN KEY (ksid, family_id) REFERENCES auth.refresh_token_families (ksid, id) ON DELETE CASCADE,
    FOREIGN KEY (ksid, user_id) REFERENCES auth.users (ksid, id) ON DELETE CASCADE,
    CONSTRAINT refresh_tokens_expires_after_issue CHECK (expires_at > issued_at)
);
COMMENT ON TABLE auth.refresh_tokens IS 'SHA-256 of each refresh token ever issued; used_at is set on rotation.';
CREATE INDEX refresh_tokens_family_idx ON auth.refresh_tokens (ksid, family_id);
CREATE INDEX refresh_tokens_user_idx ON auth.refresh_tokens (ksid, user_id);
-- Lets a janitor delete expired tokens without a full scan.
CREATE INDEX refresh_tokens_expires_idx ON auth.refresh_tokens (expires_at);

CREATE TABLE auth.api_keys (
    ksid         bytea       NOT NULL CHECK (octet_length(ksid) = 8),
    id           bytea       NOT NULL CHECK (octet_length(id) = 20),
    user_id      bytea       NOT NULL CHECK (octet_length(user_id) = 20),
    name         text        NOT NULL CHECK (btrim(name) <> '' AND char_length(name) <= 100),
    -- The first characters of the key, shown in listings so a user can tell keys apart.
    key_prefix   text        NOT NULL CHECK (key_prefix <> '' AND char_length(key_prefix) <= 32),
    key_hash     bytea       NOT NULL CHECK (octet_length(key_hash) = 32),
    scopes       text[]      NOT NULL DEFAULT '{}' CHECK (array_position(scopes, NULL) IS NULL AND '' <> ALL (scopes)),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz CHECK (revoked_at >= created_at),
    PRIMARY KEY (ksid, id),
    FOREIGN KEY (ksid, user_id) REFERENCES auth.users (ksid, id) ON DELETE CASCADE,
    -- Keys are 256-bit random secrets, so their hashes never collide; the constraint is also the
    -- lookup index used to authenticate a presented key.
    CONSTRAINT api_keys_key_hash_key UNIQUE (key_hash)
);
COMMENT ON TABLE auth.api_keys IS 'API keys: only the SHA-256 of the key is stored; the key is shown once at creation.';
CREATE INDEX api_keys_user_idx ON auth.api_keys (ksid, user_id);

CREATE TABLE auth.oauth_identities (
    ksid       bytea       NOT NULL CHECK (octet_length(ksid) = 8),
    provider   text        NOT NULL CHECK (provider ~ '^[a-z][a-z0-9_-]{0,31}$'),
    subject    text        NOT NULL CHECK (subject <> '' AND char_length(subject) <= 255),
    user_id    bytea       NOT NULL CHECK (octet_length(user_id) = 20),
    email      text        CHECK (octet_length(email) <= 320),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (ksid, provider, subject),
    FOREIGN KEY (ksid, user_id) REFERENCES auth.users (ksid, id) ON DELETE CASCADE
);
COMMENT ON TABLE auth.oauth_identities IS 'External identities (provider + subject) linked to a user.';
COMMENT ON COLUMN auth.oauth_identities.email IS 'The email the provider reported at link time, if any.';
CREATE INDEX oauth_identities_user_idx ON auth.oauth_identities (ksid, user_id);

-- The email directory. A row here is keyed by a ksid derived from the hash of the normalized email,
-- not by the user's ksid, so it lives on whatever shard owns that hash: any region can find out
-- whether an email is taken and where its owner lives by reading one row, without the email itself
-- ever leaving the owner's home region. The claim protocol (who writes it, when, how conflicts
-- resolve) belongs to the API; this table is only its storage.
CREATE TABLE auth.email_claims (
    ksid        bytea       NOT NULL CHECK (octet_length(ksid) = 8),
    email_hash  bytea       NOT NULL CHECK (octet_length(email_hash) = 32),
    user_id     bytea       NOT NULL CHECK (octet_length(user_id) = 20),
    home_region text        NOT NULL CHECK (btrim(home_region) <> '' AND char_length(home_region) <= 64),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (ksid, email_hash)
);
COMMENT ON TABLE auth.email_claims IS 'Cross-region email uniqueness directory: hash of the normalized email -> user and home region. Never holds the email.';
COMMENT ON COLUMN auth.email_claims.ksid IS 'Derived from email_hash, not the user''s ksid.';

-- +goose Down
DROP TABLE auth.email_claims;
DROP TABLE auth.oauth_identities;
DROP TABLE auth.api_keys;
DROP TABLE auth.refresh_tokens;
DROP TABLE auth.refresh_token_families;
DROP TABLE auth.credentials;
DROP TABLE auth.users;
