package headless

import (
	"context"
	"fmt"
	"net"
	"testing"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/kubernetes"
	"github.com/coredns/coredns/plugin/kubernetes/object"
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
			serveLoop(b, h, m, w)
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

// kubernetesIndex stands in for the kubernetes plugin's informer-backed
// controller, holding the same services and endpoints as benchWorld, so
// the two plugins' query paths can be measured side by side in-process.
// (make bench compares the real binary, with both plugins' real
// informers, over a real API server.)
type kubernetesIndex struct {
	services   []*object.Service
	endpoints  []*object.Endpoints
	svcByKey   map[string][]*object.Service
	epsByKey   map[string][]*object.Endpoints
	epsByIP    map[string][]*object.Endpoints
	namespaces map[string]bool
}

func newKubernetesIndex(objects []runtime.Object) *kubernetesIndex {
	ki := &kubernetesIndex{
		svcByKey: map[string][]*object.Service{}, epsByKey: map[string][]*object.Endpoints{},
		epsByIP: map[string][]*object.Endpoints{}, namespaces: map[string]bool{},
	}
	for _, obj := range objects {
		switch o := obj.(type) {
		case *core.Service:
			s := &object.Service{Name: o.Name, Namespace: o.Namespace, Index: object.ServiceKey(o.Name, o.Namespace),
				ClusterIPs: []string{core.ClusterIPNone}, Type: core.ServiceTypeClusterIP,
				Ports: []core.ServicePort{{Name: "cql", Port: 9042, Protocol: core.ProtocolTCP}}}
			ki.services = append(ki.services, s)
			ki.svcByKey[s.Index] = append(ki.svcByKey[s.Index], s)
			ki.namespaces[o.Namespace] = true
		case *discovery.EndpointSlice:
			svc := o.Labels[discovery.LabelServiceName]
			e := &object.Endpoints{Name: o.Name, Namespace: o.Namespace, Index: object.EndpointsKey(svc, o.Namespace)}
			subset := object.EndpointSubset{}
			for _, p := range o.Ports {
				subset.Ports = append(subset.Ports, object.EndpointPort{Port: *p.Port, Name: *p.Name, Protocol: string(*p.Protocol)})
			}
			for _, ep := range o.Endpoints {
				for _, ip := range ep.Addresses {
					subset.Addresses = append(subset.Addresses, object.EndpointAddress{IP: ip, Hostname: *ep.Hostname})
					e.IndexIP = append(e.IndexIP, ip)
				}
			}
			e.Subsets = []object.EndpointSubset{subset}
			ki.endpoints = append(ki.endpoints, e)
			ki.epsByKey[e.Index] = append(ki.epsByKey[e.Index], e)
			for _, ip := range e.IndexIP {
				ki.epsByIP[ip] = append(ki.epsByIP[ip], e)
			}
		}
	}
	return ki
}

func (ki *kubernetesIndex) ServiceList() []*object.Service                   { return ki.services }
func (ki *kubernetesIndex) EndpointsList() []*object.Endpoints               { return ki.endpoints }
func (ki *kubernetesIndex) ServiceImportList() []*object.ServiceImport       { return nil }
func (ki *kubernetesIndex) SvcIndex(k string) []*object.Service              { return ki.svcByKey[k] }
func (ki *kubernetesIndex) SvcIndexReverse(string) []*object.Service         { return nil }
func (ki *kubernetesIndex) SvcExtIndexReverse(string) []*object.Service      { return nil }
func (ki *kubernetesIndex) SvcImportIndex(string) []*object.ServiceImport    { return nil }
func (ki *kubernetesIndex) PodIndex(string) []*object.Pod                    { return nil }
func (ki *kubernetesIndex) EpIndex(k string) []*object.Endpoints             { return ki.epsByKey[k] }
func (ki *kubernetesIndex) EpIndexReverse(ip string) []*object.Endpoints     { return ki.epsByIP[ip] }
func (ki *kubernetesIndex) McEpIndex(string) []*object.MultiClusterEndpoints { return nil }
func (ki *kubernetesIndex) GetNodeByName(context.Context, string) (*core.Node, error) {
	return nil, nil
}
func (ki *kubernetesIndex) GetNamespaceByName(name string) (*object.Namespace, error) {
	if !ki.namespaces[name] {
		return nil, fmt.Errorf("namespace %s not found", name)
	}
	return &object.Namespace{Name: name}, nil
}
func (ki *kubernetesIndex) Run()                                   {}
func (ki *kubernetesIndex) HasSynced() bool                        { return true }
func (ki *kubernetesIndex) Stop() error                            { return nil }
func (ki *kubernetesIndex) Modified(kubernetes.ModifiedMode) int64 { return 0 }

// BenchmarkSideBySide runs the same questions through headless and the
// kubernetes plugin, over the same 1000 headless services.
func BenchmarkSideBySide(b *testing.B) {
	world := benchWorld()
	h, _ := newTestPlugin(b, "headless cluster.local in-addr.arpa", world...)
	k := kubernetes.New([]string{"cluster.local.", "in-addr.arpa."})
	k.APIConn = newKubernetesIndex(world)
	for _, q := range benchQueries {
		for _, p := range []struct {
			name    string
			handler interface {
				ServeDNS(context.Context, dns.ResponseWriter, *dns.Msg) (int, error)
			}
		}{{"headless", h}, {"kubernetes", k}} {
			b.Run(q.name+"/"+p.name, func(b *testing.B) {
				m := new(dns.Msg)
				m.SetQuestion(q.qname, q.qtype)
				w := newBenchWriter()
				ctx := context.Background()
				// Both must give the same answer before their speed means anything.
				rec := dnstest.NewRecorder(w)
				if _, err := p.handler.ServeDNS(ctx, rec, m); err != nil || rec.Msg == nil {
					b.Fatalf("no reply: %v", err)
				}
				if want := map[bool]int{true: 0, false: 1}[q.name == "NXDOMAIN"]; min(len(rec.Msg.Answer), 1) != want {
					b.Fatalf("unexpected reply:\n%v", rec.Msg)
				}
				b.ReportAllocs()
				for b.Loop() {
					_, _ = p.handler.ServeDNS(ctx, w, m)
				}
			})
		}
	}
}

// BenchmarkPassOn is what headless costs the names it only passes on, in
// front of kubernetes as Corefile.example puts it: a ClusterIP Service, a
// search-path miss of an external name, and a PTR of an address it does not
// hold, each handed to the next plugin (here one that does nothing).
func BenchmarkPassOn(b *testing.B) {
	h, _ := newTestPlugin(b, "headless cluster.local in-addr.arpa {\n fallthrough\n}", benchWorld()...)
	h.Next = test.NextHandler(dns.RcodeSuccess, nil)
	for _, bc := range []struct {
		name  string
		qname string
		qtype uint16
	}{
		{"ClusterIP_service", "api.default.svc.cluster.local.", dns.TypeA},
		{"search_path_miss", "api7.example.com.default.svc.cluster.local.", dns.TypeAAAA},
		{"PTR_not_held", "9.0.96.10.in-addr.arpa.", dns.TypePTR},
	} {
		b.Run(bc.name, func(b *testing.B) {
			m := new(dns.Msg)
			m.SetQuestion(bc.qname, bc.qtype)
			serveLoop(b, h, m, newBenchWriter())
		})
	}
}

// serveLoop is the timed loop of the ServeDNS benchmarks: one question,
// asked again and again.
func serveLoop(b *testing.B, h plugin.Handler, m *dns.Msg, w dns.ResponseWriter) {
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := h.ServeDNS(ctx, w, m); err != nil {
			b.Fatal(err)
		}
	}
}
