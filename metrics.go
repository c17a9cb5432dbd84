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

	servicesGauge = promauto.NewGauge(prometheus.GaugeOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "services",
		Help:      "Headless services in the index (within the namespaces and labels options).",
	})

	endpointsGauge = promauto.NewGauge(prometheus.GaugeOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "endpoints",
		Help:      "Ready endpoint addresses published, counted once per service.",
	})

	// slicesGauge shows that only slices that can belong to a headless
	// Service are held: ClusterIP Services' slices never are.
	slicesGauge = promauto.NewGauge(prometheus.GaugeOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "endpointslices",
		Help:      "EndpointSlices held in memory: headless-labelled ones and those not managed by the endpointslice controller.",
	})

	syncedGauge = promauto.NewGauge(prometheus.GaugeOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "synced",
		Help:      "1 once every informer has synced and the index is complete, else 0 (names in the zones get SERVFAIL).",
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
