package headless

import (
	"context"
	"testing"

	"github.com/miekg/dns"

	core "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
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

// After a lost watch the informers list again, and every object comes back
// as an update of itself: nothing is rebuilt for those, so a relist
// allocates no new index.
func TestARelistOfUnchangedObjectsRebuildsNothing(t *testing.T) {
	h, _ := newTestPlugin(t, "headless cluster.local", seedObjects()...)
	s := slim(buildOptions{}, slice("default", "cassandra-abcde", "cassandra", discovery.AddressTypeIPv4, nil,
		endpoint("cassandra-0", "10.244.1.5")))[0]
	s.resourceVersion = "41"
	before := h.index.soaSerial()
	h.watcher.sliceChanged(h.watcher.feeds[0], 0, s, s)
	if after := h.index.soaSerial(); after != before {
		t.Fatalf("an update to the same resource version republished the service (serial %d -> %d)", before, after)
	}
	changed := *s
	changed.resourceVersion = "42"
	h.watcher.sliceChanged(h.watcher.feeds[0], 0, s, &changed)
	if after := h.index.soaSerial(); after == before {
		t.Fatal("a new resource version was not published")
	}
}

// A service's members are the slices its handlers last saw: a relisted
// slice replaces its old value (which must not stay alive beside the
// store's new one), a slice that changes service leaves the old one, and
// one held by two informers while it moves between them counts once.
func TestMembersFollowTheSlicesTheHandlersSaw(t *testing.T) {
	f := &feed{members: map[serviceRef][]member{}}
	web := serviceRef{"default", "web"}
	mk := func(name, svc, rv string) *sliceInfo {
		return &sliceInfo{objectKey: objectKey{namespace: "default", name: name, resourceVersion: rv}, service: svc}
	}
	a1, b1 := mk("web-a", "web", "1"), mk("web-b", "web", "1")
	f.track(0, b1)
	f.track(0, a1)
	if got := f.slicesOf(web); len(got) != 2 || got[0] != a1 || got[1] != b1 {
		t.Fatalf("two slices, by name: %v", got)
	}
	relisted := mk("web-a", "web", "1")
	f.untrack(0, a1)
	f.track(0, relisted)
	if got := f.slicesOf(web); len(got) != 2 || got[0] != relisted {
		t.Fatalf("the relisted value replaces the old one: %v", got)
	}
	moved := mk("web-b", "api", "2")
	f.untrack(0, b1)
	f.track(0, moved)
	if got := f.slicesOf(web); len(got) != 1 || got[0] != relisted {
		t.Fatalf("the slice that moved to another service left: %v", got)
	}
	if got := f.slicesOf(serviceRef{"default", "api"}); len(got) != 1 || got[0] != moved {
		t.Fatalf("the slice that moved to another service joined it: %v", got)
	}
	handKept := mk("web-a", "web", "3")
	f.track(1, handKept)
	if got := f.slicesOf(web); len(got) != 1 || got[0] != relisted {
		t.Fatalf("a slice in two informers counts once, as the first holds it: %v", got)
	}
	f.untrack(0, relisted)
	if got := f.slicesOf(web); len(got) != 1 || got[0] != handKept {
		t.Fatalf("then as the second holds it: %v", got)
	}
	f.untrack(1, handKept)
	f.untrack(0, moved)
	if len(f.members) != 0 {
		t.Fatalf("services without slices are forgotten: %v", f.members)
	}
}

// A deletion whose tombstone lost its object (client-go sends the key
// alone when it no longer knows the object) still takes the slice out of
// its service.
func TestATombstoneWithoutItsObjectStillRemovesTheSlice(t *testing.T) {
	h, _ := newTestPlugin(t, "headless cluster.local", seedObjects()...)
	if resp, _ := query(t, h, "cassandra.default.svc.cluster.local.", dns.TypeA); len(resp.Answer) != 3 {
		t.Fatalf("before: %v", resp.Answer)
	}
	h.watcher.sliceChanged(h.watcher.feeds[0], 0, cache.DeletedFinalStateUnknown{Key: "default/cassandra-abcde"}, nil)
	if resp, _ := query(t, h, "cassandra.default.svc.cluster.local.", dns.TypeA); resp.Rcode != dns.RcodeNameError {
		t.Fatalf("after the tombstone: %v %v", dns.RcodeToString[resp.Rcode], resp.Answer)
	}
}
