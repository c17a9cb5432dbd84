package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	core "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// mirroringManaged is the endpointslice-mirroring controller's name, on the
// slices it makes from v1 Endpoints.
const mirroringManaged = "endpointslicemirroring-controller.k8s.io"

// keptByHand is the managed-by label of the slice TestSelectorlessServices
// keeps itself, as a tool outside the cluster's controllers would (neither
// the endpointslice nor the mirroring controller touches it).
const keptByHand = "selectorless.e2e.headless.test"

// externalDB is the v1 Endpoints an operator keeps for the article's
// external-db, a headless Service without a selector: the ready addresses
// (the first with hostname primary) and the not-ready ones, port pg.
func externalDB(ready []string, notReady ...string) string {
	var b strings.Builder
	b.WriteString("apiVersion: v1\nkind: Endpoints\nmetadata:\n  name: external-db\nsubsets:\n- addresses:\n")
	for i, ip := range ready {
		fmt.Fprintf(&b, "  - ip: %s\n", ip)
		if i == 0 {
			b.WriteString("    hostname: primary\n")
		}
	}
	if len(notReady) > 0 {
		b.WriteString("  notReadyAddresses:\n")
		for _, ip := range notReady {
			fmt.Fprintf(&b, "  - ip: %s\n", ip)
		}
	}
	b.WriteString("  ports:\n  - name: pg\n    port: 5432\n")
	return b.String()
}

// TestSelectorlessServices: a headless Service without a selector is given
// its endpoints by hand, in either of two ways, and DNS answers both side
// by side. The article's way, a v1 Endpoints of the Service's name, is
// mirrored into an EndpointSlice by the endpointslice-mirroring controller;
// DNS answers it (hostnames, address ids, SRV, PTR; not-ready addresses
// left out) and follows when addresses are added, removed or become ready.
// The newer way is an EndpointSlice kept by hand, labelled with the
// Service's name and managed by a tool of its own (without the headless
// label the endpointslice controller would add); DNS follows it too.
func TestSelectorlessServices(t *testing.T) {
	cp := env.cluster
	cp.requireCluster(t)
	c := cp.client
	ctx := context.Background()
	ns := newNamespace(t, cp, "selectorless")
	createService(t, c, ns, "external-db", false, core.ServicePort{Name: "pg", Port: 5432})
	createService(t, c, ns, "legacy-cache", false, core.ServicePort{Name: "memcache", Port: 11211})

	// kubectl apply, as the article does (v1 Endpoints are deprecated
	// since Kubernetes 1.33, and still served).
	cp.applyYAML(t, ns, externalDB([]string{"10.0.0.50", "10.0.0.51"}, "10.0.0.52"))
	eventually(t, lifecycleWithin, "the mirroring controller's slice of external-db", func() error {
		list, err := c.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{
			LabelSelector: discovery.LabelServiceName + "=external-db," + discovery.LabelManagedBy + "=" + mirroringManaged})
		if err != nil {
			return err
		}
		if len(list.Items) != 1 || len(list.Items[0].Endpoints) != 3 {
			return fmt.Errorf("slices %+v", list.Items)
		}
		return nil
	})
	cache := newSlice(ns, "legacy-cache-hand", "legacy-cache", discovery.AddressTypeIPv4,
		[]discovery.EndpointPort{port("memcache", 11211, core.ProtocolTCP)},
		endpoint("cache-0", "10.0.1.10"), endpoint("cache-1", "10.0.1.11"))
	delete(cache.Labels, "service.kubernetes.io/headless")
	cache.Labels[discovery.LabelManagedBy] = keptByHand
	createSlice(t, c, cache)

	s := startCoreDNS(t, cp, namespacedBlock(ns, ""))
	zone := ns + ".svc.cluster.local."
	db, lc := "external-db."+zone, "legacy-cache."+zone
	// answers waits until every check holds.
	answers := func(what string, checks ...func() error) {
		t.Helper()
		took := eventually(t, lifecycleWithin, what, allOf(checks...))
		t.Logf("%s: in DNS after %s", what, took.Round(time.Millisecond))
	}
	a := func(name string, ips ...string) func() error {
		return func() error { return expectAnswer(s.addr, "udp", name, dns.TypeA, dns.RcodeSuccess, ips...) }
	}
	missing := func(qname string, qtype uint16) func() error {
		return func() error { return expectAnswer(s.addr, "udp", qname, qtype, dns.RcodeNameError) }
	}
	ptr := func(ip, name string) func() error {
		return func() error {
			reverse, _ := dns.ReverseAddr(ip)
			return expectAnswer(s.addr, "udp", reverse, dns.TypePTR, dns.RcodeSuccess, name)
		}
	}
	srv := func(name string, targets ...string) func() error {
		return func() error { return expectAnswer(s.addr, "tcp", name, dns.TypeSRV, dns.RcodeSuccess, targets...) }
	}

	answers("both Services",
		a(db, "10.0.0.50", "10.0.0.51"),
		a("primary."+db, "10.0.0.50"),
		a("10-0-0-51."+db, "10.0.0.51"),
		missing("10-0-0-52."+db, dns.TypeA),
		missing("52.0.0.10.in-addr.arpa.", dns.TypePTR),
		ptr("10.0.0.50", "primary."+db),
		srv("_pg._tcp."+db, "5432 primary."+db, "5432 10-0-0-51."+db),
		a(lc, "10.0.1.10", "10.0.1.11"),
		a("cache-1."+lc, "10.0.1.11"),
		ptr("10.0.1.10", "cache-0."+lc),
		srv("_memcache._tcp."+lc, "11211 cache-0."+lc, "11211 cache-1."+lc),
	)

	cp.applyYAML(t, ns, externalDB([]string{"10.0.0.50", "10.0.0.51", "10.0.0.53"}, "10.0.0.52"))
	answers("an address added to the Endpoints",
		a(db, "10.0.0.50", "10.0.0.51", "10.0.0.53"),
		a("10-0-0-53."+db, "10.0.0.53"),
		srv("_pg._tcp."+db, "5432 primary."+db, "5432 10-0-0-51."+db, "5432 10-0-0-53."+db),
	)
	cp.applyYAML(t, ns, externalDB([]string{"10.0.0.50", "10.0.0.53"}, "10.0.0.52"))
	answers("an address removed from the Endpoints",
		a(db, "10.0.0.50", "10.0.0.53"),
		missing("10-0-0-51."+db, dns.TypeA),
		missing("51.0.0.10.in-addr.arpa.", dns.TypePTR),
		srv("_pg._tcp."+db, "5432 primary."+db, "5432 10-0-0-53."+db),
	)
	cp.applyYAML(t, ns, externalDB([]string{"10.0.0.50", "10.0.0.52", "10.0.0.53"}))
	answers("a not-ready address ready",
		a(db, "10.0.0.50", "10.0.0.52", "10.0.0.53"),
		ptr("10.0.0.52", "10-0-0-52."+db),
	)

	cur, err := c.DiscoveryV1().EndpointSlices(ns).Get(ctx, cache.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Endpoints = append(cur.Endpoints, endpoint("cache-2", "10.0.1.12"))
	cur.Endpoints[0] = withReady(cur.Endpoints[0], false)
	cur = updateSlice(t, c, cur)
	answers("the hand-kept slice: cache-2 added, cache-0 not ready",
		a(lc, "10.0.1.11", "10.0.1.12"),
		missing("cache-0."+lc, dns.TypeA),
		missing("10.1.0.10.in-addr.arpa.", dns.TypePTR),
		ptr("10.0.1.12", "cache-2."+lc),
		srv("_memcache._tcp."+lc, "11211 cache-1."+lc, "11211 cache-2."+lc),
		// and the mirrored Service is as it was
		a(db, "10.0.0.50", "10.0.0.52", "10.0.0.53"),
	)
	if got := cur.Labels[discovery.LabelManagedBy]; got != keptByHand {
		t.Errorf("a controller took the hand-kept slice over: managed by %q", got)
	}

	// Deleting the Endpoints takes the mirrored slice away, and with it
	// every name; the hand-kept Service stays.
	cp.kubectl(t, "-n", ns, "delete", "endpoints", "external-db")
	answers("the Endpoints deleted",
		missing(db, dns.TypeA),
		missing("primary."+db, dns.TypeA),
		missing("50.0.0.10.in-addr.arpa.", dns.TypePTR),
		a(lc, "10.0.1.11", "10.0.1.12"),
	)
}
