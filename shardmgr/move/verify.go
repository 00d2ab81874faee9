package move

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/8thdegree/meridian/pkg/shardkey"
)

// countRechecks is how many times a verifier waits for catch-up and looks again at what differed
// before calling a difference persistent: rows written while it reads differ for a moment.
const countRechecks = 5

// CountVerify compares the row count of every sharded table over kr. It is the fallback verifier,
// cheaper and weaker than checksums.
func CountVerify(ctx context.Context, source, target *pgxpool.Pool, kr shardkey.KeyRange, catchUp func(context.Context) error) error {
	tables, err := shardedTables(ctx, source)
	if err != nil {
		return err
	}
	var diff []string
	for attempt := 0; attempt <= countRechecks; attempt++ {
		if attempt > 0 {
			if err := catchUp(ctx); err != nil {
				return err
			}
		}
		src, err := countRange(ctx, source, tables, kr)
		if err != nil {
			return err
		}
		dst, err := countRange(ctx, target, tables, kr)
		if err != nil {
			return err
		}
		diff = diff[:0]
		for _, t := range tables {
			if src[t] != dst[t] {
				diff = append(diff, fmt.Sprintf("%s: %d rows on the source, %d on the target", t, src[t], dst[t]))
			}
		}
		if len(diff) == 0 {
			return nil
		}
	}
	return fmt.Errorf("%w: %s", ErrDiffer, strings.Join(diff, "; "))
}
