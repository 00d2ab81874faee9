package matching

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the engine's Prometheus collectors.
type Metrics struct {
	lists         *prometheus.CounterVec
	flagged       *prometheus.CounterVec
	cache         *prometheus.CounterVec
	recall        prometheus.Gauge
	indexed       *prometheus.GaugeVec
	embedded      *prometheus.CounterVec
	embedFailures prometheus.Counter
	impact        *prometheus.GaugeVec
}

func newMetrics() *Metrics {
	return &Metrics{
		lists: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meridian_matching_lists_total",
			Help: "Matching lists served, by direction and scope."}, []string{"direction", "scope"}),
		flagged: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meridian_matching_flagged_lists_total",
			Help: "Lists whose impact ratio of some group was below 0.8 (the four-fifths rule)."}, []string{"direction"}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meridian_matching_cache_total",
			Help: "Matching cache lookups, by result."}, []string{"result"}),
		recall: prometheus.NewGauge(prometheus.GaugeOpts{Name: "meridian_matching_shadow_recall_at_10",
			Help: "Recall@10 of the index against an exact scan, on the last shadow-checked query."}),
		indexed: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "meridian_matching_indexed",
			Help: "Vectors in the node's index, by kind."}, []string{"kind"}),
		embedded: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meridian_matching_embedded_total",
			Help: "Vectors computed, by kind."}, []string{"kind"}),
		embedFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "meridian_matching_embed_failures_total",
			Help: "Embedding attempts that failed (retried through the outbox or the backfill)."}),
		impact: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "meridian_matching_impact_ratio",
			Help: "Impact ratio of each group in the region's lists of the current UTC day (1 for the most selected group)."},
			[]string{"attribute", "group"}),
	}
}

// Collectors returns the collectors to register.
func (s *Service) Collectors() []prometheus.Collector {
	m := s.metrics
	return []prometheus.Collector{m.lists, m.flagged, m.cache, m.recall, m.indexed, m.embedded, m.embedFailures, m.impact}
}
