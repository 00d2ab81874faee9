package matching

import (
	"context"
	"fmt"
	"net/http"
	"sync"

	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/internal/apierror"
)

// rankPath is the internal route through which a node asks another region for its part of a global list.
const rankPath = "/internal/matching/rank"

// rankElsewhere asks every other region for its best items for sub: each region ranks its own people
// (nobody's data leaves their region but the ranked IDs, scores and groups). A region that does not
// answer in time is named in failed, and the list is partial.
func (s *Service) rankElsewhere(ctx context.Context, sub subject) (parts []regionAnswer, failed []string) {
	tab := s.a.Topology()
	if tab == nil {
		return nil, nil
	}
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for _, r := range tab.Topology().Regions {
		if r.Name == s.a.Region {
			continue
		}
		if s.a.Peers == nil {
			failed = append(failed, "region:"+r.Name)
			continue
		}
		wg.Add(1)
		go func(region string) {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, s.cfg.PeerTimeout)
			defer cancel()
			var ans regionAnswer
			err := s.a.Peers.Call(cctx, region, http.MethodPost, feature.InternalPath(rankPath), sub, &ans)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				s.log.Warn("matching: a region did not answer a global list", "region", region, "err", err)
				failed = append(failed, "region:"+region)
				return
			}
			for i := range ans.Items {
				ans.Items[i].Region = region
			}
			parts = append(parts, ans)
		}(r.Name)
	}
	wg.Wait()
	return parts, failed
}

// rankInternal serves another region's node its part of a global list.
func (s *Service) rankInternal(w http.ResponseWriter, r *http.Request) error {
	var sub subject
	if err := rest.Decode(w, r, &sub); err != nil {
		return err
	}
	switch {
	case sub.Direction != dirFreelancers && sub.Direction != dirJobs:
		return apierror.Invalid(map[string]string{"direction": "must be freelancers or jobs"})
	case sub.Limit < 1 || sub.Limit > MaxLimit:
		return apierror.Invalid(map[string]string{"limit": fmt.Sprintf("must be from 1 to %d", MaxLimit)})
	case sub.Depth < 0 || sub.Depth > MaxLimit*rerankDepth:
		return apierror.Invalid(map[string]string{"depth": fmt.Sprintf("must be from 0 to %d", MaxLimit*rerankDepth)})
	case sub.Space != s.emb.Space().ID():
		// Vectors of different spaces never compare: this region ranks in another space.
		return apierror.Conflict("embedding_space_mismatch", "this region embeds in "+s.emb.Space().ID()+", not "+sub.Space)
	}
	ans, err := s.rankLocal(r.Context(), sub)
	if err != nil {
		return err
	}
	// Self-declared attributes do not leave their region.
	rest.WriteJSON(w, http.StatusOK, publicAnswer(ans))
	return nil
}
