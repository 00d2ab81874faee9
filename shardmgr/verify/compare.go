package verify

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/8thdegree/meridian/pkg/shardkey"
)

// chunkSum is what each side returns for one chunk. The sums are numeric text: sum(bigint) does not
// overflow in PostgreSQL.
type chunkSum struct {
	rows   int64
	hi, lo string
}

// checksum accumulates chunk sums into a table checksum: each half summed modulo 2^64, so that the
// table's value does not depend on where the chunks were cut.
type checksum struct{ hi, lo uint64 }

var mask64 = new(big.Int).SetUint64(^uint64(0))

func (c *checksum) add(s chunkSum) error {
	for _, p := range []struct {
		dst *uint64
		txt string
	}{{&c.hi, s.hi}, {&c.lo, s.lo}} {
		v, ok := new(big.Int).SetString(p.txt, 10)
		if !ok {
			return fmt.Errorf("chunk sum %q is not an integer", p.txt)
		}
		// And takes two's complement for negative sums: the value modulo 2^64.
		*p.dst += v.And(v, mask64).Uint64()
	}
	return nil
}

func (c checksum) String() string { return fmt.Sprintf("%016x%016x", c.hi, c.lo) }

// queries holds one table's SQL, built from the source's description of it (the target's columns
// are the same, or the table is not summed).
type queries struct {
	t       table
	row     string // row text expression
	key     string // key text expression
	hashSel string // "<key> AS k, md5(<row>) AS h"
}

func newQueries(t table) queries {
	q := queries{t: t, row: rowText(t.cols), key: keyText(t.pk)}
	q.hashSel = q.key + " AS k, md5(" + q.row + ") AS h"
	return q
}

// sum returns the chunk [lo, hi)'s count and sums of the two 64-bit halves of each row's md5.
func (q queries) sum(ctx context.Context, s *side, lo, hi []byte) (chunkSum, error) {
	where, args := rangeWhere(lo, hi)
	sql := `SELECT count(*),
	               coalesce(sum(('x' || substr(h, 1, 16))::bit(64)::bigint), 0)::text,
	               coalesce(sum(('x' || substr(h, 17, 16))::bit(64)::bigint), 0)::text
	          FROM (SELECT md5(` + q.row + `) AS h FROM ` + q.t.ident + ` WHERE ` + where + `) r`
	var c chunkSum
	if err := s.tx.QueryRow(ctx, sql, args...).Scan(&c.rows, &c.hi, &c.lo); err != nil {
		return chunkSum{}, fmt.Errorf("%s: chunk sum: %w", s.name, err)
	}
	return c, nil
}

// nextBound returns the ksid that starts the chunk after the one starting at lo: the ksid n rows
// on, or the next distinct one when a single ksid holds more than n rows (a chunk never splits a
// ksid, so both sides cut at the same place). ok is false when lo's chunk runs to hi.
func (q queries) nextBound(ctx context.Context, s *side, lo, hi []byte, n int) ([]byte, bool, error) {
	where, args := rangeWhere(lo, hi)
	var next []byte
	err := s.tx.QueryRow(ctx, "SELECT ksid FROM "+q.t.ident+" WHERE "+where+
		fmt.Sprintf(" ORDER BY ksid OFFSET %d LIMIT 1", n), args...).Scan(&next)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("%s: chunk bound: %w", s.name, err)
	}
	if !bytes.Equal(next, lo) {
		return next, true, nil
	}
	where = strings.Replace(where, "ksid >= $1", "ksid > $1", 1)
	// (PostgreSQL 15 has no min(bytea).)
	err = s.tx.QueryRow(ctx, "SELECT ksid FROM "+q.t.ident+" WHERE "+where+" ORDER BY ksid LIMIT 1", args...).Scan(&next)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("%s: chunk bound: %w", s.name, err)
	}
	return next, true, nil
}

// keyHash is one row of a chunk's per-row stream.
type keyHash struct{ key, hash string }

func compareTable(ctx context.Context, src, tgt *side, name string, kr shardkey.KeyRange, opts Options) (TableReport, error) {
	tr := TableReport{Table: name, Differing: []string{}}
	st, inSrc := src.tables[name]
	tt, inTgt := tgt.tables[name]
	var err error
	switch {
	case !inSrc:
		tr.Problem = "missing on the source"
		tr.TargetRows, err = tgt.count(ctx, tt, kr)
		return tr, err
	case !inTgt:
		tr.Problem = "missing on the target"
		tr.SourceRows, err = src.count(ctx, st, kr)
		return tr, err
	case !sameColumns(st, tt):
		tr.Problem = fmt.Sprintf("columns differ: source (%s), target (%s)", describeColumns(st), describeColumns(tt))
		err = both(
			func() (err error) { tr.SourceRows, err = src.count(ctx, st, kr); return err },
			func() (err error) { tr.TargetRows, err = tgt.count(ctx, tt, kr); return err })
		return tr, err
	}

	q := newQueries(st)
	lo, end := krBounds(kr)
	var sc, tc checksum
	for {
		next, more, err := q.nextBound(ctx, src, lo, end, opts.ChunkRows)
		if err != nil {
			return tr, err
		}
		hi := end
		if more {
			hi = next
		}
		var ss, ts chunkSum
		err = both(
			func() (err error) { ss, err = q.sum(ctx, src, lo, hi); return err },
			func() (err error) { ts, err = q.sum(ctx, tgt, lo, hi); return err })
		if err != nil {
			return tr, err
		}
		if err := errors.Join(sc.add(ss), tc.add(ts)); err != nil {
			return tr, err
		}
		tr.SourceRows += ss.rows
		tr.TargetRows += ts.rows
		if ss != ts {
			if err := q.diffChunk(ctx, src, tgt, lo, hi, opts.Limit, &tr); err != nil {
				return tr, err
			}
		}
		if !more {
			break
		}
		lo = next
	}
	tr.SourceChecksum, tr.TargetChecksum = sc.String(), tc.String()
	return tr, nil
}

// diffChunk streams both sides' (key, md5) of the chunk in bytewise key order and merges them,
// recording the keys that differ or exist on one side only.
func (q queries) diffChunk(ctx context.Context, src, tgt *side, lo, hi []byte, limit int, tr *TableReport) error {
	where, args := rangeWhere(lo, hi)
	sql := "SELECT k, h FROM (SELECT " + q.hashSel + " FROM " + q.t.ident + " WHERE " + where + `) r ORDER BY k COLLATE "C"`
	var sr, tgr pgx.Rows
	err := both(
		func() (err error) { sr, err = src.tx.Query(ctx, sql, args...); return err },
		func() (err error) { tgr, err = tgt.tx.Query(ctx, sql, args...); return err })
	if err != nil {
		if sr != nil {
			sr.Close()
		}
		if tgr != nil {
			tgr.Close()
		}
		return fmt.Errorf("row hashes: %w", err)
	}
	defer sr.Close()
	defer tgr.Close()
	next := func(r pgx.Rows) (keyHash, bool, error) {
		if !r.Next() {
			return keyHash{}, false, r.Err()
		}
		var kh keyHash
		err := r.Scan(&kh.key, &kh.hash)
		return kh, err == nil, err
	}
	s, sok, err := next(sr)
	if err != nil {
		return fmt.Errorf("source: row hashes: %w", err)
	}
	t, tok, err := next(tgr)
	if err != nil {
		return fmt.Errorf("target: row hashes: %w", err)
	}
	for sok || tok {
		var differs string
		advS, advT := false, false
		switch {
		case !tok || (sok && s.key < t.key):
			differs, advS = s.key, true
		case !sok || t.key < s.key:
			differs, advT = t.key, true
		default:
			if s.hash != t.hash {
				differs = s.key
			}
			advS, advT = true, true
		}
		if differs != "" {
			tr.DifferingRows++
			if len(tr.Differing) < limit {
				tr.Differing = append(tr.Differing, differs)
			}
		}
		if advS {
			if s, sok, err = next(sr); err != nil {
				return fmt.Errorf("source: row hashes: %w", err)
			}
		}
		if advT {
			if t, tok, err = next(tgr); err != nil {
				return fmt.Errorf("target: row hashes: %w", err)
			}
		}
	}
	return nil
}

// recheckBatch bounds the keys read back per query.
const recheckBatch = 1000

// recheckKeys re-reads prev's differing keys on both sides and keeps those that still differ.
func recheckKeys(ctx context.Context, src, tgt *side, prev TableReport, kr shardkey.KeyRange) (TableReport, error) {
	st, inSrc := src.tables[prev.Table]
	tt, inTgt := tgt.tables[prev.Table]
	if !inSrc || !inTgt || !sameColumns(st, tt) {
		// The schema changed since the full pass: compare the table again, in full.
		return compareTable(ctx, src, tgt, prev.Table, kr, Options{Limit: max(len(prev.Differing), DefaultLimit), ChunkRows: DefaultChunkRows})
	}
	q := newQueries(st)
	tr := prev
	tr.Differing, tr.DifferingRows, tr.Rechecked = []string{}, 0, true
	for batch := range slices.Chunk(prev.Differing, recheckBatch) {
		ksids := make([][]byte, 0, len(batch))
		for _, k := range batch {
			h, _, _ := strings.Cut(k, "|")
			b, err := hex.DecodeString(h)
			if err != nil {
				return tr, fmt.Errorf("key %q does not start with a hex ksid", k)
			}
			ksids = append(ksids, b)
		}
		where, args := rangeWhere(krBounds(kr))
		n := len(args)
		sql := fmt.Sprintf("SELECT k, h FROM (SELECT %s FROM %s WHERE %s AND ksid = ANY($%d::bytea[])) r WHERE k = ANY($%d::text[])",
			q.hashSel, q.t.ident, where, n+1, n+2)
		args = append(args, ksids, batch)
		var sh, th map[string]string
		err := both(
			func() (err error) { sh, err = hashesOf(ctx, src, sql, args); return err },
			func() (err error) { th, err = hashesOf(ctx, tgt, sql, args); return err })
		if err != nil {
			return tr, err
		}
		for _, k := range batch {
			s, ok1 := sh[k]
			t, ok2 := th[k]
			if ok1 != ok2 || s != t {
				tr.DifferingRows++
				tr.Differing = append(tr.Differing, k)
			}
		}
	}
	return tr, nil
}

func hashesOf(ctx context.Context, s *side, sql string, args []any) (map[string]string, error) {
	rows, err := s.tx.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: row hashes: %w", s.name, err)
	}
	out := map[string]string{}
	var kh keyHash
	_, err = pgx.ForEachRow(rows, []any{&kh.key, &kh.hash}, func() error {
		out[kh.key] = kh.hash
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: row hashes: %w", s.name, err)
	}
	return out, nil
}
