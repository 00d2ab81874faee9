package move

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	consul "github.com/hashicorp/consul/api"

	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/shardlock"
	"github.com/8thdegree/meridian/shardmgr/topostore"
	"github.com/8thdegree/meridian/shardmgr/verify"
)

// DefaultPrefix is the Consul KV prefix of the move records: meridian/moves/<id>.
const DefaultPrefix = "meridian/moves/"

// Step names one step of a move. The steps run in the order of Steps; each is also a fault point.
type Step string

// The steps of a move, in order.
const (
	StepPrepare Step = "prepare" // checks; the assignment becomes moving
	StepCopy    Step = "copy"    // publication, slot, subscription; initial sync done
	StepCatchup Step = "catchup" // replication lag small
	StepVerify  Step = "verify"  // source and target compare equal over the keyrange
	StepFreeze  Step = "freeze"  // the assignment is frozen and every node of the region holds it
	StepDrain   Step = "drain"   // the target has everything the source committed
	StepFlip    Step = "flip"    // the assignment is the target's, serving
	StepCleanup Step = "cleanup" // replication objects dropped, the source's rows deleted
	StepDone    Step = "done"
)

// Steps lists the steps in order. Every step but done is a fault point (FaultPoints).
var Steps = []Step{StepPrepare, StepCopy, StepCatchup, StepVerify, StepFreeze, StepDrain, StepFlip, StepCleanup, StepDone}

// FaultPoints are the steps after which a fault can be injected (Config.Fault, MERIDIAN_FAULT).
func FaultPoints() []Step { return slices.Clone(Steps[:len(Steps)-1]) }

// ParseStep returns the step named s.
func ParseStep(s string) (Step, error) {
	for _, st := range Steps {
		if string(st) == s {
			return st, nil
		}
	}
	names := make([]string, len(Steps))
	for i, st := range Steps {
		names[i] = string(st)
	}
	return "", fmt.Errorf("unknown step %q (steps: %s)", s, strings.Join(names, ", "))
}

func stepIndex(s Step) int {
	if s == "" {
		return -1
	}
	return slices.Index(Steps, s)
}

// after reports whether step a comes after step b (a completed step "" comes before everything).
func after(a, b Step) bool { return stepIndex(a) > stepIndex(b) }

// Status is where a move stands.
type Status string

const (
	// Running: a runner works on it, or did until it crashed (Resume or Abort continues it).
	Running Status = "running"
	// Failed: the runner stopped on an error; the move is resumable (or abortable before the flip).
	Failed Status = "failed"
	// Aborting: an abort started and did not finish; Abort again finishes it.
	Aborting Status = "aborting"
	// Aborted: rolled back; the source owns the keyrange and nothing of the move is left.
	Aborted Status = "aborted"
	// Done: the target owns the keyrange and the source's rows are gone.
	Done Status = "done"
)

// Finished reports whether nothing more will happen to a move in this status.
func (s Status) Finished() bool { return s == Aborted || s == Done }

// StepTiming is when a step ran.
type StepTiming struct {
	Step     Step      `json:"step"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished,omitzero"`
	// Millis is Finished-Started in milliseconds (0 while running).
	Millis float64 `json:"ms"`
}

// Move is the persisted state of one move, the JSON value at <prefix><id>.
type Move struct {
	ID       string            `json:"id"`
	KeyRange shardkey.KeyRange `json:"keyrange"`
	Source   string            `json:"source"`
	Target   string            `json:"target"`
	Region   string            `json:"region"`
	Status   Status            `json:"status"`
	// Step is the last step completed ("" before prepare completes).
	Step  Step        `json:"step"`
	Steps StepTimings `json:"steps"`
	// WritePauseMillis is the write pause of the cutover: from the freeze applied by every node of
	// the region to the flip written, in milliseconds; 0 before the flip.
	WritePauseMillis float64 `json:"write_pause_ms,omitempty"`
	// Cutover splits the last cutover tried into its parts, in milliseconds.
	Cutover *CutoverTiming `json:"cutover,omitempty"`
	// FreezeAttempts counts freezes tried (a freeze that would overrun its budget is rolled back).
	FreezeAttempts int `json:"freeze_attempts,omitempty"`
	// RowsCopied is the target's row count per table after the initial sync.
	RowsCopied map[string]int64 `json:"rows_copied,omitempty"`
	// RowsDeleted is what cleanup (or abort, on the target) deleted per table.
	RowsDeleted map[string]int64 `json:"rows_deleted,omitempty"`
	// Unsettled are the rows verify left to the cutover (they kept changing): rechecked by key
	// inside the freeze, after the drain. Kept after the move for the record.
	Unsettled []verify.TableReport `json:"unsettled,omitempty"`
	// SubscriptionOID names the table-sync slots (pg_<oid>_sync_...) to drop with the subscription.
	SubscriptionOID uint32 `json:"subscription_oid,omitempty"`
	Error           string `json:"error,omitempty"`
	// Holder and Fence identify the runner that wrote this version: its lock holder and the lock's
	// LockIndex.
	Holder  string    `json:"holder,omitempty"`
	Fence   uint64    `json:"fence,omitempty"`
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`

	index uint64 // ModifyIndex of the version read or written last
}

// CutoverTiming is where a cutover's time went, in milliseconds. The write pause (Move.WritePauseMillis)
// is NodesHeld + Drain + FlipWrite; NodesFlipped comes after it (the nodes release what they held as
// each applies the flip).
type CutoverTiming struct {
	// FreezeWrite: the freeze's check-and-set write of the topology (load, check, write).
	FreezeWrite float64 `json:"freeze_write_ms"`
	// NodesHeld: from the freeze written to every passing node of the region holding it.
	NodesHeld float64 `json:"nodes_held_ms"`
	// Drain: the drain, and the recheck of the unsettled rows if any.
	Drain float64 `json:"drain_ms"`
	// FlipWrite: the flip's write of the topology.
	FlipWrite float64 `json:"flip_write_ms"`
	// NodesFlipped: from the flip written to every passing node holding it (0 when not measured:
	// a cutover rolled back, or the wait did not end within 10 s).
	NodesFlipped float64 `json:"nodes_flipped_ms,omitempty"`
}

func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// unsettledRows counts the rows of tables.
func unsettledRows(tables []verify.TableReport) int64 {
	var n int64
	for _, t := range tables {
		n += t.DifferingRows
	}
	return n
}

// StepTimings are a record's steps in the order they first ran; a step run again (a resume) keeps
// its place and restarts its timing. Moves and pins share them.
type StepTimings []StepTiming

// Timing returns the timing of step s, if it ran.
func (ts StepTimings) Timing(s Step) (StepTiming, bool) {
	for _, t := range ts {
		if t.Step == s {
			return t, true
		}
	}
	return StepTiming{}, false
}

// start records that step s starts now.
func (ts *StepTimings) start(s Step, now time.Time) {
	for i := range *ts {
		if (*ts)[i].Step == s {
			(*ts)[i] = StepTiming{Step: s, Started: now}
			return
		}
	}
	*ts = append(*ts, StepTiming{Step: s, Started: now})
}

// end records that step s ended now.
func (ts StepTimings) end(s Step, now time.Time) {
	for i := range ts {
		if ts[i].Step == s {
			ts[i].Finished = now
			ts[i].Millis = millis(now.Sub(ts[i].Started))
		}
	}
}

// Timing returns the timing of step s, if it ran.
func (m *Move) Timing(s Step) (StepTiming, bool) { return m.Steps.Timing(s) }

func (m *Move) startStep(s Step, now time.Time) { m.Steps.start(s, now) }

func (m *Move) finishStep(s Step, now time.Time) {
	m.Steps.end(s, now)
	m.Step = s
}

// records keeps move records in Consul KV, each write a check-and-set on the index read, in a
// transaction that also checks the lock's session still holds the lock.
type records struct {
	c      *consul.Client
	prefix string
}

var errRecordConflict = errors.New("move: the move record changed since it was read")

func (s records) key(id string) string { return s.prefix + id }

func (s records) get(ctx context.Context, id string) (*Move, error) {
	pair, _, err := s.c.KV().Get(s.key(id), (&consul.QueryOptions{RequireConsistent: true}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("move: reading %s: %w", s.key(id), err)
	}
	if pair == nil {
		return nil, fmt.Errorf("%w: %s (no key %s)", ErrNotFound, id, s.key(id))
	}
	return decodeMove(pair)
}

func decodeMove(pair *consul.KVPair) (*Move, error) {
	var m Move
	if err := json.Unmarshal(pair.Value, &m); err != nil {
		return nil, fmt.Errorf("move: decoding %s: %w", pair.Key, err)
	}
	m.index = pair.ModifyIndex
	return &m, nil
}

func (s records) list(ctx context.Context) ([]*Move, error) {
	pairs, _, err := s.c.KV().List(s.prefix, (&consul.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("move: listing %s: %w", s.prefix, err)
	}
	out := make([]*Move, 0, len(pairs))
	for _, p := range pairs {
		m, err := decodeMove(p)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b *Move) int { return a.Created.Compare(b.Created) })
	return out, nil
}

// put writes m if its key is still at m.index (0: absent) and lock still holds its key.
func (s records) put(ctx context.Context, m *Move, lock *shardlock.Lock, now time.Time) error {
	if err := lock.Err(); err != nil {
		return err
	}
	m.Updated = now
	m.Fence = lock.Fence()
	idx, err := s.putValue(ctx, m.ID, m, m.index, lock)
	if err == nil {
		m.index = idx
	}
	return err
}

// putValue writes v as JSON at the record id if its key is still at index (0: absent) and lock
// still holds its key, and returns the key's new ModifyIndex. Move and pin records share it.
func (s records) putValue(ctx context.Context, id string, v any, index uint64, lock *shardlock.Lock) (uint64, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return 0, err
	}
	ops := consul.TxnOps{
		{KV: &consul.KVTxnOp{Verb: consul.KVCheckSession, Key: lock.Key(), Session: lock.Session()}},
		{KV: &consul.KVTxnOp{Verb: consul.KVCAS, Key: s.key(id), Value: data, Index: index}},
	}
	ok, resp, _, err := s.c.Txn().Txn(ops, (&consul.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return 0, fmt.Errorf("move: writing %s: %w", s.key(id), err)
	}
	if !ok {
		if topostore.TxnDenied(resp) {
			return 0, fmt.Errorf("move: writing %s: Consul refused the token (shardmgr's role writes the move and pin records): %s", s.key(id), topostore.TxnErrors(resp))
		}
		return 0, fmt.Errorf("%w: %s (%s)", errRecordConflict, s.key(id), topostore.TxnErrors(resp))
	}
	for _, r := range resp.Results {
		if r.KV != nil && r.KV.Key == s.key(id) {
			index = r.KV.ModifyIndex
		}
	}
	return index, nil
}
