package matching

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/8thdegree/meridian/api/internal/feature"
	"github.com/8thdegree/meridian/api/internal/matching/fairness"
	"github.com/8thdegree/meridian/api/internal/matching/score"
	"github.com/8thdegree/meridian/api/internal/rest"
	"github.com/8thdegree/meridian/internal/apierror"
	"github.com/8thdegree/meridian/shardmgr/shardpool"
)

// Internal routes of the admin reports: a node answers for its own region.
const (
	fairnessPath = "/internal/matching/fairness"
	modelsPath   = "/internal/matching/models"
)

// DayReport is the fairness of one region's lists on one UTC day.
type DayReport struct {
	Day          string                        `json:"day"`
	Lists        int                           `json:"lists"`
	FlaggedLists int                           `json:"flagged_lists"`
	Exposure     map[string]map[string]float64 `json:"exposure"`
	ImpactRatio  map[string]map[string]float64 `json:"impact_ratio"`
	Flagged      []string                      `json:"flagged"`
}

// FlaggedList is a list whose impact ratio of some group was below the four-fifths threshold.
type FlaggedList struct {
	ListID    string    `json:"list_id"`
	At        time.Time `json:"at"`
	Direction string    `json:"direction"`
	Flagged   []string  `json:"flagged"`
}

// FairnessReport is the answer of GET /admin/fairness.
type FairnessReport struct {
	Region       string        `json:"region"`
	From         time.Time     `json:"from"`
	To           time.Time     `json:"to"`
	Days         []DayReport   `json:"days"`
	FlaggedLists []FlaggedList `json:"flagged_lists"`
}

// period reads ?from= and ?to= (RFC 3339 or a date; default the last 7 days).
func period(q url.Values, now time.Time) (time.Time, time.Time, error) {
	parse := func(name string, def time.Time) (time.Time, error) {
		v := q.Get(name)
		if v == "" {
			return def, nil
		}
		if t, err := time.Parse(time.RFC3339, v); err == nil {
			return t.UTC(), nil
		}
		if t, err := time.Parse(time.DateOnly, v); err == nil {
			return t.UTC(), nil
		}
		return time.Time{}, apierror.Invalid(map[string]string{name: "must be an RFC 3339 time or a date (2006-01-02)"})
	}
	to, err := parse("to", now)
	if err != nil {
		return to, to, err
	}
	from, err := parse("from", to.Add(-7*24*time.Hour))
	if err != nil {
		return from, to, err
	}
	if !from.Before(to) || to.Sub(from) > 92*24*time.Hour {
		return from, to, apierror.Invalid(map[string]string{"from": "must be before to, at most 92 days apart"})
	}
	return from, to, nil
}

func (s *Service) adminFairness(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	region := q.Get("region")
	if region == "" {
		region = s.a.Region
	}
	if _, err := s.regionExists(region); err != nil {
		return err
	}
	if region != s.a.Region {
		if s.a.Peers == nil {
			return apierror.RegionUnavailable(region, 5*time.Second)
		}
		var rep FairnessReport
		v := url.Values{"from": {q.Get("from")}, "to": {q.Get("to")}}
		if err := s.a.Peers.Call(r.Context(), region, http.MethodGet, feature.InternalPath(fairnessPath)+"?"+v.Encode(), nil, &rep); err != nil {
			return feature.PeerError(r.Context(), region, err)
		}
		rest.WriteJSON(w, http.StatusOK, rep)
		return nil
	}
	return s.fairnessInternal(w, r)
}

func (s *Service) regionExists(region string) (bool, error) {
	tab := s.a.Topology()
	if tab == nil {
		return false, apierror.Unavailable("the node has no topology yet", time.Second)
	}
	if _, ok := tab.Topology().Region(region); !ok {
		return false, apierror.Invalid(map[string]string{"region": "is not a region of the topology"})
	}
	return true, nil
}

// fairnessInternal reports this region's lists of the period, day by day.
func (s *Service) fairnessInternal(w http.ResponseWriter, r *http.Request) error {
	from, to, err := period(r.URL.Query(), s.now())
	if err != nil {
		return err
	}
	rep, err := s.FairnessOf(r.Context(), from, to)
	if err != nil {
		return err
	}
	rest.WriteJSON(w, http.StatusOK, rep)
	return nil
}

// dayAcc sums one day's lists.
type dayAcc struct {
	lists, flagged int
	exposure       map[string]map[string]float64
	selected, pool map[string]map[string]int
}

func add2[V int | float64](m map[string]map[string]V, a, g string, v V) {
	if m[a] == nil {
		m[a] = map[string]V{}
	}
	m[a][g] += v
}

// FairnessOf aggregates the region's lists served in [from, to): exposure per group with position
// weights 1/log2(1+rank), and the impact ratio of each group (its share of the slots shown over its
// share of the eligible pools the lists were drawn from, relative to the best-served group).
func (s *Service) FairnessOf(ctx context.Context, from, to time.Time) (FairnessReport, error) {
	view, err := s.a.ReadRegion(ctx)
	if err != nil {
		return FairnessReport{}, err
	}
	bounds := shardpool.OwnedBounds(view.Table)
	days := map[string]*dayAcc{}
	rep := FairnessReport{Region: s.a.Region, From: from, To: to, Days: []DayReport{}, FlaggedLists: []FlaggedList{}}
	for _, t := range view.Targets {
		b, ok := bounds[t.Shard]
		if !ok {
			continue
		}
		rows, err := t.Pool.Query(ctx, listsInPeriodSQL, s.a.Region, from, to, b.Lo, b.Hi)
		if err != nil {
			return rep, err
		}
		for rows.Next() {
			var (
				id        string
				at        time.Time
				direction string
				items     []byte
				fair      []byte
				flagged   bool
			)
			if err := rows.Scan(&id, &at, &direction, &items, &fair, &flagged); err != nil {
				rows.Close()
				return rep, err
			}
			var shown []struct {
				Position int               `json:"position"`
				Groups   map[string]string `json:"groups"`
			}
			var f struct {
				Flagged []string       `json:"flagged"`
				Pool    map[string]int `json:"pool"`
			}
			if json.Unmarshal(items, &shown) != nil || json.Unmarshal(fair, &f) != nil {
				continue
			}
			day := at.UTC().Format(time.DateOnly)
			d := days[day]
			if d == nil {
				d = &dayAcc{exposure: map[string]map[string]float64{}, selected: map[string]map[string]int{}, pool: map[string]map[string]int{}}
				days[day] = d
			}
			d.lists++
			if flagged {
				d.flagged++
				rep.FlaggedLists = append(rep.FlaggedLists, FlaggedList{ListID: id, At: at.UTC(), Direction: direction, Flagged: f.Flagged})
			}
			for _, it := range shown {
				for a, g := range it.Groups {
					add2(d.exposure, a, g, 1/math.Log2(1+float64(it.Position)))
					add2(d.selected, a, g, 1)
				}
			}
			for k, n := range f.Pool {
				if a, g, ok := fairness.SplitKey(k); ok {
					add2(d.pool, a, g, n)
				}
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return rep, err
		}
	}
	keys := make([]string, 0, len(days))
	for k := range days {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	today := s.now().UTC().Format(time.DateOnly)
	for _, k := range keys {
		d := days[k]
		dr := DayReport{Day: k, Lists: d.lists, FlaggedLists: d.flagged, Exposure: map[string]map[string]float64{},
			ImpactRatio: map[string]map[string]float64{}, Flagged: []string{}}
		for a, gs := range d.exposure {
			total := 0.0
			for _, v := range gs {
				total += v
			}
			dr.Exposure[a] = map[string]float64{}
			for g, v := range gs {
				dr.Exposure[a][g] = round4(v / total)
			}
		}
		for a, pool := range d.pool {
			ratios, flagged := fairness.ImpactRatio(d.selected[a], pool)
			dr.ImpactRatio[a] = map[string]float64{}
			for g, v := range ratios {
				dr.ImpactRatio[a][g] = round4(v)
				if k == today {
					s.metrics.impact.WithLabelValues(a, g).Set(v)
				}
			}
			for _, g := range flagged {
				dr.Flagged = append(dr.Flagged, fairness.Key(a, g))
			}
		}
		slices.Sort(dr.Flagged)
		rep.Days = append(rep.Days, dr)
	}
	slices.SortFunc(rep.FlaggedLists, func(a, b FlaggedList) int { return a.At.Compare(b.At) })
	return rep, nil
}

func round4(f float64) float64 { return math.Round(f*1e4) / 1e4 }

// StoredModel is a model as ai.models keeps it.
type StoredModel struct {
	Version    int                `json:"version"`
	Weights    map[string]float64 `json:"weights"`
	Figures    map[string]any     `json:"figures"`
	TrainedAt  time.Time          `json:"trained_at"`
	Serving    bool               `json:"serving"`
	PromotedAt *time.Time         `json:"promoted_at"`
	Note       string             `json:"note"`
}

// RegionModels is one region's models.
type RegionModels struct {
	Region string `json:"region"`
	// Serving is the version in service; 0 means the hand-set weights.
	Serving     int                `json:"serving"`
	HandSet     map[string]float64 `json:"hand_set"`
	Models      []StoredModel      `json:"models"`
	Unavailable bool               `json:"unavailable,omitempty"`
}

func (s *Service) adminModels(w http.ResponseWriter, r *http.Request) error {
	tab := s.a.Topology()
	if tab == nil {
		return apierror.Unavailable("the node has no topology yet", time.Second)
	}
	var out struct {
		Regions []RegionModels `json:"regions"`
	}
	for _, reg := range tab.Topology().Regions {
		if reg.Name == s.a.Region {
			m, err := s.ModelsOf(r.Context())
			if err != nil {
				return err
			}
			out.Regions = append(out.Regions, m)
			continue
		}
		var m RegionModels
		if s.a.Peers == nil || s.a.Peers.Call(r.Context(), reg.Name, http.MethodGet, feature.InternalPath(modelsPath), nil, &m) != nil {
			m = RegionModels{Region: reg.Name, Unavailable: true, Models: []StoredModel{}}
		}
		out.Regions = append(out.Regions, m)
	}
	rest.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (s *Service) modelsInternal(w http.ResponseWriter, r *http.Request) error {
	m, err := s.ModelsOf(r.Context())
	if err != nil {
		return err
	}
	rest.WriteJSON(w, http.StatusOK, m)
	return nil
}

// ModelsOf lists this region's models.
func (s *Service) ModelsOf(ctx context.Context) (RegionModels, error) {
	code, ok := s.a.RegionCode()
	if !ok {
		return RegionModels{}, apierror.Unavailable("the node has no topology yet", time.Second)
	}
	shard, err := s.a.ReadShard(ctx, anchor(code))
	if err != nil {
		return RegionModels{}, err
	}
	ms, err := readModels(ctx, shard.Pool, anchor(code).Bytes())
	if err != nil {
		return RegionModels{}, err
	}
	out := RegionModels{Region: s.a.Region, HandSet: weightsMap(score.Default()), Models: ms}
	for _, m := range ms {
		if m.Serving {
			out.Serving = m.Version
		}
	}
	return out, nil
}

type rowQuerier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func readModels(ctx context.Context, q rowQuerier, anchor []byte) ([]StoredModel, error) {
	rows, err := q.Query(ctx, modelsSQL, anchor)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (StoredModel, error) {
		var m StoredModel
		err := r.Scan(&m.Version, &m.Weights, &m.Figures, &m.TrainedAt, &m.Serving, &m.PromotedAt, &m.Note)
		m.TrainedAt = m.TrainedAt.UTC()
		return m, err
	})
}

// Weight names in ai.models.weights, in the order of score.Weights.Vector.
var weightNames = []string{"similarity", "skill_coverage", "rating", "price_fit", "availability"}

func weightsMap(w score.Weights) map[string]float64 {
	v := w.Vector()
	m := make(map[string]float64, len(v))
	for i, name := range weightNames {
		m[name] = v[i]
	}
	return m
}

func weightsFrom(m map[string]float64) (score.Weights, error) {
	v := make([]float64, len(weightNames))
	for i, name := range weightNames {
		x, ok := m[name]
		if !ok {
			return score.Weights{}, errors.New("matching: model weights lack " + name)
		}
		v[i] = x
	}
	return score.FromVector(v)
}

// runModelPoll keeps the serving model of the region in s.model.
func (s *Service) runModelPoll(ctx context.Context) error {
	for {
		if err := s.pollModel(ctx); err != nil && ctx.Err() == nil {
			s.log.Debug("matching: reading the serving model", "err", err)
		}
		if !sleep(ctx, s.cfg.ModelPoll) {
			return nil
		}
	}
}

func (s *Service) pollModel(ctx context.Context) error {
	code, ok := s.a.RegionCode()
	if !ok {
		return errors.New("no topology")
	}
	shard, err := s.a.ReadShard(ctx, anchor(code))
	if err != nil {
		return err
	}
	var (
		m       Model
		weights map[string]float64
		figures map[string]any
	)
	err = shard.Pool.QueryRow(ctx, servingModelSQL, anchor(code).Bytes()).Scan(&m.Version, &weights, &figures, &m.TrainedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		s.model.Store(&Model{Version: 0, Weights: score.Default()})
		return nil
	}
	if err != nil {
		return err
	}
	if m.Weights, err = weightsFrom(weights); err != nil {
		return err
	}
	if cur := s.model.Load(); cur.Version != m.Version {
		s.log.Info("matching: serving model", "version", m.Version)
	}
	s.model.Store(&m)
	return nil
}
