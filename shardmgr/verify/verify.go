package verify

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/8thdegree/meridian/pkg/shardkey"
)

// Defaults applied to zero Options fields.
const (
	DefaultLimit     = 20
	DefaultChunkRows = 10000
)

var (
	// ErrInvalidOptions reports Options that fail Validate, or a Recheck whose keyrange is not its
	// report's.
	ErrInvalidOptions = errors.New("verify: invalid options")
	// ErrUnknownTable reports an Options.Tables entry that neither side has in its sharded schemas.
	ErrUnknownTable = errors.New("verify: unknown table")
)

// Options tunes a comparison. The zero value compares every sharded table.
type Options struct {
	// Limit is how many differing keys are listed per table (all are counted). 0 means DefaultLimit.
	Limit int
	// Tables restricts the comparison to these tables, "schema.table"; empty means every sharded
	// table of either side.
	Tables []string
	// ChunkRows is the number of source rows per chunk. 0 means DefaultChunkRows. Smaller chunks
	// narrow a difference with less reading; larger ones mean fewer queries.
	ChunkRows int
}

// Validate reports a field that cannot be used, by name.
func (o Options) Validate() error {
	switch {
	case o.Limit < 0:
		return fmt.Errorf("%w: Limit must not be negative, got %d", ErrInvalidOptions, o.Limit)
	case o.ChunkRows < 0:
		return fmt.Errorf("%w: ChunkRows must not be negative, got %d", ErrInvalidOptions, o.ChunkRows)
	}
	for _, t := range o.Tables {
		if schema, name, ok := strings.Cut(t, "."); !ok || schema == "" || name == "" {
			return fmt.Errorf("%w: Tables: %q is not schema.table", ErrInvalidOptions, t)
		}
	}
	return nil
}

func (o Options) withDefaults() Options {
	if o.Limit == 0 {
		o.Limit = DefaultLimit
	}
	if o.ChunkRows == 0 {
		o.ChunkRows = DefaultChunkRows
	}
	return o
}

// TableReport is one table's comparison.
type TableReport struct {
	Table          string `json:"table"` // schema.table
	SourceRows     int64  `json:"source_rows"`
	TargetRows     int64  `json:"target_rows"`
	SourceChecksum string `json:"source_checksum"` // 32 hex digits; "" when the table was not summed
	TargetChecksum string `json:"target_checksum"`
	// Differing lists up to Options.Limit keys (see the package doc for their form) of rows that
	// differ or exist on one side only, in key order.
	Differing []string `json:"differing"`
	// DifferingRows counts every such row; more than len(Differing) when the list was cut at Limit.
	DifferingRows int64 `json:"differing_rows"`
	// Problem says why the table could not be compared row by row: it is missing on one side, or
	// its columns differ. Such a table is never equal.
	Problem string `json:"problem,omitempty"`
	// Rechecked marks a table whose differing keys Recheck re-compared: Differing and
	// DifferingRows are as of the recheck, the counts and checksums as of the full comparison.
	Rechecked bool `json:"rechecked,omitempty"`
}

// Equal reports whether the table is the same on both sides.
func (t TableReport) Equal() bool {
	if t.Problem != "" || len(t.Differing) > 0 || t.DifferingRows > 0 {
		return false
	}
	// A recheck clears the rows the full pass found different; the rest matched then.
	return t.Rechecked || (t.SourceRows == t.TargetRows && t.SourceChecksum == t.TargetChecksum)
}

// truncated reports whether some differing keys went unlisted, so that a recheck of the listed
// keys alone could not clear the table.
func (t TableReport) truncated() bool { return t.DifferingRows > int64(len(t.Differing)) }

// Report is a keyrange's comparison, tables in name order.
type Report struct {
	KeyRange shardkey.KeyRange `json:"keyrange"`
	Tables   []TableReport     `json:"tables"`
}

// Equal reports whether every table is the same on both sides.
func (r Report) Equal() bool {
	for _, t := range r.Tables {
		if !t.Equal() {
			return false
		}
	}
	return true
}

// Differing returns the tables that are not equal.
func (r Report) Differing() []TableReport {
	var out []TableReport
	for _, t := range r.Tables {
		if !t.Equal() {
			out = append(out, t)
		}
	}
	return out
}

// Compare compares kr's rows on source and target, each side in one REPEATABLE READ READ ONLY
// transaction. A difference is a Report that is not Equal, not an error; errors are failures to
// read (a shard down, a table that breaks the shard-key rule, bad Options).
func Compare(ctx context.Context, source, target *pgxpool.Pool, kr shardkey.KeyRange, opts Options) (Report, error) {
	if err := opts.Validate(); err != nil {
		return Report{}, err
	}
	opts = opts.withDefaults()
	src, tgt, err := openBoth(ctx, source, target)
	if err != nil {
		return Report{}, err
	}
	defer src.close(ctx)
	defer tgt.close(ctx)
	names, err := tableNames(src, tgt, opts.Tables)
	if err != nil {
		return Report{}, err
	}
	rep := Report{KeyRange: kr, Tables: make([]TableReport, 0, len(names))}
	for _, name := range names {
		tr, err := compareTable(ctx, src, tgt, name, kr, opts)
		if err != nil {
			return Report{}, fmt.Errorf("verify %s in %s: %w", name, kr, err)
		}
		rep.Tables = append(rep.Tables, tr)
	}
	return rep, nil
}

// Recheck re-compares only what prev found different, in fresh transactions: the listed keys of a
// table (marked Rechecked), or the whole table when its report had a Problem or listed fewer keys
// than it counted. Tables that were equal are carried over as they were. kr must be prev's
// keyrange.
func Recheck(ctx context.Context, source, target *pgxpool.Pool, kr shardkey.KeyRange, prev Report) (Report, error) {
	if kr != prev.KeyRange {
		return Report{}, fmt.Errorf("%w: recheck of %s with a report of %s", ErrInvalidOptions, kr, prev.KeyRange)
	}
	rep := Report{KeyRange: kr, Tables: slices.Clone(prev.Tables)}
	if prev.Equal() {
		return rep, nil
	}
	src, tgt, err := openBoth(ctx, source, target)
	if err != nil {
		return Report{}, err
	}
	defer src.close(ctx)
	defer tgt.close(ctx)
	for i, t := range rep.Tables {
		if t.Equal() {
			continue
		}
		var tr TableReport
		if t.Problem != "" || t.truncated() {
			limit := max(len(t.Differing), DefaultLimit)
			tr, err = compareTable(ctx, src, tgt, t.Table, kr, Options{Limit: limit, ChunkRows: DefaultChunkRows})
		} else {
			tr, err = recheckKeys(ctx, src, tgt, t, kr)
		}
		if err != nil {
			return Report{}, fmt.Errorf("recheck %s in %s: %w", t.Table, kr, err)
		}
		rep.Tables[i] = tr
	}
	return rep, nil
}

// CountRows returns the rows in kr of every sharded table of pool's database, read in one
// REPEATABLE READ READ ONLY transaction.
func CountRows(ctx context.Context, pool *pgxpool.Pool, kr shardkey.KeyRange) (map[string]int64, error) {
	s, err := open(ctx, pool, "shard")
	if err != nil {
		return nil, err
	}
	defer s.close(ctx)
	out := make(map[string]int64, len(s.tables))
	for name, t := range s.tables {
		n, err := s.count(ctx, t, kr)
		if err != nil {
			return nil, fmt.Errorf("count %s in %s: %w", name, kr, err)
		}
		out[name] = n
	}
	return out, nil
}

// tableNames is the sorted list of tables to compare: the named ones (each on at least one side),
// or every table of either side.
func tableNames(src, tgt *side, only []string) ([]string, error) {
	if len(only) > 0 {
		var names []string
		for _, n := range only {
			_, ok1 := src.tables[n]
			_, ok2 := tgt.tables[n]
			if !ok1 && !ok2 {
				return nil, fmt.Errorf("%w: %s is not a sharded table on either side", ErrUnknownTable, n)
			}
			names = append(names, n)
		}
		slices.Sort(names)
		return slices.Compact(names), nil
	}
	names := make([]string, 0, len(src.tables))
	for n := range src.tables {
		names = append(names, n)
	}
	for n := range tgt.tables {
		if _, ok := src.tables[n]; !ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names, nil
}

func openBoth(ctx context.Context, source, target *pgxpool.Pool) (*side, *side, error) {
	src, err := open(ctx, source, "source")
	if err != nil {
		return nil, nil, err
	}
	tgt, err := open(ctx, target, "target")
	if err != nil {
		src.close(ctx)
		return nil, nil, err
	}
	return src, tgt, nil
}

// both runs f and g at once, each on its own side's connection, and returns both errors.
func both(f, g func() error) error {
	ch := make(chan error, 1)
	go func() { ch <- g() }()
	err := f()
	return errors.Join(err, <-ch)
}
