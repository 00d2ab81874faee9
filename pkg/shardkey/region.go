package shardkey

import "fmt"

// Region is a home-region code: the top byte of every keyspace ID. The mapping
// from codes to region names (20 = us-east, ...) lives in deploy/regions; this
// package only knows that a region owns every ksid whose top byte is its code.
type Region uint8

// ParseRegion parses exactly two hex digits, in either case ("20", "ff", "FF").
func ParseRegion(s string) (Region, error) {
	if len(s) != 2 {
		return 0, fmt.Errorf("%w: %s: want two hex digits", ErrInvalidRegion, detail(s))
	}
	v, ok := parseHexUint64(s)
	if !ok {
		return 0, fmt.Errorf("%w: %s: want two hex digits", ErrInvalidRegion, detail(s))
	}
	return Region(v), nil
}

// String returns the code as two lowercase hex digits.
func (r Region) String() string {
	return string([]byte{hexDigits[r>>4], hexDigits[r&0xf]})
}

// KeyRange returns the region's whole keyspace: [r<<56, (r+1)<<56). The range
// of region ff has no upper bound ("ff-"), the range of region 00 no lower
// bound in text ("-01").
func (r Region) KeyRange() KeyRange {
	start := uint64(r) << 56
	// For r = ff the shift wraps to 0, which is exactly "unbounded".
	return KeyRange{Start: start, End: start + 1<<56}
}

// MarshalText implements encoding.TextMarshaler.
func (r Region) MarshalText() ([]byte, error) {
	return []byte{hexDigits[r>>4], hexDigits[r&0xf]}, nil
}

// UnmarshalText implements encoding.TextUnmarshaler with ParseRegion's rules.
func (r *Region) UnmarshalText(b []byte) error {
	v, err := ParseRegion(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}
