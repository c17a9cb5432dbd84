package headless

import (
	"net/netip"
	"slices"
	"testing"

	core "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
)

// publishSlices builds the service ns/name from its slices and publishes it.
func publishSlices(ix *index, ns, name string, endpointSlices ...*discovery.EndpointSlice) {
	svc := &service{namespace: ns, name: name}
	ix.publish(ns+"/"+name, svc, build(svc, slim(buildOptions{}, endpointSlices...), buildOptions{zones: []string{"cluster.local."}}))
}

// ptrTargets returns the PTR targets of an address, or nil.
func ptrTargets(ix *index, addr string) []string {
	e, ok := ix.lookupReverse(reverseName(netip.MustParseAddr(addr)))
	if !ok {
		return nil
	}
	var one [1]string
	return e.targets(&one)
}

func TestPublishKeepsSharedNamesRight(t *testing.T) {
	ix := newIndex()
	web := ports(port("http", 80, core.ProtocolTCP))
	publishSlices(ix, "ns", "a", slice("ns", "a-1", "a", discovery.AddressTypeIPv4, web, endpoint("a-0", "10.0.0.1")))
	publishSlices(ix, "ns", "b", slice("ns", "b-1", "b", discovery.AddressTypeIPv4, web, endpoint("b-0", "10.0.0.1")))

	for _, name := range []string{"svc", "ns.svc", "a.ns.svc", "a-0.a.ns.svc", "_tcp.a.ns.svc", "_http._tcp.a.ns.svc", "b.ns.svc"} {
		if _, ok := ix.lookup(name); !ok {
			t.Errorf("%s: missing", name)
		}
	}
	both := []string{"a-0.a.ns.svc.cluster.local.", "b-0.b.ns.svc.cluster.local."}
	if got := ptrTargets(ix, "10.0.0.1"); !slices.Equal(got, both) {
		t.Errorf("PTR of an address two services hold: %v, want %v", got, both)
	}

	ix.publish("ns/a", nil, nil) // a is deleted
	if _, ok := ix.lookup("a-0.a.ns.svc"); ok {
		t.Error("a deleted service's pod name is still there")
	}
	if got := ptrTargets(ix, "10.0.0.1"); !slices.Equal(got, both[1:]) {
		t.Errorf("PTR after one holder left: %v, want %v", got, both[1:])
	}
	if _, ok := ix.lookup("ns.svc"); !ok {
		t.Error("the namespace went while b is in it")
	}

	// b stays known with no ready endpoint: its namespace stays, its names go.
	ix.publish("ns/b", &service{namespace: "ns", name: "b"}, nil)
	if _, ok := ix.lookup("ns.svc"); !ok {
		t.Error("the namespace went while b is known")
	}
	if _, ok := ix.lookupReverse("0.0.10.in-addr.arpa."); ok {
		t.Error("a reverse empty non-terminal outlived its last PTR")
	}

	ix.publish("ns/b", nil, nil)
	for _, name := range []string{"svc", "ns.svc", "b.ns.svc"} {
		if _, ok := ix.lookup(name); ok {
			t.Errorf("%s: still there with no service left", name)
		}
	}
	if services, endpoints := ix.counts(); services != 0 || endpoints != 0 {
		t.Errorf("counts %d services, %d endpoints after all were removed", services, endpoints)
	}
}
