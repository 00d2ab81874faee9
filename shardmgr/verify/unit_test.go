package verify

import (
	"errors"
	"testing"
)

func TestChecksumIsModulo2To64(t *testing.T) {
	// Two chunks whose sums, added as integers, are 2^64 + 5: the table checksum is 5 either way,
	// and a negative chunk sum (sum of signed bigints) counts as its two's complement.
	var a, b checksum
	for _, s := range []string{"18446744073709551615", "6"} {
		if err := a.add(chunkSum{sum: s}); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []string{"-1", "6"} {
		if err := b.add(chunkSum{sum: s}); err != nil {
			t.Fatal(err)
		}
	}
	if a.String() != "0000000000000005" || b.String() != a.String() {
		t.Fatalf("got %s and %s, want 0000000000000005", a, b)
	}
	if err := a.add(chunkSum{sum: "1.5"}); err == nil {
		t.Fatal("a non-integer sum was accepted")
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, o := range []Options{{Limit: -1}, {ChunkRows: -5}, {Tables: []string{"users"}}, {Tables: []string{".users"}}, {Tables: []string{"auth."}}} {
		if err := o.Validate(); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("%+v: %v, want ErrInvalidOptions", o, err)
		}
	}
	if err := (Options{Limit: 5, Tables: []string{"auth.users"}}).Validate(); err != nil {
		t.Error(err)
	}
	if d := (Options{}).withDefaults(); d.Limit != DefaultLimit || d.ChunkRows != DefaultChunkRows {
		t.Errorf("defaults: %+v", d)
	}
}

func TestTableReportEqual(t *testing.T) {
	for _, c := range []struct {
		tr   TableReport
		want bool
	}{
		{TableReport{SourceRows: 3, TargetRows: 3, SourceChecksum: "a", TargetChecksum: "a"}, true},
		{TableReport{SourceRows: 3, TargetRows: 2, SourceChecksum: "a", TargetChecksum: "a"}, false},
		{TableReport{SourceRows: 3, TargetRows: 3, SourceChecksum: "a", TargetChecksum: "b"}, false},
		{TableReport{SourceRows: 3, TargetRows: 3, SourceChecksum: "a", TargetChecksum: "a", Problem: "missing on the target"}, false},
		{TableReport{SourceRows: 3, TargetRows: 2, SourceChecksum: "a", TargetChecksum: "b", Rechecked: true}, true},
		{TableReport{Rechecked: true, Differing: []string{"20"}, DifferingRows: 1}, false},
		{TableReport{DifferingRows: 1}, false},
	} {
		if got := c.tr.Equal(); got != c.want {
			t.Errorf("%+v: Equal %v, want %v", c.tr, got, c.want)
		}
	}
}

func TestKeyAndRowText(t *testing.T) {
	pk := []column{{name: "ksid", typ: "bytea"}, {name: "provider", typ: "text"}, {name: "id", typ: "bytea"}}
	if got := keyText(pk); got != `concat_ws('|', encode("ksid", 'hex'), "provider"::text, encode("id", 'hex'))` {
		t.Errorf("keyText: %s", got)
	}
	if got := keyText(pk[:1]); got != `encode("ksid", 'hex')` {
		t.Errorf("keyText of ksid alone: %s", got)
	}
	cols := []column{{name: "ksid", typ: "bytea"}, {name: "search", typ: "tsvector", generated: true}, {name: "Odd name", typ: "text"}}
	if got := rowText(cols); got != `ROW("ksid", "Odd name")::text` {
		t.Errorf("rowText: %s", got)
	}
}
