package move

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

// pinFlipWait bounds the wait, after the flip, for the nodes of both regions to apply it before
// the source's rows are deleted (a node still reading the source would miss them).
const pinFlipWait = 30 * time.Second

// pinAuditAction is the core.audit_log action of a finished pin.
const pinAuditAction = "residency.pin"

// Pin relocates one user's data to region: every row the user owns is copied to the shard of the
// target region that owns the user's new ksid (the region's code over the same 56 bits), the
// relocation map flipped so that the user's IDs route there, the email directory pointed at the
// region, the source rows deleted and an audit record written. Refusals wrap ErrRefused (an unknown
// region also ErrUnknownRegion) and change nothing. Once recorded, a failure is a *PinError: the
// pin is resumable. The pin's ID is reported through Config.Progress first.
func (r *Runner) Pin(ctx context.Context, user shardkey.ID, region string) (*Pin, error) {
	now := time.Now().UTC()
	p := &Pin{ID: newID(now), User: user, TargetRegion: region, Status: Running, Created: now}
	lock, err := r.acquire(ctx, "pin "+p.ID)
	if err != nil {
		return nil, err
	}
	s := &session{r: r, lock: lock, p: p}
	defer s.close(ctx)

	topo, _, err := r.cfg.Topology.Load(ctx)
	if err != nil {
		return nil, err
	}
	tab, err := topology.Compile(topo)
	if err != nil {
		return nil, err
	}
	dstRegion, ok := topo.Region(region)
	if !ok {
		names := make([]string, len(topo.Regions))
		for i, reg := range topo.Regions {
			names[i] = reg.Name
		}
		return nil, fmt.Errorf("%w: %w %q (regions: %s)", ErrRefused, ErrUnknownRegion, region, strings.Join(names, ", "))
	}
	if user.IsZero() || user.Kind() != shardkey.KindUser {
		return nil, refusef("%s is not a user ID", user)
	}
	p.From = tab.Resolve(user.KeyspaceID())
	srcRoute, err := tab.Lookup(p.From)
	if err != nil {
		return nil, refusef("user %s: ksid %s: %v", user, p.From, err)
	}
	p.Source, p.SourceRegion = srcRoute.Shard.Name, srcRoute.Region.Name
	if p.SourceRegion == region {
		return nil, refusef("user %s already lives in region %s (ksid %s on shard %s)", user, region, p.From, p.Source)
	}
	if rel, ok := relocationFrom(topo, p.From); ok && !rel.Active() {
		return nil, refusef("user %s is being pinned: the topology holds a frozen relocation of ksid %s (resume or abort the pin that froze it)", user, p.From)
	}
	p.To = p.From.WithRegion(dstRegion.Code)
	dstA, ok := assignmentOfKsid(topo, p.To)
	if !ok {
		return nil, refusef("no keyrange of region %s owns ksid %s", region, p.To)
	}
	p.Target = dstA.Shard
	if srcRoute.State != topology.Serving {
		return nil, refusef("keyrange %s of the user (on %s) is %s: a move is running on it", srcRoute.Range, p.Source, srcRoute.State)
	}
	if dstA.State != topology.Serving {
		return nil, refusef("keyrange %s of the target (on %s) is %s: a move is running on it", dstA.Range, p.Target, dstA.State)
	}
	if err := r.refusePinConcurrent(ctx, p); err != nil {
		return nil, err
	}
	if err := s.attachShards(ctx, topo, p.Source, p.Target); err != nil {
		return nil, err
	}
	if err := s.checkSchemas(ctx); err != nil {
		return nil, err
	}
	var n int
	if err := s.srcDB.QueryRow(ctx, "SELECT count(*) FROM auth.users WHERE ksid = $1 AND id = $2", p.From.Bytes(), user.Bytes()).Scan(&n); err != nil {
		return nil, fmt.Errorf("source %s: %w", p.Source, err)
	}
	if n == 0 {
		return nil, refusef("no user %s: no auth.users row under ksid %s on shard %s", user, p.From, p.Source)
	}
	counts, err := countRange(ctx, s.dstDB, s.tables, oneKsid(p.To))
	if err != nil {
		return nil, fmt.Errorf("target %s: %w", p.Target, err)
	}
	for _, t := range s.tables {
		if counts[t] > 0 {
			return nil, refusef("target %s already holds %d rows under the new ksid %s in %s (left by something other than a pin, which cleans up after itself): inspect and delete them first", p.Target, counts[t], p.To, t)
		}
	}

	p.Holder = lock.Session()
	if err := r.putPin(ctx, p, lock); err != nil {
		return nil, err
	}
	r.cfg.Progress(Progress{Move: p.ID, Message: fmt.Sprintf("pin %s: user %s from %s (%s, ksid %s) to %s (%s, ksid %s)", p.ID, user, p.SourceRegion, p.Source, p.From, p.TargetRegion, p.Target, p.To)})
	r.log.Info("pin recorded", "pin", p.ID, "user", user.String(), "from", p.From.String(), "to", p.To.String())
	return p, s.runPin(ctx)
}

// assignmentOfKsid returns the assignment whose keyrange contains k (no relocation applied).
func assignmentOfKsid(t *topology.Topology, k shardkey.KeyspaceID) (topology.Assignment, bool) {
	for _, a := range t.KeyRanges {
		if a.Range.Contains(k) {
			return a, true
		}
	}
	return topology.Assignment{}, false
}

// refusePinConcurrent refuses a pin of a user another pin is not finished for, or whose ksids a
// move not finished covers.
func (r *Runner) refusePinConcurrent(ctx context.Context, p *Pin) error {
	pins, err := r.Pins(ctx, false)
	if err != nil {
		return err
	}
	for _, o := range pins {
		if o.User == p.User || o.From == p.From || o.To == p.To {
			return refusef("pin %s of user %s (%s, %s) is not finished: resume or abort it first", o.ID, o.User, o.Status, o.Step)
		}
	}
	ms, err := r.List(ctx, false)
	if err != nil {
		return err
	}
	for _, m := range ms {
		if m.KeyRange.Contains(p.From) || m.KeyRange.Contains(p.To) {
			return refusef("move %s (keyrange %s, %s) is not finished and covers the user's ksid: resume or abort it first", m.ID, m.KeyRange, m.Status)
		}
	}
	return nil
}

// unfinishedPinIn returns an unfinished pin with a ksid in kr, for moves to refuse.
func (r *Runner) unfinishedPinIn(ctx context.Context, kr shardkey.KeyRange) (*Pin, error) {
	pins, err := r.Pins(ctx, false)
	if err != nil {
		return nil, err
	}
	for _, p := range pins {
		if kr.Contains(p.From) || kr.Contains(p.To) {
			return p, nil
		}
	}
	return nil, nil
}

// ResumePin continues a pin from its recorded step, after checking the topology.
func (r *Runner) ResumePin(ctx context.Context, id string) (*Pin, error) {
	lock, err := r.acquire(ctx, "pin --resume "+id)
	if err != nil {
		return nil, err
	}
	s := &session{r: r, lock: lock}
	defer s.close(ctx)
	if s.p, err = r.GetPin(ctx, id); err != nil {
		return nil, err
	}
	p := s.p
	switch {
	case p.Status.Finished():
		return p, fmt.Errorf("%w: pin %s is %s", ErrFinished, id, p.Status)
	case p.Status == Aborting:
		return p, fmt.Errorf("pin %s is being aborted: finish the abort with 'shardmgr pin --abort %s'", id, id)
	}
	topo, _, err := r.cfg.Topology.Load(ctx)
	if err != nil {
		return p, err
	}
	if err := s.attachShards(ctx, topo, p.Source, p.Target); err != nil {
		return p, err
	}
	rel, found := relocationFrom(topo, p.From)
	switch {
	case p.flipped(topo):
		// Flipped, perhaps without the record saying so (a crash right after the flip).
		if !pinAfter(p.Step, StepFlip) {
			p.Step = StepFlip
		}
	case found && !rel.Active():
		// A crash in the cutover: serve from the source again at once, and redo the cutover.
		if err := s.unfreezePin(ctx); err != nil {
			return p, err
		}
		if pinAfter(p.Step, StepVerify) {
			p.Step = StepVerify
		}
	case found:
		return p, fmt.Errorf("pin %s: the topology relocates ksid %s to %s, not to the pin's %s", id, p.From, rel.To, p.To)
	}
	p.Status, p.Error = Running, ""
	p.Holder = lock.Session()
	if err := r.putPin(ctx, p, lock); err != nil {
		return p, err
	}
	r.cfg.Progress(Progress{Move: p.ID, Message: fmt.Sprintf("resuming pin %s after step %q", p.ID, p.Step)})
	return p, s.runPin(ctx)
}

// AbortPin rolls a pin back before its flip: the frozen relocation (if any) is removed and the
// rows copied to the target are deleted. After the flip it refuses with ErrPastFlip.
func (r *Runner) AbortPin(ctx context.Context, id string) (*Pin, error) {
	lock, err := r.acquire(ctx, "pin --abort "+id)
	if err != nil {
		return nil, err
	}
	s := &session{r: r, lock: lock}
	defer s.close(ctx)
	if s.p, err = r.GetPin(ctx, id); err != nil {
		return nil, err
	}
	p := s.p
	switch p.Status {
	case Aborted:
		return p, nil
	case Done:
		return p, fmt.Errorf("%w: pin %s is done", ErrPastFlip, id)
	}
	if pinAfter(p.Step, StepDrain) {
		return p, fmt.Errorf("%w: pin %s completed step %s", ErrPastFlip, id, p.Step)
	}
	topo, _, err := r.cfg.Topology.Load(ctx)
	if err != nil {
		return p, err
	}
	if p.flipped(topo) {
		return p, fmt.Errorf("%w: the relocation of ksid %s to %s is active", ErrPastFlip, p.From, p.To)
	}
	if err := s.attachShards(ctx, topo, p.Source, p.Target); err != nil {
		return p, err
	}
	p.Status, p.Error = Aborting, ""
	p.startStep("abort", time.Now().UTC())
	if err := r.putPin(ctx, p, lock); err != nil {
		return p, err
	}
	r.cfg.Progress(Progress{Move: p.ID, Message: "aborting pin " + p.ID})
	err = s.unfreezePin(ctx)
	if err == nil {
		// Nothing routes to the new ksid before the flip: every row under it on the target is
		// the pin's copy.
		p.RowsDeleted, err = deleteRange(ctx, s.dstDB, s.tables, oneKsid(p.To), r.cfg.DeleteBatch, r.cfg.DeletePause)
	}
	if err != nil {
		p.Error = err.Error()
		_ = r.putPin(context.WithoutCancel(ctx), p, lock)
		return p, fmt.Errorf("pin %s: abort stopped (run --abort again to finish it): %w", id, err)
	}
	p.endStep("abort", time.Now().UTC())
	p.Status = Aborted
	return p, r.putPin(ctx, p, lock)
}

// runPin executes the steps after s.p.Step.
func (s *session) runPin(ctx context.Context) error {
	p := s.p
	for {
		i := pinStepIndex(p.Step) + 1
		if i >= len(PinSteps) {
			return nil
		}
		step := PinSteps[i]
		var err error
		switch step {
		case StepFreeze, StepDrain, StepFlip:
			err = s.pinCutover(ctx)
		default:
			err = s.runPinStep(ctx, step)
		}
		if errors.Is(err, ErrKilled) {
			return err
		}
		if err != nil {
			return s.failPin(ctx, step, err)
		}
	}
}

func (s *session) copier() pinCopy {
	return pinCopy{src: s.srcDB, dst: s.dstDB, from: s.p.From, to: s.p.To, region: s.p.TargetRegion}
}

func (s *session) pinTables(ctx context.Context) ([]pinTable, error) {
	return pinTables(ctx, s.srcDB, s.tables)
}

func (s *session) runPinStep(ctx context.Context, step Step) error {
	p := s.p
	p.startStep(step, time.Now().UTC())
	s.r.cfg.Progress(Progress{Move: p.ID, Step: step, Message: "step " + string(step)})
	var err error
	switch step {
	case StepPrepare:
		// The checks ran before the pin was recorded; nothing to change.
	case StepCopy:
		var tables []pinTable
		if tables, err = s.pinTables(ctx); err == nil {
			p.RowsCopied, err = s.copier().copyTables(ctx, tables)
		}
	case StepVerify:
		// Writes go on at the source: copy again what changed since, so that the cutover has
		// little left to copy while the user's writes wait.
		var tables []pinTable
		if tables, err = s.pinTables(ctx); err == nil {
			err = s.syncDiffering(ctx, tables)
		}
	case StepDirectory:
		p.ClaimsUpdated, err = s.pinDirectory(ctx)
	case StepCleanup:
		err = s.pinCleanup(ctx)
	case StepDone:
		if err = s.pinAudit(ctx); err == nil {
			p.Status = Done
		}
	}
	if err != nil {
		return err
	}
	return s.completePin(ctx, step)
}

// syncDiffering copies the tables whose rows of the user differ between source and target.
func (s *session) syncDiffering(ctx context.Context, tables []pinTable) error {
	src, dst, err := s.copier().sums(ctx, tables)
	if err != nil {
		return err
	}
	_, err = s.copier().copyTables(ctx, differing(tables, src, dst))
	return err
}

func (s *session) completePin(ctx context.Context, step Step) error {
	s.p.finishStep(step, time.Now().UTC())
	if err := s.r.putPin(ctx, s.p, s.lock); err != nil {
		return err
	}
	s.r.log.Info("pin step done", "pin", s.p.ID, "step", string(step))
	return s.fault(step)
}

func (s *session) failPin(ctx context.Context, step Step, err error) error {
	p := s.p
	p.Status, p.Error = Failed, err.Error()
	ctx = context.WithoutCancel(ctx)
	flipped := false
	if topo, _, lerr := s.r.cfg.Topology.Load(ctx); lerr == nil {
		flipped = p.flipped(topo)
	}
	if perr := s.r.putPin(ctx, p, s.lock); perr != nil {
		s.r.log.Error("recording the pin's failure", "pin", p.ID, "err", perr)
	}
	s.r.log.Error("pin failed", "pin", p.ID, "step", string(step), "err", err)
	return &PinError{Pin: p.ID, Step: step, Flipped: flipped, Err: err}
}

// editRelocations edits the topology's relocation map with check-and-set while the lock holds.
func (s *session) editRelocations(ctx context.Context, fn func(*topology.Topology) error) (*topology.Topology, error) {
	if err := s.lock.Err(); err != nil {
		return nil, err
	}
	return s.r.cfg.Topology.Modify(ctx, fn)
}

// freezePin adds the frozen relocation entry (or finds it there).
func (s *session) freezePin(ctx context.Context) (*topology.Topology, error) {
	p := s.p
	return s.editRelocations(ctx, func(t *topology.Topology) error {
		if rel, ok := relocationFrom(t, p.From); ok {
			if !rel.Active() && rel.To == p.To {
				return nil
			}
			return fmt.Errorf("the topology already relocates ksid %s (to %s, %q)", p.From, rel.To, rel.State)
		}
		t.Relocations = append(t.Relocations, topology.Relocation{From: p.From, To: p.To, State: topology.Frozen})
		return nil
	})
}

// unfreezePin removes the pin's frozen relocation entry, if there is one: the user's writes go on
// at the source. It refuses an active one (past the flip).
func (s *session) unfreezePin(ctx context.Context) error {
	p := s.p
	_, err := s.editRelocations(ctx, func(t *topology.Topology) error {
		out := t.Relocations[:0:0]
		for _, rel := range t.Relocations {
			if rel.From == p.From {
				if rel.Active() {
					return fmt.Errorf("%w: the relocation of ksid %s is active", ErrPastFlip, p.From)
				}
				continue
			}
			out = append(out, rel)
		}
		t.Relocations = out
		return nil
	})
	return err
}

// flipEdit makes the pin's relocation active and collapses the map: entries that led to the old
// ksid now lead to the new one, and an entry from the new ksid (the user returns to a region it
// lived in) goes, so that no chain and no loop is left.
func (p *Pin) flipEdit(t *topology.Topology) error {
	if p.flipped(t) {
		return nil
	}
	rel, ok := relocationFrom(t, p.From)
	if !ok || rel.Active() || rel.To != p.To {
		return fmt.Errorf("the flip expects a frozen relocation of ksid %s to %s, found %+v (present: %v)", p.From, p.To, rel, ok)
	}
	out := t.Relocations[:0:0]
	for _, rel := range t.Relocations {
		switch {
		case rel.From == p.From:
			rel.State = ""
		case rel.From == p.To:
			continue
		case rel.To == p.From:
			rel.To = p.To
		}
		out = append(out, rel)
	}
	t.Relocations = out
	return nil
}

// pinCutover runs freeze, drain and flip within Config.MaxPause, rolling back and retrying a try
// that would overrun it, like a move's cutover.
func (s *session) pinCutover(ctx context.Context) error {
	return s.boundedCutover(ctx, s.p.ID, &s.p.FreezeAttempts, "each rolled back", s.tryPinCutover, func(ctx context.Context) error {
		tables, err := s.pinTables(ctx)
		if err != nil {
			return err
		}
		return s.syncDiffering(ctx, tables)
	})
}

// waitRegions waits until every API node of the pin's two regions holds version.
func (s *session) waitRegions(ctx context.Context, topo *topology.Topology, version uint64) error {
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, name := range []string{s.p.SourceRegion, s.p.TargetRegion} {
		reg, ok := topo.Region(name)
		if !ok {
			return fmt.Errorf("region %s is not in the topology", name)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.r.cfg.Fleet.WaitApplied(ctx, reg.ConsulDC, reg.APIService, version); err != nil {
				errs[i] = fmt.Errorf("the nodes of %s: %w", reg.Name, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (s *session) tryPinCutover(ctx context.Context) (bool, error) {
	p := s.p
	tables, err := s.pinTables(ctx)
	if err != nil {
		return false, err
	}
	p.startStep(StepFreeze, time.Now().UTC())
	frozen, err := s.freezePin(ctx)
	if err != nil {
		return false, err
	}
	frozenAt := time.Now()
	bctx, cancel := context.WithDeadline(ctx, frozenAt.Add(s.r.cfg.MaxPause))
	defer cancel()
	rollback := func(why error) (bool, error) {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer rcancel()
		if err := s.unfreezePin(rctx); err != nil {
			return false, fmt.Errorf("rolling the freeze back (after: %w): %w", why, err)
		}
		p.Step = StepVerify
		s.r.log.Warn("pin cutover rolled back", "pin", p.ID, "why", why.Error())
		return false, nil
	}
	overran := func(err error) bool { return errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil }

	if err := s.waitRegions(bctx, frozen, frozen.Version); err != nil {
		if overran(err) {
			return rollback(fmt.Errorf("the nodes did not all apply version %d within %s: %w", frozen.Version, s.r.cfg.MaxPause, err))
		}
		_, rerr := rollback(err)
		return false, errors.Join(err, rerr)
	}
	p.endStep(StepFreeze, time.Now().UTC())
	if err := s.fault(StepFreeze); err != nil {
		return false, err
	}

	p.startStep(StepDrain, time.Now().UTC())
	if err := s.pinDrain(bctx, tables); err != nil {
		if overran(err) {
			return rollback(fmt.Errorf("the drain did not finish within %s", s.r.cfg.MaxPause))
		}
		_, rerr := rollback(err)
		return false, errors.Join(err, rerr)
	}
	p.endStep(StepDrain, time.Now().UTC())
	if err := s.fault(StepDrain); err != nil {
		return false, err
	}

	p.startStep(StepFlip, time.Now().UTC())
	if err := s.lock.Err(); err != nil {
		_, rerr := rollback(err)
		return false, errors.Join(err, rerr)
	}
	if _, err := s.r.cfg.Topology.Modify(ctx, p.flipEdit); err != nil {
		_, rerr := rollback(err)
		return false, errors.Join(fmt.Errorf("flipping: %w", err), rerr)
	}
	p.WritePauseMillis = float64(time.Since(frozenAt).Microseconds()) / 1000
	s.r.cfg.Progress(Progress{Move: p.ID, Step: StepFlip, Message: fmt.Sprintf("flipped: user %s served from %s; writes paused %.1f ms", p.User, p.TargetRegion, p.WritePauseMillis)})
	s.r.log.Info("pin flipped", "pin", p.ID, "write_pause_ms", p.WritePauseMillis)
	return true, s.completePin(ctx, StepFlip)
}

// pinDrain waits for the source's transactions that started before the freeze reached the nodes,
// compares every table and copies those that changed since the verify.
func (s *session) pinDrain(ctx context.Context, tables []pinTable) error {
	repl := replication{src: s.srcDB}
	before, err := repl.sourceNow(ctx)
	if err != nil {
		return err
	}
	for {
		n, err := repl.inFlight(ctx, before)
		if err != nil {
			return err
		}
		if n == 0 {
			break
		}
		if err := sleep(ctx, 2*time.Millisecond); err != nil {
			return err
		}
	}
	// With the user's writes held and the source's earlier transactions finished, the source is
	// still: what the sums find equal stays equal, and copyTables checks every table it copies
	// against its source snapshot before it commits. So the tables agree once this returns.
	c := s.copier()
	src, dst, err := c.sums(ctx, tables)
	if err != nil {
		return err
	}
	if _, err := c.copyTables(ctx, differing(tables, src, dst)); err != nil {
		return err
	}
	s.p.RowsCopied = map[string]int64{}
	for _, t := range tables {
		if n := src[t.name].Rows; n > 0 {
			s.p.RowsCopied[t.name] = n
		}
	}
	return nil
}

// pinDirectory points the user's email claims at the target region. A claim lives on the shard of
// its email hash's ksid, in whichever region the hash picks, and shardmgr does not hold the
// directory's key: the claims are found by user ID on every shard.
func (s *session) pinDirectory(ctx context.Context) (int64, error) {
	topo, _, err := s.r.cfg.Topology.Load(ctx)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, sh := range topo.Shards {
		db, _, err := s.r.open(ctx, sh)
		if err != nil {
			return total, err
		}
		tag, err := db.Exec(ctx, "UPDATE auth.email_claims SET home_region = $2 WHERE user_id = $1 AND home_region IS DISTINCT FROM $2", s.p.User.Bytes(), s.p.TargetRegion)
		db.Close()
		if err != nil {
			return total, fmt.Errorf("shard %s: updating the user's email claims: %w", sh.Name, err)
		}
		total += tag.RowsAffected()
	}
	return s.p.ClaimsUpdated + total, nil
}

// pinCleanup deletes the user's rows under the old ksid from the source, once the relocation is
// active.
func (s *session) pinCleanup(ctx context.Context) error {
	topo, _, err := s.r.cfg.Topology.Load(ctx)
	if err != nil {
		return err
	}
	if !s.p.flipped(topo) {
		return fmt.Errorf("the relocation of ksid %s to %s is not active: refusing to delete the user's rows from the source", s.p.From, s.p.To)
	}
	// Every node of both regions must route the user to the target before the source's rows go:
	// a node that did not would read the source and find them gone.
	wctx, cancel := context.WithTimeout(ctx, pinFlipWait)
	err = s.waitRegions(wctx, topo, topo.Version)
	cancel()
	if err != nil {
		return fmt.Errorf("waiting for the nodes to apply the flip (version %d): %w", topo.Version, err)
	}
	deleted, err := deleteRange(ctx, s.srcDB, s.tables, oneKsid(s.p.From), s.r.cfg.DeleteBatch, s.r.cfg.DeletePause)
	if s.p.RowsDeleted == nil {
		s.p.RowsDeleted = map[string]int64{}
	}
	for t, n := range deleted {
		if n > 0 {
			s.p.RowsDeleted[t] += n
		}
	}
	return err
}

// pinAudit writes the pin's audit record on the user's new shard. Its ID is derived from the pin
// (time of creation, the new ksid, entropy from the pin's ID), so a resumed pin writes it once.
func (s *session) pinAudit(ctx context.Context) error {
	p := s.p
	seed := sha256.Sum256([]byte(p.ID))
	id, err := shardkey.NewGenerator(func() time.Time { return p.Created }, bytes.NewReader(seed[:])).New(shardkey.KindAudit, p.To)
	if err != nil {
		return err
	}
	details, err := json.Marshal(map[string]any{
		"pin": p.ID, "from_ksid": p.From.String(), "to_ksid": p.To.String(),
		"source_region": p.SourceRegion, "target_region": p.TargetRegion,
		"source_shard": p.Source, "target_shard": p.Target,
		"rows_copied": orEmpty(p.RowsCopied), "rows_deleted": orEmpty(p.RowsDeleted),
		"claims_updated": p.ClaimsUpdated, "write_pause_ms": p.WritePauseMillis,
	})
	if err != nil {
		return err
	}
	_, err = s.dstDB.Exec(ctx, `INSERT INTO core.audit_log (ksid, id, at, action, target, details)
VALUES ($1, $2, $3, $4, $5, $6::jsonb) ON CONFLICT (ksid, id) DO NOTHING`,
		p.To.Bytes(), id.Bytes(), time.Now().UTC(), pinAuditAction, p.User.String(), string(details))
	if err != nil {
		return fmt.Errorf("writing the audit record on %s: %w", p.Target, err)
	}
	return nil
}

// orEmpty is m, or an empty map for nil (an object in the audit record's JSON, never null).
func orEmpty(m map[string]int64) map[string]int64 {
	if m == nil {
		return map[string]int64{}
	}
	return m
}
