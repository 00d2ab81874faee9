-- The durable outbox and its inbox (docs/outbox.md). A feature that must tell another owner — in this
-- region or another — about a business write enqueues a message in the same transaction as the write;
-- each node's delivery task sends due messages and marks them delivered; the receiving side applies a
-- message in a transaction that also records its idempotency key in core.inbox, so a redelivery changes
-- nothing. Both tables are keyed by ksid like every sharded table, so online moves and pins carry them
-- with their keyrange. Same conventions as 00003_core.sql.

-- +goose Up
CREATE TABLE core.outbox (
    -- The owner of the business write that enqueued the message: the row lives, and moves, with it.
    ksid            bytea       NOT NULL CHECK (octet_length(ksid) = 8),
    -- Not an entity ID: no client ever sees it; random, so rows copied between shards never collide.
    id              uuid        NOT NULL DEFAULT gen_random_uuid(),
    -- The region whose node applies the message (this region's for a local topic).
    destination     text        NOT NULL CHECK (destination ~ '^[a-z][a-z0-9-]{0,63}$'),
    -- The receiving owner's ksid (or a per-shard key): the receiver's shard and inbox key.
    target_ksid     bytea       NOT NULL CHECK (octet_length(target_ksid) = 8),
    -- Names the receiving handler, e.g. hiring.contract_started.
    kind            text        NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_.]{0,63}$'),
    idempotency_key text        NOT NULL CHECK (octet_length(idempotency_key) BETWEEN 1 AND 200),
    payload         jsonb       NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    attempts        integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text        CHECK (octet_length(last_error) <= 1000),
    delivered_at    timestamptz CHECK (delivered_at >= created_at),
    PRIMARY KEY (ksid, id),
    -- Enqueueing the same message twice for one owner keeps one row.
    UNIQUE (ksid, idempotency_key)
);
COMMENT ON TABLE core.outbox IS 'Messages to other owners, enqueued atomically with the business write; delivered at least once by the region''s nodes; delivered rows are deleted after the retention.';
CREATE INDEX outbox_due_idx ON core.outbox (next_attempt_at) WHERE delivered_at IS NULL;
CREATE INDEX outbox_delivered_idx ON core.outbox (delivered_at) WHERE delivered_at IS NOT NULL;

CREATE TABLE core.inbox (
    -- The receiving owner's ksid (the message's target_ksid).
    ksid            bytea       NOT NULL CHECK (octet_length(ksid) = 8),
    idempotency_key text        NOT NULL CHECK (octet_length(idempotency_key) BETWEEN 1 AND 200),
    kind            text        NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_.]{0,63}$'),
    -- The region that sent it.
    source          text        NOT NULL CHECK (source ~ '^[a-z][a-z0-9-]{0,63}$'),
    received_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (ksid, idempotency_key)
);
COMMENT ON TABLE core.inbox IS 'Idempotency keys of the outbox messages applied to an owner: a redelivered message finds its key and changes nothing.';
CREATE INDEX inbox_received_idx ON core.inbox (received_at);

-- +goose Down
DROP TABLE core.inbox;
DROP TABLE core.outbox;
