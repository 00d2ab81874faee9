package residency

import (
	"encoding/binary"
	"errors"
	"slices"

	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

// Class is what is wrong with a row, or why a row that is on another shard than its keyrange's
// owner is allowed there. Every row the audit reads falls into at most one class; the first rule
// that matches, in the order of Classes, names it.
type Class string

const (
	// Relocated: the row is keyed by a ksid the relocation map sends elsewhere. A pin copies the
	// user's rows under the new ksid and deletes the old ones; a row still under the old ksid is a
	// pin that did not finish, wherever the row is.
	Relocated Class = "relocated"
	// WrongRegion: the row's ksid names another region (or a region code no region has) than the
	// region of the shard that holds it. This is the residency violation proper.
	WrongRegion Class = "wrong_region"
	// InMove: the row is in the right region but on another shard than its keyrange's owner, and
	// that keyrange is in a move (state moving or frozen): the move's copy. Reported, not a
	// violation.
	InMove Class = "in_move"
	// WrongShard: the row is in the right region but on a shard that does not own its keyrange, and
	// no move of that keyrange is running. Residency holds, routing does not: reads miss the row.
	WrongShard Class = "wrong_shard"
	// RegionLabel: an auth.users row whose region column does not name the region that holds it
	// (the column states the home region, the ksid's top byte, by the schema's own rule).
	RegionLabel Class = "region_label"
	// ClaimMisplaced: an auth.email_claims row whose ksid is not the one the directory protocol
	// derives from its email hash (directory region and hash bits): lookups will not find it.
	ClaimMisplaced Class = "claim_misplaced"
	// ClaimStale: an auth.email_claims row whose home_region is not where its user lives now (the
	// user ID's ksid after the relocation map): the directory did not follow a pin.
	ClaimStale Class = "claim_stale"
)

// Classes lists every class in the order the rules are applied.
var Classes = []Class{Relocated, WrongRegion, InMove, WrongShard, RegionLabel, ClaimMisplaced, ClaimStale}

// Violation reports whether rows of the class fail the audit. Only InMove does not.
func (c Class) Violation() bool { return c != InMove && c != "" }

// Rule says in one sentence what the class means; the JSON report carries these, so the artifact
// explains itself.
func (c Class) Rule() string {
	switch c {
	case Relocated:
		return "a row keyed by a ksid the relocation map sends to another ksid: the pin that relocated its owner did not finish"
	case WrongRegion:
		return "a row whose ksid (top byte) names another region than the region of the shard that holds it"
	case InMove:
		return "a row of the shard's region, on a shard other than its keyrange's owner, while that keyrange is in a move (moving or frozen): the move's copy; not a violation"
	case WrongShard:
		return "a row of the shard's region on a shard that does not own its keyrange, with no move of that keyrange running: residency holds, routing does not"
	case RegionLabel:
		return "an auth.users row whose region column is not the name of the region that holds it"
	case ClaimMisplaced:
		return "an auth.email_claims row whose ksid is not the directory's ksid of its email hash (region chosen by the hash, low 56 bits from the hash)"
	case ClaimStale:
		return "an auth.email_claims row whose home_region is not the region its user lives in now (the user ID's ksid after the relocation map)"
	}
	return ""
}

// Exemption is a table (or a schema) the audit does not read, and why.
type Exemption struct {
	Table  string `json:"table"`
	Reason string `json:"reason"`
}

// Exemptions are the shard's objects outside the audit. Every table of the sharded schemas is read.
var Exemptions = []Exemption{
	{Table: "public.*", Reason: "shard-local bookkeeping (the migration record, public.meridian_schema_migrations); holds no user data and is never moved"},
}

// claimKeyspaceID is the directory protocol's placement of an email hash, the rule ClaimMisplaced
// checks: the directory region is the topology's regions sorted by code, indexed by the hash's first
// 64 bits modulo their number, and the ksid is that region's code over the hash's first 56 bits.
// It must stay in step with Locate in api/internal/accounts/directory (which this layer may not
// import); TestClaimRuleMatchesTheDirectory pins the SQL to this function, and this function to
// the directory's documented layout.
func claimKeyspaceID(t *topology.Topology, emailHash []byte) (shardkey.KeyspaceID, error) {
	if len(t.Regions) == 0 {
		return 0, errors.New("residency: no regions in the topology")
	}
	if len(emailHash) < 8 {
		return 0, errors.New("residency: email hash shorter than 8 bytes")
	}
	regions := sortedRegions(t)
	v := binary.BigEndian.Uint64(emailHash[:8])
	return shardkey.MakeKeyspaceID(regions[v%uint64(len(regions))].Code, v>>8)
}

func sortedRegions(t *topology.Topology) []topology.Region {
	regions := slices.Clone(t.Regions)
	slices.SortFunc(regions, func(a, b topology.Region) int { return int(a.Code) - int(b.Code) })
	return regions
}
