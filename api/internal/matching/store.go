package matching

// The statements of the engine. It owns ai.embeddings, ai.match_lists, ai.match_events and ai.models;
// it reads core.jobs, core.profiles, core.reviews and auth.users (the facts and text it ranks on, in
// the same scan as the vectors; docs/schema.md lists these cross reads).
const (
	// The text of one entity, for its embedding (kind profile: a freelancer's profile; job: a job).
	profileTextSQL = `SELECT p.headline, p.bio, p.skills FROM core.profiles p JOIN auth.users u ON u.ksid = p.ksid AND u.id = p.user_id
		WHERE p.ksid = $1 AND p.user_id = $2 AND u.role = 'freelancer' AND u.deleted_at IS NULL`
	jobTextSQL = `SELECT j.title, j.description, j.skills FROM core.jobs j WHERE j.ksid = $1 AND j.id = $2`

	embeddingHashSQL = `SELECT content_hash FROM ai.embeddings WHERE ksid = $1 AND entity_id = $2 AND model = $3`

	upsertEmbeddingSQL = `
INSERT INTO ai.embeddings AS e (ksid, entity_id, kind, model, dims, vector, content_hash, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, clock_timestamp())
ON CONFLICT (ksid, entity_id, model) DO UPDATE SET vector = EXCLUDED.vector, content_hash = EXCLUDED.content_hash,
	dims = EXCLUDED.dims, kind = EXCLUDED.kind, updated_at = clock_timestamp()`

	// The facts changed but the text did not: the row is touched so that the index reloads the facts.
	touchEmbeddingSQL = `UPDATE ai.embeddings SET updated_at = clock_timestamp() WHERE ksid = $1 AND entity_id = $2 AND model = $3`

	deleteEmbeddingsSQL = `DELETE FROM ai.embeddings WHERE ksid = $1 AND entity_id = $2`

	notifySQL = `SELECT pg_notify('meridian_matching', $1)`

	// Entities of one shard's keyranges without an up-to-date vector in the space ($1): new, changed
	// while the outbox message was in flight, or never embedded in this space (a switch of spaces).
	staleProfilesSQL = `
SELECT p.ksid, p.user_id FROM core.profiles p
JOIN auth.users u ON u.ksid = p.ksid AND u.id = p.user_id AND u.role = 'freelancer' AND u.deleted_at IS NULL
LEFT JOIN ai.embeddings e ON e.ksid = p.ksid AND e.entity_id = p.user_id AND e.model = $1
WHERE (e.entity_id IS NULL OR e.updated_at < p.updated_at)
  AND (btrim(p.headline) <> '' OR btrim(p.bio) <> '' OR cardinality(p.skills) > 0)
  AND EXISTS (SELECT 1 FROM unnest($2::bytea[], $3::bytea[]) AS r(lo, hi) WHERE p.ksid >= r.lo AND p.ksid < r.hi)
LIMIT $4`
	staleJobsSQL = `
SELECT j.ksid, j.id FROM core.jobs j
LEFT JOIN ai.embeddings e ON e.ksid = j.ksid AND e.entity_id = j.id AND e.model = $1
WHERE (e.entity_id IS NULL OR e.updated_at < j.updated_at)
  AND EXISTS (SELECT 1 FROM unnest($2::bytea[], $3::bytea[]) AS r(lo, hi) WHERE j.ksid >= r.lo AND j.ksid < r.hi)
LIMIT $4`

	// The index's rows: vectors of the space with their facts, changed after the watermark ($2).
	loadProfilesSQL = `
SELECT e.entity_id, e.vector, e.updated_at, p.available, (p.hourly_rate * 100)::bigint, COALESCE(p.country, ''), p.skills,
	p.attributes, u.region, u.deleted_at IS NOT NULL OR u.role <> 'freelancer'
FROM ai.embeddings e
JOIN core.profiles p ON p.ksid = e.ksid AND p.user_id = e.entity_id
JOIN auth.users u ON u.ksid = e.ksid AND u.id = e.entity_id
WHERE e.model = $1 AND e.kind = 'profile' AND e.updated_at > $2
  AND EXISTS (SELECT 1 FROM unnest($3::bytea[], $4::bytea[]) AS r(lo, hi) WHERE e.ksid >= r.lo AND e.ksid < r.hi)`
	loadJobsSQL = `
SELECT e.entity_id, e.vector, e.updated_at, j.status = 'open', (j.budget_min * 100)::bigint, (j.budget_max * 100)::bigint,
	j.currency, j.remote, j.skills, j.owner_id, COALESCE(j.country, '')
FROM ai.embeddings e
JOIN core.jobs j ON j.ksid = e.ksid AND j.id = e.entity_id
WHERE e.model = $1 AND e.kind = 'job' AND e.updated_at > $2
  AND EXISTS (SELECT 1 FROM unnest($3::bytea[], $4::bytea[]) AS r(lo, hi) WHERE e.ksid >= r.lo AND e.ksid < r.hi)`
	// Entities whose vector is gone (a deleted job or account) since the last full pass are found by
	// listing the live IDs.
	liveIDsSQL = `SELECT e.entity_id FROM ai.embeddings e WHERE e.model = $1 AND e.kind = $2
  AND EXISTS (SELECT 1 FROM unnest($3::bytea[], $4::bytea[]) AS r(lo, hi) WHERE e.ksid >= r.lo AND e.ksid < r.hi)`

	// Verified ratings of a shard's users (the rating signal).
	ratingsSQL = `SELECT r.reviewee_id, count(*), avg(r.rating)::float8 FROM core.reviews r WHERE r.status = 'verified'
  AND EXISTS (SELECT 1 FROM unnest($1::bytea[], $2::bytea[]) AS b(lo, hi) WHERE r.ksid >= b.lo AND r.ksid < b.hi)
GROUP BY r.reviewee_id`

	// The caller's own profile, the subject of a list of jobs.
	ownProfileSQL = `SELECT p.headline, p.bio, p.skills, (p.hourly_rate * 100)::bigint, COALESCE(p.country, '')
		FROM core.profiles p WHERE p.ksid = $1 AND p.user_id = $2`

	// One vector, for a query whose subject the index does not hold yet.
	vectorSQL = `SELECT vector FROM ai.embeddings WHERE ksid = $1 AND entity_id = $2 AND model = $3`

	insertListSQL = `
INSERT INTO ai.match_lists (ksid, region, direction, subject_id, scope, model_version, items, fairness, flagged, reranked)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id`

	listItemSQL = `SELECT l.items FROM ai.match_lists l WHERE l.ksid = $1 AND l.id = $2`

	insertEventSQL = `INSERT INTO ai.match_events (ksid, list_id, item_id, type, position) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT DO NOTHING`

	// The region's lists in a period, for the fairness report.
	listsInPeriodSQL = `SELECT l.id, l.at, l.direction, l.items, l.fairness, l.flagged FROM ai.match_lists l
WHERE l.region = $1 AND l.at >= $2 AND l.at < $3
  AND EXISTS (SELECT 1 FROM unnest($4::bytea[], $5::bytea[]) AS b(lo, hi) WHERE l.ksid >= b.lo AND l.ksid < b.hi)
ORDER BY l.at`

	// What the trainer reads of a region's shards: outcomes, lists and their events.
	outcomesSQL = `SELECT o.kind, o.job_id, o.freelancer_id, o.details FROM ai.outcomes o
WHERE EXISTS (SELECT 1 FROM unnest($1::bytea[], $2::bytea[]) AS b(lo, hi) WHERE o.ksid >= b.lo AND o.ksid < b.hi)`
	trainingListsSQL = `SELECT l.id, l.at, l.direction, l.subject_id, l.items FROM ai.match_lists l
WHERE l.region = $1 AND l.at >= $2
  AND EXISTS (SELECT 1 FROM unnest($3::bytea[], $4::bytea[]) AS b(lo, hi) WHERE l.ksid >= b.lo AND l.ksid < b.hi)`
	trainingEventsSQL = `SELECT e.list_id, e.item_id, e.type FROM ai.match_events e WHERE e.at >= $1
  AND EXISTS (SELECT 1 FROM unnest($2::bytea[], $3::bytea[]) AS b(lo, hi) WHERE e.ksid >= b.lo AND e.ksid < b.hi)`
	nextVersionSQL = `SELECT COALESCE(max(version), 0) + 1 FROM ai.models WHERE ksid = $1`
	insertModelSQL = `INSERT INTO ai.models (ksid, version, weights, figures, note) VALUES ($1, $2, $3, $4, $5)`

	servingModelSQL = `SELECT version, weights, figures, trained_at FROM ai.models WHERE ksid = $1 AND serving`
	modelsSQL       = `SELECT version, weights, figures, trained_at, serving, promoted_at, note FROM ai.models WHERE ksid = $1 ORDER BY version`
)
