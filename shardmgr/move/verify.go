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
// it stops: rows written while the comparison reads differ for a moment.
const verifyRechecks = 5

// verifyLimit lists enough differing keys per table that a recheck re-reads only those keys
// instead of the whole table (verify.Recheck re-compares a table whose list was cut).
const verifyLimit = 10000

// MaxUnsettled is the most differing rows Verify leaves to the cutover (Move.Unsettled): rows still
// differing after every recheck because they are rewritten faster than a recheck can catch up (a
// hot row). The cutover rechecks them inside the freeze, after the drain, where the writes are held
// and the rows stand still; it reads them by key, so a few dozen cost the write pause a millisecond
// or two. More than this, or a table that cannot be rechecked key by key, is a difference.
const MaxUnsettled = 100

// Verify is the default Config.Verify: shardmgr/verify's Compare (counts, checksums, differing
// keys per table), the same code as `shardmgr verify`, then Recheck of what differed after each
// catch-up. Rows that still differ after verifyRechecks rechecks are returned for the cutover to
// recheck with the writes held, when they are few (MaxUnsettled) and listed key by key; otherwise
// the difference is an error wrapping ErrDiffer.
func Verify(ctx context.Context, source, target *pgxpool.Pool, kr shardkey.KeyRange, catchUp func(context.Context) error) ([]verify.TableReport, error) {
	rep, err := verify.Compare(ctx, source, target, kr, verify.Options{Limit: verifyLimit})
	if err != nil {
		return nil, err
	}
	for i := 0; !rep.Equal() && i < verifyRechecks; i++ {
		if err := catchUp(ctx); err != nil {
			return nil, err
		}
		if rep, err = verify.Recheck(ctx, source, target, kr, rep); err != nil {
			return nil, err
		}
	}
	if rep.Equal() {
		return nil, nil
	}
	if unsettled, ok := settleable(rep); ok {
		return unsettled, nil
	}
	return nil, fmt.Errorf("%w after %d rechecks: %s", ErrDiffer, verifyRechecks, describeDiff(rep))
}

// settleable returns the tables of rep that differ, when the cutover can recheck them key by key
// and they are few enough.
func settleable(rep verify.Report) ([]verify.TableReport, bool) {
	var rows int64
	out := rep.Differing()
	for _, t := range out {
		if t.Problem != "" || !t.Rechecked || t.DifferingRows > int64(len(t.Differing)) {
			return nil, false
		}
		rows += t.DifferingRows
	}
	return out, rows <= MaxUnsettled
}

// RecheckUnsettled re-compares, by key, the rows Verify left to the cutover: nil when they are now
// equal, an error wrapping ErrDiffer naming them when not.
func RecheckUnsettled(ctx context.Context, source, target *pgxpool.Pool, kr shardkey.KeyRange, unsettled []verify.TableReport) error {
	if len(unsettled) == 0 {
		return nil
	}
	rep, err := verify.Recheck(ctx, source, target, kr, verify.Report{KeyRange: kr, Tables: unsettled})
	if err != nil {
		return err
	}
	if rep.Equal() {
		return nil
	}
	return fmt.Errorf("%w with the writes held: %s", ErrDiffer, describeDiff(rep))
}

func describeDiff(rep verify.Report) string {
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
	return strings.Join(diff, "; ")
}

// ConsulFleet waits for a region's API nodes through shardmgr/fleet: every passing node of the
// service must hold the version, as its Consul registration or its own answer says.
type ConsulFleet struct {
	Client *consul.Client
	// RegistrationsOnly waits for the registrations alone (fleet.WaitOptions).
	RegistrationsOnly bool
}

var _ FleetWaiter = ConsulFleet{}

// WaitApplied implements FleetWaiter.
func (f ConsulFleet) WaitApplied(ctx context.Context, dc, service string, version uint64) error {
	return fleet.WaitAppliedWith(ctx, f.Client, dc, service, version, fleet.WaitOptions{RegistrationsOnly: f.RegistrationsOnly})
}
