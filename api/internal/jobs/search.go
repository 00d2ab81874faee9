package jobs

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/pkg/shardkey"
	"github.com/8thdegree/meridian/shardmgr/shardpool"
)

// internalSearchPath is the route other regions' nodes call for their part of a global search.
const internalSearchPath = "/internal/jobs/search"

// SearchItem is a job in search results with its rank (higher is better; comparable only within one
// query).
type SearchItem struct {
	Job
	Rank float32 `json:"rank"`
}

// SearchPage is the answer of a search, and of a region's part of a global search.
type SearchPage struct {
	Items      []SearchItem `json:"items"`
	NextCursor string       `json:"next_cursor,omitempty"`
	// Partial is true when some shard (or region) did not answer: the items are the best of those that
	// did, and FailedShards names the others.
	Partial      bool     `json:"partial"`
	FailedShards []string `json:"failed_shards"`
}

// rankKey orders search results: rank descending, then ID descending. IDs are unique across shards and
// regions, so the order is total and one key positions a cursor anywhere.
type rankKey struct {
	Rank float32
	ID   shardkey.ID
}

// searchCursor is the opaque cursor of a search: the last item's key and the query it belongs to.
type searchCursor struct {
	V  int         `json:"v"`
	R  float32     `json:"r"`
	ID shardkey.ID `json:"id"`
	H  string      `json:"h"`
}

func compareRanked(a, b SearchItem) int {
	if c := cmp.Compare(b.Rank, a.Rank); c != 0 {
		return c
	}
	return bytes.Compare(b.ID[:], a.ID[:])
}

// mergeRanked merges per-shard (or per-region) answers, each already in rank order, into the best limit
// items, dropping repeats of one ID (a job briefly on two shards during a move or a relocation). more says
// whether anything lies beyond: each part sent up to limit+1 (a shard) or said it had more (a region).
func mergeRanked(parts [][]SearchItem, limit int) (items []SearchItem, more bool) {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	all := make([]SearchItem, 0, n)
	for _, p := range parts {
		all = append(all, p...)
	}
	slices.SortFunc(all, compareRanked)
	seen := make(map[shardkey.ID]struct{}, len(all))
	out := all[:0]
	for _, it := range all {
		if _, dup := seen[it.ID]; dup {
			continue
		}
		seen[it.ID] = struct{}{}
		out = append(out, it)
	}
	if len(out) > limit {
		return out[:limit], true
	}
	return out, false
}

func (s *Service) searchShard(ctx context.Context, t shardpool.Target, ra rangeArgs, p searchParams) ([]SearchItem, error) {
	afterRank, afterID := float32(math.Inf(1)), []byte(unbounded)
	if p.HasAfter {
		afterRank, afterID = p.After.Rank, p.After.ID.Bytes()
	}
	var (
		rows pgx.Rows
		err  error
	)
	if p.Q != "" {
		var skills []string // NULL: no skill filter
		if len(p.Skills) > 0 {
			skills = p.Skills
		}
		rows, err = t.Pool.Query(ctx, searchTextSQL, p.Q, skills, ra.Lo, ra.Hi, afterRank, afterID, p.Limit+1)
	} else {
		rows, err = t.Pool.Query(ctx, searchSkillsSQL, p.Skills, ra.Lo, ra.Hi, afterRank, afterID, p.Limit+1)
	}
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (SearchItem, error) {
		var it SearchItem
		var err error
		it.Job, err = scanJob(row, &it.Rank)
		return it, err
	})
}

// regionAnswer is this region's part of a search.
type regionAnswer struct {
	Items    []SearchItem
	More     bool
	Failed   []string
	Answered int // shards that answered
}

// searchRegion runs p on every shard of this node's region, one query per shard, and merges.
func (s *Service) searchRegion(ctx context.Context, p searchParams) (regionAnswer, error) {
	// Held while a keyrange of the region is frozen for a cutover (a move's flip): a shard queried for
	// it then could miss what another node already wrote at its new owner.
	view, err := s.a.ReadRegion(ctx)
	if err != nil {
		return regionAnswer{}, err
	}
	if len(view.Targets) == 0 {
		return regionAnswer{}, apierror.Unavailable("the node has no shards for its region yet", time.Second)
	}
	ranges := ownedRanges(view.Table)
	res := shardpool.Scatter(ctx, view.Targets, shardpool.ScatterOptions{Concurrency: s.cfg.Concurrency, PerShardTimeout: s.cfg.ShardTimeout},
		func(ctx context.Context, t shardpool.Target) ([]SearchItem, error) {
			return s.searchShard(ctx, t, ranges[t.Shard], p)
		})
	for _, f := range res.Failed {
		rest.Logger(ctx).Warn("job search: shard did not answer", "shard", f.Shard, "err", f.Err)
	}
	parts := make([][]SearchItem, len(res.Values))
	for i, v := range res.Values {
		parts[i] = v.Value
	}
	items, more := mergeRanked(parts, p.Limit)
	return regionAnswer{Items: items, More: more, Failed: res.FailedShards(), Answered: len(res.Values)}, nil
}

// page makes the response: a cursor after the last item when there is more.
func (p searchParams) page(items []SearchItem, more bool, failed []string) SearchPage {
	if items == nil {
		items = []SearchItem{}
	}
	if failed == nil {
		failed = []string{}
	}
	slices.Sort(failed)
	pg := SearchPage{Items: items, Partial: len(failed) > 0, FailedShards: failed}
	if more && len(items) > 0 {
		last := items[len(items)-1]
		pg.NextCursor = rest.EncodeCursor(searchCursor{V: 1, R: last.Rank, ID: last.ID, H: p.fp})
	}
	return pg
}

// errNoShardAnswered is the private cause of a 503 when a fan-out got no answer at all.
var errNoShardAnswered = errors.New("no shard answered")

// searchLocal is a region-scope search; it is also what a peer asks for in a global search.
func (s *Service) searchLocal(ctx context.Context, p searchParams) (SearchPage, error) {
	ans, err := s.searchRegion(ctx, p)
	if err != nil {
		return SearchPage{}, err
	}
	if ans.Answered == 0 {
		// Nothing to show at all: say so with a status a client retries, rather than an empty page.
		return SearchPage{}, apierror.Unavailable("no shard of region "+s.a.Region+" answered; retry shortly", time.Second).
			WithCause(fmt.Errorf("%w: %s", errNoShardAnswered, strings.Join(ans.Failed, ", ")))
	}
	return p.page(ans.Items, ans.More, ans.Failed), nil
}

// searchGlobal searches this region and asks every other region's node for its part, all at once, then
// merges by the same (rank, id) key, so the cursor of the merged page positions every region's next part.
// A region that does not answer is reported by its shards' names (or "<region>/*" when the topology
// names none).
func (s *Service) searchGlobal(ctx context.Context, p searchParams) (SearchPage, error) {
	var regions []string
	if tab := s.a.Topology(); tab != nil {
		for _, rg := range tab.Topology().Regions {
			if rg.Name != s.a.Region {
				regions = append(regions, rg.Name)
			}
		}
	}
	type peerOut struct {
		page SearchPage
		err  error
	}
	outs := make([]peerOut, len(regions))
	path := feature.InternalPath(internalSearchPath) + "?" + p.values().Encode()
	var wg sync.WaitGroup
	for i, region := range regions {
		wg.Go(func() {
			if s.a.Peers == nil {
				outs[i].err = errors.New("jobs: no peers configured")
				return
			}
			cctx, cancel := context.WithTimeout(ctx, s.cfg.PeerTimeout)
			defer cancel()
			outs[i].err = s.a.Peers.Call(cctx, region, http.MethodGet, path, nil, &outs[i].page)
		})
	}
	local, localErr := s.searchRegion(ctx, p)
	wg.Wait()

	var (
		parts    [][]SearchItem
		failed   []string
		more     bool
		answered bool
	)
	if localErr == nil {
		parts = append(parts, local.Items)
		failed = append(failed, local.Failed...)
		more = local.More
		answered = local.Answered > 0
	} else {
		failed = append(failed, s.shardsOf(s.a.Region)...)
	}
	for i, region := range regions {
		o := outs[i]
		if o.err != nil {
			rest.Logger(ctx).Warn("job search: region did not answer", "region", region, "err", o.err)
			failed = append(failed, s.shardsOf(region)...)
			continue
		}
		answered = true
		parts = append(parts, o.page.Items)
		failed = append(failed, o.page.FailedShards...)
		more = more || o.page.NextCursor != ""
	}
	if !answered {
		return SearchPage{}, apierror.Unavailable("no region answered the search; retry shortly", time.Second).
			WithCause(fmt.Errorf("%w: %s", errNoShardAnswered, strings.Join(failed, ", ")))
	}
	items, over := mergeRanked(parts, p.Limit)
	return p.page(items, more || over, failed), nil
}

// shardsOf names a region's shards for failed_shards, or "<region>/*" when the topology names none.
func (s *Service) shardsOf(region string) []string {
	var out []string
	if tab := s.a.Topology(); tab != nil {
		for _, sh := range tab.Topology().ShardsIn(region) {
			out = append(out, sh.Name)
		}
	}
	if len(out) == 0 {
		return []string{region + "/*"}
	}
	return out
}
