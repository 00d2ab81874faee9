package outbox

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the outbox's Prometheus collectors; the node registers Collectors on its registry.
type Metrics struct {
	pending    *prometheus.GaugeVec
	delivered  *prometheus.CounterVec
	failed     *prometheus.CounterVec
	applied    *prometheus.CounterVec
	duplicates *prometheus.CounterVec
}

func newMetrics() *Metrics {
	return &Metrics{
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "meridian_outbox_pending",
			Help: "Undelivered outbox messages on the region's shards, by kind, as of the node's last cleanup pass (every node of a region reports the same region-wide count)."}, []string{"kind"}),
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meridian_outbox_delivered_total",
			Help: "Outbox messages this node delivered (acknowledged by the destination), by kind."}, []string{"kind"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meridian_outbox_failed_attempts_total",
			Help: "Delivery attempts of this node that failed and were scheduled for a retry, by kind."}, []string{"kind"}),
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meridian_outbox_received_total",
			Help: "Messages this node applied as the receiver, by kind."}, []string{"kind"}),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meridian_outbox_duplicates_total",
			Help: "Messages this node received again after they had been applied (their key was in the inbox; nothing changed), by kind."}, []string{"kind"}),
	}
}

// Collectors are the outbox's metrics, for the node's registry.
func (o *Outbox) Collectors() []prometheus.Collector {
	m := o.metrics
	return []prometheus.Collector{m.pending, m.delivered, m.failed, m.applied, m.duplicates}
}
