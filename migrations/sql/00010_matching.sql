-- The matching engine (docs/matching.md): the lists it served (what was shown, at which positions, with
-- the signals of each item), the events clients report on them, the ranking models of each region, and
-- self-declared profile attributes for the fairness report. Same conventions as 00003_core.sql.

-- +goose Up

-- ai.embeddings.model now names an embedding space: provider/model/dims/vN (vectors of different spaces
-- never compare).
COMMENT ON COLUMN ai.embeddings.model IS 'The embedding space: provider/model/dims/vN, e.g. local/fhash/384/v1.';
CREATE INDEX embeddings_model_updated_idx ON ai.embeddings (model, updated_at);
-- The index loader follows updated_at as a watermark, so it must be close to the commit: the time of
-- the statement (clock_timestamp(), set by the engine), not of the transaction's start (now(), which
-- the trigger would set), since a vector is computed inside the transaction and may take seconds.
DROP TRIGGER embeddings_set_updated_at ON ai.embeddings;

-- Attributes a freelancer declares about themselves (never inferred), e.g. {"gender": "woman"}: the
-- fairness report groups by them as it does by country and region.
ALTER TABLE core.profiles ADD COLUMN attributes jsonb NOT NULL DEFAULT '{}'
    CHECK (jsonb_typeof(attributes) = 'object' AND octet_length(attributes::text) <= 2000);

CREATE TABLE ai.match_lists (
    -- The requester's ksid: the list and its events live with the person it was shown to.
    ksid          bytea       NOT NULL CHECK (octet_length(ksid) = 8),
    id            uuid        NOT NULL DEFAULT gen_random_uuid(),
    at            timestamptz NOT NULL DEFAULT now(),
    -- The region whose node served it.
    region        text        NOT NULL CHECK (region ~ '^[a-z][a-z0-9-]{0,63}$'),
    -- freelancers: for a job (subject_id); jobs: for a freelancer (subject_id).
    direction     text        NOT NULL CHECK (direction IN ('freelancers', 'jobs')),
    subject_id    bytea       NOT NULL CHECK (octet_length(subject_id) = 20),
    scope         text        NOT NULL CHECK (scope IN ('region', 'global')),
    model_version integer     NOT NULL CHECK (model_version >= 0),
    -- [{id, position, score, signals: [5 numbers], groups: {attribute: value}}], in the order shown.
    items         jsonb       NOT NULL CHECK (jsonb_typeof(items) = 'array'),
    -- The fairness report of the list and of the pool it was drawn from.
    fairness      jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(fairness) = 'object'),
    flagged       boolean     NOT NULL DEFAULT false,
    reranked      boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (ksid, id)
);
COMMENT ON TABLE ai.match_lists IS 'Every matching list served (the "shown" outcome, with positions and signals), on the requester''s shard.';
CREATE INDEX match_lists_at_idx ON ai.match_lists (at);

CREATE TABLE ai.match_events (
    ksid     bytea       NOT NULL CHECK (octet_length(ksid) = 8),
    list_id  uuid        NOT NULL,
    item_id  bytea       NOT NULL CHECK (octet_length(item_id) = 20),
    type     text        NOT NULL CHECK (type IN ('opened', 'dismissed')),
    position integer     NOT NULL CHECK (position BETWEEN 1 AND 1000),
    at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (ksid, list_id, item_id, type),
    FOREIGN KEY (ksid, list_id) REFERENCES ai.match_lists (ksid, id) ON DELETE CASCADE
);
COMMENT ON TABLE ai.match_events IS 'Opened and dismissed items of a served list (POST /matching/events); a repeat keeps the first.';

CREATE TABLE ai.models (
    -- The region's anchor: its code byte followed by zeros, so one shard of the region holds the region's
    -- models and moves carry them like any row.
    ksid        bytea       NOT NULL CHECK (octet_length(ksid) = 8),
    version     integer     NOT NULL CHECK (version >= 1),
    trained_at  timestamptz NOT NULL DEFAULT now(),
    -- {"similarity": w, "skill_coverage": w, "rating": w, "price_fit": w, "availability": w}
    weights     jsonb       NOT NULL CHECK (jsonb_typeof(weights) = 'object'),
    -- Evaluation figures: ndcg@10 on the holdout, the serving model's, fairness, training sizes.
    figures     jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(figures) = 'object'),
    serving     boolean     NOT NULL DEFAULT false,
    promoted_at timestamptz,
    note        text        NOT NULL DEFAULT '' CHECK (char_length(note) <= 500),
    PRIMARY KEY (ksid, version)
);
COMMENT ON TABLE ai.models IS 'Ranking models of a region, versioned and kept; at most one serves (none: the hand-set weights).';
CREATE UNIQUE INDEX models_one_serving_idx ON ai.models (ksid) WHERE serving;

-- +goose Down
CREATE TRIGGER embeddings_set_updated_at BEFORE UPDATE ON ai.embeddings
    FOR EACH ROW EXECUTE FUNCTION core.set_updated_at();
DROP TABLE ai.models;
DROP TABLE ai.match_events;
DROP TABLE ai.match_lists;
ALTER TABLE core.profiles DROP COLUMN attributes;
DROP INDEX ai.embeddings_model_updated_idx;
COMMENT ON COLUMN ai.embeddings.model IS NULL;
