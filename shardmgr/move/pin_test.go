package move_test

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/move"
	"github.com/8thdegree/meridian/shardmgr/residency"
	"github.com/8thdegree/meridian/shardmgr/shardlock"
	"github.com/8thdegree/meridian/shardmgr/shardpool"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

// pinEnv is env with a pool to every shard of every region and a pin records prefix.
type pinEnv struct {
	*env
	pools     map[string]*pgxpool.Pool
	pinPrefix string
}

func newPinEnv(t *testing.T) *pinEnv {
	t.Helper()
	e := &pinEnv{env: newEnv(t), pools: map[string]*pgxpool.Pool{}}
	e.pinPrefix = "meridian-test/" + e.f.Prefix + "/pins/"
	for name, dsn := range e.f.DSN {
		p, err := pgxpool.New(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		e.pools[name] = p
	}
	t.Cleanup(func() {
		for _, p := range e.pools {
			p.Close()
		}
		_, _ = e.f.Consul.KV().DeleteTree(e.pinPrefix, nil)
	})
	return e
}

func (e *pinEnv) config() move.Config {
	cfg := e.env.config()
	cfg.PinPrefix = e.pinPrefix
	return cfg
}

func (e *pinEnv) topo() *topology.Topology {
	e.t.Helper()
	t, _, err := e.f.Store.Load(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return t
}

// shardOf is the shard that owns k (no relocation applied).
func (e *pinEnv) shardOf(k shardkey.KeyspaceID) string {
	for _, a := range e.topo().KeyRanges {
		if a.Range.Contains(k) {
			return a.Shard
		}
	}
	e.t.Fatalf("no shard owns %s", k)
	return ""
}

// pinUser is a seeded user: its ID, and where the directory holds its email claim.
type pinUser struct {
	id         shardkey.ID
	ksid       shardkey.KeyspaceID
	claimShard string
	claimKsid  shardkey.KeyspaceID
	claimHash  []byte
}

func rnd(n int) []byte {
	b := make([]byte, n)
	_, _ = crand.Read(b)
	return b
}

// seedUser writes a us-east user (on us-east-1) with a row in every table a user owns, with values
// of every column type the schema has, and its email claim where the directory protocol puts it.
func (e *pinEnv) seedUser(name string) pinUser {
	e.t.Helper()
	ctx := context.Background()
	k := ksidIn(stays)
	id, err := shardkey.NewGenerator(nil, nil).New(shardkey.KindUser, k)
	if err != nil {
		e.t.Fatal(err)
	}
	kb, ib := k.Bytes(), id.Bytes()
	fam, other := rnd(20), rnd(20)
	job, prop, ctr, list := rnd(20), rnd(20), rnd(20), "6c1e6452-056a-411a-bd4a-fc2934e0b359"
	db := e.pools[source]
	email := name + "@example.com"
	stmts := []struct {
		q    string
		args []any
	}{
		{`INSERT INTO auth.users (ksid, id, email, email_normalized, name, role, region) VALUES ($1, $2, $3, $3, 'Pinned User', 'freelancer', 'us-east')`, []any{kb, ib, email}},
		{`INSERT INTO auth.credentials (ksid, user_id, password_hash) VALUES ($1, $2, '$argon2id$v=19$m=65536,t=3,p=2$c2FsdHNhbHQ$aGFzaGhhc2g')`, []any{kb, ib}},
		{`INSERT INTO auth.refresh_token_families (ksid, id, user_id) VALUES ($1, $2, $3)`, []any{kb, fam, ib}},
		{`INSERT INTO auth.refresh_tokens (ksid, token_hash, family_id, user_id, expires_at) VALUES ($1, $2, $3, $4, now() + interval '1 day')`, []any{kb, rnd(32), fam, ib}},
		{`INSERT INTO auth.api_keys (ksid, id, user_id, name, key_prefix, key_hash, scopes) VALUES ($1, $2, $3, 'ci', 'mk_abc', $4, '{jobs:read,jobs:write}')`, []any{kb, rnd(20), ib, rnd(32)}},
		{`INSERT INTO auth.oauth_identities (ksid, provider, subject, user_id, email) VALUES ($1, 'github', $2, $3, $4)`, []any{kb, name, ib, email}},
		{`INSERT INTO auth.email_verifications (ksid, token_hash, user_id, email, expires_at) VALUES ($1, $2, $3, $4, now() + interval '1 day')`, []any{kb, rnd(32), ib, email}},
		{`INSERT INTO core.profiles (ksid, user_id, headline, bio, skills, hourly_rate, country, available) VALUES ($1, $2, 'Go and SQL', 'bio', '{go,sql}', 42.50, 'DE', true)`, []any{kb, ib}},
		{`INSERT INTO core.settings (ksid, user_id, locale, timezone, notifications) VALUES ($1, $2, 'de-DE', 'Europe/Berlin', '{"email": true, "digest": {"day": "mon"}}')`, []any{kb, ib}},
		{`INSERT INTO core.jobs (ksid, id, owner_id, title, description, skills, budget_min, budget_max, currency) VALUES ($1, $2, $3, 'Build a thing', 'with care', '{go}', 100.25, 2000, 'EUR')`, []any{kb, job, ib}},
		// Hiring: the user's own proposal to another's job, a reference row and a contract on their own
		// job, and the reference row of a contract they work on.
		{`INSERT INTO core.proposals (ksid, id, freelancer_id, job_id, client_id, cover_letter, rate, currency, score) VALUES ($1, $2, $3, $4, $5, 'Hire me', 55.5, 'EUR', 0.75)`, []any{kb, prop, ib, rnd(20), other}},
		{`INSERT INTO core.job_proposals (ksid, proposal_id, job_id, freelancer_id, client_id, rate, currency, score, status, created_at) VALUES ($1, $2, $3, $4, $5, 40, 'EUR', 0.5, 'accepted', now())`, []any{kb, rnd(20), job, other, ib}},
		{`INSERT INTO core.contracts (ksid, id, job_id, proposal_id, client_id, freelancer_id, rate, currency) VALUES ($1, $2, $3, $4, $5, $6, 40, 'EUR')`, []any{kb, ctr, job, rnd(20), ib, other}},
		{`INSERT INTO core.contract_refs (ksid, contract_id, job_id, proposal_id, client_id, freelancer_id, rate, currency, status, started_at, completed_at) VALUES ($1, $2, $3, $4, $5, $6, 55.5, 'EUR', 'completed', now(), now())`, []any{kb, rnd(20), rnd(20), prop, other, ib}},
		{`INSERT INTO ai.outcomes (ksid, kind, job_id, freelancer_id, client_id, subject_id, details) VALUES ($1, 'contract_started', $2, $3, $4, $5, '{"rate": 40}')`, []any{kb, job, other, ib, ctr}},
		{`INSERT INTO ai.match_lists (ksid, id, region, direction, subject_id, scope, model_version, items) VALUES ($1, $2, 'us-east', 'jobs', $3, 'region', 0, '[{"id": "x", "position": 1}]')`, []any{kb, list, ib}},
		{`INSERT INTO ai.match_events (ksid, list_id, item_id, type, position) VALUES ($1, $2, $3, 'opened', 1)`, []any{kb, list, job}},
		{`INSERT INTO core.jobs (ksid, id, owner_id, title) VALUES ($1, $2, $3, 'Another thing')`, []any{kb, rnd(20), ib}},
		{`INSERT INTO core.reviews (ksid, id, reviewer_id, reviewee_id, job_id, rating, comment) VALUES ($1, $2, $3, $4, $5, 5, 'great')`, []any{kb, rnd(20), other, ib, rnd(20)}},
		{`INSERT INTO core.audit_log (ksid, id, actor_id, action, target, ip, user_agent, details) VALUES ($1, $2, $3, 'auth.login', 'session', '203.0.113.5', 'curl/8', '{"method": "password"}')`, []any{kb, rnd(20), ib}},
		{`INSERT INTO ai.embeddings (ksid, entity_id, kind, model, dims, vector, content_hash) VALUES ($1, $2, 'profile', 'local-hash-v1', 3, '{0.1,-2.5e-7,3.4028235e38}', $3)`, []any{kb, ib, rnd(32)}},
		{`INSERT INTO core.outbox (ksid, destination, target_ksid, kind, idempotency_key, payload, attempts, last_error) VALUES ($1, 'ap-south', $2, 'test.note', $3, '{"contract": "c1"}', 2, 'region ap-south: unavailable')`, []any{kb, rnd(8), name + ":note"}},
		{`INSERT INTO core.inbox (ksid, idempotency_key, kind, source) VALUES ($1, $2, 'test.note', 'eu-west')`, []any{kb, name + ":received"}},
	}
	for _, s := range stmts {
		if _, err := db.Exec(ctx, s.q, s.args...); err != nil {
			e.t.Fatalf("%s: %v", s.q, err)
		}
	}
	// The claim, placed as the directory places it: regions sorted by code, picked by the hash's
	// first 64 bits, that region's code over the hash's first 56 bits.
	h := rnd(32)
	regions := slices.Clone(e.topo().Regions)
	slices.SortFunc(regions, func(a, b topology.Region) int { return int(a.Code) - int(b.Code) })
	v := binary.BigEndian.Uint64(h[:8])
	ck, err := shardkey.MakeKeyspaceID(regions[v%uint64(len(regions))].Code, v>>8)
	if err != nil {
		e.t.Fatal(err)
	}
	u := pinUser{id: id, ksid: k, claimShard: e.shardOf(ck), claimKsid: ck, claimHash: h}
	if _, err := e.pools[u.claimShard].Exec(ctx, `INSERT INTO auth.email_claims (ksid, email_hash, user_id, home_region) VALUES ($1, $2, $3, 'us-east')`, ck.Bytes(), h, ib); err != nil {
		e.t.Fatal(err)
	}
	return u
}

// userTables are the sharded tables but the email directory (whose rows are keyed by hash).
func userTables(t *testing.T, db *pgxpool.Pool) []string {
	t.Helper()
	rows, err := db.Query(context.Background(), `SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname IN ('auth', 'core', 'ai') AND c.relkind = 'r' AND NOT (n.nspname = 'auth' AND c.relname = 'email_claims')
  AND NOT (n.nspname = 'ai' AND c.relname = 'models') ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// snapshot is every row under k, per table, as JSON without the ksid and auth.users' region (the
// columns a pin rewrites) and without the pin's own audit record: what a pin must carry over.
func snapshot(t *testing.T, db *pgxpool.Pool, k shardkey.KeyspaceID) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, tab := range userTables(t, db) {
		var s *string
		q := fmt.Sprintf(`SELECT jsonb_agg(j ORDER BY j::text)::text FROM (SELECT to_jsonb(x) - 'ksid' - 'region' AS j FROM %s x WHERE ksid = $1) s
WHERE NOT (j ? 'action' AND j->>'action' = 'residency.pin')`, tab)
		if err := db.QueryRow(context.Background(), q, k.Bytes()).Scan(&s); err != nil {
			t.Fatal(err)
		}
		if s != nil {
			out[tab] = *s
		}
	}
	return out
}

func (e *pinEnv) newKsid(u pinUser, region string) shardkey.KeyspaceID {
	reg, _ := e.topo().Region(region)
	return u.ksid.WithRegion(reg.Code)
}

func (e *pinEnv) relocation(from shardkey.KeyspaceID) (topology.Relocation, bool) {
	for _, rel := range e.topo().Relocations {
		if rel.From == from {
			return rel, true
		}
	}
	return topology.Relocation{}, false
}

func (e *pinEnv) claimRegion(u pinUser) string {
	e.t.Helper()
	var r string
	if err := e.pools[u.claimShard].QueryRow(context.Background(), "SELECT home_region FROM auth.email_claims WHERE ksid = $1 AND email_hash = $2", u.claimKsid.Bytes(), u.claimHash).Scan(&r); err != nil {
		e.t.Fatal(err)
	}
	return r
}

// checkPinned checks a finished pin of u to eu-west: the relocation active, every row on the
// target under the new ksid as it was (want), none left under the old one, the directory and the
// users row naming the new region, one audit record.
func (e *pinEnv) checkPinned(u pinUser, want map[string]string) {
	e.t.Helper()
	to := e.newKsid(u, "eu-west")
	if rel, ok := e.relocation(u.ksid); !ok || !rel.Active() || rel.To != to {
		e.t.Errorf("relocation of %s: %+v (present %v), want active to %s", u.ksid, rel, ok, to)
	}
	dst := e.pools[e.shardOf(to)]
	if got := snapshot(e.t, dst, to); fmt.Sprint(got) != fmt.Sprint(want) {
		e.t.Errorf("target rows under %s:\n%v\nwant\n%v", to, got, want)
	}
	if left := snapshot(e.t, e.pools[source], u.ksid); len(left) > 0 {
		e.t.Errorf("rows left under the old ksid on the source: %v", left)
	}
	var region string
	if err := dst.QueryRow(context.Background(), "SELECT region FROM auth.users WHERE ksid = $1 AND id = $2", to.Bytes(), u.id.Bytes()).Scan(&region); err != nil || region != "eu-west" {
		e.t.Errorf("auth.users.region on the target = %q, %v; want eu-west", region, err)
	}
	if r := e.claimRegion(u); r != "eu-west" {
		e.t.Errorf("email claim home_region = %s, want eu-west", r)
	}
	var n int
	var details string
	if err := dst.QueryRow(context.Background(), "SELECT count(*), coalesce(max(details::text), '') FROM core.audit_log WHERE ksid = $1 AND action = 'residency.pin' AND target = $2", to.Bytes(), u.id.String()).Scan(&n, &details); err != nil || n != 1 {
		e.t.Errorf("audit records of the pin: %d (%v), want 1", n, err)
	}
	e.t.Logf("audit record: %s", details)
}

// checkUnpinned checks that u is as seeded: no relocation, its rows on the source, nothing under
// the new ksid on the target, the claim unchanged.
func (e *pinEnv) checkUnpinned(u pinUser, want map[string]string) {
	e.t.Helper()
	to := e.newKsid(u, "eu-west")
	if rel, ok := e.relocation(u.ksid); ok {
		e.t.Errorf("relocation of %s left: %+v", u.ksid, rel)
	}
	if got := snapshot(e.t, e.pools[source], u.ksid); fmt.Sprint(got) != fmt.Sprint(want) {
		e.t.Errorf("source rows changed:\n%v\nwant\n%v", got, want)
	}
	if left := snapshot(e.t, e.pools[e.shardOf(to)], to); len(left) > 0 {
		e.t.Errorf("rows left under the new ksid on the target: %v", left)
	}
	if r := e.claimRegion(u); r != "us-east" {
		e.t.Errorf("email claim home_region = %s, want us-east", r)
	}
}

// auditClean runs the residency audit over every shard and wants it clean.
func (e *pinEnv) auditClean() {
	e.t.Helper()
	ctx := context.Background()
	topo := e.topo()
	deadline := time.Now().Add(5 * time.Second)
	for e.mgr.Table() == nil || e.mgr.Table().Version() < topo.Version {
		if time.Now().After(deadline) {
			e.t.Fatal("the manager did not apply the topology")
		}
		time.Sleep(5 * time.Millisecond)
	}
	rep, err := residency.Audit(ctx, topo, e.mgr, residency.Options{})
	if err != nil {
		e.t.Fatal(err)
	}
	if rep.Verdict != residency.Clean {
		e.t.Errorf("residency audit: %s, totals %+v", rep.Verdict, rep.Totals)
	}
}

// pinWriters write audit rows for users as an API node of each region does: WriteShard in the
// user's home region, and on a wrong-region answer the region it names (the router's replay).
type pinWriters struct {
	stop  chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	acked map[shardkey.ID][][]byte
	errs  []error
}

func (e *pinEnv) startPinWriters(users ...pinUser) *pinWriters {
	w := &pinWriters{stop: make(chan struct{}), acked: map[shardkey.ID][][]byte{}}
	for _, u := range users {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			for {
				select {
				case <-w.stop:
					return
				default:
				}
				id := rnd(20)
				err := func() error {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					r, err := e.mgr.WriteShard(ctx, u.id.KeyspaceID(), "us-east", 2*time.Second)
					var wr *shardpool.WrongRegionError
					if errors.As(err, &wr) {
						r, err = e.mgr.WriteShard(ctx, u.id.KeyspaceID(), wr.Region, 2*time.Second)
					}
					if err != nil {
						return err
					}
					_, err = r.Pool.Exec(ctx, `INSERT INTO core.audit_log (ksid, id, action, target) VALUES ($1, $2, 'test.write', 'pin')`, r.Route.KeyspaceID.Bytes(), id)
					return err
				}()
				w.mu.Lock()
				if err != nil {
					w.errs = append(w.errs, err)
				} else {
					w.acked[u.id] = append(w.acked[u.id], id)
				}
				w.mu.Unlock()
				time.Sleep(time.Millisecond)
			}
		}()
	}
	return w
}

func (w *pinWriters) halt() {
	close(w.stop)
	w.wg.Wait()
}

// TestPin runs, on one deployment with a fresh user each: a pin under writers and the pin back
// home, the refusals, a cutover overrunning its budget, and a kill after each step followed by
// resume and by abort. The residency audit is clean at the end.
func TestPin(t *testing.T) {
	e := newPinEnv(t)
	t.Run("under writers", func(t *testing.T) { e.t = t; pinUnderWriters(t, e) })
	t.Run("refusals", func(t *testing.T) { e.t = t; pinRefusals(t, e) })
	t.Run("overrun", func(t *testing.T) { e.t = t; pinFreezeOverrun(t, e) })
	pinFaultPoints(t, e)
	e.t = t
	e.auditClean()
}

// pinUnderWriters pins a user to eu-west while writers write its rows, then checks every row
// carried over, every acknowledged write present once in the new region and none left in the old,
// the directory following, the audit clean; a second pin sends the user back.
func pinUnderWriters(t *testing.T, e *pinEnv) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	u := e.seedUser("pinned")
	bystander := e.seedUser("stays")
	bystanderRows := snapshot(t, e.pools[source], bystander.ksid)
	w := e.startPinWriters(u)
	time.Sleep(100 * time.Millisecond)

	cfg := e.config()
	var msgs []string
	var mu sync.Mutex
	cfg.Progress = func(p move.Progress) {
		if p.Message != "" {
			mu.Lock()
			msgs = append(msgs, p.Message)
			mu.Unlock()
		}
	}
	r := e.runner(cfg)
	p, err := r.Pin(ctx, u.id, "eu-west")
	time.Sleep(100 * time.Millisecond) // writes after the flip, in the new region
	w.halt()
	if err != nil {
		t.Fatalf("Pin: %v", err)
	}
	if p.Status != move.Done || p.Step != move.StepDone {
		t.Fatalf("pin ended %s at %s: %s", p.Status, p.Step, p.Error)
	}
	if len(w.errs) > 0 {
		t.Errorf("%d writes failed, first: %v", len(w.errs), w.errs[0])
	}
	to := e.newKsid(u, "eu-west")
	if p.From != u.ksid || p.To != to || p.Source != source || p.Target != e.shardOf(to) || p.SourceRegion != "us-east" || p.TargetRegion != "eu-west" {
		t.Errorf("pin record: %+v", p)
	}
	t.Logf("pin %s: write pause %.1f ms, %d freeze attempt(s), rows %v, progress %q", p.ID, p.WritePauseMillis, p.FreezeAttempts, p.RowsCopied, msgs)

	// Every acknowledged write is on the target once, under the new ksid; none on the source.
	dst := e.pools[p.Target]
	acked := w.acked[u.id]
	if len(acked) == 0 {
		t.Fatal("no write was acknowledged")
	}
	for _, id := range acked {
		var onTarget, onSource int
		if err := dst.QueryRow(ctx, "SELECT count(*) FROM core.audit_log WHERE id = $1", id).Scan(&onTarget); err != nil {
			t.Fatal(err)
		}
		if err := e.pools[source].QueryRow(ctx, "SELECT count(*) FROM core.audit_log WHERE id = $1", id).Scan(&onSource); err != nil {
			t.Fatal(err)
		}
		if onTarget != 1 || onSource != 0 {
			t.Errorf("acknowledged write %x: %d on the target, %d on the source; want 1 and 0", id, onTarget, onSource)
		}
	}
	var n int
	if err := dst.QueryRow(ctx, "SELECT count(*) FROM core.audit_log WHERE ksid = $1 AND action = 'test.write'", to.Bytes()).Scan(&n); err != nil || n != len(acked) {
		t.Errorf("target holds %d test writes under the new ksid (%v), %d were acknowledged", n, err, len(acked))
	}
	// The rest of the user's rows, compared without the writers' rows.
	if _, err := dst.Exec(ctx, "DELETE FROM core.audit_log WHERE ksid = $1 AND action = 'test.write'", to.Bytes()); err != nil {
		t.Fatal(err)
	}
	e.checkPinnedShape(u, p)
	if got := snapshot(t, e.pools[source], bystander.ksid); fmt.Sprint(got) != fmt.Sprint(bystanderRows) {
		t.Errorf("the other user's rows changed:\n%v\nwant\n%v", got, bystanderRows)
	}
	e.auditClean()
	if rels := e.relocationsOf(u.ksid, to); len(rels) != 1 {
		t.Errorf("relocations of the user: %+v", rels)
	}

	// Routing follows the map: the user's old ID routes to the new ksid in eu-west.
	routed, err := e.mgr.Route(u.id.KeyspaceID())
	if err != nil || routed.Route.KeyspaceID != to || routed.Region != "eu-west" {
		t.Errorf("Route(%s) = %+v, %v", u.id.KeyspaceID(), routed.Route, err)
	}

	// Pinned back to us-east: the new ksid is the old one again; the entry from it goes, and one from
	// the eu-west ksid stays (IDs made while the user lived there carry it).
	before := snapshot(t, dst, to)
	back, err := r.Pin(ctx, u.id, "us-east")
	if err != nil || back.Status != move.Done {
		t.Fatalf("Pin back: %+v, %v", back, err)
	}
	if back.From != to || back.To != u.ksid {
		t.Errorf("pin back: from %s to %s", back.From, back.To)
	}
	if rels := e.relocationsOf(u.ksid, to); len(rels) != 1 || rels[0] != (topology.Relocation{From: to, To: u.ksid}) {
		t.Errorf("relocations after the way back: %+v, want only %s -> %s", rels, to, u.ksid)
	}
	if got := snapshot(t, e.pools[source], u.ksid); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Errorf("rows back on the source:\n%v\nwant\n%v", got, before)
	}
	if r := e.claimRegion(u); r != "us-east" {
		t.Errorf("claim after the way back: %s", r)
	}
	e.auditClean()
	all, err := r.Pins(ctx, true)
	if err != nil || len(all) != 2 || all[0].ID != p.ID || all[1].ID != back.ID || all[1].Status != move.Done {
		t.Errorf("Pins(all) = %d, %v", len(all), err)
	}
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// relocationsOf are the topology's relocation entries from or to the ksids given.
func (e *pinEnv) relocationsOf(ks ...shardkey.KeyspaceID) []topology.Relocation {
	var out []topology.Relocation
	for _, rel := range e.topo().Relocations {
		if slices.Contains(ks, rel.From) || slices.Contains(ks, rel.To) {
			out = append(out, rel)
		}
	}
	return out
}

// checkPinnedShape is checkPinned for a user whose rows changed while it was pinned: the target
// rows' shape, not their values.
func (e *pinEnv) checkPinnedShape(u pinUser, p *move.Pin) {
	e.t.Helper()
	got := snapshot(e.t, e.pools[p.Target], p.To)
	for _, tab := range userTables(e.t, e.pools[source]) {
		if tab == "auth.email_claims" {
			continue
		}
		if _, ok := got[tab]; !ok {
			e.t.Errorf("the pinned user has no rows of %s on the target", tab)
		}
	}
	if left := snapshot(e.t, e.pools[source], u.ksid); len(left) > 0 {
		e.t.Errorf("rows left under the old ksid: %v", keys(left))
	}
	if r := e.claimRegion(u); r != "eu-west" {
		e.t.Errorf("claim home_region %s, want eu-west", r)
	}
}

// pinRefusals: each refusal names its reason and changes nothing.
func pinRefusals(t *testing.T, e *pinEnv) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	u := e.seedUser("refused")
	want := snapshot(t, e.pools[source], u.ksid)
	ghost, _ := shardkey.NewGenerator(nil, nil).New(shardkey.KindUser, ksidIn(stays))
	job, _ := shardkey.NewGenerator(nil, nil).New(shardkey.KindJob, u.ksid)
	r := e.runner(e.config())
	pinsBefore, err := r.Pins(ctx, true)
	if err != nil {
		t.Fatal(err)
	}

	nothingChanged := func(what string, version uint64) {
		t.Helper()
		if v := e.topo().Version; v != version {
			t.Errorf("%s: topology version %d, was %d", what, v, version)
		}
		pins, err := r.Pins(ctx, true)
		if err != nil || len(pins) != len(pinsBefore) {
			t.Errorf("%s: pins recorded: %d, were %d (%v)", what, len(pins), len(pinsBefore), err)
		}
		e.checkUnpinned(u, want)
	}
	for _, c := range []struct {
		name   string
		user   shardkey.ID
		region string
		is     error
	}{
		{"unknown region", u.id, "mars", move.ErrUnknownRegion},
		{"already there", u.id, "us-east", move.ErrRefused},
		{"unknown user", ghost, "eu-west", move.ErrRefused},
		{"not a user ID", job, "eu-west", move.ErrRefused},
	} {
		v := e.topo().Version
		_, err := r.Pin(ctx, c.user, c.region)
		if !errors.Is(err, c.is) || !errors.Is(err, move.ErrRefused) {
			t.Errorf("%s: Pin = %v, want a refusal (%v)", c.name, err, c.is)
		}
		t.Logf("%s: %v", c.name, err)
		nothingChanged(c.name, v)
	}

	// Another operation holds the shard lock (a move, a migration).
	v := e.topo().Version
	l, err := shardlock.Acquire(ctx, e.f.Consul, e.lockKey, "test migration")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Pin(ctx, u.id, "eu-west"); !errors.Is(err, shardlock.ErrHeld) {
		t.Errorf("Pin under a held lock = %v, want ErrHeld", err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	nothingChanged("lock held", v)

	// A pin of the user that is not finished refuses the next.
	cfg := e.config()
	cfg.Fault = func(s move.Step) bool { return s == move.StepCopy }
	p, err := e.runner(cfg).Pin(ctx, u.id, "eu-west")
	if !errors.Is(err, move.ErrKilled) {
		t.Fatalf("Pin killed after copy = %v", err)
	}
	v = e.topo().Version
	if _, err := r.Pin(ctx, u.id, "ap-south"); !errors.Is(err, move.ErrRefused) {
		t.Errorf("Pin while another is unfinished = %v, want a refusal", err)
	} else {
		t.Logf("unfinished pin: %v", err)
	}
	if e.topo().Version != v {
		t.Error("the refused pin changed the topology")
	}
	// A move of the keyrange holding the user refuses too.
	if _, err := r.Start(ctx, stays, target); !errors.Is(err, move.ErrRefused) {
		t.Errorf("move of the pinned user's keyrange = %v, want a refusal", err)
	}
	if _, err := r.AbortPin(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	e.checkUnpinned(u, want)
}

// pinFaultPoints kills the runner right after each step as a crash would, then resumes the pin
// or aborts it from a new runner, and checks the user ends pinned or as it was.
func pinFaultPoints(t *testing.T, e *pinEnv) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, point := range move.PinFaultPoints() {
		for _, then := range []string{"resume", "abort"} {
			t.Run(string(point)+"/"+then, func(t *testing.T) {
				e.t = t
				u := e.seedUser(fmt.Sprintf("fault-%s-%s", point, then))
				want := snapshot(t, e.pools[source], u.ksid)
				cfg := e.config()
				cfg.Fault = func(s move.Step) bool { return s == point }
				p, err := e.runner(cfg).Pin(ctx, u.id, "eu-west")
				if !errors.Is(err, move.ErrKilled) {
					t.Fatalf("Pin with a fault after %s = %v, want ErrKilled", point, err)
				}
				rel, _ := e.relocation(u.ksid)
				t.Logf("killed after %s: relocation %+v", point, rel)
				r := e.runner(e.config())
				flipped := slices.Contains([]move.Step{move.StepFlip, move.StepDirectory, move.StepCleanup}, point)
				switch then {
				case "resume":
					done, err := r.ResumePin(ctx, p.ID)
					if err != nil || done.Status != move.Done {
						t.Fatalf("ResumePin: %+v, %v", done, err)
					}
					e.checkPinned(u, want)
				case "abort":
					_, err := r.AbortPin(ctx, p.ID)
					if flipped {
						if !errors.Is(err, move.ErrPastFlip) {
							t.Fatalf("AbortPin after the flip = %v, want ErrPastFlip", err)
						}
						if _, err := r.ResumePin(ctx, p.ID); err != nil {
							t.Fatalf("ResumePin after the refused abort: %v", err)
						}
						e.checkPinned(u, want)
						break
					}
					if err != nil {
						t.Fatalf("AbortPin: %v", err)
					}
					e.checkUnpinned(u, want)
					got, err := r.GetPin(ctx, p.ID)
					if err != nil || got.Status != move.Aborted {
						t.Errorf("record after abort: %+v, %v", got, err)
					}
				}
				if rels := e.topo().Relocations; slices.ContainsFunc(rels, func(r topology.Relocation) bool { return !r.Active() }) {
					t.Errorf("a frozen relocation is left: %+v", rels)
				}
			})
		}
	}
}

// A cutover that would overrun its budget (nodes that never apply the freeze) is rolled back each
// time, no held write fails, and the pin stops resumably; resumed with nodes that apply, it ends.
func pinFreezeOverrun(t *testing.T, e *pinEnv) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	u := e.seedUser("overrun")
	w := e.startPinWriters(u)
	cfg := e.config()
	cfg.Fleet = stuckFleet{}
	cfg.MaxPause = 200 * time.Millisecond
	cfg.FreezeAttempts = 2
	p, err := e.runner(cfg).Pin(ctx, u.id, "eu-west")
	time.Sleep(50 * time.Millisecond)
	w.halt()
	var pe *move.PinError
	if !errors.Is(err, move.ErrFreezeBudget) || !errors.As(err, &pe) || pe.Flipped {
		t.Fatalf("Pin with nodes that never apply = %v, want a resumable ErrFreezeBudget", err)
	}
	t.Logf("%v", err)
	if len(w.errs) > 0 {
		t.Errorf("%d writes failed during the rolled-back cutovers, first: %v", len(w.errs), w.errs[0])
	}
	if rel, ok := e.relocation(u.ksid); ok {
		t.Fatalf("relocation left after the rollbacks: %+v", rel)
	}
	got, err := e.runner(e.config()).GetPin(ctx, p.ID)
	if err != nil || got.Status != move.Failed || got.FreezeAttempts != 2 {
		t.Fatalf("record after the overrun: %+v, %v", got, err)
	}
	done, err := e.runner(e.config()).ResumePin(ctx, p.ID)
	if err != nil || done.Status != move.Done {
		t.Fatalf("ResumePin: %+v, %v", done, err)
	}
	to := e.newKsid(u, "eu-west")
	if rel, ok := e.relocation(u.ksid); !ok || !rel.Active() || rel.To != to {
		t.Errorf("relocation after the resume: %+v (%v)", rel, ok)
	}
	var n int
	if err := e.pools[done.Target].QueryRow(ctx, "SELECT count(*) FROM core.audit_log WHERE ksid = $1 AND action = 'test.write'", to.Bytes()).Scan(&n); err != nil || n != len(w.acked[u.id]) {
		t.Errorf("target holds %d of the %d acknowledged writes (%v)", n, len(w.acked[u.id]), err)
	}
}
