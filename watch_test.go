package headless

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	core "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// answers returns the rcode and answer count of one query.
func answers(t *testing.T, h *Headless, qname string, qtype uint16) (int, int) {
	t.Helper()
	resp, _ := query(t, h, qname, qtype)
	return resp.Rcode, len(resp.Answer)
}

func waitAnswers(t *testing.T, h *Headless, what, qname string, qtype uint16, rcode, n int) {
	t.Helper()
	waitFor(t, what, func() bool {
		r, got := answers(t, h, qname, qtype)
		return r == rcode && got == n
	})
}

func TestChangesReachTheAnswers(t *testing.T) {
	h, client := newTestPlugin(t, "headless cluster.local in-addr.arpa", seedObjects()...)
	ctx := context.Background()
	slices := client.DiscoveryV1().EndpointSlices("default")
	const svc = "cassandra.default.svc.cluster.local."

	s, err := slices.Get(ctx, "cassandra-abcde", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Endpoints[1] = notReady(s.Endpoints[1])
	if _, err := slices.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitAnswers(t, h, "a pod turning not-ready", svc, dns.TypeA, dns.RcodeSuccess, 2)
	waitAnswers(t, h, "its name to go", "cassandra-1.cassandra.default.svc.cluster.local.", dns.TypeA, dns.RcodeNameError, 0)
	waitAnswers(t, h, "its PTR to go", "8.2.244.10.in-addr.arpa.", dns.TypePTR, dns.RcodeNameError, 0)

	s.Endpoints[0].Addresses = []string{"10.244.1.99"}
	if _, err := slices.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitAnswers(t, h, "the new pod IP", "99.1.244.10.in-addr.arpa.", dns.TypePTR, dns.RcodeSuccess, 1)
	waitAnswers(t, h, "the old PTR to go", "5.1.244.10.in-addr.arpa.", dns.TypePTR, dns.RcodeNameError, 0)

	second := slice("default", "cassandra-fghij", "cassandra", discovery.AddressTypeIPv4,
		ports(port("cql", 9042, core.ProtocolTCP)), endpoint("cassandra-3", "10.244.4.2"))
	if _, err := slices.Create(ctx, second, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitAnswers(t, h, "a second slice", svc, dns.TypeA, dns.RcodeSuccess, 3)
	waitAnswers(t, h, "SRV from both slices", "_cql._tcp.cassandra.default.svc.cluster.local.", dns.TypeSRV, dns.RcodeSuccess, 3)

	if err := slices.Delete(ctx, "cassandra-abcde", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitAnswers(t, h, "a slice deleted", svc, dns.TypeA, dns.RcodeSuccess, 1)

	if err := client.CoreV1().Services("default").Delete(ctx, "cassandra", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitAnswers(t, h, "the service deleted", svc, dns.TypeA, dns.RcodeNameError, 0)
	waitAnswers(t, h, "its PTRs gone", "2.4.244.10.in-addr.arpa.", dns.TypePTR, dns.RcodeNameError, 0)

	if _, err := client.CoreV1().Services("default").Create(ctx, headlessService("default", "cassandra", true), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitAnswers(t, h, "the service recreated", svc, dns.TypeA, dns.RcodeSuccess, 1)

	if err := client.CoreV1().Services("default").Delete(ctx, "external-db", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := client.CoreV1().Services("default").Delete(ctx, "cassandra", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitAnswers(t, h, "the namespace to stop existing", "default.svc.cluster.local.", dns.TypeA, dns.RcodeNameError, 0)
	waitAnswers(t, h, "svc to stop existing", "svc.cluster.local.", dns.TypeA, dns.RcodeNameError, 0)
}

func TestASliceRelabelledMovesToItsNewService(t *testing.T) {
	h, client := newTestPlugin(t, "headless cluster.local", append(seedObjects(), headlessService("default", "other", false))...)
	ctx := context.Background()
	s, err := client.DiscoveryV1().EndpointSlices("default").Get(ctx, "external-db-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Labels[discovery.LabelServiceName] = "other"
	if _, err := client.DiscoveryV1().EndpointSlices("default").Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitAnswers(t, h, "the new owner", "other.default.svc.cluster.local.", dns.TypeA, dns.RcodeSuccess, 2)
	waitAnswers(t, h, "the old owner to empty", "external-db.default.svc.cluster.local.", dns.TypeA, dns.RcodeNameError, 0)
}

func TestAnIPInTwoServicesHasAPTRForEach(t *testing.T) {
	objects := append(seedObjects(),
		headlessService("default", "cassandra-peers", true),
		slice("default", "peers-1", "cassandra-peers", discovery.AddressTypeIPv4, nil, endpoint("cassandra-0", "10.244.1.5")))
	h, client := newTestPlugin(t, "headless cluster.local in-addr.arpa", objects...)
	resp, _ := query(t, h, "5.1.244.10.in-addr.arpa.", dns.TypePTR)
	got := map[string]bool{}
	for _, rr := range resp.Answer {
		got[rr.(*dns.PTR).Ptr] = true
	}
	if !got["cassandra-0.cassandra.default.svc.cluster.local."] || !got["cassandra-0.cassandra-peers.default.svc.cluster.local."] || len(got) != 2 {
		t.Fatalf("PTRs %v", got)
	}
	if err := client.CoreV1().Services("default").Delete(context.Background(), "cassandra-peers", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitAnswers(t, h, "one PTR left", "5.1.244.10.in-addr.arpa.", dns.TypePTR, dns.RcodeSuccess, 1)
}

func TestProgrammingDurationIsMeasuredForBothKinds(t *testing.T) {
	_, client := newTestPlugin(t, "headless cluster.local", seedObjects()...)
	ctx := context.Background()
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
	waitFor(t, "both kinds observed", func() bool {
		return histogramCount("headless_with_selector") > 0 && histogramCount("headless_without_selector") > 0
	})
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

func TestInformersKeepASlimProjection(t *testing.T) {
	ready := true
	full := &discovery.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: "s", Namespace: "ns", UID: "uid", ResourceVersion: "7",
			Labels:          map[string]string{discovery.LabelServiceName: "svc", "app": "x", headlessLabel: ""},
			Annotations:     map[string]string{triggerTimeKey: "2026-01-01T00:00:00Z", "huge": "annotation"},
			ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager"}},
			OwnerReferences: []metav1.OwnerReference{{Name: "svc"}},
		},
		AddressType: discovery.AddressTypeIPv4,
		Endpoints: []discovery.Endpoint{{
			Addresses:  []string{"10.0.0.1"},
			Conditions: discovery.EndpointConditions{Ready: &ready, Serving: &ready},
			NodeName:   new("node-1"),
			Zone:       new("zone-a"),
			TargetRef:  &core.ObjectReference{Kind: "Pod", Name: "p", Namespace: "ns", UID: "u"},
		}},
	}
	obj, _ := slimSlice(true)(full)
	s := obj.(*discovery.EndpointSlice)
	if len(s.ManagedFields) != 0 || len(s.OwnerReferences) != 0 || s.UID != "" {
		t.Errorf("metadata kept: %+v", s.ObjectMeta)
	}
	if len(s.Labels) != 1 || len(s.Annotations) != 1 {
		t.Errorf("labels %v annotations %v, want only the service name and trigger time", s.Labels, s.Annotations)
	}
	ep := s.Endpoints[0]
	if ep.NodeName != nil || ep.Zone != nil || ep.Conditions.Serving != nil || ep.TargetRef.UID != "" {
		t.Errorf("endpoint kept too much: %+v", ep)
	}
	if ep.Conditions.Ready == nil || !*ep.Conditions.Ready || ep.TargetRef.Name != "p" {
		t.Errorf("endpoint lost what the index reads: %+v", ep)
	}
}

func TestIPLabels(t *testing.T) {
	for _, tc := range []struct{ ip, want string }{
		{"10.244.1.5", "10-244-1-5"},
		{"::1", "0000-0000-0000-0000-0000-0000-0000-0001"},
		{"2001:db8::", "2001-0db8-0000-0000-0000-0000-0000-0000"},
		{"fd00:abcd::ff:1", "fd00-abcd-0000-0000-0000-0000-00ff-0001"},
	} {
		got := ipLabel(netip.MustParseAddr(tc.ip))
		if got != tc.want || !isLabel(got) {
			t.Errorf("ipLabel(%s) = %s, want %s (a valid label)", tc.ip, got, tc.want)
		}
	}
}

func TestReverseNames(t *testing.T) {
	for _, tc := range []string{"10.244.1.5", "2001:db8::5", "::ffff:10.0.0.1"} {
		ip := netip.MustParseAddr(tc)
		want, _ := dns.ReverseAddr(ip.String())
		if ip.Is4In6() {
			want = "1.0.0.0.0.0.a.0.f.f.f.f.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa."
		}
		if got := reverseName(ip); got != want {
			t.Errorf("reverseName(%s) = %s, want %s", tc, got, want)
		}
	}
}

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

func histogramSum(kind string) float64 { return histogram(kind).GetSampleSum() }

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
	h := newHeadless(cfg, client)
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

func TestReverseEmptyNonTerminalsFollowTheirPTRs(t *testing.T) {
	h, client := newTestPlugin(t, "headless cluster.local in-addr.arpa ip6.arpa", seedObjects()...)
	for _, tc := range []struct {
		qname string
		rcode int
	}{
		{"1.244.10.in-addr.arpa.", dns.RcodeSuccess},
		{"244.10.in-addr.arpa.", dns.RcodeSuccess},
		{"10.in-addr.arpa.", dns.RcodeSuccess},
		{"9.244.10.in-addr.arpa.", dns.RcodeNameError},
		{"11.in-addr.arpa.", dns.RcodeNameError},
		{"0.ip6.arpa.", dns.RcodeNameError},
	} {
		resp, _ := query(t, h, tc.qname, dns.TypePTR)
		if resp.Rcode != tc.rcode || len(resp.Answer) != 0 {
			t.Errorf("%s: %s with %d answers, want %s and none", tc.qname, dns.RcodeToString[resp.Rcode], len(resp.Answer), dns.RcodeToString[tc.rcode])
		}
	}
	if err := client.CoreV1().Services("default").Delete(context.Background(), "cassandra", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitAnswers(t, h, "244.10 to go with the last PTR under it", "244.10.in-addr.arpa.", dns.TypePTR, dns.RcodeNameError, 0)
	// external-db's 10.0.0.50 and .51 still hold 10.in-addr.arpa.
	waitAnswers(t, h, "10 to stay", "10.in-addr.arpa.", dns.TypePTR, dns.RcodeSuccess, 0)
}
