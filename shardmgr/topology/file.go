package topology

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"
)

// LoadFile reads a topology document from a YAML (.yaml, .yml) or JSON file and validates it. YAML goes
// through the same strict JSON decoder, so both forms obey one set of rules.
func LoadFile(path string) (*Topology, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	t, err := DecodeFile(filepath.Ext(path), data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// DecodeFile decodes data in the format named by ext (".yaml", ".yml" or ".json").
func DecodeFile(ext string, data []byte) (*Topology, error) {
	switch strings.ToLower(ext) {
	case ".json":
		return Decode(data)
	case ".yaml", ".yml":
		js, err := yamlToJSON(data)
		if err != nil {
			return nil, err
		}
		return Decode(js)
	}
	return nil, fmt.Errorf("%w: unknown file type %q (want .yaml, .yml or .json)", ErrInvalid, ext)
}

// LoadRegionFile reads one region's file (deploy/regions/<name>.yaml) and checks its fields.
func LoadRegionFile(path string) (Region, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Region{}, err
	}
	js, err := yamlToJSON(data)
	if err != nil {
		return Region{}, fmt.Errorf("%s: %w", path, err)
	}
	var rf struct {
		Region
		KeyRange string `json:"keyrange"`
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rf); err != nil {
		return Region{}, fmt.Errorf("%s: %w: %w", path, ErrInvalid, err)
	}
	// A region file stands alone, so check it as a one-region topology whose keyspace is fully owned.
	probe := &Topology{
		Regions:   []Region{rf.Region},
		Shards:    []Shard{{Name: "probe", Region: rf.Name, Conn: Conn{Host: "h", Port: 1, Database: "d", User: "u"}}},
		KeyRanges: []Assignment{{Range: rf.Code.KeyRange(), Shard: "probe", State: Serving}},
	}
	if err := probe.Validate(); err != nil {
		return Region{}, fmt.Errorf("%s: %w", path, err)
	}
	if rf.KeyRange != "" && rf.KeyRange != rf.Code.KeyRange().String() {
		return Region{}, fmt.Errorf("%s: %w: keyrange %q does not match code %s (want %s)", path, ErrInvalid, rf.KeyRange, rf.Code, rf.Code.KeyRange())
	}
	return rf.Region, nil
}

func yamlToJSON(data []byte) ([]byte, error) {
	var v any
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("%w: yaml: %w", ErrInvalid, err)
	}
	v, err := jsonable(v)
	if err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

// jsonable converts YAML's decoded values to ones encoding/json accepts (map keys must be strings).
func jsonable(v any) (any, error) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			c, err := jsonable(e)
			if err != nil {
				return nil, err
			}
			x[k] = c
		}
		return x, nil
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			ks, ok := k.(string)
			if !ok {
				return nil, fmt.Errorf("%w: yaml: key %v is not a string", ErrInvalid, k)
			}
			c, err := jsonable(e)
			if err != nil {
				return nil, err
			}
			m[ks] = c
		}
		return m, nil
	case []any:
		for i, e := range x {
			c, err := jsonable(e)
			if err != nil {
				return nil, err
			}
			x[i] = c
		}
		return x, nil
	}
	return v, nil
}
