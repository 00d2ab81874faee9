package move

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/topology"
	"github.com/8thdegree/meridian/shardmgr/topostore"
)

// cutover runs freeze, drain and flip as one unit, within the freeze budget, a few times if a try
// would overrun it. The record is written only after the flip: the steps between are too short to
// be worth a Consul write each inside the write pause, and a resume re-reads the topology anyway
// (a frozen keyrange found there is unfrozen and the cutover redone).
func (s *session) cutover(ctx context.Context) error {
	return s.boundedCutover(ctx, s.m.ID, &s.m.FreezeAttempts, "each rolled back to moving", s.tryCutover, s.catchup)
}

// boundedCutover runs try (a move's or a pin's cutover) until it completes, at most FreezeAttempts
// times. A try that would overrun MaxPause has rolled itself back; before the next one it waits
// (FreezeBackoff, doubling) and runs again, to bring the target close behind once more.
func (s *session) boundedCutover(ctx context.Context, id string, attempts *int, rolledBack string,
	try func(context.Context) (bool, error), again func(context.Context) error) error {
	backoff := s.r.cfg.FreezeBackoff
	for attempt := 1; ; attempt++ {
		*attempts++
		done, err := try(ctx)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		if attempt >= s.r.cfg.FreezeAttempts {
			return fmt.Errorf("%w (%s, %d attempts, %s)", ErrFreezeBudget, s.r.cfg.MaxPause, attempt, rolledBack)
		}
		s.r.cfg.Progress(Progress{Move: id, Step: StepFreeze, Message: fmt.Sprintf("cutover attempt %d would overrun %s: rolled back, retrying in %s", attempt, s.r.cfg.MaxPause, backoff)})
		if err := sleep(ctx, backoff); err != nil {
			return err
		}
		backoff *= 2
		if err := again(ctx); err != nil {
			return err
		}
	}
}

// tryCutover freezes, waits for the region's nodes, drains and flips. It returns false, with the
// keyrange back to moving, when the budget ran out before the drain completed.
func (s *session) tryCutover(ctx context.Context) (bool, error) {
	m := s.m
	freezeStart := time.Now()
	m.startStep(StepFreeze, freezeStart.UTC())
	ct := &CutoverTiming{}
	m.Cutover = ct
	frozen, frozenIdx, err := s.modifyAt(ctx, func(a *topology.Assignment) error {
		if a.Shard != m.Source || (a.State != topology.Moving && a.State != topology.Frozen) {
			return fmt.Errorf("keyrange %s is %s on %s; the cutover expects it moving on %s", a.Range, a.State, a.Shard, m.Source)
		}
		a.State = topology.Frozen
		return nil
	})
	if err != nil {
		return false, err
	}
	frozenAt := time.Now()
	ct.FreezeWrite = millis(frozenAt.Sub(freezeStart))
	deadline := frozenAt.Add(s.r.cfg.MaxPause)
	bctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()

	rollback := func(why error) (bool, error) {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		// A fresh context: ctx may be the one that ran out, and the held writes must go on.
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer rcancel()
		if err := s.setState(rctx, topology.Frozen, topology.Moving); err != nil {
			return false, fmt.Errorf("rolling the freeze back (after: %w): %w", why, err)
		}
		m.Step = StepVerify // the next try starts over with the freeze
		s.r.log.Warn("cutover rolled back", "move", m.ID, "why", why.Error())
		return false, nil
	}
	overran := func(err error) bool { return errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil }

	if err := s.r.cfg.Fleet.WaitApplied(bctx, s.region.ConsulDC, s.region.APIService, frozen.Version); err != nil {
		if overran(err) {
			return rollback(fmt.Errorf("the nodes of %s did not all apply version %d within %s", s.region.Name, frozen.Version, s.r.cfg.MaxPause))
		}
		_, rerr := rollback(err)
		return false, errors.Join(fmt.Errorf("waiting for the nodes of %s: %w", s.region.Name, err), rerr)
	}
	heldAt := time.Now()
	ct.NodesHeld = millis(heldAt.Sub(frozenAt))
	m.finishStep(StepFreeze, heldAt.UTC())
	if err := s.fault(StepFreeze); err != nil {
		return false, err
	}

	drainStart := time.Now()
	m.startStep(StepDrain, drainStart.UTC())
	if err := s.drain(bctx); err != nil {
		if overran(err) {
			return rollback(fmt.Errorf("the drain did not finish within %s", s.r.cfg.MaxPause))
		}
		_, rerr := rollback(err)
		return false, errors.Join(err, rerr)
	}
	if len(m.Unsettled) > 0 {
		// The rows verify could not settle, rechecked with the writes held and drained: they stand
		// still now, so a difference is real. Nothing flipped: roll back and fail (resumable; the
		// resume verifies again).
		if err := RecheckUnsettled(bctx, s.srcDB, s.dstDB, m.KeyRange, m.Unsettled); err != nil {
			if overran(err) {
				return rollback(fmt.Errorf("the recheck of %d unsettled rows did not finish within %s", unsettledRows(m.Unsettled), s.r.cfg.MaxPause))
			}
			_, rerr := rollback(err)
			m.Step = StepCatchup
			return false, errors.Join(err, rerr)
		}
	}
	ct.Drain = millis(time.Since(drainStart))
	m.finishStep(StepDrain, time.Now().UTC())
	if err := s.fault(StepDrain); err != nil {
		return false, err
	}

	// The flip ends the hold as a rollback would, so once drained it is written even past the
	// budget (the budget leaves the nodes' hold a margin for exactly this).
	flipStart := time.Now()
	m.startStep(StepFlip, flipStart.UTC())
	flipVersion, err := s.flip(ctx, frozen, frozenIdx)
	if err != nil {
		_, rerr := rollback(err)
		return false, errors.Join(fmt.Errorf("flipping: %w", err), rerr)
	}
	flippedAt := time.Now()
	ct.FlipWrite = millis(flippedAt.Sub(flipStart))
	m.WritePauseMillis = millis(flippedAt.Sub(frozenAt))
	s.watchFlip(ctx, flipVersion, flippedAt)
	s.r.cfg.Progress(Progress{Move: m.ID, Step: StepFlip, Message: fmt.Sprintf("flipped to %s; writes paused %.1f ms", m.Target, m.WritePauseMillis)})
	s.r.log.Info("move flipped", "move", m.ID, "write_pause_ms", m.WritePauseMillis)
	return true, s.complete(ctx, StepFlip)
}

// drain waits until no transaction that may have been routed to the source before the freeze
// reached the nodes is open there, then until the target confirmed everything the source had
// committed by then.
func (s *session) drain(ctx context.Context) error {
	before, err := s.repl.sourceNow(ctx)
	if err != nil {
		return err
	}
	for {
		n, err := s.repl.inFlight(ctx, before)
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
	lsn, err := s.repl.flushMark(ctx)
	if err != nil {
		return err
	}
	for {
		ok, err := s.repl.confirmedPast(ctx, lsn)
		if err != nil || ok {
			return err
		}
		if err := sleep(ctx, 2*time.Millisecond); err != nil {
			return err
		}
	}
}

// flipTo is the flip's edit: the assignment frozen on the source becomes the target's, serving.
func (s *session) flipTo(a *topology.Assignment) error {
	m := s.m
	if a.Shard == m.Target {
		return nil
	}
	if a.Shard != m.Source || a.State != topology.Frozen {
		return fmt.Errorf("keyrange %s is %s on %s; the flip expects it frozen on %s", a.Range, a.State, a.Shard, m.Source)
	}
	a.Shard, a.State = m.Target, topology.Serving
	return nil
}

// flip writes the flip inside the write pause with two round trips fewer than modify: the document
// the freeze wrote is edited and written with check-and-set on the index the freeze returned, so
// it is neither loaded again first nor read back to check its version (topostore.UpdateWritten). The check-and-set fences it exactly as a fresh load would: it
// succeeds only if nobody wrote the topology since the freeze. When someone did (an edit outside
// the shard lock, such as a pin), it falls back to modify, which loads the latest document and
// applies the same checked edit to it.
func (s *session) flip(ctx context.Context, frozen *topology.Topology, frozenIdx uint64) (uint64, error) {
	if err := s.lock.Err(); err != nil {
		return 0, err
	}
	next := frozen.Clone()
	if err := editAssignment(next, s.m.KeyRange, s.flipTo); err != nil {
		return 0, err
	}
	// The freeze's own document and the index its write returned: UpdateWritten's check-and-set
	// alone fences it (no read first).
	_, err := s.r.cfg.Topology.UpdateWritten(ctx, next, frozenIdx)
	if errors.Is(err, topostore.ErrConflict) || errors.Is(err, topostore.ErrStale) {
		if next, err = s.modify(ctx, s.flipTo); err != nil {
			return 0, err
		}
	}
	if err != nil {
		return 0, err
	}
	return next.Version, nil
}

// watchFlip measures, off the write pause, how long the region's nodes take to apply the flip
// (CutoverTiming.NodesFlipped); cleanup's settle waits for the same and finds it done.
func (s *session) watchFlip(ctx context.Context, version uint64, flippedAt time.Time) {
	done := make(chan float64, 1)
	s.flipApplied = done
	go func() {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := s.r.cfg.Fleet.WaitApplied(wctx, s.region.ConsulDC, s.region.APIService, version); err != nil {
			done <- 0
			return
		}
		done <- millis(time.Since(flippedAt))
	}()
}

// modifyAt is modify that also returns the ModifyIndex of the write, for the flip to fence on.
func (s *session) modifyAt(ctx context.Context, fn func(*topology.Assignment) error) (*topology.Topology, uint64, error) {
	if err := s.lock.Err(); err != nil {
		return nil, 0, err
	}
	var last error
	for attempt := range modifyAttempts {
		if attempt > 0 {
			if err := sleep(ctx, time.Duration(attempt)*10*time.Millisecond); err != nil {
				return nil, 0, fmt.Errorf("%w (last conflict: %w)", err, last)
			}
		}
		cur, idx, err := s.r.cfg.Topology.Load(ctx)
		if err != nil {
			return nil, 0, err
		}
		next := cur.Clone()
		if err := editAssignment(next, s.m.KeyRange, fn); err != nil {
			return nil, 0, err
		}
		written, err := s.r.cfg.Topology.Update(ctx, next, idx)
		if errors.Is(err, topostore.ErrConflict) || errors.Is(err, topostore.ErrStale) {
			last = err
			continue
		}
		if err != nil {
			return nil, 0, err
		}
		return next, written, nil
	}
	return nil, 0, fmt.Errorf("gave up after %d conflicting writes of the topology: %w", modifyAttempts, last)
}

// modifyAttempts bounds modifyAt's retries on conflicting writes, as topostore.Store.Modify does.
const modifyAttempts = 8

// editAssignment applies fn to the assignment of exactly kr in t.
func editAssignment(t *topology.Topology, kr shardkey.KeyRange, fn func(*topology.Assignment) error) error {
	for i := range t.KeyRanges {
		if t.KeyRanges[i].Range == kr {
			return fn(&t.KeyRanges[i])
		}
	}
	return fmt.Errorf("keyrange %s is no longer one assignment", kr)
}
