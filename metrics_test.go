package headless

import (
	"context"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestProgrammingDurationIsMeasuredForBothKinds(t *testing.T) {
	_, client := newTestPlugin(t, "headless cluster.local", seedObjects()...)
	ctx := context.Background()
	kinds := []string{"headless_with_selector", "headless_without_selector"}
	countBefore := map[string]uint64{}
	sumBefore := map[string]float64{}
	for _, kind := range kinds {
		countBefore[kind], sumBefore[kind] = histogramCount(kind), histogramSum(kind)
	}
	// Each slice's endpoints changed a second ago.
	for _, name := range []string{"cassandra-abcde", "external-db-1"} {
		s, err := client.DiscoveryV1().EndpointSlices("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		s.Annotations = map[string]string{triggerTimeKey: time.Now().Add(-time.Second).Format(time.RFC3339Nano)}
		if _, err := client.DiscoveryV1().EndpointSlices("default").Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, kind := range kinds {
		waitFor(t, kind+" observed", func() bool { return histogramCount(kind) > countBefore[kind] })
		if n := histogramCount(kind) - countBefore[kind]; n != 1 {
			t.Errorf("%s: %d observations of one change, want 1", kind, n)
		}
		if d := histogramSum(kind) - sumBefore[kind]; d < 1 || d > 60 {
			t.Errorf("%s: observed %.3fs for a change made a second ago", kind, d)
		}
	}
}

func histogramCount(kind string) uint64 { return histogram(kind).GetSampleCount() }

func histogram(kind string) *dto.Histogram {
	m := &dto.Metric{}
	if err := programmingDuration.WithLabelValues(kind).(prometheus.Metric).Write(m); err != nil {
		return nil
	}
	return m.GetHistogram()
}

func TestGaugesCountPublishedServicesAndEndpoints(t *testing.T) {
	newTestPlugin(t, "headless cluster.local", seedObjects()...)
	if got := testutil.ToFloat64(servicesGauge); got != 2 {
		t.Errorf("services gauge %v, want 2", got)
	}
	if got := testutil.ToFloat64(endpointsGauge); got != 5 {
		t.Errorf("endpoints gauge %v, want 5", got)
	}
	if got := testutil.ToFloat64(slicesGauge); got != 2 {
		t.Errorf("endpointslices gauge %v, want 2", got)
	}
}

func histogramSum(kind string) float64 { return histogram(kind).GetSampleSum() }

func TestTheInitialListIsNotAProgrammingDelay(t *testing.T) {
	objects := seedObjects()
	old := objects[1].(*discovery.EndpointSlice)
	old.Annotations = map[string]string{triggerTimeKey: time.Now().Add(-48 * time.Hour).Format(time.RFC3339Nano)}
	before := histogramSum("headless_with_selector")
	newTestPlugin(t, "headless cluster.local", objects...)
	if after := histogramSum("headless_with_selector"); after-before > 3600 {
		t.Fatalf("a two-day-old change was observed as a programming delay (%.0fs)", after-before)
	}
}
