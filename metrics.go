package headless

import (
	"github.com/coredns/coredns/plugin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	// programmingDuration runs from the moment the endpoints changed (the
	// slice's last-change-trigger-time annotation) to the moment the new
	// answers are served, for Services with and without a selector.
	programmingDuration = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "dns_programming_duration_seconds",
		Help:      "Time from an endpoint change (last-change-trigger-time) to its DNS answers being served.",
		Buckets:   prometheus.ExponentialBuckets(0.001, 2, 20),
	}, []string{"service_kind"})

	servicesGauge = promauto.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "services",
		Help:      "Headless services in the index (within the namespaces and labels options).",
	}, func() float64 { return instances.sum(func(h *Headless) int { s, _ := h.index.counts(); return s }) })

	endpointsGauge = promauto.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "endpoints",
		Help:      "Ready endpoint addresses published, counted once per service.",
	}, func() float64 { return instances.sum(func(h *Headless) int { _, e := h.index.counts(); return e }) })

	// slicesGauge shows that only slices that can belong to a headless
	// Service are held: ClusterIP Services' slices never are.
	slicesGauge = promauto.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "endpointslices",
		Help:      "EndpointSlices held in memory: headless-labelled ones and those not managed by the endpointslice controller.",
	}, func() float64 {
		return instances.sum(func(h *Headless) int { return int(h.watcher.slicesHeld.Load()) })
	})

	syncedGauge = promauto.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "synced",
		Help:      "1 once every running instance's informers have synced and its index is complete, else 0 (names in its zones get SERVFAIL).",
	}, func() float64 {
		unsynced := instances.sum(func(h *Headless) int {
			if h.synced.Load() {
				return 0
			}
			return 1
		})
		if unsynced > 0 || len(instances.running()) == 0 {
			return 0
		}
		return 1
	})

	watchErrors = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "watch_errors_total",
		Help:      "Failed lists and watches of the API server, by resource.",
	}, []string{"resource"})

	lastChange = promauto.NewGauge(prometheus.GaugeOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "last_change_timestamp_seconds",
		Help:      "Unix time the index last processed a change from the API server.",
	})
)

func init() {
	// Both kinds exist from the start, so a dashboard sees an empty series
	// rather than none until the first change of each kind.
	for _, kind := range []string{"headless_with_selector", "headless_without_selector"} {
		programmingDuration.WithLabelValues(kind)
	}
}
