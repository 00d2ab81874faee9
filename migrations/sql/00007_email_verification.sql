-- Email verification. A password registration does not prove that its author owns the email, so the
-- account starts unverified and a link mailed to the address verifies it; OAuth sign-in links a
-- provider identity only to an account whose email is verified (see docs/security.md). Same conventions
-- as 00002_auth.sql.

-- +goose Up
ALTER TABLE auth.users ADD COLUMN email_verified_at timestamptz CHECK (email_verified_at >= created_at);
COMMENT ON COLUMN auth.users.email_verified_at IS 'When the owner proved the email (a verification link, or a provider that verified it); NULL: unverified.';
-- Users without a password were created by an OAuth sign-in whose provider had verified the email.
-- Password users stay unverified: nothing ever proved their address.
UPDATE auth.users u SET email_verified_at = u.created_at
WHERE NOT EXISTS (SELECT 1 FROM auth.credentials c WHERE c.ksid = u.ksid AND c.user_id = u.id);

CREATE TABLE auth.email_verifications (
    ksid       bytea       NOT NULL CHECK (octet_length(ksid) = 8),
    -- SHA-256 of the link's secret; the secret itself is only in the mail.
    token_hash bytea       NOT NULL CHECK (octet_length(token_hash) = 32),
    user_id    bytea       NOT NULL CHECK (octet_length(user_id) = 20),
    -- The normalized address the link was sent to: it verifies that address only.
    email      text        NOT NULL CHECK (octet_length(email) BETWEEN 3 AND 320),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz CHECK (used_at >= created_at),
    PRIMARY KEY (ksid, token_hash),
    FOREIGN KEY (ksid, user_id) REFERENCES auth.users (ksid, id) ON DELETE CASCADE,
    CONSTRAINT email_verifications_expires_after_create CHECK (expires_at > created_at)
);
COMMENT ON TABLE auth.email_verifications IS 'Email verification links: SHA-256 of each link''s secret; used_at makes a link single-use.';
CREATE INDEX email_verifications_user_idx ON auth.email_verifications (ksid, user_id);

COMMENT ON TABLE auth.email_claims IS 'Cross-region directory: keyed hash of a normalized email, or of an OAuth identity (provider, subject), -> user and home region. Never holds the email or the subject.';

-- +goose Down
COMMENT ON TABLE auth.email_claims IS 'Cross-region email uniqueness directory: hash of the normalized email -> user and home region. Never holds the email.';
DROP TABLE auth.email_verifications;
ALTER TABLE auth.users DROP COLUMN email_verified_at;
