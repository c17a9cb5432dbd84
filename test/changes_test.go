package e2e

import (
	"context"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	core "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// visibleWithin is how soon a change in the API must show in DNS.
const visibleWithin = time.Second

// TestChangesWhileRunning changes endpoints under a running CoreDNS and
// checks that each change is answered within a second.
func TestChangesWhileRunning(t *testing.T) {
	c := env.cluster.client
	ctx := context.Background()
	ns := newNamespace(t, env.cluster, "changes")
	ports := []discovery.EndpointPort{port("cql", 9042, core.ProtocolTCP)}
	createService(t, c, ns, "cassandra", true)
	slice := newSlice(ns, "cassandra-1", "cassandra", discovery.AddressTypeIPv4, ports,
		endpoint("cassandra-0", "10.244.1.5"), endpoint("cassandra-1", "10.244.2.8"), endpoint("cassandra-2", "10.244.3.12"))
	createSlice(t, c, slice)
	s := startCoreDNS(t, env.cluster, namespacedBlock(ns, ""))
	svc := "cassandra." + ns + ".svc.cluster.local."
	pod := func(name string) string { return name + ".cassandra." + ns + ".svc.cluster.local." }
	if err := expectAnswer(s.addr, "udp", svc, dns.TypeA, dns.RcodeSuccess, "10.244.1.5", "10.244.2.8", "10.244.3.12"); err != nil {
		t.Fatal(err)
	}

	step := func(what string, change func(), checks ...func() error) {
		t.Helper()
		change()
		took := eventually(t, visibleWithin, what, allOf(checks...))
		t.Logf("%s: visible after %s", what, took.Round(time.Millisecond))
	}

	slice, _ = c.DiscoveryV1().EndpointSlices(ns).Get(ctx, "cassandra-1", metav1.GetOptions{})
	step("a pod turning not-ready", func() {
		slice.Endpoints[1] = withReady(slice.Endpoints[1], false)
		slice = updateSlice(t, c, slice)
	},
		func() error {
			return expectAnswer(s.addr, "udp", svc, dns.TypeA, dns.RcodeSuccess, "10.244.1.5", "10.244.3.12")
		},
		func() error { return expectAnswer(s.addr, "udp", pod("cassandra-1"), dns.TypeA, dns.RcodeNameError) },
		func() error {
			return expectAnswer(s.addr, "udp", "8.2.244.10.in-addr.arpa.", dns.TypePTR, dns.RcodeNameError)
		},
	)
	step("a pod IP changing", func() {
		slice.Endpoints[0].Addresses = []string{"10.244.1.77"}
		slice = updateSlice(t, c, slice)
	},
		func() error {
			return expectAnswer(s.addr, "udp", pod("cassandra-0"), dns.TypeA, dns.RcodeSuccess, "10.244.1.77")
		},
		func() error {
			return expectAnswer(s.addr, "udp", "77.1.244.10.in-addr.arpa.", dns.TypePTR, dns.RcodeSuccess, pod("cassandra-0"))
		},
		func() error {
			return expectAnswer(s.addr, "udp", "5.1.244.10.in-addr.arpa.", dns.TypePTR, dns.RcodeNameError)
		},
	)
	step("a second slice added", func() {
		createSlice(t, c, newSlice(ns, "cassandra-2", "cassandra", discovery.AddressTypeIPv4, ports, endpoint("cassandra-3", "10.244.4.2")))
	},
		func() error {
			return expectAnswer(s.addr, "udp", svc, dns.TypeA, dns.RcodeSuccess, "10.244.1.77", "10.244.3.12", "10.244.4.2")
		},
		func() error {
			return expectAnswer(s.addr, "tcp", "_cql._tcp."+svc, dns.TypeSRV, dns.RcodeSuccess,
				"9042 "+pod("cassandra-0"), "9042 "+pod("cassandra-2"), "9042 "+pod("cassandra-3"))
		},
	)
	step("a slice deleted", func() {
		if err := c.DiscoveryV1().EndpointSlices(ns).Delete(ctx, "cassandra-1", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	},
		func() error { return expectAnswer(s.addr, "udp", svc, dns.TypeA, dns.RcodeSuccess, "10.244.4.2") },
		func() error { return expectAnswer(s.addr, "udp", pod("cassandra-0"), dns.TypeA, dns.RcodeNameError) },
	)
	step("the service deleted", func() {
		if err := c.CoreV1().Services(ns).Delete(ctx, "cassandra", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	},
		func() error { return expectAnswer(s.addr, "udp", svc, dns.TypeA, dns.RcodeNameError) },
		func() error {
			return expectAnswer(s.addr, "udp", "2.4.244.10.in-addr.arpa.", dns.TypePTR, dns.RcodeNameError)
		},
	)
	step("the service recreated", func() { createService(t, c, ns, "cassandra", true) },
		func() error { return expectAnswer(s.addr, "udp", svc, dns.TypeA, dns.RcodeSuccess, "10.244.4.2") },
		func() error {
			return expectAnswer(s.addr, "udp", "2.4.244.10.in-addr.arpa.", dns.TypePTR, dns.RcodeSuccess, pod("cassandra-3"))
		},
	)
}

// TestAPIServerRestart stops the API server under a running CoreDNS that is
// being queried: known names keep answering while it is away, and changes
// made once it is back reach DNS.
func TestAPIServerRestart(t *testing.T) {
	// Its own control plane, to stop and start again; the test writes every
	// object itself, so the API server alone will do (and restarts fast).
	cp, err := startControlPlane(filepath.Join(t.TempDir(), "control-plane"), apiserverOnly)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cp.stop)
	ns := newNamespace(t, cp, "restart")
	ports := []discovery.EndpointPort{port("cql", 9042, core.ProtocolTCP)}
	createService(t, cp.client, ns, "cassandra", true)
	createSlice(t, cp.client, newSlice(ns, "cassandra-1", "cassandra", discovery.AddressTypeIPv4, ports,
		endpoint("cassandra-0", "10.244.1.5"), endpoint("cassandra-1", "10.244.2.8")))
	s := startCoreDNS(t, cp, namespacedBlock(ns, ""))
	svc := "cassandra." + ns + ".svc.cluster.local."

	// Query all the time, from before the API server goes until after it is back.
	var queries, failures atomic.Int64
	var firstFailure atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			queries.Add(1)
			// A name no change below touches: it must answer throughout.
			if err := expectAnswer(s.addr, "udp", "cassandra-0.cassandra."+ns+".svc.cluster.local.", dns.TypeA, dns.RcodeSuccess, "10.244.1.5"); err != nil {
				failures.Add(1)
				firstFailure.CompareAndSwap(nil, err.Error())
			}
			time.Sleep(5 * time.Millisecond)
		}
	})

	cp.stop()
	// While it is away: every known name answers, for a good while.
	for i := range 200 {
		if err := expectAnswer(s.addr, "udp", "cassandra-1.cassandra."+ns+".svc.cluster.local.", dns.TypeA, dns.RcodeSuccess, "10.244.2.8"); err != nil {
			t.Fatalf("query %d with the API server away: %v", i, err)
		}
		if err := expectAnswer(s.addr, "tcp", "_cql._tcp."+svc, dns.TypeSRV, dns.RcodeSuccess,
			"9042 cassandra-0.cassandra."+ns+".svc.cluster.local.", "9042 cassandra-1.cassandra."+ns+".svc.cluster.local."); err != nil {
			t.Fatalf("SRV %d with the API server away: %v", i, err)
		}
		time.Sleep(10 * time.Millisecond)
	}

	if err := cp.start(); err != nil {
		t.Fatal(err)
	}
	createService(t, cp.client, ns, "added", false)
	createSlice(t, cp.client, newSlice(ns, "added-1", "added", discovery.AddressTypeIPv4, nil, endpoint("", "10.9.9.9")))
	createSlice(t, cp.client, newSlice(ns, "cassandra-2", "cassandra", discovery.AddressTypeIPv4, ports, endpoint("cassandra-2", "10.244.3.12")))
	took := eventually(t, time.Minute, "changes after the API server returned", func() error {
		if err := expectAnswer(s.addr, "udp", "added."+ns+".svc.cluster.local.", dns.TypeA, dns.RcodeSuccess, "10.9.9.9"); err != nil {
			return err
		}
		return expectAnswer(s.addr, "udp", "cassandra-2.cassandra."+ns+".svc.cluster.local.", dns.TypeA, dns.RcodeSuccess, "10.244.3.12")
	})
	t.Logf("changes visible %s after the API server was back", took.Round(time.Millisecond))
	close(stop)
	wg.Wait()
	if n := failures.Load(); n > 0 {
		t.Fatalf("%d of %d queries failed across the restart; first: %v", n, queries.Load(), firstFailure.Load())
	}
	t.Logf("%d queries across the restart", queries.Load())
}
