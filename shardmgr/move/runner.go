package move

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	consul "github.com/hashicorp/consul/api"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/migrate"
	"github.com/8thdegree/meridian/shardmgr/shardlock"
	"github.com/8thdegree/meridian/shardmgr/shardpool"
	"github.com/8thdegree/meridian/shardmgr/topology"
	"github.com/8thdegree/meridian/shardmgr/topostore"
	"github.com/8thdegree/meridian/shardmgr/verify"
)

var (
	// ErrRefused is wrapped by every refusal to start a move: nothing was changed.
	ErrRefused = errors.New("move refused")
	// ErrNotFound means there is no move with that ID.
	ErrNotFound = errors.New("move: no such move")
	// ErrFinished means the move is done or aborted: there is nothing to resume.
	ErrFinished = errors.New("move: the move is finished")
	// ErrPastFlip means the keyrange already belongs to the target: the move can only go forward.
	ErrPastFlip = errors.New("move: the keyrange already flipped to the target; the move can only go forward (resume it)")
	// ErrKilled is returned when Config.Fault stopped the runner at a fault point, as a crash would:
	// nothing was cleaned up and the lock was abandoned, not released.
	ErrKilled = errors.New("move: killed at a fault point")
	// ErrDiffer means verification found a persistent difference between source and target.
	ErrDiffer = errors.New("move: source and target differ over the keyrange")
	// ErrCopyFailed: the target's replication workers keep failing on the initial copy (it would
	// otherwise retry forever); the move stops resumably.
	ErrCopyFailed = errors.New("move: the initial copy keeps failing on the target")
	// ErrFreezeBudget means every freeze attempt would have overrun the freeze budget; each was
	// rolled back (no write failed) and the move is resumable.
	ErrFreezeBudget = errors.New("move: the cutover could not finish within the freeze budget")
)

// Error is a move that stopped on an error after it was recorded: it says which move, at which
// step, and whether the topology and data are as they were or the move is resumable.
type Error struct {
	Move string
	Step Step
	// Flipped is true when the target already owns the keyrange (resume only).
	Flipped bool
	Err     error
}

func (e *Error) Error() string {
	next := "the source still owns the keyrange; resume with 'shardmgr move --resume " + e.Move + "' or roll back with --abort"
	if e.Flipped {
		next = "the target owns the keyrange; finish with 'shardmgr move --resume " + e.Move + "'"
	}
	return fmt.Sprintf("move %s stopped in step %s: %v (%s)", e.Move, e.Step, e.Err, next)
}

func (e *Error) Unwrap() error { return e.Err }

// FleetWaiter waits until every API node of a region (service in Consul datacenter dc) holds a
// topology version. ConsulFleet is the real one (shardmgr/fleet).
type FleetWaiter interface {
	WaitApplied(ctx context.Context, dc, service string, version uint64) error
}

// VerifyFunc compares source and target over kr. It returns nothing when they hold the same rows,
// an error wrapping ErrDiffer when they differ persistently, and the differing rows (tables with
// their keys listed, as verify.Recheck takes them) it could not settle because they kept changing:
// the cutover rechecks those by key inside the freeze, after the drain, with the writes held
// (RecheckUnsettled), and a difference there rolls the freeze back and fails the move. catchUp
// waits until the target holds what the source has committed so far: a verifier that sees
// differences (rows written while it reads) calls it and looks again.
type VerifyFunc func(ctx context.Context, source, target *pgxpool.Pool, kr shardkey.KeyRange, catchUp func(context.Context) error) ([]verify.TableReport, error)

// Progress is what a runner reports while it works.
type Progress struct {
	Move string
	Step Step
	// Message is a line for a log; empty on pure copy/lag updates.
	Message string
	// RowsCopied of RowsTotal during copy; RowsPerSecond and ETA are estimates.
	RowsCopied, RowsTotal int64
	RowsPerSecond         float64
	ETA                   time.Duration
	// LagBytes is the replication lag during catch-up (-1 unknown).
	LagBytes int64
}

// Config is what a Runner needs. DefaultConfig fills the tunables.
type Config struct {
	Consul   *consul.Client
	Topology *topostore.Store
	// Fleet waits for a region's nodes to hold a topology version; nil: ConsulFleet on Consul.
	Fleet FleetWaiter
	// Verify compares source and target before the cutover; nil: Verify (shardmgr/verify).
	Verify VerifyFunc
	// Prefix of the move records (DefaultPrefix); LockKey of the lock (shardlock.DefaultKey).
	Prefix  string
	LockKey string
	// PinPrefix is the Consul KV prefix of the pin records (DefaultPinPrefix).
	PinPrefix string
	// LockTTL and LockDelay of the lock's session (shardlock defaults when zero).
	LockTTL, LockDelay time.Duration
	// Holder prefixes the lock holder's name ("shardmgr"); the move ID follows.
	Holder string
	// Password resolves a shard's password (shardpool.PasswordFromEnvOrFile).
	Password func(topology.Conn) (string, error)

	// MaxPause bounds one cutover: wait for the nodes + drain + flip. It must stay below the nodes'
	// write hold (MERIDIAN_FREEZE_WAIT, 2 s by default) so that a held write never times out.
	MaxPause time.Duration
	// FreezeAttempts is how many cutovers are tried before the move fails resumably;
	// FreezeBackoff the pause after the first rolled-back one (doubling).
	FreezeAttempts int
	FreezeBackoff  time.Duration
	// CatchupLag is the lag, in bytes of WAL, under which catch-up is done and a cutover may start.
	CatchupLag int64
	// DeleteBatch rows per DELETE statement, DeletePause between statements.
	DeleteBatch int
	DeletePause time.Duration
	// Poll is the interval of the waits outside the cutover (sync, lag); the cutover polls faster.
	Poll time.Duration

	// Fault, when set, is called after each step completes (FaultPoints); if it returns true the
	// runner stops there as a crash would: it returns ErrKilled, cleans nothing up and abandons the
	// lock. The command line's MERIDIAN_FAULT=<step> exits the process from here.
	Fault func(Step) bool
	// Progress receives progress reports; nil discards them.
	Progress func(Progress)
	Logger   *slog.Logger
}

// DefaultConfig returns the tunables' defaults; set Consul and Topology.
func DefaultConfig() Config {
	return Config{
		Prefix:         DefaultPrefix,
		PinPrefix:      DefaultPinPrefix,
		LockKey:        shardlock.DefaultKey,
		Holder:         "shardmgr",
		Password:       shardpool.PasswordFromEnvOrFile,
		MaxPause:       time.Second,
		FreezeAttempts: 3,
		FreezeBackoff:  2 * time.Second,
		CatchupLag:     256 << 10,
		DeleteBatch:    5000,
		DeletePause:    20 * time.Millisecond,
		Poll:           250 * time.Millisecond,
	}
}

// Validate names the first field that cannot be used.
func (c Config) Validate() error {
	switch {
	case c.Consul == nil:
		return errors.New("move: Config.Consul is required")
	case c.Topology == nil:
		return errors.New("move: Config.Topology is required")
	case c.Prefix == "" || c.Prefix[len(c.Prefix)-1] != '/':
		return fmt.Errorf("move: Config.Prefix %q must end with /", c.Prefix)
	case c.PinPrefix == "" || c.PinPrefix[len(c.PinPrefix)-1] != '/':
		return fmt.Errorf("move: Config.PinPrefix %q must end with /", c.PinPrefix)
	case c.PinPrefix == c.Prefix:
		return fmt.Errorf("move: Config.PinPrefix and Config.Prefix must differ (%q)", c.Prefix)
	case c.Password == nil:
		return errors.New("move: Config.Password is required")
	case c.MaxPause <= 0:
		return errors.New("move: Config.MaxPause must be positive")
	case c.FreezeAttempts < 1:
		return errors.New("move: Config.FreezeAttempts must be at least 1")
	case c.DeleteBatch < 1:
		return errors.New("move: Config.DeleteBatch must be at least 1")
	case c.Poll <= 0:
		return errors.New("move: Config.Poll must be positive")
	}
	return nil
}

// Runner starts, resumes, aborts and lists moves. Each call takes the shard lock for its duration.
type Runner struct {
	cfg  Config
	recs records
	log  *slog.Logger
}

// New returns a Runner.
func New(cfg Config) (*Runner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Verify == nil {
		cfg.Verify = Verify
	}
	if cfg.Fleet == nil {
		cfg.Fleet = ConsulFleet{Client: cfg.Consul}
	}
	if cfg.Progress == nil {
		cfg.Progress = func(Progress) {}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Runner{cfg: cfg, recs: records{c: cfg.Consul, prefix: cfg.Prefix}, log: log}, nil
}

// Get returns the move with that ID.
func (r *Runner) Get(ctx context.Context, id string) (*Move, error) { return r.recs.get(ctx, id) }

// List returns the moves not finished (all: every move recorded), oldest first.
func (r *Runner) List(ctx context.Context, all bool) ([]*Move, error) {
	ms, err := r.recs.list(ctx)
	if err != nil || all {
		return ms, err
	}
	var out []*Move
	for _, m := range ms {
		if !m.Status.Finished() {
			out = append(out, m)
		}
	}
	return out, nil
}

func newID(now time.Time) string {
	b := make([]byte, 2)
	_, _ = rand.Read(b)
	return now.UTC().Format("20060102_150405_") + hex.EncodeToString(b)
}

// session is one call's hold on a move: the lock, the record, the shards and their pools.
type session struct {
	r      *Runner
	lock   *shardlock.Lock
	m      *Move
	p      *Pin // a pin's session (m is nil)
	region topology.Region
	src    topology.Shard
	dst    topology.Shard
	srcDB  *pgxpool.Pool
	dstDB  *pgxpool.Pool
	repl   replication
	srcDSN string
	tables []string
	killed bool
	// flipApplied receives CutoverTiming.NodesFlipped once watchFlip's wait ends (nil: no flip in
	// this session).
	flipApplied chan float64
	// borrowed: the caller holds lock (StartHolding) and releases it.
	borrowed bool
}

func (r *Runner) acquire(ctx context.Context, what string) (*shardlock.Lock, error) {
	return shardlock.AcquireWith(ctx, r.cfg.Consul, shardlock.Options{
		Key: r.cfg.LockKey, Holder: r.cfg.Holder + " " + what, TTL: r.cfg.LockTTL, LockDelay: r.cfg.LockDelay,
	})
}

// close releases the lock (or abandons it after a kill) and closes the pools.
func (s *session) close(ctx context.Context) {
	if s.srcDB != nil {
		s.srcDB.Close()
	}
	if s.dstDB != nil {
		s.dstDB.Close()
	}
	if s.lock == nil || s.borrowed {
		return
	}
	ctx = context.WithoutCancel(ctx)
	if s.killed {
		s.lock.Abandon(ctx)
		return
	}
	if err := s.lock.Release(ctx); err != nil {
		s.r.log.Warn("releasing the shard lock", "err", err)
	}
}

func (r *Runner) open(ctx context.Context, sh topology.Shard) (*pgxpool.Pool, string, error) {
	pw, err := r.cfg.Password(sh.Conn)
	if err != nil {
		return nil, "", fmt.Errorf("shard %s: %w", sh.Name, err)
	}
	dsn := shardpool.ConnString(sh.Conn, pw)
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, "", fmt.Errorf("shard %s: %w", sh.Name, err)
	}
	cfg.MaxConns = 4
	cfg.ConnConfig.RuntimeParams["application_name"] = "meridian-move"
	// One time zone on every shard's sessions, so that rows rendered as text (a pin's checksums)
	// compare equal across clusters whatever their servers' defaults.
	cfg.ConnConfig.RuntimeParams["timezone"] = "UTC"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, "", fmt.Errorf("shard %s: %w", sh.Name, err)
	}
	return pool, dsn, nil
}

// attach opens the shards of s.m.
func (s *session) attach(ctx context.Context, topo *topology.Topology) error {
	if err := s.attachShards(ctx, topo, s.m.Source, s.m.Target); err != nil {
		return err
	}
	s.repl = replication{name: objectName(s.m.ID), src: s.srcDB, dst: s.dstDB, sourceDSN: s.srcDSN}
	return nil
}

// attachShards opens the source and target shards and lists the sharded tables of the source.
func (s *session) attachShards(ctx context.Context, topo *topology.Topology, source, target string) error {
	var ok bool
	if s.src, ok = topo.Shard(source); !ok {
		return fmt.Errorf("source shard %s is not in the topology", source)
	}
	if s.dst, ok = topo.Shard(target); !ok {
		return fmt.Errorf("target shard %s is not in the topology", target)
	}
	if s.region, ok = topo.Region(s.src.Region); !ok {
		return fmt.Errorf("region %s of shard %s is not in the topology", s.src.Region, s.src.Name)
	}
	var srcDSN string
	var err error
	if s.srcDB, srcDSN, err = s.r.open(ctx, s.src); err != nil {
		return err
	}
	if s.dstDB, _, err = s.r.open(ctx, s.dst); err != nil {
		return err
	}
	s.srcDSN = srcDSN
	if s.tables, err = shardedTables(ctx, s.srcDB); err != nil {
		return fmt.Errorf("source %s: %w", s.src.Name, err)
	}
	return nil
}

func refusef(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrRefused, fmt.Sprintf(format, args...))
}

// Start checks and records a move of kr to targetShard and runs it to the end. Refusals wrap
// ErrRefused and change nothing. Once recorded, a failure is an *Error: the move is resumable.
// The move's ID is reported through Config.Progress before anything else happens.
func (r *Runner) Start(ctx context.Context, kr shardkey.KeyRange, targetShard string) (*Move, error) {
	now := time.Now().UTC()
	m := &Move{ID: newID(now), KeyRange: kr, Target: targetShard, Status: Running, Created: now}
	lock, err := r.acquire(ctx, "move "+m.ID)
	if err != nil {
		return nil, err
	}
	s := &session{r: r, lock: lock, m: m}
	defer s.close(ctx)
	return r.start(ctx, s, kr, targetShard)
}

// StartHolding is Start for a caller that already holds the shard lock (rebalance, which runs many
// steps under one lock so that nothing else reshards between them): the move's record writes are
// fenced by lock, which stays held when the move ends, whatever its outcome.
func (r *Runner) StartHolding(ctx context.Context, lock *shardlock.Lock, kr shardkey.KeyRange, targetShard string) (*Move, error) {
	if lock == nil {
		return nil, errors.New("move: StartHolding needs the shard lock")
	}
	now := time.Now().UTC()
	m := &Move{ID: newID(now), KeyRange: kr, Target: targetShard, Status: Running, Created: now}
	s := &session{r: r, lock: lock, m: m, borrowed: true}
	defer s.close(ctx)
	return r.start(ctx, s, kr, targetShard)
}

func (r *Runner) start(ctx context.Context, s *session, kr shardkey.KeyRange, targetShard string) (*Move, error) {
	m, lock := s.m, s.lock

	topo, _, err := r.cfg.Topology.Load(ctx)
	if err != nil {
		return nil, err
	}
	a, err := assignmentOf(topo, kr)
	if err != nil {
		return nil, err
	}
	m.Source = a.Shard
	if a.State != topology.Serving {
		return nil, refusef("keyrange %s on %s is %s: it is already in a move", kr, a.Shard, a.State)
	}
	dst, ok := topo.Shard(targetShard)
	if !ok {
		return nil, refusef("no shard %q in topology version %d", targetShard, topo.Version)
	}
	if dst.Name == a.Shard {
		return nil, refusef("keyrange %s is already on %s", kr, dst.Name)
	}
	src, _ := topo.Shard(a.Shard)
	if dst.Region != src.Region {
		return nil, refusef("target %s is in region %s, the keyrange's shard %s in %s: moves never cross a region (pin users instead)", dst.Name, dst.Region, src.Name, src.Region)
	}
	m.Region = src.Region
	if err := r.refuseConcurrent(ctx, kr); err != nil {
		return nil, err
	}
	if err := s.attach(ctx, topo); err != nil {
		return nil, err
	}
	if err := s.checkSchemas(ctx); err != nil {
		return nil, err
	}
	counts, err := countRange(ctx, s.dstDB, s.tables, kr)
	if err != nil {
		return nil, fmt.Errorf("target %s: %w", dst.Name, err)
	}
	for _, t := range s.tables {
		if counts[t] > 0 {
			return nil, refusef("target %s already holds %d rows of keyrange %s in %s (left by something other than a move, which cleans up after itself): inspect and delete them first", dst.Name, counts[t], kr, t)
		}
	}

	m.Holder = lock.Session()
	if err := r.recs.put(ctx, m, lock, time.Now().UTC()); err != nil {
		return nil, err
	}
	r.cfg.Progress(Progress{Move: m.ID, Message: fmt.Sprintf("move %s: keyrange %s from %s to %s (region %s)", m.ID, kr, m.Source, m.Target, m.Region)})
	r.log.Info("move recorded", "move", m.ID, "keyrange", kr.String(), "source", m.Source, "target", m.Target)
	return m, s.run(ctx)
}

// assignmentOf returns the assignment that is exactly kr, refusing a keyrange that is not one.
func assignmentOf(topo *topology.Topology, kr shardkey.KeyRange) (topology.Assignment, error) {
	var overlaps []string
	for _, a := range topo.KeyRanges {
		if a.Range == kr {
			return a, nil
		}
		if a.Range.Overlaps(kr) {
			overlaps = append(overlaps, a.Range.String()+" on "+a.Shard)
		}
	}
	if len(overlaps) > 0 {
		return topology.Assignment{}, refusef("keyrange %s is not one assignment: it overlaps %v (split first, or move each)", kr, overlaps)
	}
	return topology.Assignment{}, refusef("no shard owns keyrange %s", kr)
}

// refuseConcurrent refuses a keyrange that a move not finished covers in part.
func (r *Runner) refuseConcurrent(ctx context.Context, kr shardkey.KeyRange) error {
	ms, err := r.List(ctx, false)
	if err != nil {
		return err
	}
	for _, m := range ms {
		if m.KeyRange.Overlaps(kr) {
			return refusef("move %s (keyrange %s, %s) is not finished: resume or abort it first", m.ID, m.KeyRange, m.Status)
		}
	}
	// A pin not finished has rows of its user on both of its shards, which a move would split.
	p, err := r.unfinishedPinIn(ctx, kr)
	if err != nil {
		return err
	}
	if p != nil {
		return refusef("pin %s of user %s (ksid %s to %s, %s) is not finished: resume or abort it first", p.ID, p.User, p.From, p.To, p.Status)
	}
	return nil
}

// checkSchemas refuses shards whose migrations or sharded tables differ.
func (s *session) checkSchemas(ctx context.Context) error {
	_, srcDSN, err := s.r.open(ctx, s.src)
	if err != nil {
		return err
	}
	pw, err := s.r.cfg.Password(s.dst.Conn)
	if err != nil {
		return err
	}
	sts, err := migrate.Status(ctx, []migrate.Target{{Shard: s.src.Name, DSN: srcDSN}, {Shard: s.dst.Name, DSN: shardpool.ConnString(s.dst.Conn, pw)}}, migrate.Options{})
	if err != nil {
		return fmt.Errorf("reading the shards' migrations: %w", err)
	}
	if sts[0].Current != sts[1].Current || len(sts[0].Pending) != len(sts[1].Pending) {
		return refusef("schemas differ: %s is at migration %d (%d pending), %s at %d (%d pending): run 'shardmgr migrate' first",
			s.src.Name, sts[0].Current, len(sts[0].Pending), s.dst.Name, sts[1].Current, len(sts[1].Pending))
	}
	dstTables, err := shardedTables(ctx, s.dstDB)
	if err != nil {
		return fmt.Errorf("target %s: %w", s.dst.Name, err)
	}
	if onlySrc, onlyDst := tableDiff(s.tables, dstTables); len(onlySrc)+len(onlyDst) > 0 {
		return refusef("sharded tables differ: only on %s %v, only on %s %v", s.src.Name, onlySrc, s.dst.Name, onlyDst)
	}
	return nil
}

// Resume continues a move from its recorded step, after checking what really is there.
func (r *Runner) Resume(ctx context.Context, id string) (*Move, error) {
	lock, err := r.acquire(ctx, "move --resume "+id)
	if err != nil {
		return nil, err
	}
	s := &session{r: r, lock: lock}
	defer s.close(ctx)
	if s.m, err = r.recs.get(ctx, id); err != nil {
		return nil, err
	}
	m := s.m
	switch {
	case m.Status.Finished():
		return m, fmt.Errorf("%w: move %s is %s", ErrFinished, id, m.Status)
	case m.Status == Aborting:
		return m, fmt.Errorf("move %s is being aborted: finish the abort with 'shardmgr move --abort %s'", id, id)
	}
	topo, _, err := r.cfg.Topology.Load(ctx)
	if err != nil {
		return m, err
	}
	if err := s.attach(ctx, topo); err != nil {
		return m, err
	}
	a, err := assignmentOf(topo, m.KeyRange)
	if err != nil {
		return m, fmt.Errorf("move %s: the topology no longer has keyrange %s as one assignment: %w", id, m.KeyRange, err)
	}
	switch {
	case a.Shard == m.Target:
		// Flipped, perhaps without the record saying so (a crash right after the flip).
		if !after(m.Step, StepFlip) {
			m.Step = StepFlip
		}
	case a.Shard == m.Source && a.State == topology.Frozen:
		// A crash in the cutover: the nodes have been holding writes since, and gave up after their
		// hold. Serve from the source again at once and redo the cutover from the start.
		if err := s.setState(ctx, topology.Frozen, topology.Moving); err != nil {
			return m, err
		}
		if after(m.Step, StepVerify) {
			m.Step = StepVerify
		}
	case a.Shard == m.Source && a.State == topology.Serving && m.Step != "":
		// Someone put the keyrange back to serving: prepare again (it is idempotent).
		m.Step = ""
	case a.Shard != m.Source:
		return m, fmt.Errorf("move %s: keyrange %s is on %s, neither its source %s nor its target %s", id, m.KeyRange, a.Shard, m.Source, m.Target)
	}
	m.Status, m.Error = Running, ""
	m.Holder = lock.Session()
	if err := r.recs.put(ctx, m, lock, time.Now().UTC()); err != nil {
		return m, err
	}
	r.cfg.Progress(Progress{Move: m.ID, Message: fmt.Sprintf("resuming move %s after step %q", m.ID, m.Step)})
	return m, s.run(ctx)
}

// run executes the steps after s.m.Step.
func (s *session) run(ctx context.Context) error {
	m := s.m
	for {
		i := stepIndex(m.Step) + 1
		if i >= len(Steps) {
			return nil
		}
		step := Steps[i]
		var err error
		switch step {
		case StepFreeze, StepDrain, StepFlip:
			err = s.cutover(ctx)
		default:
			err = s.runStep(ctx, step)
		}
		if errors.Is(err, ErrKilled) {
			return err
		}
		if err != nil {
			return s.fail(ctx, step, err)
		}
	}
}

func (s *session) runStep(ctx context.Context, step Step) error {
	m := s.m
	m.startStep(step, time.Now().UTC())
	s.r.cfg.Progress(Progress{Move: m.ID, Step: step, Message: "step " + string(step)})
	var err error
	switch step {
	case StepPrepare:
		err = s.setState(ctx, topology.Serving, topology.Moving)
	case StepCopy:
		err = s.copy(ctx)
	case StepCatchup:
		err = s.catchup(ctx)
	case StepVerify:
		m.Unsettled, err = s.r.cfg.Verify(ctx, s.srcDB, s.dstDB, m.KeyRange, s.waitDrained)
		if len(m.Unsettled) > 0 {
			s.r.cfg.Progress(Progress{Move: m.ID, Step: step, Message: fmt.Sprintf("%d rows kept changing during verify; they are rechecked in the cutover, with the writes held", unsettledRows(m.Unsettled))})
		}
	case StepCleanup:
		err = s.cleanup(ctx)
	case StepDone:
		m.Status = Done
	}
	if err != nil {
		return err
	}
	return s.complete(ctx, step)
}

// complete records step as done and fires its fault point.
func (s *session) complete(ctx context.Context, step Step) error {
	s.m.finishStep(step, time.Now().UTC())
	if err := s.r.recs.put(ctx, s.m, s.lock, time.Now().UTC()); err != nil {
		return err
	}
	s.r.log.Info("move step done", "move", s.m.ID, "step", string(step))
	return s.fault(step)
}

func (s *session) fault(step Step) error {
	if step != StepDone && s.r.cfg.Fault != nil && s.r.cfg.Fault(step) {
		s.killed = true
		return fmt.Errorf("%w: after step %s", ErrKilled, step)
	}
	return nil
}

// fail records the error; the move stays resumable.
func (s *session) fail(ctx context.Context, step Step, err error) error {
	m := s.m
	m.Status, m.Error = Failed, err.Error()
	ctx = context.WithoutCancel(ctx)
	topo, _, lerr := s.r.cfg.Topology.Load(ctx)
	flipped := false
	if lerr == nil {
		if a, aerr := assignmentOf(topo, m.KeyRange); aerr == nil {
			flipped = a.Shard == m.Target
		}
	}
	if perr := s.r.recs.put(ctx, m, s.lock, time.Now().UTC()); perr != nil {
		s.r.log.Error("recording the move's failure", "move", m.ID, "err", perr)
	}
	s.r.log.Error("move failed", "move", m.ID, "step", string(step), "err", err)
	return &Error{Move: m.ID, Step: step, Flipped: flipped, Err: err}
}

// setState moves the assignment from one state to another on the source, accepting it already in
// the new state (a step re-run after a crash).
func (s *session) setState(ctx context.Context, from, to topology.State) error {
	_, err := s.modify(ctx, func(a *topology.Assignment) error {
		if a.Shard != s.m.Source {
			return fmt.Errorf("keyrange %s is on %s, not on the source %s", a.Range, a.Shard, s.m.Source)
		}
		if a.State != from && a.State != to {
			return fmt.Errorf("keyrange %s is %s, expected %s", a.Range, a.State, from)
		}
		a.State = to
		return nil
	})
	return err
}

// modify edits the move's assignment in the topology with check-and-set, while the lock holds.
func (s *session) modify(ctx context.Context, fn func(*topology.Assignment) error) (*topology.Topology, error) {
	if err := s.lock.Err(); err != nil {
		return nil, err
	}
	return s.r.cfg.Topology.Modify(ctx, func(t *topology.Topology) error {
		for i := range t.KeyRanges {
			if t.KeyRanges[i].Range == s.m.KeyRange {
				return fn(&t.KeyRanges[i])
			}
		}
		return fmt.Errorf("keyrange %s is no longer one assignment", s.m.KeyRange)
	})
}

// Abort rolls a move back before its flip: the source serves the keyrange again, and the
// replication objects and whatever was copied to the target are gone. After the flip it refuses
// with ErrPastFlip. Aborting an aborted move is a no-op.
func (r *Runner) Abort(ctx context.Context, id string) (*Move, error) {
	lock, err := r.acquire(ctx, "move --abort "+id)
	if err != nil {
		return nil, err
	}
	s := &session{r: r, lock: lock}
	defer s.close(ctx)
	if s.m, err = r.recs.get(ctx, id); err != nil {
		return nil, err
	}
	m := s.m
	switch m.Status {
	case Aborted:
		return m, nil
	case Done:
		return m, fmt.Errorf("%w: move %s is done", ErrPastFlip, id)
	}
	if after(m.Step, StepDrain) {
		return m, fmt.Errorf("%w: move %s completed step %s", ErrPastFlip, id, m.Step)
	}
	topo, _, err := r.cfg.Topology.Load(ctx)
	if err != nil {
		return m, err
	}
	a, err := assignmentOf(topo, m.KeyRange)
	if err != nil {
		return m, err
	}
	if a.Shard == m.Target {
		return m, fmt.Errorf("%w: keyrange %s is on %s", ErrPastFlip, m.KeyRange, a.Shard)
	}
	if err := s.attach(ctx, topo); err != nil {
		return m, err
	}
	m.Status, m.Error = Aborting, ""
	m.startStep("abort", time.Now().UTC())
	if err := r.recs.put(ctx, m, lock, time.Now().UTC()); err != nil {
		return m, err
	}
	r.cfg.Progress(Progress{Move: m.ID, Message: "aborting move " + m.ID})
	if err := s.abort(ctx); err != nil {
		m.Error = err.Error()
		_ = r.recs.put(context.WithoutCancel(ctx), m, lock, time.Now().UTC())
		return m, fmt.Errorf("move %s: abort stopped (run --abort again to finish it): %w", id, err)
	}
	now := time.Now().UTC()
	for i := range m.Steps {
		if m.Steps[i].Step == "abort" {
			m.Steps[i].Finished = now
			m.Steps[i].Millis = float64(now.Sub(m.Steps[i].Started).Microseconds()) / 1000
		}
	}
	m.Status = Aborted
	return m, r.recs.put(ctx, m, lock, now)
}

func (s *session) abort(ctx context.Context) error {
	m := s.m
	// Writes held by the nodes go on at the source at once.
	if _, err := s.modify(ctx, func(a *topology.Assignment) error {
		if a.Shard != m.Source {
			return fmt.Errorf("%w: keyrange %s is on %s", ErrPastFlip, a.Range, a.Shard)
		}
		a.State = topology.Serving
		return nil
	}); err != nil {
		return err
	}
	oid, err := s.repl.dropAll(ctx, m.SubscriptionOID)
	if err != nil {
		return err
	}
	m.SubscriptionOID = oid
	// Only now, with no subscription left to write into it, delete what was copied: the target
	// does not own the keyrange, so every row of it there came from this move.
	deleted, err := deleteRange(ctx, s.dstDB, s.tables, m.KeyRange, s.r.cfg.DeleteBatch, s.r.cfg.DeletePause)
	m.RowsDeleted = deleted
	return err
}

// copy creates the publication, the slot and the subscription (each unless it exists) and waits
// for the initial sync of every table.
func (s *session) copy(ctx context.Context) error {
	m := s.m
	if err := s.repl.createPublication(ctx, s.tables, m.KeyRange); err != nil {
		return err
	}
	if err := s.repl.createSlot(ctx); err != nil {
		return err
	}
	oid, err := s.repl.subscription(ctx)
	if err != nil {
		return err
	}
	if oid == 0 {
		// No subscription: rows of the keyrange on the target come from an earlier attempt of this
		// move whose subscription went away; start the copy over from nothing.
		if _, err := deleteRange(ctx, s.dstDB, s.tables, m.KeyRange, s.r.cfg.DeleteBatch, s.r.cfg.DeletePause); err != nil {
			return err
		}
		if err := s.repl.createSubscription(ctx); err != nil {
			return err
		}
		if oid, err = s.repl.subscription(ctx); err != nil {
			return err
		}
		m.SubscriptionOID = oid
		if err := s.r.recs.put(ctx, m, s.lock, time.Now().UTC()); err != nil {
			return err
		}
	}
	totals, err := countRange(ctx, s.srcDB, s.tables, m.KeyRange)
	if err != nil {
		return err
	}
	var total int64
	for _, n := range totals {
		total += n
	}
	start := time.Now()
	// Errors counted before this attempt (a resumed move) are not this attempt's.
	baseErrors, err := s.repl.syncErrors(ctx)
	if err != nil {
		return err
	}
	for {
		n, err := s.repl.subscribedTables(ctx)
		if err != nil {
			return err
		}
		if errs, err := s.repl.syncErrors(ctx); err != nil {
			return err
		} else if errs > baseErrors {
			return fmt.Errorf("%w: the target's replication workers failed %d times copying keyrange %s (the target's PostgreSQL log says why, e.g. a row that breaks a unique constraint of the target); fix the cause, then resume, or abort", ErrCopyFailed, errs-baseErrors, m.KeyRange)
		}
		pending, err := s.repl.notReady(ctx)
		if err != nil {
			return err
		}
		running, err := s.repl.copyProgress(ctx)
		if err != nil {
			return err
		}
		var copied int64
		for _, t := range s.tables {
			switch {
			case !contains(pending, t):
				copied += totals[t]
			default:
				copied += running[t]
			}
		}
		p := Progress{Move: m.ID, Step: StepCopy, RowsCopied: copied, RowsTotal: total, LagBytes: -1}
		if el := time.Since(start).Seconds(); el > 0 && copied > 0 {
			p.RowsPerSecond = float64(copied) / el
			p.ETA = time.Duration(float64(total-copied) / p.RowsPerSecond * float64(time.Second))
		}
		s.r.cfg.Progress(p)
		if n > 0 && len(pending) == 0 {
			break
		}
		if err := sleep(ctx, s.r.cfg.Poll); err != nil {
			return err
		}
	}
	m.RowsCopied, err = countRange(ctx, s.dstDB, s.tables, m.KeyRange)
	return err
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// catchup waits until the lag is under CatchupLag.
func (s *session) catchup(ctx context.Context) error {
	for {
		lag, err := s.repl.lag(ctx)
		if err != nil {
			return err
		}
		s.r.cfg.Progress(Progress{Move: s.m.ID, Step: StepCatchup, LagBytes: lag})
		if lag <= s.r.cfg.CatchupLag {
			return nil
		}
		if err := sleep(ctx, s.r.cfg.Poll); err != nil {
			return err
		}
	}
}

// waitDrained waits until the target holds everything the source committed before the call.
func (s *session) waitDrained(ctx context.Context) error {
	lsn, err := s.repl.flushMark(ctx)
	if err != nil {
		return err
	}
	for {
		ok, err := s.repl.confirmedPast(ctx, lsn)
		if err != nil || ok {
			return err
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}

// settle waits, before anything of the source's copy goes, until nothing can still read or write
// the keyrange there: every passing node of the region holds version (the flip or later: none
// routes the keyrange to the source any more, and the requests they held during the freeze went to
// the target), then no client transaction that was open on the source when they all did is still
// open (a request routed to the source before its node applied the freeze, still running). Without
// it a node slow to apply the flip would read the source while its rows are deleted: a 404 for a
// row written long before.
func (s *session) settle(ctx context.Context, version uint64) error {
	m := s.m
	s.r.cfg.Progress(Progress{Move: m.ID, Step: StepCleanup, Message: fmt.Sprintf("waiting until every node of %s holds topology version %d", s.region.Name, version)})
	if s.flipApplied != nil {
		select {
		case ms := <-s.flipApplied:
			if m.Cutover != nil && ms > 0 {
				m.Cutover.NodesFlipped = ms
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := s.r.cfg.Fleet.WaitApplied(ctx, s.region.ConsulDC, s.region.APIService, version); err != nil {
		return fmt.Errorf("waiting for the nodes of %s to apply the flip (version %d) before deleting the source's rows: %w", s.region.Name, version, err)
	}
	before, err := s.repl.sourceNow(ctx)
	if err != nil {
		return err
	}
	// Bounded: a session left idle in a transaction for long is not a request (nodes answer in
	// seconds), and must not hold the cleanup forever.
	wctx, cancel := context.WithTimeout(ctx, settleTransactions)
	defer cancel()
	for {
		n, err := s.repl.inFlight(wctx, before)
		if err == nil && n == 0 {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if wctx.Err() != nil || err != nil {
			s.r.log.Warn("transactions still open on the source before its rows are deleted", "move", m.ID, "open", n, "waited", settleTransactions, "err", err)
			return nil
		}
		_ = sleep(wctx, 10*time.Millisecond)
	}
}

// settleTransactions bounds settle's wait for the source's open transactions.
const settleTransactions = 30 * time.Second

// cleanup drops the replication objects and deletes the moved rows from the source.
func (s *session) cleanup(ctx context.Context) error {
	m := s.m
	topo, _, err := s.r.cfg.Topology.Load(ctx)
	if err != nil {
		return err
	}
	a, err := assignmentOf(topo, m.KeyRange)
	if err != nil {
		return err
	}
	if a.Shard != m.Target {
		return fmt.Errorf("keyrange %s is on %s, not on the target %s: refusing to delete it from the source", m.KeyRange, a.Shard, m.Target)
	}
	if err := s.settle(ctx, topo.Version); err != nil {
		return err
	}
	oid, err := s.repl.subscription(ctx)
	if err != nil {
		return err
	}
	if oid != 0 {
		// A write routed to the source just before the freeze reached its node and committed late
		// still replicates: give the subscription a last drain before it goes.
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := s.waitDrained(dctx); err != nil {
			s.r.log.Warn("last drain before cleanup", "move", m.ID, "err", err)
		}
		cancel()
	}
	// The subscription goes first: with it gone, deleting the source's rows cannot reach the target.
	if oid, err = s.repl.dropAll(ctx, m.SubscriptionOID); err != nil {
		return err
	}
	if oid != 0 {
		m.SubscriptionOID = oid
	}
	deleted, err := deleteRange(ctx, s.srcDB, s.tables, m.KeyRange, s.r.cfg.DeleteBatch, s.r.cfg.DeletePause)
	m.RowsDeleted = deleted
	return err
}
