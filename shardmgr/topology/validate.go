package topology

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"

	"github.com/8thdegree/meridian/pkg/shardkey"
)

var namePattern = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

var sslModes = map[string]bool{"": true, "disable": true, "allow": true, "prefer": true, "require": true, "verify-ca": true, "verify-full": true}

// Validate checks every invariant of the document and reports all problems at once, each naming the field
// it concerns. The error wraps ErrInvalid.
func (t *Topology) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format, args...))
	}

	regions := make(map[string]Region, len(t.Regions))
	codes := make(map[shardkey.Region]string, len(t.Regions))
	if len(t.Regions) == 0 {
		bad("regions: at least one region is required")
	}
	for i, r := range t.Regions {
		at := fmt.Sprintf("regions[%d] (%s)", i, r.Name)
		if !namePattern.MatchString(r.Name) {
			bad("%s: name %q must be lowercase letters, digits and dashes, starting with a letter", at, r.Name)
		}
		if _, dup := regions[r.Name]; dup {
			bad("%s: duplicate region name", at)
		}
		if other, dup := codes[r.Code]; dup {
			bad("%s: code %s is already used by region %s", at, r.Code, other)
		}
		if r.APIService == "" {
			bad("%s: api_service is required", at)
		}
		if r.ConsulDC == "" {
			bad("%s: consul_dc is required", at)
		}
		if err := checkHostPort(r.RedisAddr); err != nil {
			bad("%s: redis_addr: %v", at, err)
		}
		regions[r.Name] = r
		codes[r.Code] = r.Name
	}

	shards := make(map[string]Shard, len(t.Shards))
	for i, s := range t.Shards {
		at := fmt.Sprintf("shards[%d] (%s)", i, s.Name)
		if !namePattern.MatchString(s.Name) {
			bad("%s: name %q must be lowercase letters, digits and dashes, starting with a letter", at, s.Name)
		}
		if _, dup := shards[s.Name]; dup {
			bad("%s: duplicate shard name", at)
		}
		if _, ok := regions[s.Region]; !ok {
			bad("%s: unknown region %q", at, s.Region)
		}
		c := s.Conn
		if c.Host == "" {
			bad("%s: conn.host is required", at)
		}
		if c.Port < 1 || c.Port > 65535 {
			bad("%s: conn.port %d is out of range 1-65535", at, c.Port)
		}
		if c.Database == "" {
			bad("%s: conn.database is required", at)
		}
		if c.User == "" {
			bad("%s: conn.user is required", at)
		}
		if !sslModes[c.SSLMode] {
			bad("%s: conn.sslmode %q is not a PostgreSQL sslmode", at, c.SSLMode)
		}
		if c.PasswordEnv != "" && c.PasswordFile != "" {
			bad("%s: conn.password_env and conn.password_file are exclusive", at)
		}
		if c.MinConns < 0 || c.MaxConns < 0 || (c.MaxConns > 0 && c.MinConns > c.MaxConns) {
			bad("%s: conn.min_conns %d and max_conns %d must satisfy 0 <= min <= max", at, c.MinConns, c.MaxConns)
		}
		shards[s.Name] = s
	}

	// Keyranges: each inside its shard's region, none overlapping, every region covered without gaps.
	byRegion := make(map[string][]shardkey.KeyRange)
	for i, a := range t.KeyRanges {
		at := fmt.Sprintf("keyranges[%d] (%s on %s)", i, a.Range, a.Shard)
		if !a.State.Valid() {
			bad("%s: state %q must be serving, frozen or moving", at, a.State)
		}
		s, ok := shards[a.Shard]
		if !ok {
			bad("%s: unknown shard %q", at, a.Shard)
			continue
		}
		r, ok := regions[s.Region]
		if !ok {
			continue // reported with the shard
		}
		if !r.KeyRange().ContainsRange(a.Range) {
			bad("%s: keyrange lies outside region %s (%s), the region of shard %s", at, r.Name, r.KeyRange(), s.Name)
			continue
		}
		byRegion[r.Name] = append(byRegion[r.Name], a.Range)
	}
	all := make([]shardkey.KeyRange, 0, len(t.KeyRanges))
	for _, a := range t.KeyRanges {
		all = append(all, a.Range)
	}
	slices.SortFunc(all, shardkey.CompareKeyRanges)
	for i := 1; i < len(all); i++ {
		if all[i-1].Overlaps(all[i]) {
			bad("keyranges: %s and %s overlap", all[i-1], all[i])
		}
	}
	for _, r := range t.Regions {
		if err := checkCovered(r, byRegion[r.Name]); err != nil {
			bad("region %s: %v", r.Name, err)
		}
	}

	from := make(map[shardkey.KeyspaceID]bool, len(t.Relocations))
	activeFrom := make(map[shardkey.KeyspaceID]bool, len(t.Relocations))
	for i, rel := range t.Relocations {
		at := fmt.Sprintf("relocations[%d] (%s -> %s)", i, rel.From, rel.To)
		if rel.State != "" && rel.State != Frozen {
			bad("%s: state %q must be empty (active) or frozen", at, rel.State)
		}
		if rel.Active() {
			activeFrom[rel.From] = true
		}
		if rel.From == rel.To {
			bad("%s: from and to are the same", at)
		}
		if _, ok := codes[rel.From.Region()]; !ok {
			bad("%s: from names unknown region code %s", at, rel.From.Region())
		}
		if _, ok := codes[rel.To.Region()]; !ok {
			bad("%s: to names unknown region code %s", at, rel.To.Region())
		}
		if from[rel.From] {
			bad("%s: %s is relocated twice", at, rel.From)
		}
		from[rel.From] = true
	}
	// Chains are checked among active entries only: a frozen entry's From is the current ksid of a
	// user being pinned again (the To of an active entry), and its To may be an active From (a user
	// pinned back to a region it lived in); the flip collapses both.
	for i, rel := range t.Relocations {
		if rel.Active() && activeFrom[rel.To] {
			bad("relocations[%d] (%s -> %s): target is itself relocated; collapse the chain", i, rel.From, rel.To)
		}
	}

	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
}

// checkCovered reports a gap if the ranges (all inside the region) do not cover the region's keyspace.
func checkCovered(r Region, ranges []shardkey.KeyRange) error {
	whole := r.KeyRange()
	if len(ranges) == 0 {
		return fmt.Errorf("no keyrange covers the region's keyspace %s", whole)
	}
	sorted := slices.Clone(ranges)
	slices.SortFunc(sorted, shardkey.CompareKeyRanges)
	next := whole.Start
	for _, kr := range sorted {
		if kr.Start > next {
			return fmt.Errorf("gap %s: no shard owns it", shardkey.KeyRange{Start: next, End: kr.Start})
		}
		if kr.End == 0 {
			return nil // unbounded: covers to the end of the keyspace
		}
		if kr.End > next {
			next = kr.End
		}
	}
	if whole.End == 0 || next < whole.End {
		return fmt.Errorf("gap %s: no shard owns it", shardkey.KeyRange{Start: next, End: whole.End})
	}
	return nil
}

func checkHostPort(addr string) error {
	if addr == "" {
		return errors.New("required (host:port)")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port", addr)
	}
	if host == "" {
		return fmt.Errorf("%q has no host", addr)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("%q has an invalid port", addr)
	}
	return nil
}
