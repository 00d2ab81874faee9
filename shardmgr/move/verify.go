package move

import (
	"context"
	"fmt"
	"strings"

	consul "github.com/hashicorp/consul/api"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/fleet"
	"github.com/8thdegree/meridian/shardmgr/verify"
)

// verifyRechecks is how many times Verify waits for catch-up and re-compares what differed before
// calling a difference persistent: rows written while the comparison reads differ for a moment.
const verifyRechecks = 5

// verifyLimit lists enough differing keys per table that a recheck re-reads only those keys
// instead of the whole table (verify.Recheck re-compares a table whose list was cut).
const verifyLimit = 10000

// Verify is the default Config.Verify: shardmgr/verify's Compare (counts, checksums, differing
// keys per table), the same code as `shardmgr verify`, then Recheck of what differed after each
// catch-up.
func Verify(ctx context.Context, source, target *pgxpool.Pool, kr shardkey.KeyRange, catchUp func(context.Context) error) error {
	rep, err := verify.Compare(ctx, source, target, kr, verify.Options{Limit: verifyLimit})
	if err != nil {
		return err
	}
	for i := 0; !rep.Equal() && i < verifyRechecks; i++ {
		if err := catchUp(ctx); err != nil {
			return err
		}
		if rep, err = verify.Recheck(ctx, source, target, kr, rep); err != nil {
			return err
		}
	}
	if rep.Equal() {
		return nil
	}
	var diff []string
	for _, t := range rep.Differing() {
		d := fmt.Sprintf("%s: %d rows differ", t.Table, t.DifferingRows)
		if t.Problem != "" {
			d = t.Table + ": " + t.Problem
		} else if len(t.Differing) > 0 {
			d += " (first " + strings.Join(t.Differing[:min(3, len(t.Differing))], ", ") + ")"
		}
		diff = append(diff, d)
	}
	return fmt.Errorf("%w after %d rechecks: %s", ErrDiffer, verifyRechecks, strings.Join(diff, "; "))
}

// ConsulFleet waits for a region's API nodes through shardmgr/fleet: every passing node of the
// service must publish the version in its Consul registration.
type ConsulFleet struct{ Client *consul.Client }

var _ FleetWaiter = ConsulFleet{}

// WaitApplied implements FleetWaiter.
func (f ConsulFleet) WaitApplied(ctx context.Context, dc, service string, version uint64) error {
	return fleet.WaitAppliedIn(ctx, f.Client, dc, service, version)
}
