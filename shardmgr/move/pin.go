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
	"github.com/8thdegree/meridian/shardmgr/topology"
)

// DefaultPinPrefix is the Consul KV prefix of the pin records: meridian/pins/<id>.
const DefaultPinPrefix = "meridian/pins/"

// StepDirectory is the pin's step that points the user's email-directory claims at the new region.
const StepDirectory Step = "directory"

// PinSteps are a pin's steps, in order; every step but done is a fault point (PinFaultPoints).
//
//	prepare    checks (nothing changes until they pass); the pin recorded
//	copy       every row the user owns copied to the target shard under the new ksid
//	verify     tables that changed since the copy copied again (writes go on meanwhile)
//	freeze     a frozen relocation entry from the user's ksid: every API node of both regions
//	           holds that version and the user's writes
//	drain      transactions that reached the source before the freeze ended; what changed since
//	           the verify copied again; source and target compare equal, table by table
//	flip       the relocation is active: the user's IDs route to the new ksid; held writes go on
//	           in the target region
//	directory  the user's email claims name the target region
//	cleanup    the user's rows deleted from the source in batches
//	done       the audit record written on the user's new shard
var PinSteps = []Step{StepPrepare, StepCopy, StepVerify, StepFreeze, StepDrain, StepFlip, StepDirectory, StepCleanup, StepDone}

// PinFaultPoints are the pin steps after which a fault can be injected (Config.Fault, MERIDIAN_FAULT).
func PinFaultPoints() []Step { return slices.Clone(PinSteps[:len(PinSteps)-1]) }

// ParsePinStep returns the pin step named s.
func ParsePinStep(s string) (Step, error) {
	if slices.Contains(PinSteps, Step(s)) {
		return Step(s), nil
	}
	names := make([]string, len(PinSteps))
	for i, st := range PinSteps {
		names[i] = string(st)
	}
	return "", fmt.Errorf("unknown pin step %q (steps: %s)", s, strings.Join(names, ", "))
}

func pinStepIndex(s Step) int {
	if s == "" {
		return -1
	}
	return slices.Index(PinSteps, s)
}

func pinAfter(a, b Step) bool { return pinStepIndex(a) > pinStepIndex(b) }

var (
	// ErrUnknownRegion is wrapped by the refusal of a pin to a region the topology does not have.
	ErrUnknownRegion = errors.New("move: no such region")
	// ErrPinNotFound means there is no pin with that ID.
	ErrPinNotFound = errors.New("move: no such pin")
)

// Pin is the persisted state of one pin, the JSON value at <pin prefix><id>: one user's data
// relocated to another region under a new ksid.
type Pin struct {
	ID string `json:"id"`
	// User is the user's ID; its ksid is where the relocation map starts.
	User shardkey.ID `json:"user"`
	// From is the ksid the user's rows were under (the user ID's ksid, or where an earlier pin sent
	// it); To the new one, the target region's code over the same 56 bits.
	From         shardkey.KeyspaceID `json:"from"`
	To           shardkey.KeyspaceID `json:"to"`
	SourceRegion string              `json:"source_region"`
	TargetRegion string              `json:"target_region"`
	Source       string              `json:"source"`
	Target       string              `json:"target"`
	Status       Status              `json:"status"`
	// Step is the last step completed ("" before prepare completes).
	Step  Step        `json:"step"`
	Steps StepTimings `json:"steps"`
	// WritePauseMillis is the user's write pause: from the frozen relocation written to the flip
	// written, in milliseconds; 0 before the flip.
	WritePauseMillis float64 `json:"write_pause_ms,omitempty"`
	FreezeAttempts   int     `json:"freeze_attempts,omitempty"`
	// RowsCopied is the target's row count per table after the cutover's last copy (tables with
	// rows); RowsDeleted what cleanup (or abort, on the target) deleted.
	RowsCopied  map[string]int64 `json:"rows_copied,omitempty"`
	RowsDeleted map[string]int64 `json:"rows_deleted,omitempty"`
	// ClaimsUpdated counts the email-directory claims whose home region the pin changed.
	ClaimsUpdated int64     `json:"claims_updated,omitempty"`
	Error         string    `json:"error,omitempty"`
	Holder        string    `json:"holder,omitempty"`
	Fence         uint64    `json:"fence,omitempty"`
	Created       time.Time `json:"created"`
	Updated       time.Time `json:"updated"`

	index uint64
}

// Timing returns the timing of step s, if it ran.
func (p *Pin) Timing(s Step) (StepTiming, bool) { return p.Steps.Timing(s) }

func (p *Pin) startStep(s Step, now time.Time) { p.Steps.start(s, now) }

func (p *Pin) endStep(s Step, now time.Time) { p.Steps.end(s, now) }

func (p *Pin) finishStep(s Step, now time.Time) {
	p.endStep(s, now)
	p.Step = s
}

// relocationFrom returns the topology's relocation entry from k, if any.
func relocationFrom(t *topology.Topology, k shardkey.KeyspaceID) (topology.Relocation, bool) {
	for _, rel := range t.Relocations {
		if rel.From == k {
			return rel, true
		}
	}
	return topology.Relocation{}, false
}

// flipped reports whether the pin's relocation is active in t.
func (p *Pin) flipped(t *topology.Topology) bool {
	rel, ok := relocationFrom(t, p.From)
	return ok && rel.Active() && rel.To == p.To
}

// pinRecords reads and writes pin records; writes share records.putValue (CAS, fenced by the lock).
func (r *Runner) pinRecords() records { return records{c: r.cfg.Consul, prefix: r.cfg.PinPrefix} }

func (r *Runner) putPin(ctx context.Context, p *Pin, lock *shardlock.Lock) error {
	if err := lock.Err(); err != nil {
		return err
	}
	p.Updated = time.Now().UTC()
	p.Fence = lock.Fence()
	idx, err := r.pinRecords().putValue(ctx, p.ID, p, p.index, lock)
	if err == nil {
		p.index = idx
	}
	return err
}

// GetPin returns the pin with that ID.
func (r *Runner) GetPin(ctx context.Context, id string) (*Pin, error) {
	recs := r.pinRecords()
	pair, _, err := recs.c.KV().Get(recs.key(id), (&consul.QueryOptions{RequireConsistent: true}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("move: reading %s: %w", recs.key(id), err)
	}
	if pair == nil {
		return nil, fmt.Errorf("%w: %s (no key %s)", ErrPinNotFound, id, recs.key(id))
	}
	return decodePin(pair)
}

func decodePin(pair *consul.KVPair) (*Pin, error) {
	var p Pin
	if err := json.Unmarshal(pair.Value, &p); err != nil {
		return nil, fmt.Errorf("move: decoding %s: %w", pair.Key, err)
	}
	p.index = pair.ModifyIndex
	return &p, nil
}

// Pins returns the pins not finished (all: every pin recorded), oldest first.
func (r *Runner) Pins(ctx context.Context, all bool) ([]*Pin, error) {
	recs := r.pinRecords()
	pairs, _, err := recs.c.KV().List(recs.prefix, (&consul.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("move: listing %s: %w", recs.prefix, err)
	}
	out := make([]*Pin, 0, len(pairs))
	for _, pair := range pairs {
		p, err := decodePin(pair)
		if err != nil {
			return nil, err
		}
		if all || !p.Status.Finished() {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b *Pin) int { return a.Created.Compare(b.Created) })
	return out, nil
}

// PinError is a pin that stopped on an error after it was recorded: which pin, at which step,
// and whether the user still lives in the source region or the pin can only go forward.
type PinError struct {
	Pin  string
	Step Step
	// Flipped is true when the relocation is active (resume only).
	Flipped bool
	Err     error
}

func (e *PinError) Error() string {
	next := "the user's data is still served from the source region; resume with 'shardmgr pin --resume " + e.Pin + "' or roll back with --abort"
	if e.Flipped {
		next = "the user is served from the target region; finish with 'shardmgr pin --resume " + e.Pin + "'"
	}
	return fmt.Sprintf("pin %s stopped in step %s: %v (%s)", e.Pin, e.Step, e.Err, next)
}

func (e *PinError) Unwrap() error { return e.Err }
