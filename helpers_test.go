package headless

import (
	"context"
	"net/netip"
	"testing"
	"time"

	mcs "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"
	mcsfake "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned/fake"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/watch"
	k8stesting "k8s.io/client-go/testing"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"

	core "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
)

// newTestPlugin parses corefile and runs the plugin's informers against a
// fake clientset holding objects (and with multicluster, a fake MCS
// clientset holding the ServiceImports among them), returning once the
// index is synced.
func newTestPlugin(t testing.TB, corefile string, objects ...runtime.Object) (*Headless, *fake.Clientset) {
	t.Helper()
	cfg, err := parse(testController(corefile))
	if err != nil {
		t.Fatalf("parse %q: %v", corefile, err)
	}
	var core, imports []runtime.Object
	for _, obj := range objects {
		if _, ok := obj.(*mcs.ServiceImport); ok {
			imports = append(imports, obj)
		} else {
			core = append(core, obj)
		}
	}
	client := fake.NewClientset(core...)
	client.PrependWatchReactor("*", watchWithLabelSelector(client.Tracker()))
	var mcsClient mcsclient.Interface
	if len(cfg.clustersetZones) > 0 {
		mcsFake := mcsfake.NewSimpleClientset(imports...)
		mcsFake.PrependWatchReactor("*", watchWithLabelSelector(mcsFake.Tracker()))
		mcsClient = listThenWatch{mcsFake}
	}
	h := newHeadless(cfg, client, mcsClient)
	h.Next = test.NextHandler(dns.RcodeNameError, nil) // stands for the next plugin
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	h.watcher.run(withKlogSink(ctx, h.health))
	waitFor(t, "informers to sync", h.watcher.hasSynced)
	h.synced.Store(true)
	instances.add(h) // as start does, for the gauges
	t.Cleanup(func() { instances.remove(h) })
	return h, client
}

// testController reads corefile as if it stood in a server block for ".".
func testController(corefile string) *caddy.Controller {
	c := caddy.NewTestController("dns", corefile)
	c.ServerBlockKeys = []string{"."}
	return c
}

// waitFor polls cond until it holds, failing the test after 10 seconds.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// query sends one question through ServeDNS over UDP, as a client without
// EDNS0 would, and returns the reply (nil if nothing was written).
func query(t testing.TB, h *Headless, qname string, qtype uint16) (*dns.Msg, int) {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(qname, qtype)
	return exchange(t, h, m, false)
}

func exchange(t testing.TB, h *Headless, m *dns.Msg, tcp bool) (*dns.Msg, int) {
	t.Helper()
	var w dns.ResponseWriter = &test.ResponseWriter{}
	if tcp {
		w = &test.ResponseWriter{TCP: true}
	}
	rec := dnstest.NewRecorder(w)
	rcode, err := h.ServeDNS(context.Background(), rec, m)
	if err != nil {
		t.Fatalf("ServeDNS(%s): %v", m.Question[0].Name, err)
	}
	return rec.Msg, rcode
}

func headlessService(ns, name string, withSelector bool) *core.Service {
	s := &core.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       core.ServiceSpec{ClusterIP: core.ClusterIPNone},
	}
	if withSelector {
		s.Spec.Selector = map[string]string{"app": name}
	}
	return s
}

// slice makes an EndpointSlice of service svc, labelled as the endpointslice
// controller labels a headless service's slices.
func slice(ns, name, svc string, family discovery.AddressType, ports []discovery.EndpointPort, eps ...discovery.Endpoint) *discovery.EndpointSlice {
	return &discovery.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{
			discovery.LabelServiceName: svc,
			headlessLabel:              "",
			managedByLabel:             controllerManager,
		}},
		AddressType: family,
		Ports:       ports,
		Endpoints:   eps,
	}
}

// handKept makes a slice as someone would write it for a selectorless service.
func handKept(ns, name, svc string, family discovery.AddressType, ports []discovery.EndpointPort, eps ...discovery.Endpoint) *discovery.EndpointSlice {
	s := slice(ns, name, svc, family, ports, eps...)
	s.Labels = map[string]string{discovery.LabelServiceName: svc}
	return s
}

func endpoint(hostname string, addrs ...string) discovery.Endpoint {
	ep := discovery.Endpoint{Addresses: addrs}
	if hostname != "" {
		ep.Hostname = &hostname
	}
	return ep
}

func notReady(ep discovery.Endpoint) discovery.Endpoint {
	f := false
	ep.Conditions.Ready = &f
	return ep
}

func ready(ep discovery.Endpoint) discovery.Endpoint {
	t := true
	ep.Conditions.Ready = &t
	return ep
}

func podRef(ep discovery.Endpoint, pod string) discovery.Endpoint {
	ep.TargetRef = &core.ObjectReference{Kind: "Pod", Name: pod}
	return ep
}

func port(name string, number int32, proto core.Protocol) discovery.EndpointPort {
	p := discovery.EndpointPort{Port: &number, Protocol: &proto}
	if name != "" {
		p.Name = &name
	}
	return p
}

func ports(p ...discovery.EndpointPort) []discovery.EndpointPort { return p }

// seedObjects is the article's world: the cassandra StatefulSet's headless
// service and the selectorless external-db with a hand-kept slice.
func seedObjects() []runtime.Object {
	return []runtime.Object{
		headlessService("default", "cassandra", true),
		slice("default", "cassandra-abcde", "cassandra", discovery.AddressTypeIPv4,
			ports(port("cql", 9042, core.ProtocolTCP)),
			podRef(endpoint("cassandra-0", "10.244.1.5"), "cassandra-0"),
			podRef(endpoint("cassandra-1", "10.244.2.8"), "cassandra-1"),
			podRef(endpoint("cassandra-2", "10.244.3.12"), "cassandra-2")),
		headlessService("default", "external-db", false),
		handKept("default", "external-db-1", "external-db", discovery.AddressTypeIPv4,
			ports(port("", 5432, core.ProtocolTCP)),
			endpoint("", "10.0.0.50"), endpoint("", "10.0.0.51")),
	}
}

// reverseNames lists every reverse name the index holds: PTR names and the
// empty non-terminals above them.
func (ix *index) reverseNames() []string {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	var names []string
	for b := range ix.ptr4 {
		names = append(names, reverseName(netip.AddrFrom4(b)))
	}
	for b := range ix.ptr6 {
		names = append(names, reverseName(netip.AddrFrom16(b)))
	}
	for name := range ix.reverseENT {
		names = append(names, name)
	}
	return names
}

// watchWithLabelSelector makes the fake clientset's watches honour their
// label selector as the API server does: an object appears to a watch
// (ADDED) when it comes to match, and leaves it (DELETED) when it stops
// matching. The fake lists filter by label already; its watches do not.
func watchWithLabelSelector(tracker k8stesting.ObjectTracker) k8stesting.WatchReactionFunc {
	return func(action k8stesting.Action) (bool, watch.Interface, error) {
		w, ok := action.(k8stesting.WatchActionImpl)
		if !ok {
			return false, nil, nil
		}
		selector := w.GetWatchRestrictions().Labels
		if selector == nil || selector.Empty() {
			return false, nil, nil
		}
		raw, err := tracker.Watch(action.GetResource(), action.GetNamespace(), w.ListOptions)
		if err != nil {
			return true, nil, err
		}
		matching := map[string]bool{}
		return true, watch.Filter(raw, func(e watch.Event) (watch.Event, bool) {
			obj, err := meta.Accessor(e.Object)
			if err != nil {
				return e, true
			}
			key := obj.GetNamespace() + "/" + obj.GetName()
			was, is := matching[key], selector.Matches(labels.Set(obj.GetLabels())) && e.Type != watch.Deleted
			if is {
				matching[key] = true
			} else {
				delete(matching, key)
			}
			switch {
			case e.Type == watch.Modified && is && !was:
				e.Type = watch.Added
			case e.Type == watch.Modified && !is && was:
				e.Type = watch.Deleted
			}
			return e, is || was
		}), nil
	}
}

// listThenWatch tells the reflector that a fake clientset generated before
// streaming lists existed cannot stream one, as client-go's own fake says
// of itself.
type listThenWatch struct{ *mcsfake.Clientset }

func (listThenWatch) IsWatchListSemanticsUnSupported() bool { return true }
