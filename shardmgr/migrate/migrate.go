package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/8thdegree/meridian/migrations"
)

// VersionTable is the per-shard record of applied migrations (goose's version table). It lives in
// public, outside the sharded schemas, so online moves never copy one shard's record onto another.
const VersionTable = "public.meridian_schema_migrations"

// lockID is the PostgreSQL advisory lock key that serialises runners on one shard: crc32 of
// "meridian_schema_migrations". It differs from goose's default key so that an unrelated goose user
// of the same database neither waits for us nor makes us wait.
const lockID int64 = 3847622741

// Defaults applied to zero Options fields.
const (
	DefaultConcurrency    = 4
	DefaultLockTimeout    = 5 * time.Minute
	DefaultDDLLockTimeout = 10 * time.Second
)

// applicationName shows in pg_stat_activity, so an SRE can tell a migration session from traffic.
const applicationName = "meridian-migrate"

var (
	// ErrInvalidTarget reports a target list that cannot be run: an empty shard name or DSN, or a
	// shard named twice.
	ErrInvalidTarget = errors.New("migrate: invalid target")
	// ErrInvalidOptions reports Options that fail Validate.
	ErrInvalidOptions = errors.New("migrate: invalid options")
	// ErrShardKey reports a table in a sharded schema whose primary key does not start with the bytea
	// ksid column (or that has no primary key at all).
	ErrShardKey = errors.New("table breaks the shard-key rule")
)

// Target is one physical shard: its name (for results and logs; never the DSN, which may carry a
// password) and how to reach its database.
type Target struct {
	Shard string
	DSN   string
}

// Options tunes a run. The zero value is ready to use.
type Options struct {
	// Concurrency is how many shards are worked on at once. 0 means DefaultConcurrency.
	Concurrency int
	// Logger receives one line per applied or failed migration, tagged with the shard. nil discards.
	Logger *slog.Logger
	// Files holds the migrations; nil means migrations.Files(). Tests pass their own.
	Files fs.FS
	// LockTimeout bounds the wait for another runner that holds the same shard's migration lock.
	// 0 means DefaultLockTimeout. It is rounded up to whole seconds: goose's locker polls once a
	// second.
	LockTimeout time.Duration
	// DDLLockTimeout is PostgreSQL's lock_timeout for migration statements, so that DDL queued behind
	// a long transaction fails fast instead of stalling every query queued behind it in turn.
	// 0 means DefaultDDLLockTimeout; negative leaves the server's setting alone. A lock_timeout given
	// in the DSN wins.
	DDLLockTimeout time.Duration
}

// Validate reports a field that cannot be used, by name.
func (o Options) Validate() error {
	if o.Concurrency < 0 {
		return fmt.Errorf("%w: Concurrency must not be negative, got %d", ErrInvalidOptions, o.Concurrency)
	}
	if o.LockTimeout < 0 {
		return fmt.Errorf("%w: LockTimeout must not be negative, got %s", ErrInvalidOptions, o.LockTimeout)
	}
	return nil
}

func (o Options) withDefaults() Options {
	if o.Concurrency == 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Files == nil {
		o.Files = migrations.Files()
	}
	if o.LockTimeout == 0 {
		o.LockTimeout = DefaultLockTimeout
	}
	if o.DDLLockTimeout == 0 {
		o.DDLLockTimeout = DefaultDDLLockTimeout
	}
	return o
}

// ShardError is a failure on one shard. Version and Source name the migration that failed, when
// the failure was in one (they are zero for a failure to connect, lock or check).
type ShardError struct {
	Shard   string
	Op      string // "up", "down" or "status"
	Version int64
	Source  string
	Err     error
}

func (e *ShardError) Error() string {
	if e.Version != 0 {
		return fmt.Sprintf("migrate %s: shard %s: migration %d (%s): %v", e.Op, e.Shard, e.Version, e.Source, e.Err)
	}
	return fmt.Sprintf("migrate %s: shard %s: %v", e.Op, e.Shard, e.Err)
}

func (e *ShardError) Unwrap() error { return e.Err }

// ShardResult is what Up did on one shard.
type ShardResult struct {
	Shard string
	// Applied lists the versions applied by this run, in order; empty when the shard was up to date.
	// On failure it holds those applied before the failing one.
	Applied []int64
	// Current is the highest version recorded on the shard after the run, or -1 if it could not be
	// read.
	Current int64
	// Err is a *ShardError, or nil.
	Err error
}

// AppliedMigration is one row of a shard's record that matches a known migration file.
type AppliedMigration struct {
	Version   int64
	Source    string
	AppliedAt time.Time
}

// ShardStatus is the migration state of one shard.
type ShardStatus struct {
	Shard string
	// Current is the highest version recorded on the shard (0 for a shard never migrated), or -1 if
	// it could not be read. It can exceed every known file when the shard was migrated by a newer
	// build.
	Current int64
	// Pending lists known migrations not applied on the shard, in version order.
	Pending []int64
	// Applied lists known migrations applied on the shard, in version order.
	Applied []AppliedMigration
	// Err is a *ShardError, or nil.
	Err error
}

// Up applies every pending migration to every target, at most opts.Concurrency shards at a time.
// A failing shard does not stop the others: each result carries its own error, and the returned
// error joins them (nil when every shard succeeded) so a CLI can exit non-zero. Results are in the
// order of targets. Invalid targets or options fail the whole call before any shard is touched.
func Up(ctx context.Context, targets []Target, opts Options) ([]ShardResult, error) {
	if err := validate(targets, opts); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	results := make([]ShardResult, len(targets))
	forEach(ctx, len(targets), opts.Concurrency, func(i int) {
		results[i] = upShard(ctx, targets[i], opts)
	})
	errs := make([]error, 0, len(results))
	for _, r := range results {
		errs = append(errs, r.Err)
	}
	return results, errors.Join(errs...)
}

// Status reports, for every target, what is applied and what is pending. It takes no lock, so it
// answers even while a long migration runs (each migration commits with its version row, so it never
// sees half of one), and it changes nothing: a shard without a version table reports everything
// pending. Per-shard errors are in the results and joined in the returned error.
func Status(ctx context.Context, targets []Target, opts Options) ([]ShardStatus, error) {
	if err := validate(targets, opts); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	results := make([]ShardStatus, len(targets))
	forEach(ctx, len(targets), opts.Concurrency, func(i int) {
		results[i] = statusShard(ctx, targets[i], opts)
	})
	errs := make([]error, 0, len(results))
	for _, r := range results {
		errs = append(errs, r.Err)
	}
	return results, errors.Join(errs...)
}

// Down rolls one shard back until toVersion is the highest applied version (0 undoes everything).
// It takes the shard's migration lock like Up. It is for an SRE who names the shard and the version
// on purpose; there is no fleet-wide Down.
func Down(ctx context.Context, target Target, toVersion int64, opts Options) error {
	if err := validate([]Target{target}, opts); err != nil {
		return err
	}
	if toVersion < 0 {
		return fmt.Errorf("%w: toVersion must not be negative, got %d", ErrInvalidOptions, toVersion)
	}
	opts = opts.withDefaults()
	log := opts.Logger.With(slog.String("shard", target.Shard))
	fail := func(err error) error {
		se := shardError(target.Shard, "down", err)
		log.ErrorContext(ctx, "migration rollback failed", slog.Int64("version", se.Version), slog.Any("err", se.Err))
		return se
	}
	db, err := open(target, opts)
	if err != nil {
		return fail(err)
	}
	defer db.Close()
	p, err := newProvider(db, opts, true)
	if err != nil {
		return fail(err)
	}
	results, err := p.DownTo(ctx, toVersion)
	var pe *goose.PartialError
	if errors.As(err, &pe) {
		results = pe.Applied
	}
	logResults(ctx, log, "migration rolled back", results)
	if err != nil {
		return fail(err)
	}
	return nil
}

func validate(targets []Target, opts Options) error {
	if err := opts.Validate(); err != nil {
		return err
	}
	seen := make(map[string]bool, len(targets))
	for i, t := range targets {
		switch {
		case t.Shard == "":
			return fmt.Errorf("%w: targets[%d]: empty Shard", ErrInvalidTarget, i)
		case t.DSN == "":
			return fmt.Errorf("%w: targets[%d] (shard %s): empty DSN", ErrInvalidTarget, i, t.Shard)
		case seen[t.Shard]:
			return fmt.Errorf("%w: targets[%d]: shard %s listed twice", ErrInvalidTarget, i, t.Shard)
		}
		seen[t.Shard] = true
	}
	return nil
}

// forEach calls fn(0..n-1) with at most limit calls in flight, and returns when all are done. fn
// must watch ctx itself; forEach only stops starting new work once ctx is done, by still calling fn
// so that every index gets a result that says why it did not run.
func forEach(ctx context.Context, n, limit int, fn func(i int)) {
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			// Every worker fails fast on a done ctx, so run the rest inline for their results.
			fn(i)
			continue
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			fn(i)
		}()
	}
	wg.Wait()
}

func upShard(ctx context.Context, t Target, opts Options) ShardResult {
	res := ShardResult{Shard: t.Shard, Current: -1}
	log := opts.Logger.With(slog.String("shard", t.Shard))
	fail := func(err error) ShardResult {
		se := shardError(t.Shard, "up", err)
		log.ErrorContext(ctx, "migration failed", slog.Int64("version", se.Version),
			slog.String("source", se.Source), slog.Any("err", se.Err))
		res.Err = se
		return res
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	db, err := open(t, opts)
	if err != nil {
		return fail(err)
	}
	defer db.Close()
	p, err := newProvider(db, opts, true)
	if err != nil {
		return fail(err)
	}
	applied, err := p.Up(ctx)
	var pe *goose.PartialError
	if errors.As(err, &pe) {
		applied = pe.Applied
	}
	logResults(ctx, log, "migration applied", applied)
	res.Applied = versions(applied)
	// Read back even after a failure: the SRE needs to know where the shard stopped.
	if cur, cerr := p.GetDBVersion(ctx); cerr == nil {
		res.Current = cur
	}
	if err != nil {
		return fail(err)
	}
	if err := checkShardKeys(ctx, db); err != nil {
		return fail(err)
	}
	log.InfoContext(ctx, "shard migrated", slog.Int("applied", len(res.Applied)), slog.Int64("current", res.Current))
	return res
}

func statusShard(ctx context.Context, t Target, opts Options) ShardStatus {
	st := ShardStatus{Shard: t.Shard, Current: -1}
	fail := func(err error) ShardStatus {
		st.Err = shardError(t.Shard, "status", err)
		return st
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	db, err := open(t, opts)
	if err != nil {
		return fail(err)
	}
	defer db.Close()
	p, err := newProvider(db, opts, false)
	if err != nil {
		return fail(err)
	}
	// goose would create the version table to answer; a status query must not write.
	var exists bool
	if err := db.QueryRowContext(ctx, `SELECT to_regclass($1) IS NOT NULL`, VersionTable).Scan(&exists); err != nil {
		return fail(fmt.Errorf("look for %s: %w", VersionTable, err))
	}
	if !exists {
		st.Current = 0
		for _, s := range p.ListSources() {
			st.Pending = append(st.Pending, s.Version)
		}
		return st
	}
	all, err := p.Status(ctx)
	if err != nil {
		return fail(err)
	}
	for _, m := range all {
		switch m.State {
		case goose.StateApplied:
			st.Applied = append(st.Applied, AppliedMigration{
				Version:   m.Source.Version,
				Source:    path.Base(m.Source.Path),
				AppliedAt: m.AppliedAt,
			})
		default:
			st.Pending = append(st.Pending, m.Source.Version)
		}
	}
	cur, err := p.GetDBVersion(ctx)
	if err != nil {
		return fail(err)
	}
	st.Current = cur
	return st
}

// open connects through pgx's database/sql adapter, which goose needs. The DSN is parsed here, not
// registered globally, so no driver state outlives the call.
func open(t Target, opts Options) (*sql.DB, error) {
	cfg, err := pgx.ParseConfig(t.DSN)
	if err != nil {
		// pgx redacts the password in its parse errors.
		return nil, fmt.Errorf("parse DSN: %w", err)
	}
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		cfg.RuntimeParams["application_name"] = applicationName
	}
	if _, ok := cfg.RuntimeParams["lock_timeout"]; !ok && opts.DDLLockTimeout > 0 {
		cfg.RuntimeParams["lock_timeout"] = strconv.FormatInt(opts.DDLLockTimeout.Milliseconds(), 10) + "ms"
	}
	db := stdlib.OpenDB(*cfg)
	// goose holds one connection for the lock and the migrations and briefly opens another for its
	// pending check; a small cap keeps a wide fan-out from exhausting a shard's connection slots.
	db.SetMaxOpenConns(3)
	return db, nil
}

func newProvider(db *sql.DB, opts Options, locked bool) (*goose.Provider, error) {
	popts := []goose.ProviderOption{
		goose.WithTableName(VersionTable),
		// Go migrations registered by any imported package must never reach a shard by accident.
		goose.WithDisableGlobalRegistry(true),
	}
	if locked {
		secs := uint64((opts.LockTimeout + time.Second - 1) / time.Second)
		locker, err := lock.NewPostgresSessionLocker(
			lock.WithLockID(lockID),
			lock.WithLockTimeout(1, max(secs, 1)),
			lock.WithUnlockTimeout(1, 60),
		)
		if err != nil {
			return nil, fmt.Errorf("session locker: %w", err)
		}
		popts = append(popts, goose.WithSessionLocker(locker))
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, opts.Files, popts...)
	if err != nil {
		return nil, fmt.Errorf("load migrations: %w", err)
	}
	return p, nil
}

// shardError names the shard and, for a migration that failed, its version and file. goose's
// PartialError message repeats what ShardError already says, so only its cause is kept.
func shardError(shard, op string, err error) *ShardError {
	se := &ShardError{Shard: shard, Op: op, Err: err}
	var pe *goose.PartialError
	if errors.As(err, &pe) && pe.Failed != nil && pe.Failed.Source != nil {
		se.Version = pe.Failed.Source.Version
		se.Source = path.Base(pe.Failed.Source.Path)
		se.Err = pe.Err
	}
	return se
}

func logResults(ctx context.Context, log *slog.Logger, msg string, results []*goose.MigrationResult) {
	for _, r := range results {
		log.InfoContext(ctx, msg,
			slog.Int64("version", r.Source.Version),
			slog.String("source", path.Base(r.Source.Path)),
			slog.Duration("duration", r.Duration))
	}
}

func versions(results []*goose.MigrationResult) []int64 {
	if len(results) == 0 {
		return nil
	}
	out := make([]int64, 0, len(results))
	for _, r := range results {
		out = append(out, r.Source.Version)
	}
	return out
}
