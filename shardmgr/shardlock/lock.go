package shardlock

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	consul "github.com/hashicorp/consul/api"
)

// DefaultKey is the Consul KV key of the one lock that every operation changing shards takes.
const DefaultKey = "meridian/locks/shards"

// Defaults of Options.
const (
	// DefaultTTL is the session's TTL: a holder that stops renewing (a crashed machine) loses the
	// lock this long after its last renewal. Consul accepts 10 s to 24 h.
	DefaultTTL = 15 * time.Second
	// DefaultLockDelay is how long Consul refuses the key to everyone after the session that held
	// it is invalidated (not after a clean Release): a holder that lost its session but has not
	// noticed yet gets this long to stop before a successor starts.
	DefaultLockDelay = 5 * time.Second
)

var (
	// ErrHeld means another holder has the lock; the *HeldError wrapping it names the holder.
	ErrHeld = errors.New("shardlock: the lock is held")
	// ErrLost is returned by operations on a lock whose session was invalidated.
	ErrLost = errors.New("shardlock: the lock was lost")
)

// HeldError says who holds the lock.
type HeldError struct {
	Key    string
	Holder Holder
	// Delay is true when nobody holds the key but Consul's lock-delay still refuses it (the last
	// holder's session was invalidated moments ago).
	Delay bool
}

func (e *HeldError) Error() string {
	if e.Delay {
		return fmt.Sprintf("shardlock: %s was released by an invalidated session and is in its lock-delay; retry in a few seconds", e.Key)
	}
	return fmt.Sprintf("shardlock: %s is held by %s", e.Key, e.Holder)
}

func (e *HeldError) Unwrap() error { return ErrHeld }

// Holder is what a lock's value says about who took it.
type Holder struct {
	// Name is what the holder said it does ("move 20250101_120000_ab12", "migrate up").
	Name  string    `json:"name"`
	Host  string    `json:"host"`
	PID   int       `json:"pid"`
	Since time.Time `json:"since"`
}

func (h Holder) String() string {
	if h.Name == "" && h.Host == "" {
		return "an unknown holder"
	}
	return fmt.Sprintf("%q (host %s, pid %d, since %s)", h.Name, h.Host, h.PID, h.Since.UTC().Format(time.RFC3339))
}

// Options tunes AcquireWith. Zero fields take the defaults.
type Options struct {
	Key       string
	Holder    string
	TTL       time.Duration
	LockDelay time.Duration
	// DelayWait bounds how long Acquire waits for a lock-delay to pass (nobody holds the key, but
	// Consul refuses it for a moment after a crashed holder's session ended). 0: DefaultLockDelay+1s.
	DelayWait time.Duration
}

// Lock is a held lock. Its methods are safe for concurrent use.
type Lock struct {
	c       *consul.Client
	key     string
	session string
	fence   uint64
	lost    chan struct{}
	stop    chan struct{}
	// releasing is set before a Release gives the key up, so that the watch loop seeing the key
	// leave the session does not report it as lost.
	releasing atomic.Bool
	lostOnce  sync.Once
	stopOnce  sync.Once
	done      sync.WaitGroup
}

// Acquire takes the lock at key (DefaultKey if empty) for holder, with the default TTL and
// lock-delay. It fails at once with a *HeldError (wrapping ErrHeld) when another holder has it.
func Acquire(ctx context.Context, c *consul.Client, key, holder string) (*Lock, error) {
	return AcquireWith(ctx, c, Options{Key: key, Holder: holder})
}

// AcquireWith is Acquire with explicit options.
func AcquireWith(ctx context.Context, c *consul.Client, o Options) (*Lock, error) {
	if o.Key == "" {
		o.Key = DefaultKey
	}
	if o.TTL == 0 {
		o.TTL = DefaultTTL
	}
	if o.LockDelay == 0 {
		o.LockDelay = DefaultLockDelay
	}
	if o.DelayWait == 0 {
		o.DelayWait = o.LockDelay + time.Second
	}
	if o.TTL < 10*time.Second {
		return nil, fmt.Errorf("shardlock: TTL %s is below Consul's minimum of 10s", o.TTL)
	}
	host, _ := os.Hostname()
	value, err := json.Marshal(Holder{Name: o.Holder, Host: host, PID: os.Getpid(), Since: time.Now().UTC().Truncate(time.Second)})
	if err != nil {
		return nil, err
	}
	wctx := (&consul.WriteOptions{}).WithContext(ctx)
	id, _, err := c.Session().Create(&consul.SessionEntry{
		Name:      "meridian shardlock: " + o.Holder,
		TTL:       o.TTL.String(),
		LockDelay: o.LockDelay,
		Behavior:  consul.SessionBehaviorRelease,
	}, wctx)
	if err != nil {
		return nil, fmt.Errorf("shardlock: creating a session: %w", err)
	}
	destroy := func() {
		_, _ = c.Session().Destroy(id, (&consul.WriteOptions{}).WithContext(context.WithoutCancel(ctx)))
	}

	delayUntil := time.Now().Add(o.DelayWait)
	for {
		ok, _, err := c.KV().Acquire(&consul.KVPair{Key: o.Key, Value: value, Session: id}, wctx)
		if err != nil {
			destroy()
			return nil, fmt.Errorf("shardlock: acquiring %s: %w", o.Key, err)
		}
		pair, _, err := c.KV().Get(o.Key, (&consul.QueryOptions{RequireConsistent: true}).WithContext(ctx))
		if err != nil {
			destroy()
			return nil, fmt.Errorf("shardlock: reading %s: %w", o.Key, err)
		}
		if ok && pair != nil && pair.Session == id {
			l := &Lock{c: c, key: o.Key, session: id, fence: pair.LockIndex, lost: make(chan struct{}), stop: make(chan struct{})}
			l.done.Add(2)
			go l.renew(o.TTL)
			go l.watch(pair.ModifyIndex)
			return l, nil
		}
		if pair != nil && pair.Session != "" {
			destroy()
			var h Holder
			_ = json.Unmarshal(pair.Value, &h)
			return nil, &HeldError{Key: o.Key, Holder: h}
		}
		// Nobody holds it, yet Consul refused: the lock-delay of a holder whose session was
		// invalidated. It passes by itself.
		if time.Now().After(delayUntil) {
			destroy()
			return nil, &HeldError{Key: o.Key, Delay: true}
		}
		select {
		case <-ctx.Done():
			destroy()
			return nil, fmt.Errorf("shardlock: acquiring %s: %w", o.Key, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// renew keeps the session alive until Release; it ends (and the lock is lost) when Consul says the
// session is gone or cannot be reached for a whole TTL.
func (l *Lock) renew(ttl time.Duration) {
	defer l.done.Done()
	err := l.c.Session().RenewPeriodic(ttl.String(), l.session, nil, l.stop)
	if err != nil {
		l.markLost()
	}
}

// watch notices at once that the key left the session (deleted by hand, session destroyed), instead
// of at the next renewal.
func (l *Lock) watch(index uint64) {
	defer l.done.Done()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-l.stop:
		case <-l.lost:
		}
		cancel()
	}()
	failures := 0
	for ctx.Err() == nil {
		pair, meta, err := l.c.KV().Get(l.key, (&consul.QueryOptions{WaitIndex: index, WaitTime: time.Minute}).WithContext(ctx))
		if err != nil {
			failures++
			// Renewal decides about an unreachable Consul; this loop only backs off.
			select {
			case <-ctx.Done():
			case <-time.After(min(time.Duration(failures)*250*time.Millisecond, 5*time.Second)):
			}
			continue
		}
		failures = 0
		if pair == nil || pair.Session != l.session {
			l.markLost()
			return
		}
		if meta.LastIndex < index {
			index = 0
		} else {
			index = max(meta.LastIndex, 1)
		}
	}
}

func (l *Lock) markLost() {
	if l.releasing.Load() {
		return
	}
	l.lostOnce.Do(func() { close(l.lost) })
}

// Lost is closed when the lock is lost: the session was invalidated or could not be renewed. A
// holder must then stop changing anything it protects.
func (l *Lock) Lost() <-chan struct{} { return l.lost }

// Err is ErrLost once the lock is lost, nil before.
func (l *Lock) Err() error {
	select {
	case <-l.lost:
		return ErrLost
	default:
		return nil
	}
}

// Fence is the key's LockIndex when this holder took it: it grows with every acquisition, so a
// record stamped with it tells which holder wrote it.
func (l *Lock) Fence() uint64 { return l.fence }

// Session is the Consul session that holds the lock, for transactions that must fail unless it
// still does (verb check-session).
func (l *Lock) Session() string { return l.session }

// Key is the lock's KV key.
func (l *Lock) Key() string { return l.key }

// Release gives the lock up and destroys the session. The key is free at once (a clean release
// has no lock-delay).
func (l *Lock) Release(ctx context.Context) error {
	l.releasing.Store(true)
	wopts := (&consul.WriteOptions{}).WithContext(ctx)
	// The key first: destroying the session while it still holds the key would start a lock-delay.
	_, _, err := l.c.KV().Release(&consul.KVPair{Key: l.key, Session: l.session}, wopts)
	l.halt() // RenewPeriodic destroys the session as it stops
	if _, derr := l.c.Session().Destroy(l.session, wopts); err == nil {
		err = derr
	}
	if err != nil {
		return fmt.Errorf("shardlock: releasing %s: %w", l.key, err)
	}
	return nil
}

// Abandon stops renewing and invalidates the session without releasing the key, which is what
// Consul does by itself when a crashed holder's TTL runs out; the key then stays refused for the
// lock-delay. It exists for tests that kill a holder in process.
func (l *Lock) Abandon(ctx context.Context) {
	l.halt()
	_, _ = l.c.Session().Destroy(l.session, (&consul.WriteOptions{}).WithContext(ctx))
}

func (l *Lock) halt() {
	l.stopOnce.Do(func() { close(l.stop) })
	l.done.Wait()
}
