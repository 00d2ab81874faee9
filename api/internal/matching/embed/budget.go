package embed

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Budget bounds what an embedder may spend with its provider.
type Budget interface {
	// Reserve takes tokens from the budget before they are spent. It returns an error wrapping
	// ErrBudgetExhausted when they do not fit, and one wrapping ErrUnavailable when it cannot tell:
	// an embedder never spends what it could not reserve.
	Reserve(ctx context.Context, tokens int) error
}

// RedisBudget is a region's daily token budget, kept in the region's Redis so that every node of the
// region spends from one count. The count is per UTC day: it starts at zero at 00:00 UTC.
type RedisBudget struct {
	rdb    redis.UniversalClient
	region string
	perDay int
	now    func() time.Time
}

var _ Budget = (*RedisBudget)(nil)

// NewRedisBudget returns the budget of perDay tokens a day for region. A perDay of zero or less
// refuses everything. now (nil for time.Now) tells the day.
func NewRedisBudget(rdb redis.UniversalClient, region string, perDay int, now func() time.Time) *RedisBudget {
	if now == nil {
		now = time.Now
	}
	return &RedisBudget{rdb: rdb, region: region, perDay: perDay, now: now}
}

// budgetTTL keeps a day's count a day after the day ends, long enough to be read for the record.
const budgetTTL = 48 * time.Hour

// reserveScript adds ARGV[1] to the day's count unless that would take it over ARGV[2], and gives
// the key its lifetime on first use. Redis runs it atomically, so nodes racing for the last tokens
// cannot together overspend, and a refused reservation leaves the count as it was (a large request
// refused does not block the small ones that still fit).
var reserveScript = redis.NewScript(`
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local want = tonumber(ARGV[1])
if used + want > tonumber(ARGV[2]) then
	return -1
end
local n = redis.call('INCRBY', KEYS[1], want)
if redis.call('TTL', KEYS[1]) < 0 then
	redis.call('EXPIRE', KEYS[1], ARGV[3])
end
return n
`)

// Key is the Redis key of the count for the day of t.
func (b *RedisBudget) Key(t time.Time) string {
	return "meridian:embed:budget:{" + b.region + "}:" + t.UTC().Format(time.DateOnly)
}

// Reserve takes tokens from today's count.
func (b *RedisBudget) Reserve(ctx context.Context, tokens int) error {
	if tokens < 0 {
		return fmt.Errorf("embed: budget: cannot reserve %d tokens", tokens)
	}
	if tokens > b.perDay {
		return fmt.Errorf("embed: budget %s: %d tokens is more than the day's %d: %w", b.region, tokens, b.perDay, ErrBudgetExhausted)
	}
	n, err := reserveScript.Run(ctx, b.rdb, []string{b.Key(b.now())}, tokens, b.perDay, int(budgetTTL/time.Second)).Int64()
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return err
		}
		return fmt.Errorf("embed: budget %s: %w: %w", b.region, ErrUnavailable, err)
	}
	if n < 0 {
		return fmt.Errorf("embed: budget %s: %d tokens do not fit in what is left of the day's %d: %w", b.region, tokens, b.perDay, ErrBudgetExhausted)
	}
	return nil
}

// Used returns the tokens reserved today.
func (b *RedisBudget) Used(ctx context.Context) (int, error) {
	n, err := b.rdb.Get(ctx, b.Key(b.now())).Int()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("embed: budget %s: %w: %w", b.region, ErrUnavailable, err)
	}
	return n, nil
}
