package topology

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/8thdegree/meridian/pkg/shardkey"
)

// ErrInvalid is wrapped by every validation and decoding error.
var ErrInvalid = errors.New("invalid topology")

// State is the state of one keyrange assignment.
type State string

const (
	// Serving: reads and writes go to the owning shard.
	Serving State = "serving"
	// Frozen: a cutover is in progress; API nodes hold writes for the keyrange until the flip.
	Frozen State = "frozen"
	// Moving: the keyrange is being copied to another shard; the owner still serves it.
	Moving State = "moving"
)

// Valid reports whether s is one of the known states.
func (s State) Valid() bool {
	switch s {
	case Serving, Frozen, Moving:
		return true
	}
	return false
}

// Region is one home region: its code is the top byte of every keyspace ID homed there.
type Region struct {
	Name        string          `json:"name"`
	Code        shardkey.Region `json:"code"`
	DisplayName string          `json:"display_name,omitempty"`
	// APIService is the Consul service name of the region's API nodes.
	APIService string `json:"api_service"`
	// RedisAddr is host:port of the region's Redis (rate limits, caches).
	RedisAddr string `json:"redis_addr"`
	// ConsulDC is the Consul datacenter the region's services register in.
	ConsulDC string `json:"consul_dc"`
}

// KeyRange returns the region's whole keyspace.
func (r Region) KeyRange() shardkey.KeyRange { return r.Code.KeyRange() }

// Conn holds a shard's connection settings. Secrets are never part of the document: a password is named by
// the environment variable or file that holds it.
type Conn struct {
	Host         string `json:"host"`
	Port         int    `json:"port"`
	Database     string `json:"database"`
	User         string `json:"user"`
	SSLMode      string `json:"sslmode,omitempty"`
	PasswordEnv  string `json:"password_env,omitempty"`
	PasswordFile string `json:"password_file,omitempty"`
	// MaxConns and MinConns bound the shard's connection pool on each process; zero takes the default.
	MaxConns int32 `json:"max_conns,omitempty"`
	MinConns int32 `json:"min_conns,omitempty"`
}

// Shard is one physical shard: one PostgreSQL database in one region.
type Shard struct {
	Name   string `json:"name"`
	Region string `json:"region"`
	Conn   Conn   `json:"conn"`
}

// Assignment gives a keyrange to a shard.
type Assignment struct {
	Range shardkey.KeyRange `json:"range"`
	Shard string            `json:"shard"`
	State State             `json:"state"`
}

// Relocation records that a user's data moved from one keyspace ID to another (a pin: a move of one
// user across regions). Routers and API nodes consult it before the keyrange lookup, so IDs minted
// under the old ksid still route.
//
// An entry whose State is Frozen is a pin's cutover in progress: it does not apply yet (From still
// routes to its own keyrange), but API nodes hold the writes of From as they hold those of a frozen
// keyrange, until the entry becomes active (State empty, the flip) or goes away (a rollback).
type Relocation struct {
	From shardkey.KeyspaceID `json:"from"`
	To   shardkey.KeyspaceID `json:"to"`
	// State is empty for an active relocation, or Frozen during a pin's cutover.
	State State `json:"state,omitempty"`
}

// Active reports whether the relocation applies: routing sends From to To.
func (rel Relocation) Active() bool { return rel.State == "" }

// Topology is the whole placement document.
type Topology struct {
	// Version increases by one with every write to the store.
	Version     uint64       `json:"version"`
	UpdatedAt   time.Time    `json:"updated_at"`
	Regions     []Region     `json:"regions"`
	Shards      []Shard      `json:"shards"`
	KeyRanges   []Assignment `json:"keyranges"`
	Relocations []Relocation `json:"relocations,omitempty"`
}

// Decode parses a JSON document strictly (unknown fields are refused, so a stray "password" never lands in
// Consul) and validates it.
func Decode(data []byte) (*Topology, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var t Topology
	if err := dec.Decode(&t); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data after the document", ErrInvalid)
	}
	if err := t.Validate(); err != nil {
		return nil, err
	}
	return &t, nil
}

// Encode returns the canonical, indented JSON form.
func (t *Topology) Encode() ([]byte, error) {
	return json.MarshalIndent(t, "", "  ")
}

// Clone returns a deep copy.
func (t *Topology) Clone() *Topology {
	if t == nil {
		return nil
	}
	c := *t
	c.Regions = append([]Region(nil), t.Regions...)
	c.Shards = append([]Shard(nil), t.Shards...)
	c.KeyRanges = append([]Assignment(nil), t.KeyRanges...)
	c.Relocations = append([]Relocation(nil), t.Relocations...)
	return &c
}

// Region returns the region with the given name.
func (t *Topology) Region(name string) (Region, bool) {
	for _, r := range t.Regions {
		if r.Name == name {
			return r, true
		}
	}
	return Region{}, false
}

// RegionByCode returns the region with the given code.
func (t *Topology) RegionByCode(code shardkey.Region) (Region, bool) {
	for _, r := range t.Regions {
		if r.Code == code {
			return r, true
		}
	}
	return Region{}, false
}

// Shard returns the shard with the given name.
func (t *Topology) Shard(name string) (Shard, bool) {
	for _, s := range t.Shards {
		if s.Name == name {
			return s, true
		}
	}
	return Shard{}, false
}

// ShardsIn returns the shards of a region, in document order.
func (t *Topology) ShardsIn(region string) []Shard {
	var out []Shard
	for _, s := range t.Shards {
		if s.Region == region {
			out = append(out, s)
		}
	}
	return out
}

// RangesOf returns the keyranges assigned to a shard.
func (t *Topology) RangesOf(shard string) []Assignment {
	var out []Assignment
	for _, a := range t.KeyRanges {
		if a.Shard == shard {
			out = append(out, a)
		}
	}
	return out
}
