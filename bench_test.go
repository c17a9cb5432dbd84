package headless

import (
	"context"
	"fmt"
	"net"
	"testing"

	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"

	core "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// benchWorld is 1000 StatefulSet-shaped headless services of 3 pods each.
func benchWorld() []runtime.Object {
	var objects []runtime.Object
	for i := range 1000 {
		name := fmt.Sprintf("svc-%d", i)
		objects = append(objects, headlessService("default", name, true),
			slice("default", name+"-abcde", name, discovery.AddressTypeIPv4, ports(port("cql", 9042, core.ProtocolTCP)),
				endpoint(name+"-0", fmt.Sprintf("10.%d.%d.1", 100+i/250, i%250)),
				endpoint(name+"-1", fmt.Sprintf("10.%d.%d.2", 100+i/250, i%250)),
				endpoint(name+"-2", fmt.Sprintf("10.%d.%d.3", 100+i/250, i%250))))
	}
	return objects
}

// benchQueries are the questions both ServeDNS benchmarks ask of benchWorld.
var benchQueries = []struct {
	name  string
	qname string
	qtype uint16
}{
	{"service_A", "svc-500.default.svc.cluster.local.", dns.TypeA},
	{"pod_A", "svc-500-1.svc-500.default.svc.cluster.local.", dns.TypeA},
	{"SRV", "_cql._tcp.svc-500.default.svc.cluster.local.", dns.TypeSRV},
	{"PTR", "2.0.102.10.in-addr.arpa.", dns.TypePTR},
	{"NXDOMAIN", "nosuch.default.svc.cluster.local.", dns.TypeA},
}

func BenchmarkServeDNS(b *testing.B) {
	h, _ := newTestPlugin(b, "headless cluster.local in-addr.arpa", benchWorld()...)
	for _, bc := range benchQueries {
		b.Run(bc.name, func(b *testing.B) {
			m := new(dns.Msg)
			m.SetQuestion(bc.qname, bc.qtype)
			w := newBenchWriter()
			ctx := context.Background()
			// Check the answer once, outside the timed loop.
			rec := dnstest.NewRecorder(w)
			if _, err := h.ServeDNS(ctx, rec, m); err != nil || rec.Msg == nil {
				b.Fatalf("no answer: %v", err)
			}
			if bc.name != "NXDOMAIN" && len(rec.Msg.Answer) == 0 {
				b.Fatalf("empty answer:\n%v", rec.Msg)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := h.ServeDNS(ctx, w, m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchWriter is test.ResponseWriter with its addresses made once. The
// server's own writer hands out stored addresses; test.ResponseWriter parses
// new ones on every call, which would count as the handler's allocations.
type benchWriter struct {
	test.ResponseWriter
	local, remote net.Addr
}

func newBenchWriter() *benchWriter {
	var w test.ResponseWriter
	return &benchWriter{local: w.LocalAddr(), remote: w.RemoteAddr()}
}

func (w *benchWriter) LocalAddr() net.Addr  { return w.local }
func (w *benchWriter) RemoteAddr() net.Addr { return w.remote }

// BenchmarkRebuildOneService measures the cost of one endpoint change: it
// must not grow with the number of services in the index.
func BenchmarkRebuildOneService(b *testing.B) {
	for _, services := range []int{10, 1000} {
		b.Run(fmt.Sprintf("services=%d", services), func(b *testing.B) {
			ix := newIndex([]string{"cluster.local."}, ttls{5, 5, 5, 5, 5}, false)
			svc := &service{namespace: "default", name: "svc-0", hasSelector: true}
			var all []runtime.Object
			for i := range services {
				all = append(all, benchWorld()[2*(i%1000)+1])
			}
			for i, obj := range all {
				s := obj.(*discovery.EndpointSlice)
				key := fmt.Sprintf("default/svc-%d", i)
				ix.rebuild(key, func() (*service, []*discovery.EndpointSlice) {
					return &service{namespace: "default", name: fmt.Sprintf("svc-%d", i)}, []*discovery.EndpointSlice{s}
				})
			}
			changed := all[0].(*discovery.EndpointSlice).DeepCopy()
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				changed.Endpoints[0].Addresses[0] = fmt.Sprintf("10.200.%d.%d", i/250%250, i%250)
				ix.rebuild("default/svc-0", func() (*service, []*discovery.EndpointSlice) {
					return svc, []*discovery.EndpointSlice{changed}
				})
			}
		})
	}
}
