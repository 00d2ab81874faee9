package residency

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/shardpool"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

// ErrUnknownRegion is returned for an Options.Region the topology does not have.
var ErrUnknownRegion = errors.New("residency: unknown region")

// ErrNotAuditable is wrapped by a shard's error when one of its sharded tables cannot be audited
// (no primary key, or one that does not start with a bytea ksid): the report is then incomplete.
var ErrNotAuditable = errors.New("table cannot be audited")

// Schemas are the sharded schemas the audit reads.
var Schemas = []string{"auth", "core", "ai"}

// Options bound an audit.
type Options struct {
	// Region limits the audit to the shards of one region; "" audits every region.
	Region string
	// Limit is how many keys are listed per table and class (default 20). The counts are always
	// complete.
	Limit int
	// Concurrency is how many shards are read at once (default 4).
	Concurrency int
	// PerShardTimeout bounds the reading of one shard (default 10 minutes).
	PerShardTimeout time.Duration
	// Now is the clock of the report's times (default time.Now).
	Now func() time.Time
}

func (o Options) withDefaults() Options {
	if o.Limit <= 0 {
		o.Limit = 20
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	if o.PerShardTimeout <= 0 {
		o.PerShardTimeout = 10 * time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Verdict is the audit's answer.
type Verdict string

const (
	// Clean: every shard was read and no row breaks a rule.
	Clean Verdict = "clean"
	// Violations: every shard was read and some rows break a rule.
	Violations Verdict = "violations"
	// Incomplete: some shard could not be read. There is no verdict on partial data, whatever the
	// shards that were read hold.
	Incomplete Verdict = "incomplete"
)

// Offender is one listed row that breaks a rule.
type Offender struct {
	Class Class `json:"class"`
	// Key is the row's primary key, each column as hex, joined by '|' (the ksid first).
	Key        string `json:"key"`
	KeyspaceID string `json:"ksid"`
	// Region is the region the row's ksid names ("unknown (code xx)" for a code no region has).
	Region string `json:"region"`
	// BelongsRegion and BelongsShard are where the row should be by the rule it breaks (empty when
	// no shard owns that place).
	BelongsRegion string `json:"belongs_region,omitempty"`
	BelongsShard  string `json:"belongs_shard,omitempty"`
	// Note adds what the rule read besides the key (auth.users' region, a claim's home_region).
	Note string `json:"note,omitempty"`
}

// TableReport is one table of one shard.
type TableReport struct {
	Table      string          `json:"table"`
	Rows       int64           `json:"rows"`
	Violations int64           `json:"violations"`
	ByClass    map[Class]int64 `json:"by_class,omitempty"`
	Offenders  []Offender      `json:"offenders,omitempty"`
}

// ShardReport is one shard.
type ShardReport struct {
	Shard      string        `json:"shard"`
	Region     string        `json:"region"`
	KeyRanges  []string      `json:"keyranges"`
	Rows       int64         `json:"rows"`
	Violations int64         `json:"violations"`
	Tables     []TableReport `json:"tables"`
	Elapsed    time.Duration `json:"elapsed_ns"`
	// Error is why the shard could not be read; the report is then incomplete.
	Error string `json:"error,omitempty"`
}

// Totals sum the shards that were read.
type Totals struct {
	Shards       int             `json:"shards"`
	ShardsFailed int             `json:"shards_failed"`
	Tables       int             `json:"tables"`
	Rows         int64           `json:"rows"`
	Violations   int64           `json:"violations"`
	ByClass      map[Class]int64 `json:"by_class"`
}

// Report is the audit's result and, as JSON, the compliance artifact.
type Report struct {
	TopologyVersion uint64           `json:"topology_version"`
	Region          string           `json:"region,omitempty"`
	StartedAt       time.Time        `json:"started_at"`
	FinishedAt      time.Time        `json:"finished_at"`
	Verdict         Verdict          `json:"verdict"`
	Totals          Totals           `json:"totals"`
	Shards          []ShardReport    `json:"shards"`
	Rules           map[Class]string `json:"rules"`
	Exemptions      []Exemption      `json:"exemptions"`
	Limit           int              `json:"keys_listed_per_class"`
	// Reason says why the report is incomplete when it is not (only) a shard that failed.
	Reason string `json:"reason,omitempty"`
	// Warnings are what a reader needs to judge the report that is no violation (a shard
	// operation that was running, say).
	Warnings []string `json:"warnings,omitempty"`
}

// MarkIncomplete withdraws the verdict: something outside the shards (the topology changed while
// they were read, say) means the counts may not describe one placement.
func (r *Report) MarkIncomplete(reason string) {
	r.Verdict = Incomplete
	if r.Reason != "" {
		reason = r.Reason + "; " + reason
	}
	r.Reason = reason
}

// FailedShards names the shards that could not be read.
func (r Report) FailedShards() []string {
	var out []string
	for _, s := range r.Shards {
		if s.Error != "" {
			out = append(out, s.Shard)
		}
	}
	return out
}

// Summary is the verdict in one sentence, for the exit message.
func (r Report) Summary() string {
	var b strings.Builder
	switch r.Verdict {
	case Clean:
		fmt.Fprintf(&b, "clean: %d rows on %d shards, every one where its owner's region and keyrange put it", r.Totals.Rows, r.Totals.Shards)
	case Violations:
		fmt.Fprintf(&b, "violations: %d of %d rows break a rule (%s)", r.Totals.Violations, r.Totals.Rows, classCounts(r.Totals.ByClass))
	case Incomplete:
		b.WriteString("incomplete: ")
		var why []string
		if r.Totals.ShardsFailed > 0 {
			why = append(why, fmt.Sprintf("%d of %d shards could not be read (%s)", r.Totals.ShardsFailed, r.Totals.Shards, strings.Join(r.FailedShards(), ", ")))
		}
		if r.Totals.Shards == 0 {
			why = append(why, "no shard to read")
		}
		if r.Reason != "" {
			why = append(why, r.Reason)
		}
		b.WriteString(strings.Join(why, "; "))
		b.WriteString(", so there is no verdict")
		if r.Totals.Violations > 0 {
			fmt.Fprintf(&b, "; the shards that were read already show %d violations (%s)", r.Totals.Violations, classCounts(r.Totals.ByClass))
		}
	}
	return b.String()
}

func classCounts(m map[Class]int64) string {
	var parts []string
	for _, c := range Classes {
		if n := m[c]; n > 0 && c.Violation() {
			parts = append(parts, fmt.Sprintf("%s %d", c, n))
		}
	}
	return strings.Join(parts, ", ")
}

// Audit reads every shard of t (of opts.Region, when set) through pools and reports, per shard and
// table, the rows read and the rows that break a rule. pools must follow t (Apply it first); a shard
// that pools cannot reach, or that fails or times out, is reported with its error and makes the
// report Incomplete. The error is for bad input only.
func Audit(ctx context.Context, t *topology.Topology, pools *shardpool.Manager, opts Options) (Report, error) {
	opts = opts.withDefaults()
	tab, err := topology.Compile(t)
	if err != nil {
		return Report{}, err
	}
	t = tab.Topology()
	if opts.Region != "" {
		if _, ok := t.Region(opts.Region); !ok {
			return Report{}, fmt.Errorf("%w %q", ErrUnknownRegion, opts.Region)
		}
	}
	rep := Report{
		TopologyVersion: t.Version,
		Region:          opts.Region,
		StartedAt:       opts.Now().UTC(),
		Rules:           map[Class]string{},
		Exemptions:      Exemptions,
		Limit:           opts.Limit,
	}
	for _, c := range Classes {
		rep.Rules[c] = c.Rule()
	}
	var targets []shardpool.Target
	reports := map[string]*ShardReport{}
	for _, s := range t.Shards {
		if opts.Region != "" && s.Region != opts.Region {
			continue
		}
		sr := ShardReport{Shard: s.Name, Region: s.Region, KeyRanges: []string{}, Tables: []TableReport{}}
		for _, a := range t.RangesOf(s.Name) {
			kr := a.Range.String()
			if a.State != topology.Serving {
				kr += "(" + string(a.State) + ")"
			}
			sr.KeyRanges = append(sr.KeyRanges, kr)
		}
		rep.Shards = append(rep.Shards, sr)
		tg, err := pools.Shard(s.Name)
		if err != nil {
			rep.Shards[len(rep.Shards)-1].Error = err.Error()
			continue
		}
		targets = append(targets, tg)
	}
	for i := range rep.Shards {
		reports[rep.Shards[i].Shard] = &rep.Shards[i]
	}
	res := shardpool.Scatter(ctx, targets, shardpool.ScatterOptions{Concurrency: opts.Concurrency, PerShardTimeout: opts.PerShardTimeout},
		func(ctx context.Context, tg shardpool.Target) (shardResult, error) {
			start := time.Now()
			tables, err := auditShard(ctx, tab, tg, opts.Limit)
			return shardResult{tables, time.Since(start)}, err
		})
	for _, v := range res.Values {
		sr := reports[v.Shard]
		sr.Tables, sr.Elapsed = v.Value.tables, v.Value.elapsed
	}
	for _, f := range res.Failed {
		reports[f.Shard].Error = firstLine(f.Err.Error())
	}
	finish(&rep, opts)
	return rep, nil
}

type shardResult struct {
	tables  []TableReport
	elapsed time.Duration
}

// finish sums the shards and decides the verdict.
func finish(rep *Report, opts Options) {
	rep.Totals.ByClass = map[Class]int64{}
	for i := range rep.Shards {
		sr := &rep.Shards[i]
		rep.Totals.Shards++
		if sr.Error != "" {
			rep.Totals.ShardsFailed++
			continue
		}
		for _, tr := range sr.Tables {
			rep.Totals.Tables++
			sr.Rows += tr.Rows
			sr.Violations += tr.Violations
			for c, n := range tr.ByClass {
				rep.Totals.ByClass[c] += n
			}
		}
		rep.Totals.Rows += sr.Rows
		rep.Totals.Violations += sr.Violations
	}
	switch {
	case rep.Totals.ShardsFailed > 0 || rep.Totals.Shards == 0:
		rep.Verdict = Incomplete
	case rep.Totals.Violations > 0:
		rep.Verdict = Violations
	default:
		rep.Verdict = Clean
	}
	rep.FinishedAt = opts.Now().UTC()
}

// rulesFor builds the SQL inputs of one shard.
func rulesFor(t *topology.Topology, shard topology.Shard) (shardRules, error) {
	region, ok := t.Region(shard.Region)
	if !ok {
		return shardRules{}, fmt.Errorf("shard %s: region %q is not in the topology", shard.Name, shard.Region)
	}
	r := shardRules{code: region.Code, region: region.Name}
	for _, a := range t.KeyRanges {
		switch {
		case a.Shard == shard.Name:
			r.own = append(r.own, a.Range)
		case a.State != topology.Serving && region.KeyRange().ContainsRange(a.Range):
			r.inMove = append(r.inMove, a.Range)
		}
	}
	for _, rel := range t.Relocations {
		if !rel.Active() {
			continue // a pin's cutover: the rows are still where From routes
		}
		r.froms = append(r.froms, rel.From.Bytes())
		r.tos = append(r.tos, rel.To.Bytes())
		if slices.ContainsFunc(r.own, func(kr shardkey.KeyRange) bool { return kr.Contains(rel.From) }) {
			r.ownFroms = append(r.ownFroms, rel.From.Bytes())
		}
	}
	for _, reg := range sortedRegions(t) {
		r.codes = append(r.codes, int32(reg.Code))
		r.names = append(r.names, reg.Name)
	}
	return r, nil
}

// auditShard reads every sharded table of one shard in one read-only snapshot, so the counts and
// the listed keys of all its tables describe the same moment.
func auditShard(ctx context.Context, tab *topology.Table, tg shardpool.Target, limit int) ([]TableReport, error) {
	t := tab.Topology()
	shard, ok := t.Shard(tg.Shard)
	if !ok {
		return nil, fmt.Errorf("shard %s is not in the topology", tg.Shard)
	}
	rules, err := rulesFor(t, shard)
	if err != nil {
		return nil, err
	}
	tx, err := tg.Pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	tables, err := catalog(ctx, tx)
	if err != nil {
		return nil, err
	}
	args := rules.args(limit)
	out := make([]TableReport, 0, len(tables))
	for _, tb := range tables {
		tr := TableReport{Table: tb.String()}
		var classified int64
		if err := tx.QueryRow(ctx, rules.scanSQL(tb), args).Scan(&tr.Rows, &classified); err != nil {
			return nil, fmt.Errorf("%s: %w", tb, err)
		}
		if len(rules.ownFroms) > 0 {
			var relocated int64
			if err := tx.QueryRow(ctx, rules.relocatedSQL(tb), args).Scan(&relocated); err != nil {
				return nil, fmt.Errorf("%s: %w", tb, err)
			}
			classified += relocated
		}
		if classified == 0 {
			out = append(out, tr)
			continue
		}
		if err := countClasses(ctx, tx, rules, tb, args, &tr); err != nil {
			return nil, err
		}
		if tr.Violations > 0 {
			if tr.Offenders, err = offenders(ctx, tx, tab, rules, tb, args); err != nil {
				return nil, err
			}
		}
		out = append(out, tr)
	}
	return out, nil
}

// countClasses counts the rows of each class of tb; the snapshot is the scan's, so the rows
// counted are the same rows.
func countClasses(ctx context.Context, tx pgx.Tx, rules shardRules, tb table, args pgx.NamedArgs, tr *TableReport) error {
	rows, err := tx.Query(ctx, rules.countSQL(tb), args)
	if err != nil {
		return fmt.Errorf("%s: %w", tb, err)
	}
	var cls string
	var n, total int64
	_, err = pgx.ForEachRow(rows, []any{&cls, &n}, func() error {
		total += n
		c := Class(cls)
		if c == "" {
			return nil
		}
		if tr.ByClass == nil {
			tr.ByClass = map[Class]int64{}
		}
		tr.ByClass[c] += n
		if c.Violation() {
			tr.Violations += n
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s: %w", tb, err)
	}
	if total != tr.Rows {
		return fmt.Errorf("%s: %d rows counted by class, %d scanned, in one snapshot", tb, total, tr.Rows)
	}
	return nil
}

// catalog lists the shard's sharded tables and checks that each can be audited.
func catalog(ctx context.Context, tx pgx.Tx) ([]table, error) {
	rows, err := tx.Query(ctx, catalogSQL, Schemas)
	if err != nil {
		return nil, fmt.Errorf("reading the catalog: %w", err)
	}
	var out []table
	var schema, name string
	var cols []string
	var bytea []bool
	_, err = pgx.ForEachRow(rows, []any{&schema, &name, &cols, &bytea}, func() error {
		tb := table{Schema: schema, Name: name}
		for i, c := range cols {
			tb.PK = append(tb.PK, column{Name: c, Bytea: bytea[i]})
		}
		if len(tb.PK) == 0 || tb.PK[0].Name != "ksid" || !tb.PK[0].Bytea {
			return fmt.Errorf("%w: %s has no primary key starting with the bytea ksid", ErrNotAuditable, tb)
		}
		out = append(out, tb)
		return nil
	})
	return out, err
}

// offenders lists the keys of tb's violating rows and says where each belongs.
func offenders(ctx context.Context, tx pgx.Tx, tab *topology.Table, rules shardRules, tb table, args pgx.NamedArgs) ([]Offender, error) {
	rows, err := tx.Query(ctx, rules.listSQL(tb), args)
	if err != nil {
		return nil, fmt.Errorf("%s: listing: %w", tb, err)
	}
	var out []Offender
	var o Offender
	var cls string
	_, err = pgx.ForEachRow(rows, []any{&cls, &o.KeyspaceID, &o.Key, &o.Note}, func() error {
		o.Class = Class(cls)
		out = append(out, place(tab, o))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: listing: %w", tb, err)
	}
	return out, nil
}

// place fills in the region the offender's ksid names and where the row belongs.
func place(tab *topology.Table, o Offender) Offender {
	t := tab.Topology()
	k, err := shardkey.ParseKeyspaceID(o.KeyspaceID)
	if err != nil {
		return o
	}
	o.Region = regionName(t, k.Region())
	belongs := k
	switch o.Class {
	case ClaimMisplaced:
		if parts := strings.Split(o.Key, "|"); len(parts) == 2 {
			if h, err := hex.DecodeString(parts[1]); err == nil {
				if want, err := claimKeyspaceID(t, h); err == nil {
					belongs = want
				}
			}
		}
	case ClaimStale:
		if i := strings.Index(o.Note, "owner="); i >= 0 {
			if owner, err := shardkey.ParseKeyspaceID(o.Note[i+len("owner="):]); err == nil {
				o.BelongsRegion = regionName(t, owner.Region())
				return o // the claim is in the right place; its home_region should name BelongsRegion
			}
		}
	}
	if r, err := tab.Lookup(belongs); err == nil {
		o.BelongsRegion, o.BelongsShard = r.Region.Name, r.Shard.Name
	} else {
		o.BelongsRegion = regionName(t, tab.Resolve(belongs).Region())
	}
	return o
}

func regionName(t *topology.Topology, code shardkey.Region) string {
	if r, ok := t.RegionByCode(code); ok {
		return r.Name
	}
	return fmt.Sprintf("unknown (code %s)", code)
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
