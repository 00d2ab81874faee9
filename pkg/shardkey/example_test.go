package shardkey_test

import (
	"bytes"
	"fmt"
	"time"

	"github.com/8thdegree/meridian/pkg/shardkey"
)

func ExampleNewKeyspaceID() {
	usEast, _ := shardkey.ParseRegion("20")
	alice := shardkey.NewKeyspaceID(usEast, []byte("alice@example.com"))
	fmt.Println(alice, alice.Region())
	fmt.Println(alice.WithRegion(0x40)) // relocated to eu-west: same hash
	// Output:
	// 203383a3ad22414f 20
	// 403383a3ad22414f
}

func ExampleParseKeyRange() {
	r, _ := shardkey.ParseKeyRange("4000-4100") // all of region 40, spelled the long way
	fmt.Println(r, r.Contains(0x40ffffffffffffff), r.Contains(0x4100000000000000))
	region, ok := r.Region()
	fmt.Println(region, ok)
	lo, hi, _ := r.Halve()
	fmt.Println(lo, hi)
	_, err := shardkey.ParseKeyRange("48-40")
	fmt.Println(err)
	// Output:
	// 40-41 true false
	// 40 true
	// 40-4080 4080-41
	// shardkey: invalid keyrange: "48-40": empty range: start is not below end
}

func ExampleGenerator() {
	clock := func() time.Time { return time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC) }
	// A deterministic entropy source for the example; production passes nil (crypto/rand).
	g := shardkey.NewGenerator(clock, bytes.NewReader([]byte{0, 0, 0, 0, 1}))
	owner := shardkey.KeyspaceID(0x203383a3ad22414f)

	id, _ := g.New(shardkey.KindJob, owner)
	fmt.Println(id)
	fmt.Println(id.Kind(), id.KeyspaceID(), id.Time().Format(time.RFC3339))

	back, err := shardkey.ParseIDOfKind(id.String(), shardkey.KindJob)
	fmt.Println(back == id, err)
	_, err = shardkey.ParseIDOfKind(id.String(), shardkey.KindUser)
	fmt.Println(err)
	// Output:
	// job_06h1fegj00g370x3nmh42kr200000001
	// job 203383a3ad22414f 2026-11-26T12:00:00Z
	// true <nil>
	// shardkey: wrong id kind: "job_06h1fegj00g370x3nmh42kr200000001" is a job id, want user
}
