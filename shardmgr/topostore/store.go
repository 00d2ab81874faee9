package topostore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/8thdegree/meridian/shardmgr/topology"
)

// DefaultKey is the Consul KV key that holds the topology document.
const DefaultKey = "meridian/topology"

// MaxDocumentSize is Consul's default limit on a KV value (kv_max_value_size) and on a transaction
// request (txn_max_req_len). Checking it here turns Consul's bare "413 Request Entity Too Large" into
// an error that says what is too big and by how much.
const MaxDocumentSize = 512 * 1024

var (
	// ErrNotFound means the key holds no topology document.
	ErrNotFound = errors.New("topostore: topology not found")
	// ErrConflict means the key was written (or deleted) after the index the caller read, or that
	// Create found a document already there. Load again and retry.
	ErrConflict = errors.New("topostore: topology changed since it was read")
	// ErrStale means the caller's document is not derived from the one stored at the index it passed:
	// its Version differs from the stored Version.
	ErrStale = errors.New("topostore: topology version is stale")
	// ErrTooLarge means the encoded document exceeds MaxDocumentSize.
	ErrTooLarge = errors.New("topostore: topology document too large")
	// ErrDenied means Consul's ACLs refused the write: the client's token may not write the key
	// (only shardmgr's role may; docs/security.md).
	ErrDenied = errors.New("topostore: Consul refused the token")
)

// Modify's retry budget. Contention on the topology is rare (SRE operations and moves, which also
// hold a session lock), so a handful of jittered attempts resolves it; more would only hide a bug.
const (
	modifyAttempts   = 20
	modifyBackoffMin = 5 * time.Millisecond
	modifyBackoffMax = 500 * time.Millisecond
)

// Store reads and writes the topology document under one key with check-and-set.
type Store struct {
	kv  *api.KV
	txn *api.Txn
	key string
	now func() time.Time
}

// NewStore returns a Store for key (DefaultKey if empty).
func NewStore(client *api.Client, key string) *Store {
	if key == "" {
		key = DefaultKey
	}
	return &Store{kv: client.KV(), txn: client.Txn(), key: key, now: time.Now}
}

// Key returns the Consul KV key the store uses.
func (s *Store) Key() string { return s.key }

// Load reads, decodes and validates the stored document. The returned index is the key's Consul
// ModifyIndex: pass it to Update to fence the write. ErrNotFound if the key is absent; a document
// that does not validate is an error wrapping topology.ErrInvalid.
func (s *Store) Load(ctx context.Context) (*topology.Topology, uint64, error) {
	pair, _, err := s.kv.Get(s.key, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, 0, fmt.Errorf("topostore: load %s: %w", s.key, err)
	}
	if pair == nil {
		return nil, 0, fmt.Errorf("%w: key %s", ErrNotFound, s.key)
	}
	t, err := topology.Decode(pair.Value)
	if err != nil {
		return nil, 0, fmt.Errorf("topostore: load %s (modify index %d): %w", s.key, pair.ModifyIndex, err)
	}
	return t, pair.ModifyIndex, nil
}

// Create writes t as the first version of the document (Version 1) only if the key does not exist;
// ErrConflict if it does. On success t.Version and t.UpdatedAt hold what was stored and the new
// ModifyIndex is returned, so t can go straight to Update.
func (s *Store) Create(ctx context.Context, t *topology.Topology) (uint64, error) {
	if t == nil {
		return 0, errors.New("topostore: create: nil topology")
	}
	next := t.Clone()
	next.Version = 1
	next.UpdatedAt = s.stamp()
	data, err := encode(next)
	if err != nil {
		return 0, fmt.Errorf("topostore: create %s: %w", s.key, err)
	}
	// CAS with index 0 writes only if the key does not exist.
	idx, err := s.cas(ctx, data, 0)
	if err != nil {
		if errors.Is(err, ErrConflict) {
			return 0, fmt.Errorf("topostore: create %s: key already exists: %w", s.key, err)
		}
		return 0, fmt.Errorf("topostore: create %s: %w", s.key, err)
	}
	t.Version, t.UpdatedAt = next.Version, next.UpdatedAt
	return idx, nil
}

// Update replaces the document read at index with t, as Version t.Version+1.
//
// t is validated before anything else: a bad document is refused and nothing is written. The write is
// a check-and-set on index, so it fails with ErrConflict if anyone wrote or deleted the key since that
// read; it fails with ErrStale if t.Version is not the stored Version (t was not derived from the
// document at index). On success t.Version and t.UpdatedAt hold what was stored and the new
// ModifyIndex is returned.
func (s *Store) Update(ctx context.Context, t *topology.Topology, index uint64) (uint64, error) {
	if t == nil {
		return 0, errors.New("topostore: update: nil topology")
	}
	if index == 0 {
		// Index 0 would make the CAS a create; refuse rather than silently change meaning.
		return 0, fmt.Errorf("topostore: update %s: index 0 is not a read index (use Create for a new key)", s.key)
	}
	next := t.Clone()
	next.Version = t.Version + 1
	next.UpdatedAt = s.stamp()
	data, err := encode(next)
	if err != nil {
		return 0, fmt.Errorf("topostore: update %s: %w", s.key, err)
	}

	// The read and the CAS below are both fenced by index: if the stored ModifyIndex equals index now,
	// the CAS succeeds only if it still does, so the version checked here is the one replaced.
	pair, _, err := s.kv.Get(s.key, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return 0, fmt.Errorf("topostore: update %s: read: %w", s.key, err)
	}
	if pair == nil {
		return 0, fmt.Errorf("%w: key %s was deleted after index %d (%w)", ErrConflict, s.key, index, ErrNotFound)
	}
	if pair.ModifyIndex != index {
		return 0, fmt.Errorf("%w: key %s was written at index %d, after the read at index %d", ErrConflict, s.key, pair.ModifyIndex, index)
	}
	stored, err := peekVersion(pair.Value)
	if err != nil {
		return 0, fmt.Errorf("topostore: update %s: the stored document (index %d) has no readable version, so no "+
			"successor can be ordered after it: %w; repair it by hand with a version above every copy in service", s.key, index, err)
	}
	if stored != t.Version {
		return 0, fmt.Errorf("%w: document has version %d but version %d is stored at index %d", ErrStale, t.Version, stored, index)
	}

	idx, err := s.cas(ctx, data, index)
	if err != nil {
		return 0, fmt.Errorf("topostore: update %s: %w", s.key, err)
	}
	t.Version, t.UpdatedAt = next.Version, next.UpdatedAt
	return idx, nil
}

// UpdateWritten is Update for a successor of a document this store itself wrote at index: t is that
// document edited (its Version the one written) and index the ModifyIndex the write returned. The
// check-and-set on index alone proves the stored document is the one written, so the read Update makes
// first, to check the stored version, is skipped: one Consul round trip fewer, for a writer whose next
// write is urgent (a move's flip, inside the write pause). Given any other document it could write a
// version out of order: use Update. ErrConflict when anything wrote the key since.
func (s *Store) UpdateWritten(ctx context.Context, t *topology.Topology, index uint64) (uint64, error) {
	if t == nil {
		return 0, errors.New("topostore: update: nil topology")
	}
	if index == 0 {
		return 0, fmt.Errorf("topostore: update %s: index 0 is not a write's index", s.key)
	}
	next := t.Clone()
	next.Version = t.Version + 1
	next.UpdatedAt = s.stamp()
	data, err := encode(next)
	if err != nil {
		return 0, fmt.Errorf("topostore: update %s: %w", s.key, err)
	}
	idx, err := s.cas(ctx, data, index)
	if err != nil {
		return 0, fmt.Errorf("topostore: update %s: %w", s.key, err)
	}
	t.Version, t.UpdatedAt = next.Version, next.UpdatedAt
	return idx, nil
}

// Modify applies fn to a copy of the stored document and writes the result with check-and-set,
// reloading and calling fn again when another writer got there first (bounded, jittered retries).
// fn must be safe to call more than once and must not depend on state outside the document it is
// given; its Version is ignored. An error from fn aborts without writing and is returned wrapped.
// Modify returns the document as written.
func (s *Store) Modify(ctx context.Context, fn func(*topology.Topology) error) (*topology.Topology, error) {
	var last error
	for attempt := range modifyAttempts {
		if attempt > 0 {
			if err := sleep(ctx, jittered(modifyBackoffMin, modifyBackoffMax, attempt)); err != nil {
				return nil, fmt.Errorf("topostore: modify %s: %w (last conflict: %w)", s.key, err, last)
			}
		}
		cur, idx, err := s.Load(ctx)
		if err != nil {
			return nil, err
		}
		next := cur.Clone()
		if err := fn(next); err != nil {
			return nil, fmt.Errorf("topostore: modify %s: %w", s.key, err)
		}
		next.Version = cur.Version
		if _, err := s.Update(ctx, next, idx); err != nil {
			if errors.Is(err, ErrConflict) || errors.Is(err, ErrStale) {
				last = err
				continue
			}
			return nil, err
		}
		return next, nil
	}
	return nil, fmt.Errorf("topostore: modify %s: gave up after %d attempts: %w", s.key, modifyAttempts, last)
}

// cas writes data if the key's ModifyIndex is index (0: if the key does not exist) and returns the new
// ModifyIndex. It goes through a transaction because a plain CAS PUT answers only true or false,
// and the writer needs the new index to fence its next write.
func (s *Store) cas(ctx context.Context, data []byte, index uint64) (uint64, error) {
	ops := api.TxnOps{{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: s.key, Value: data, Index: index}}}
	ok, resp, _, err := s.txn.Txn(ops, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return 0, err
	}
	if !ok {
		why := TxnErrors(resp)
		if TxnDenied(resp) {
			return 0, fmt.Errorf("%w: writing %s: %s", ErrDenied, s.key, why)
		}
		return 0, fmt.Errorf("%w: check-and-set on index %d failed: %s", ErrConflict, index, why)
	}
	if resp == nil || len(resp.Results) != 1 || resp.Results[0].KV == nil {
		return 0, errors.New("check-and-set succeeded but Consul returned no key in the transaction result")
	}
	return resp.Results[0].KV.ModifyIndex, nil
}

// TxnDenied reports whether a transaction failed because ACLs refused one of its operations: Consul
// answers that inside the transaction's errors (HTTP 409), not with a 403.
func TxnDenied(resp *api.TxnResponse) bool {
	if resp == nil {
		return false
	}
	for _, e := range resp.Errors {
		if strings.Contains(e.What, "Permission denied") || strings.Contains(e.What, "ACL not found") {
			return true
		}
	}
	return false
}

// TxnErrors joins a failed transaction's errors.
func TxnErrors(resp *api.TxnResponse) string {
	if resp == nil {
		return ""
	}
	var why []string
	for _, e := range resp.Errors {
		why = append(why, e.What)
	}
	return strings.Join(why, "; ")
}

func (s *Store) stamp() time.Time {
	// Millisecond UTC keeps the document readable and round-trips exactly through JSON.
	return s.now().UTC().Truncate(time.Millisecond)
}

// encode validates t and returns its canonical form, refusing what Consul would refuse.
func encode(t *topology.Topology) ([]byte, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	data, err := t.Encode()
	if err != nil {
		return nil, fmt.Errorf("%w: encode: %w", topology.ErrInvalid, err)
	}
	if len(data) > MaxDocumentSize {
		return nil, fmt.Errorf("%w: %d bytes encoded, Consul accepts at most %d", ErrTooLarge, len(data), MaxDocumentSize)
	}
	return data, nil
}

// peekVersion reads only the version of a stored document, so that a writer can replace a document
// that no longer validates (for example after a validation rule was tightened) as long as its version
// is readable.
func peekVersion(data []byte) (uint64, error) {
	var v struct {
		Version *uint64 `json:"version"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return 0, err
	}
	if v.Version == nil {
		return 0, errors.New("no version field")
	}
	return *v.Version, nil
}

// jittered returns an exponential delay for the given attempt (1-based), capped at max, with "equal
// jitter": half fixed, half random, so concurrent retriers spread out but never retry at once.
func jittered(lo, hi time.Duration, attempt int) time.Duration {
	d := lo
	for i := 1; i < attempt && d < hi; i++ {
		d *= 2
	}
	d = clamp(d, lo, hi)
	half := d / 2
	return half + rand.N(d-half+1)
}

func clamp(d, lo, hi time.Duration) time.Duration {
	return max(lo, min(d, hi))
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
