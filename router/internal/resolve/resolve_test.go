package resolve

import (
	"errors"
	"strings"
	"testing"

	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/router/internal/apipath"
	"github.com/8thdegree/meridian/shardmgr/topology"
)

func TestResolve(t *testing.T) {
	topo := topology.Example()
	us := shardkey.NewKeyspaceID(0x20, []byte("us user"))
	eu := shardkey.NewKeyspaceID(0x40, []byte("eu user"))
	ap := shardkey.NewKeyspaceID(0x60, []byte("ap user"))
	movedFrom := shardkey.NewKeyspaceID(0x40, []byte("moved user"))
	topo.Relocations = []topology.Relocation{{From: movedFrom, To: movedFrom.WithRegion(0x60)}}
	tab, err := topology.Compile(topo)
	if err != nil {
		t.Fatal(err)
	}
	g := shardkey.NewGenerator(nil, nil)
	id := func(k shardkey.Kind, owner shardkey.KeyspaceID) string {
		v, err := g.New(k, owner)
		if err != nil {
			t.Fatal(err)
		}
		return v.String()
	}
	secret := strings.Repeat("s", 43)
	token := func(k shardkey.KeyspaceID) Caller { return Caller{KSID: k, By: Token} }
	parse := func(p string) apipath.Info {
		info, ok := apipath.Parse(p)
		if !ok {
			t.Fatalf("not an API path: %s", p)
		}
		return info
	}
	orphan := shardkey.NewKeyspaceID(0x7f, []byte("nobody"))

	cases := []struct {
		name   string
		path   string
		query  string
		body   string
		caller Caller
		region string
		by     Reason
		err    error
	}{
		{"anonymous", "/api/v1/jobs/search", "q=x", "", Caller{}, "us-east", OwnRegion, nil},
		{"token", "/api/v1/users/me", "", "", token(eu), "eu-west", Token, nil},
		{"api key", "/api/v1/users/me", "", "", Caller{KSID: ap, By: APIKey}, "ap-south", APIKey, nil},
		{"relocated token", "/api/v1/users/me", "", "", token(movedFrom), "ap-south", Token, nil},
		{"path beats token", "/api/v1/jobs/" + id(shardkey.KindJob, ap), "", "", token(eu), "ap-south", PathID, nil},
		{"relocated path id", "/api/v1/reviews/" + id(shardkey.KindReview, movedFrom), "", "", Caller{}, "ap-south", PathID, nil},
		{"profile", "/api/v1/users/" + id(shardkey.KindUser, eu) + "/profile", "", "", Caller{}, "eu-west", PathID, nil},
		{"bad path id falls back", "/api/v1/jobs/job_bad", "", "", token(eu), "eu-west", Token, nil},
		{"orphan path id", "/api/v1/jobs/" + id(shardkey.KindJob, orphan), "", "", token(eu), "", PathID, ErrUnroutable},
		{"owner_id", "/api/v1/jobs", "owner_id=" + id(shardkey.KindUser, ap), "", token(us), "ap-south", QueryID, nil},
		{"bad owner_id", "/api/v1/jobs", "owner_id=zzz", "", token(eu), "eu-west", Token, nil},
		{"global search", "/api/v1/jobs/search", "scope=global", "", token(eu), "us-east", GlobalScope, nil},
		{"region search", "/api/v1/jobs/search", "scope=region", "", token(eu), "eu-west", Token, nil},
		{"refresh", "/api/v1/auth/refresh", "", `{"refresh_token":"mrt_` + id(shardkey.KindTokenFamily, ap) + "." + secret + `"}`, Caller{}, "ap-south", RefreshToken, nil},
		{"refresh with junk", "/api/v1/auth/refresh", "", `{"refresh_token":"junk"}`, Caller{}, "us-east", OwnRegion, nil},
		{"refresh not JSON", "/api/v1/auth/refresh", "", `nope`, token(eu), "us-east", OwnRegion, nil},
		{"logout by token", "/api/v1/auth/logout", "", ``, token(eu), "eu-west", Token, nil},
		{"register", "/api/v1/auth/register", "", `{"region":"eu-west"}`, Caller{}, "eu-west", RegisterRegion, nil},
		{"register unknown", "/api/v1/auth/register", "", `{"region":"moon"}`, Caller{}, "us-east", OwnRegion, nil},
		{"register with a token", "/api/v1/auth/register", "", `{}`, token(ap), "us-east", OwnRegion, nil},
		{"login with a token", "/api/v1/auth/login", "", `{}`, token(ap), "us-east", Login, nil},
		{"oauth", "/api/v1/auth/oauth/google/callback", "code=x", ``, Caller{}, "us-east", Login, nil},
		{"caller of no region", "/api/v1/users/me", "", "", token(orphan), "us-east", OwnRegion, nil},
		// The session endpoints go by their own rules, whatever ID the query names.
		{"register ignores a query id", "/api/v1/auth/register", "user_id=" + id(shardkey.KindUser, eu), `{}`, Caller{}, "us-east", OwnRegion, nil},
		{"register's region beats a query id", "/api/v1/auth/register", "owner_id=" + id(shardkey.KindUser, eu), `{"region":"ap-south"}`, Caller{}, "ap-south", RegisterRegion, nil},
		{"login ignores a query id", "/api/v1/auth/login", "user_id=" + id(shardkey.KindUser, eu), `{}`, Caller{}, "us-east", Login, nil},
		{"oauth ignores a query id", "/api/v1/auth/oauth/google", "job_id=" + id(shardkey.KindJob, ap), ``, Caller{}, "us-east", Login, nil},
		{"oauth callback ignores an orphan id", "/api/v1/auth/oauth/google/callback", "user_id=" + id(shardkey.KindUser, orphan), ``, Caller{}, "us-east", Login, nil},
		{"refresh ignores a query id", "/api/v1/auth/refresh", "user_id=" + id(shardkey.KindUser, eu), `{"refresh_token":"mrt_` + id(shardkey.KindTokenFamily, ap) + "." + secret + `"}`, Caller{}, "ap-south", RefreshToken, nil},
		{"refresh without a token ignores a query id", "/api/v1/auth/refresh", "user_id=" + id(shardkey.KindUser, eu), `{}`, Caller{}, "us-east", OwnRegion, nil},
		{"logout ignores a query id", "/api/v1/auth/logout", "user_id=" + id(shardkey.KindUser, ap), ``, token(eu), "eu-west", Token, nil},
	}
	for _, c := range cases {
		got, err := Resolve(tab, "us-east", Request{Info: parse(c.path), RawQuery: c.query, Body: []byte(c.body), Caller: c.caller})
		if !errors.Is(err, c.err) || got.Region != c.region || got.By != c.by {
			t.Errorf("%s: got %+v, %v; want %s by %s, %v", c.name, got, err, c.region, c.by, c.err)
		}
	}
}

func FuzzResolve(f *testing.F) {
	tab, err := topology.Compile(topology.Example())
	if err != nil {
		f.Fatal(err)
	}
	f.Add("/api/v1/auth/register", "", `{"region":"eu-west"}`)
	f.Add("/api/v1/auth/refresh", "", `{"refresh_token":"mrt_x.y"}`)
	f.Add("/api/v1/jobs", "owner_id=usr_065wzsb800g370x3nmh42kr104106105", ``)
	f.Fuzz(func(t *testing.T, path, query, body string) {
		info, ok := apipath.Parse(path)
		if !ok {
			return
		}
		got, err := Resolve(tab, "us-east", Request{Info: info, RawQuery: query, Body: []byte(body)})
		if err == nil {
			if _, ok := tab.Topology().Region(got.Region); !ok {
				t.Fatalf("resolved to unknown region %q", got.Region)
			}
		} else if !errors.Is(err, ErrUnroutable) {
			t.Fatalf("unexpected error %v", err)
		}
	})
}

func BenchmarkResolveToken(b *testing.B) {
	tab, _ := topology.Compile(topology.Example())
	info, _ := apipath.Parse("/api/v1/users/me")
	req := Request{Info: info, Caller: Caller{KSID: shardkey.NewKeyspaceID(0x40, []byte("x")), By: Token}}
	b.ReportAllocs()
	for b.Loop() {
		_, _ = Resolve(tab, "us-east", req)
	}
}
