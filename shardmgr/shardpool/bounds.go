package shardpool

import (
	"encoding/binary"

	"github.com/8thdegree/meridian/shardmgr/topology"
)

// Bounds are one shard's keyranges as parallel arrays of 8-byte bounds, for a fan-out's filter
// `EXISTS (SELECT 1 FROM unnest($lo::bytea[], $hi::bytea[]) AS r(lo, hi) WHERE t.ksid >= r.lo AND
// t.ksid < r.hi)`: a shard can hold rows of a keyrange it does not own (the copy a move is filling, or
// the source's rows until cleanup), and a fan-out without the filter would count them twice.
type Bounds struct{ Lo, Hi [][]byte }

// Unbounded sorts after every 8-byte ksid under bytea ordering: it stands for a keyrange's open end.
const Unbounded = "\xff\xff\xff\xff\xff\xff\xff\xff\xff"

// OwnedBounds returns every shard's keyranges in tab (the table of a fan-out's RegionView, so that each
// shard is queried for the keyranges it owns in the version its targets come from).
func OwnedBounds(tab *topology.Table) map[string]Bounds {
	if tab == nil {
		return nil
	}
	out := map[string]Bounds{}
	for _, as := range tab.Topology().KeyRanges {
		b := out[as.Shard]
		b.Lo = append(b.Lo, binary.BigEndian.AppendUint64(nil, as.Range.Start))
		if as.Range.End == 0 {
			b.Hi = append(b.Hi, []byte(Unbounded))
		} else {
			b.Hi = append(b.Hi, binary.BigEndian.AppendUint64(nil, as.Range.End))
		}
		out[as.Shard] = b
	}
	return out
}
