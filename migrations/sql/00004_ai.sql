-- Embeddings used by matching. Derived data: it can be recomputed from core at any time, so it has no
-- foreign keys and erasure removes it explicitly. Same conventions as 00002_auth.sql.

-- +goose Up
CREATE TABLE ai.embeddings (
    ksid         bytea       NOT NULL CHECK (octet_length(ksid) = 8),
    entity_id    bytea       NOT NULL CHECK (octet_length(entity_id) = 20),
    -- What was embedded: a user's profile or a job (the entity ID's kind byte says the same).
    kind         text        NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_]{0,31}$'),
    -- Model name as the embedder reports it, e.g. text-embedding-3-small or local-hash-v1. Vectors of
    -- different models never compare, so the model is part of the key.
    model        text        NOT NULL CHECK (model <> '' AND char_length(model) <= 100),
    dims         integer     NOT NULL CHECK (dims BETWEEN 1 AND 16000),
    vector       real[]      NOT NULL,
    -- SHA-256 of the embedded text: unchanged content is not re-embedded.
    content_hash bytea       NOT NULL CHECK (octet_length(content_hash) = 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (ksid, entity_id, model),
    -- A flat, full vector: one dimension, exactly dims elements, no NULLs. cardinality, not
    -- array_length, because array_length of an empty array is NULL and a NULL check passes. The CASE
    -- keeps array_position (which raises on multi-dimensional arrays) away from anything not flat.
    CONSTRAINT embeddings_vector_shape CHECK (CASE WHEN array_ndims(vector) = 1
                                                   THEN cardinality(vector) = dims
                                                        AND array_position(vector, NULL) IS NULL
                                                   ELSE false END)
);
COMMENT ON TABLE ai.embeddings IS 'Embedding vectors of profiles and jobs, per model, on the owner''s shard.';
-- Matching scans one model's vectors of one kind on each shard.
CREATE INDEX embeddings_model_kind_idx ON ai.embeddings (model, kind);
CREATE TRIGGER embeddings_set_updated_at BEFORE UPDATE ON ai.embeddings
    FOR EACH ROW EXECUTE FUNCTION core.set_updated_at();

-- +goose Down
DROP TABLE ai.embeddings;
