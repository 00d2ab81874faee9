-- Hiring: proposals, contracts, reviews bound to completed contracts, and the outcomes the matching
-- engine learns from (docs/hiring.md). A proposal belongs to its author (the freelancer) and a contract
-- to its client (the job's owner, who accepts, pays and completes); the other party keeps a reference
-- row on its own shard (IDs, amounts, status, timestamps, never text), kept in step by the outbox
-- (00008), so that each party lists its own items from its home shard. Same conventions as
-- 00003_core.sql.

-- +goose Up

-- Job statuses of the contract (docs API.md): open → in_progress with the first contract →
-- completed when its owner closes it; closed when closed without one. 'filled' was the old name of a
-- job whose position had been taken; with no contract behind it, it is done.
ALTER TABLE core.jobs DROP CONSTRAINT jobs_status_check;
UPDATE core.jobs SET status = 'completed' WHERE status = 'filled';
ALTER TABLE core.jobs ADD CONSTRAINT jobs_status_check
    CHECK (status IN ('open', 'in_progress', 'completed', 'closed'));

CREATE TABLE core.proposals (
    -- The author's (the freelancer's) ksid.
    ksid          bytea         NOT NULL CHECK (octet_length(ksid) = 8),
    id            bytea         NOT NULL CHECK (octet_length(id) = 20),
    freelancer_id bytea         NOT NULL CHECK (octet_length(freelancer_id) = 20),
    -- The job and its owner may live in another region: no foreign key. The owner is kept so that the
    -- owner's read of the proposal is authorised here, where the text lives.
    job_id        bytea         NOT NULL CHECK (octet_length(job_id) = 20),
    client_id     bytea         NOT NULL CHECK (octet_length(client_id) = 20),
    cover_letter  text          NOT NULL DEFAULT '' CHECK (char_length(cover_letter) <= 10000),
    rate          numeric(12,2) NOT NULL CHECK (rate > 0),
    currency      char(3)       NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- The fit of the author to the job when the proposal was made (0..1): "best first" sorts by it.
    score         real          NOT NULL DEFAULT 0 CHECK (score >= 0 AND score <= 1),
    status        text          NOT NULL DEFAULT 'pending'
                                CHECK (status IN ('pending', 'withdrawn', 'accepted', 'closed')),
    created_at    timestamptz   NOT NULL DEFAULT now(),
    updated_at    timestamptz   NOT NULL DEFAULT now(),
    PRIMARY KEY (ksid, id),
    FOREIGN KEY (ksid, freelancer_id) REFERENCES auth.users (ksid, id) ON DELETE CASCADE
);
COMMENT ON TABLE core.proposals IS 'Proposals (applications to jobs), on the author''s (the freelancer''s) shard; the job''s owner holds a core.job_proposals reference row.';
-- One live proposal per freelancer and job; a withdrawn or closed one does not count.
CREATE UNIQUE INDEX proposals_one_live_idx ON core.proposals (ksid, freelancer_id, job_id)
    WHERE status IN ('pending', 'accepted');
-- "My proposals", newest first.
CREATE INDEX proposals_freelancer_created_idx ON core.proposals (ksid, freelancer_id, created_at DESC, id DESC);
CREATE TRIGGER proposals_set_updated_at BEFORE UPDATE ON core.proposals
    FOR EACH ROW EXECUTE FUNCTION core.set_updated_at();

CREATE TABLE core.job_proposals (
    -- The job owner's ksid.
    ksid          bytea         NOT NULL CHECK (octet_length(ksid) = 8),
    proposal_id   bytea         NOT NULL CHECK (octet_length(proposal_id) = 20),
    job_id        bytea         NOT NULL CHECK (octet_length(job_id) = 20),
    freelancer_id bytea         NOT NULL CHECK (octet_length(freelancer_id) = 20),
    client_id     bytea         NOT NULL CHECK (octet_length(client_id) = 20),
    rate          numeric(12,2) NOT NULL CHECK (rate > 0),
    currency      char(3)       NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    score         real          NOT NULL CHECK (score >= 0 AND score <= 1),
    status        text          NOT NULL CHECK (status IN ('pending', 'withdrawn', 'accepted', 'closed')),
    -- The proposal's creation time, as its author's shard recorded it.
    created_at    timestamptz   NOT NULL,
    updated_at    timestamptz   NOT NULL DEFAULT now(),
    PRIMARY KEY (ksid, proposal_id),
    FOREIGN KEY (ksid, job_id) REFERENCES core.jobs (ksid, id) ON DELETE CASCADE
);
COMMENT ON TABLE core.job_proposals IS 'Reference rows of the proposals made to a job, on the job owner''s shard: IDs, rate, score and status, no text (the cover letter is read from the author''s region).';
CREATE INDEX job_proposals_newest_idx ON core.job_proposals (ksid, job_id, created_at DESC, proposal_id DESC);
CREATE INDEX job_proposals_best_idx ON core.job_proposals (ksid, job_id, score DESC, created_at DESC, proposal_id DESC);
CREATE TRIGGER job_proposals_set_updated_at BEFORE UPDATE ON core.job_proposals
    FOR EACH ROW EXECUTE FUNCTION core.set_updated_at();

CREATE TABLE core.contracts (
    -- The client's ksid (the job's owner).
    ksid          bytea         NOT NULL CHECK (octet_length(ksid) = 8),
    id            bytea         NOT NULL CHECK (octet_length(id) = 20),
    job_id        bytea         NOT NULL CHECK (octet_length(job_id) = 20),
    proposal_id   bytea         NOT NULL CHECK (octet_length(proposal_id) = 20),
    client_id     bytea         NOT NULL CHECK (octet_length(client_id) = 20),
    freelancer_id bytea         NOT NULL CHECK (octet_length(freelancer_id) = 20),
    rate          numeric(12,2) NOT NULL CHECK (rate > 0),
    currency      char(3)       NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    status        text          NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'completed', 'cancelled')),
    started_at    timestamptz   NOT NULL DEFAULT now(),
    completed_at  timestamptz   CHECK (completed_at >= started_at),
    cancelled_at  timestamptz   CHECK (cancelled_at >= started_at),
    -- The party that cancelled.
    cancelled_by  bytea         CHECK (octet_length(cancelled_by) = 20),
    updated_at    timestamptz   NOT NULL DEFAULT now(),
    PRIMARY KEY (ksid, id),
    -- One contract per proposal.
    UNIQUE (ksid, proposal_id),
    FOREIGN KEY (ksid, client_id) REFERENCES auth.users (ksid, id) ON DELETE CASCADE,
    -- NO ACTION: a job with contracts is not deleted on its own (its owner's erasure takes both).
    FOREIGN KEY (ksid, job_id) REFERENCES core.jobs (ksid, id),
    CONSTRAINT contracts_status_times CHECK (
        (status = 'completed') = (completed_at IS NOT NULL)
        AND (status = 'cancelled') = (cancelled_at IS NOT NULL AND cancelled_by IS NOT NULL))
);
COMMENT ON TABLE core.contracts IS 'Contracts, on the client''s shard; the freelancer holds a core.contract_refs reference row.';
CREATE INDEX contracts_client_started_idx ON core.contracts (ksid, client_id, started_at DESC, id DESC);
CREATE INDEX contracts_job_idx ON core.contracts (ksid, job_id);
CREATE TRIGGER contracts_set_updated_at BEFORE UPDATE ON core.contracts
    FOR EACH ROW EXECUTE FUNCTION core.set_updated_at();

CREATE TABLE core.contract_refs (
    -- The freelancer's ksid.
    ksid          bytea         NOT NULL CHECK (octet_length(ksid) = 8),
    contract_id   bytea         NOT NULL CHECK (octet_length(contract_id) = 20),
    job_id        bytea         NOT NULL CHECK (octet_length(job_id) = 20),
    proposal_id   bytea         NOT NULL CHECK (octet_length(proposal_id) = 20),
    client_id     bytea         NOT NULL CHECK (octet_length(client_id) = 20),
    freelancer_id bytea         NOT NULL CHECK (octet_length(freelancer_id) = 20),
    rate          numeric(12,2) NOT NULL CHECK (rate > 0),
    currency      char(3)       NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    status        text          NOT NULL CHECK (status IN ('active', 'completed', 'cancelled')),
    started_at    timestamptz   NOT NULL,
    completed_at  timestamptz,
    cancelled_at  timestamptz,
    cancelled_by  bytea         CHECK (octet_length(cancelled_by) = 20),
    updated_at    timestamptz   NOT NULL DEFAULT now(),
    PRIMARY KEY (ksid, contract_id),
    FOREIGN KEY (ksid, freelancer_id) REFERENCES auth.users (ksid, id) ON DELETE CASCADE
);
COMMENT ON TABLE core.contract_refs IS 'Reference rows of a freelancer''s contracts, on the freelancer''s shard, kept in step with core.contracts by the outbox.';
CREATE INDEX contract_refs_freelancer_started_idx ON core.contract_refs (ksid, freelancer_id, started_at DESC, contract_id DESC);
CREATE TRIGGER contract_refs_set_updated_at BEFORE UPDATE ON core.contract_refs
    FOR EACH ROW EXECUTE FUNCTION core.set_updated_at();

-- Reviews name a completed contract. Reviews from before contracts existed stay, marked unverified,
-- and no longer count in ratings or stats.
ALTER TABLE core.reviews ADD COLUMN contract_id bytea CHECK (octet_length(contract_id) = 20);
ALTER TABLE core.reviews ADD COLUMN status text NOT NULL DEFAULT 'unverified'
    CHECK (status IN ('verified', 'unverified'));
ALTER TABLE core.reviews ADD CONSTRAINT reviews_verified_has_contract
    CHECK ((status = 'verified') = (contract_id IS NOT NULL));
COMMENT ON COLUMN core.reviews.status IS 'verified: bound to a completed contract, counted in stats; unverified: written before reviews needed one, kept but not counted.';
ALTER TABLE core.reviews DROP CONSTRAINT reviews_one_per_job;
-- Each party reviews the other once per contract (NULL contract IDs, the unverified rows, never clash).
ALTER TABLE core.reviews ADD CONSTRAINT reviews_one_per_contract UNIQUE (ksid, contract_id, reviewer_id);
CREATE INDEX reviews_verified_reviewee_idx ON core.reviews (ksid, reviewee_id) WHERE status = 'verified';

CREATE TABLE ai.outcomes (
    -- The owner of the record the outcome is about: the proposal's author, the contract's client, the
    -- review's reviewee.
    ksid          bytea       NOT NULL CHECK (octet_length(ksid) = 8),
    id            uuid        NOT NULL DEFAULT gen_random_uuid(),
    at            timestamptz NOT NULL DEFAULT now(),
    kind          text        NOT NULL CHECK (kind IN ('proposal_created', 'contract_started', 'contract_completed',
                                                       'contract_cancelled', 'review_posted')),
    job_id        bytea       NOT NULL CHECK (octet_length(job_id) = 20),
    freelancer_id bytea       NOT NULL CHECK (octet_length(freelancer_id) = 20),
    client_id     bytea       NOT NULL CHECK (octet_length(client_id) = 20),
    -- The proposal, contract or review.
    subject_id    bytea       NOT NULL CHECK (octet_length(subject_id) = 20),
    -- Kind-specific figures: rate and currency, a rating, who cancelled.
    details       jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(details) = 'object'),
    PRIMARY KEY (ksid, id),
    -- One outcome per subject and kind: a redelivered or retried write records nothing twice.
    UNIQUE (ksid, subject_id, kind)
);
COMMENT ON TABLE ai.outcomes IS 'Hiring outcomes (applied, hired, completed, cancelled, rated) that the matching engine learns from; append-only.';
CREATE INDEX outcomes_at_idx ON ai.outcomes (at);
CREATE TRIGGER outcomes_append_only BEFORE UPDATE ON ai.outcomes
    FOR EACH ROW EXECUTE FUNCTION core.reject_update();

-- +goose Down
DROP TABLE ai.outcomes;
DROP INDEX core.reviews_verified_reviewee_idx;
ALTER TABLE core.reviews DROP CONSTRAINT reviews_one_per_contract;
DELETE FROM core.reviews WHERE status = 'verified';
ALTER TABLE core.reviews ADD CONSTRAINT reviews_one_per_job UNIQUE (ksid, reviewer_id, reviewee_id, job_id);
ALTER TABLE core.reviews DROP CONSTRAINT reviews_verified_has_contract;
ALTER TABLE core.reviews DROP COLUMN status;
ALTER TABLE core.reviews DROP COLUMN contract_id;
DROP TABLE core.contract_refs;
DROP TABLE core.contracts;
DROP TABLE core.job_proposals;
DROP TABLE core.proposals;
ALTER TABLE core.jobs DROP CONSTRAINT jobs_status_check;
UPDATE core.jobs SET status = 'closed' WHERE status = 'in_progress';
UPDATE core.jobs SET status = 'filled' WHERE status = 'completed';
ALTER TABLE core.jobs ADD CONSTRAINT jobs_status_check CHECK (status IN ('open', 'closed', 'filled'));
