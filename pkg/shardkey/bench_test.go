package shardkey

import (
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"testing"
	"time"

	"vitess.io/vitess/go/vt/key"
	topodatapb "vitess.io/vitess/go/vt/proto/topodata"
)

// Each benchmark has a "shardkey" case and one or more "baseline=" cases that
// do comparable work with the standard library (or Vitess) in the same run, so
// the numbers are read as ratios rather than as absolute times.

var (
	benchID      = makeID(1700000000000, 0x203383a3ad22414f, KindJob, 0x0102030405)
	benchIDText  = benchID.String()
	benchIDB32   = crockfordEncoding.EncodeToString(benchID[:])
	benchIDHex   = hex.EncodeToString(benchID[:])
	benchKsid    = KeyspaceID(0x203383a3ad22414f)
	benchKsidHex = benchKsid.String()

	sinkID   ID
	sinkStr  string
	sinkKsid KeyspaceID
	sinkBool bool
	sinkU64  uint64
)

func BenchmarkKeyspaceIDFromBytes(b *testing.B) {
	buf := benchKsid.Bytes()
	b.Run("shardkey", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sinkKsid, _ = KeyspaceIDFromBytes(buf)
		}
	})
	b.Run("baseline=binary.BigEndian", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sinkU64 = binary.BigEndian.Uint64(buf)
		}
	})
}

func BenchmarkParseKeyspaceID(b *testing.B) {
	b.Run("shardkey", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sinkKsid, _ = ParseKeyspaceID(benchKsidHex)
		}
	})
	b.Run("baseline=strconv.ParseUint", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sinkU64, _ = strconv.ParseUint(benchKsidHex, 16, 64)
		}
	})
}

func BenchmarkIDString(b *testing.B) {
	b.Run("shardkey", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sinkStr = benchID.String()
		}
	})
	b.Run("baseline=base32.EncodeToString", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sinkStr = crockfordEncoding.EncodeToString(benchID[:])
		}
	})
	b.Run("baseline=hex.EncodeToString", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sinkStr = hex.EncodeToString(benchID[:])
		}
	})
}

func BenchmarkParseID(b *testing.B) {
	b.Run("shardkey", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sinkID, _ = ParseID(benchIDText)
		}
	})
	b.Run("baseline=base32.Decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = crockfordEncoding.Decode(sinkID[:], []byte(benchIDB32))
		}
	})
	b.Run("baseline=hex.Decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = hex.Decode(sinkID[:], []byte(benchIDHex))
		}
	})
}

func BenchmarkIDFromBytes(b *testing.B) {
	buf := benchID.Bytes()
	b.Run("shardkey", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sinkID, _ = IDFromBytes(buf)
		}
	})
	b.Run("baseline=copy", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			copy(sinkID[:], buf)
		}
	})
}

func BenchmarkGeneratorNew(b *testing.B) {
	b.Run("shardkey", func(b *testing.B) {
		g := NewGenerator(nil, nil)
		b.ReportAllocs()
		for b.Loop() {
			sinkID, _ = g.New(KindJob, benchKsid)
		}
	})
	b.Run("shardkey-parallel", func(b *testing.B) {
		g := NewGenerator(nil, nil)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_, _ = g.New(KindJob, benchKsid)
			}
		})
	})
	b.Run("baseline=time.Now", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sinkU64 = uint64(time.Now().UnixMilli())
		}
	})
}

func BenchmarkKeyRangeContains(b *testing.B) {
	ranges := []KeyRange{MustParseKeyRange("40-48"), MustParseKeyRange("-"), MustParseKeyRange("ff-"), MustParseKeyRange("-80")}
	ids := []KeyspaceID{0x4400000000000000, 0x3fffffffffffffff, 0xff00000000000001, 0x8000000000000000}
	b.Run("shardkey", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			sinkBool = ranges[i&3].Contains(ids[i>>2&3])
			i++
		}
	})
	protos := make([]*topodatapb.KeyRange, len(ranges))
	idBytes := make([][]byte, len(ids))
	for i := range ranges {
		protos[i] = ranges[i].Proto()
		idBytes[i] = ids[i].Bytes()
	}
	b.Run("baseline=vitess.KeyRangeContains", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			sinkBool = key.KeyRangeContains(protos[i&3], idBytes[i>>2&3])
			i++
		}
	})
}
