-- Marketplace tables. Same conventions as 00002_auth.sql (see docs/schema.md).

-- +goose Up

-- skills_text flattens a skills array for full-text search. array_to_string is only STABLE (it calls
-- element output functions), which a generated column refuses; for text[] the result cannot change,
-- so this wrapper is honestly IMMUTABLE.
CREATE FUNCTION core.skills_text(skills text[]) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN array_to_string(skills, ' ');

CREATE TABLE core.profiles (
    ksid        bytea         NOT NULL CHECK (octet_length(ksid) = 8),
    user_id     bytea         NOT NULL CHECK (octet_length(user_id) = 20),
    headline    text          NOT NULL DEFAULT '' CHECK (char_length(headline) <= 200),
    bio         text          NOT NULL DEFAULT '' CHECK (char_length(bio) <= 10000),
    skills      text[]        NOT NULL DEFAULT '{}' CHECK (cardinality(skills) <= 50
                                                           AND array_position(skills, NULL) IS NULL
                                                           AND '' <> ALL (skills)),
    hourly_rate numeric(10,2) CHECK (hourly_rate >= 0),
    country     char(2)       CHECK (country ~ '^[A-Z]{2}$'),
    available   boolean       NOT NULL DEFAULT false,
    created_at  timestamptz   NOT NULL DEFAULT now(),
    updated_at  timestamptz   NOT NULL DEFAULT now(),
    PRIMARY KEY (ksid, user_id),
    FOREIGN KEY (ksid, user_id) REFERENCES auth.users (ksid, id) ON DELETE CASCADE
);
COMMENT ON TABLE core.profiles IS 'Public profile of a user (freelancers mostly); at most one per user.';
COMMENT ON COLUMN core.profiles.country IS 'ISO 3166-1 alpha-2, upper case.';
-- Matching filters freelancers by skill overlap (skills && $1).
CREATE INDEX profiles_skills_idx ON core.profiles USING gin (skills);
CREATE TRIGGER profiles_set_updated_at BEFORE UPDATE ON core.profiles
    FOR EACH ROW EXECUTE FUNCTION core.set_updated_at();

CREATE TABLE core.settings (
    ksid          bytea       NOT NULL CHECK (octet_length(ksid) = 8),
    user_id       bytea       NOT NULL CHECK (octet_length(user_id) = 20),
    locale        text        NOT NULL DEFAULT 'en' CHECK (locale ~ '^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$'),
    -- An IANA zone name; validated by the API (a CHECK cannot consult pg_timezone_names).
    timezone      text        NOT NULL DEFAULT 'UTC' CHECK (timezone <> '' AND char_length(timezone) <= 64),
    notifications jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(notifications) = 'object'),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (ksid, user_id),
    FOREIGN KEY (ksid, user_id) REFERENCES auth.users (ksid, id) ON DELETE CASCADE
);
COMMENT ON TABLE core.settings IS 'Private settings of a user; at most one row per user.';
CREATE TRIGGER settings_set_updated_at BEFORE UPDATE ON core.settings
    FOR EACH ROW EXECUTE FUNCTION core.set_updated_at();

CREATE TABLE core.jobs (
    ksid        bytea         NOT NULL CHECK (octet_length(ksid) = 8),
    id          bytea         NOT NULL CHECK (octet_length(id) = 20),
    owner_id    bytea         NOT NULL CHECK (octet_length(owner_id) = 20),
    title       text          NOT NULL CHECK (btrim(title) <> '' AND char_length(title) <= 200),
    description text          NOT NULL DEFAULT '' CHECK (char_length(description) <= 20000),
    skills      text[]        NOT NULL DEFAULT '{}' CHECK (cardinality(skills) <= 50
                                                           AND array_position(skills, NULL) IS NULL
                                                           AND '' <> ALL (skills)),
    -- NULL bounds mean "open"; when both are set the range must be ordered.
    budget_min  numeric(12,2) CHECK (budget_min >= 0),
    budget_max  numeric(12,2) CHECK (budget_max >= 0),
    currency    char(3)       NOT NULL DEFAULT 'USD' CHECK (currency ~ '^[A-Z]{3}$'),
    remote      boolean       NOT NULL DEFAULT true,
    status      text          NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed', 'filled')),
    created_at  timestamptz   NOT NULL DEFAULT now(),
    updated_at  timestamptz   NOT NULL DEFAULT now(),
    -- Weights: a title hit (A) outranks a description hit (B), which outranks a skill hit (C).
    -- Generated columns are not sent by logical replication; each shard computes its own from the
    -- same expression, so moved rows match.
    search      tsvector      GENERATED ALWAYS AS (
                    setweight(to_tsvector('english'::regconfig, title), 'A')
                 || setweight(to_tsvector('english'::regconfig, description), 'B')
                 || setweight(to_tsvector('english'::regconfig, core.skills_text(skills)), 'C')
                ) STORED,
    PRIMARY KEY (ksid, id),
    FOREIGN KEY (ksid, owner_id) REFERENCES auth.users (ksid, id) ON DELETE CASCADE,
    CONSTRAINT jobs_budget_ordered CHECK (budget_min <= budget_max)
);
COMMENT ON TABLE core.jobs IS 'Jobs posted by clients, on the owner''s shard.';
COMMENT ON COLUMN core.jobs.currency IS 'ISO 4217, upper case.';
CREATE INDEX jobs_search_idx ON core.jobs USING gin (search);
CREATE INDEX jobs_skills_idx ON core.jobs USING gin (skills);
CREATE INDEX jobs_status_created_idx ON core.jobs (status, created_at);
-- "My jobs" and "?owner_id=" listings, newest first.
CREATE INDEX jobs_owner_created_idx ON core.jobs (ksid, owner_id, created_at DESC);
CREATE TRIGGER jobs_set_updated_at BEFORE UPDATE ON core.jobs
    FOR EACH ROW EXECUTE FUNCTION core.set_updated_at();

-- A review lives with the person reviewed (ksid = the reviewee's ksid): the reads that matter
-- ("reviews of X", rating stats on a profile) stay on one shard. The reviewer and the job may live on
-- other shards, so they carry no foreign key.
CREATE TABLE core.reviews (
    ksid        bytea       NOT NULL CHECK (octet_length(ksid) = 8),
    id          bytea       NOT NULL CHECK (octet_length(id) = 20),
    reviewer_id bytea       NOT NULL CHECK (octet_length(reviewer_id) = 20),
    reviewee_id bytea       NOT NULL CHECK (octet_length(reviewee_id) = 20),
    job_id      bytea       NOT NULL CHECK (octet_length(job_id) = 20),
    rating      smallint    NOT NULL CHECK (rating BETWEEN 1 AND 5),
    comment     text        NOT NULL DEFAULT '' CHECK (char_length(comment) <= 5000),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (ksid, id),
    FOREIGN KEY (ksid, reviewee_id) REFERENCES auth.users (ksid, id) ON DELETE CASCADE,
    CONSTRAINT reviews_one_per_job UNIQUE (ksid, reviewer_id, reviewee_id, job_id),
    CONSTRAINT reviews_not_self CHECK (reviewer_id <> reviewee_id)
);
COMMENT ON TABLE core.reviews IS 'Reviews, stored on the reviewee''s shard.';
CREATE INDEX reviews_reviewee_created_idx ON core.reviews (ksid, reviewee_id, created_at DESC);
-- "Reviews I wrote" is a scatter query; this keeps each shard's part of it an index scan.
CREATE INDEX reviews_reviewer_idx ON core.reviews (reviewer_id);
CREATE TRIGGER reviews_set_updated_at BEFORE UPDATE ON core.reviews
    FOR EACH ROW EXECUTE FUNCTION core.set_updated_at();

-- Security-relevant events about a user, on that user's shard (actor_id may be someone else, e.g. an
-- admin, or NULL for the system). No foreign key: the trail outlives what it talks about.
CREATE TABLE core.audit_log (
    ksid       bytea       NOT NULL CHECK (octet_length(ksid) = 8),
    id         bytea       NOT NULL CHECK (octet_length(id) = 20),
    at         timestamptz NOT NULL DEFAULT now(),
    actor_id   bytea       CHECK (octet_length(actor_id) = 20),
    action     text        NOT NULL CHECK (action ~ '^[a-z][a-z0-9_.]{0,63}$'),
    target     text        NOT NULL DEFAULT '' CHECK (char_length(target) <= 256),
    ip         inet,
    user_agent text        CHECK (char_length(user_agent) <= 512),
    details    jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(details) = 'object'),
    PRIMARY KEY (ksid, id)
);
COMMENT ON TABLE core.audit_log IS 'Append-only audit trail: UPDATE is rejected by a trigger; DELETE is allowed for move cleanup.';
COMMENT ON COLUMN core.audit_log.action IS 'Dotted lower-case verb, e.g. auth.login, apikey.revoke.';
CREATE INDEX audit_log_at_idx ON core.audit_log (ksid, at);
CREATE TRIGGER audit_log_append_only BEFORE UPDATE ON core.audit_log
    FOR EACH ROW EXECUTE FUNCTION core.reject_update();

-- +goose Down
DROP TABLE core.audit_log;
DROP TABLE core.reviews;
DROP TABLE core.jobs;
DROP TABLE core.settings;
DROP TABLE core.profiles;
DROP FUNCTION core.skills_text(text[]);
