package headless

import (
	"testing"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/client-go/kubernetes"
)

func TestAnUnreachableAPIServerIsCountedAndNeverSynced(t *testing.T) {
	cfg, err := parse(testController("headless cluster.local {\n endpoint http://127.0.0.1:1\n startup_timeout 100ms\n}"))
	if err != nil {
		t.Fatal(err)
	}
	rc, err := cfg.restConfig()
	if err != nil {
		t.Fatal(err)
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	h := newHeadless(cfg, client, nil)
	before := testutil.ToFloat64(watchErrors.WithLabelValues("services"))
	if err := h.start(); err != nil {
		t.Fatal(err)
	}
	defer h.stop()
	waitFor(t, "the failed list to be counted", func() bool {
		return testutil.ToFloat64(watchErrors.WithLabelValues("services")) > before
	})
	if h.Ready() {
		t.Fatal("ready without ever reaching the API server")
	}
	if resp, rcode := query(t, h, "cassandra.default.svc.cluster.local.", dns.TypeA); resp != nil || rcode != dns.RcodeServerFailure {
		t.Fatalf("rcode %d, want SERVFAIL", rcode)
	}
}
