package topology

import (
	"fmt"

	"github.com/8thdegree/meridian/pkg/shardkey"
)

// Example returns a valid topology of three regions (us-east 20, eu-west 40, ap-south 60) with two
// physical shards each, splitting each region's keyspace in half, with PostgreSQL on 127.0.0.1 ports
// 15432-15434 and Redis on 16379-16381. It matches deploy/regions/local/topology.yaml and serves tests.
func Example() *Topology {
	t := &Topology{Version: 1}
	for i, r := range []struct {
		name, display string
		code          shardkey.Region
	}{
		{"us-east", "US East", 0x20},
		{"eu-west", "EU West", 0x40},
		{"ap-south", "Asia Pacific South", 0x60},
	} {
		t.Regions = append(t.Regions, Region{
			Name:        r.name,
			Code:        r.code,
			DisplayName: r.display,
			APIService:  "meridian-api-" + r.name,
			RedisAddr:   fmt.Sprintf("127.0.0.1:%d", 16379+i),
			ConsulDC:    "dc1",
		})
		lo, hi, err := r.code.KeyRange().Halve()
		if err != nil {
			panic(err) // a region's keyspace always halves
		}
		for j, kr := range []shardkey.KeyRange{lo, hi} {
			name := fmt.Sprintf("%s-%d", r.name, j+1)
			t.Shards = append(t.Shards, Shard{
				Name:   name,
				Region: r.name,
				Conn: Conn{
					Host:     "127.0.0.1",
					Port:     15432 + i,
					Database: fmt.Sprintf("meridian_%s_%d", underscore(r.name), j+1),
					User:     "meridian",
					SSLMode:  "disable",
					MaxConns: 16,
				},
			})
			t.KeyRanges = append(t.KeyRanges, Assignment{Range: kr, Shard: name, State: Serving})
		}
	}
	return t
}

func underscore(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c == '-' {
			b[i] = '_'
		}
	}
	return string(b)
}
