package headless

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"

	core "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

// controllerSlice is an EndpointSlice as the endpointslice controller
// writes it for a StatefulSet's headless Service: every field it sets, so
// that what the transform drops counts.
func controllerSlice(ns, svc string, first netip.Addr, n int) *discovery.EndpointSlice {
	t, ready := true, true
	s := slice(ns, svc+"-x7k2p", svc, discovery.AddressTypeIPv4, ports(port("web", 8080, core.ProtocolTCP)))
	s.Annotations = map[string]string{triggerTimeKey: "2026-11-29T10:00:00.123456789Z"}
	s.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", Name: svc, UID: "0f0e0d0c-0b0a-0908-0706-050403020100", Controller: &t, BlockOwnerDeletion: &t}}
	s.ResourceVersion = "123456"
	s.UID = "00010203-0405-0607-0809-0a0b0c0d0e0f"
	ip := first
	for i := range n {
		name := fmt.Sprintf("%s-%d", svc, i)
		node, zone := fmt.Sprintf("node-%d", i%100), "zone-a"
		s.Endpoints = append(s.Endpoints, discovery.Endpoint{
			Addresses:  []string{ip.String()},
			Conditions: discovery.EndpointConditions{Ready: &ready, Serving: &ready, Terminating: new(bool)},
			Hostname:   &name,
			TargetRef:  &core.ObjectReference{Kind: "Pod", Namespace: ns, Name: name, UID: "00010203-0405-0607-0809-0a0b0c0d0e0f"},
			NodeName:   &node,
			Zone:       &zone,
		})
		ip = ip.Next()
	}
	return s
}

// heapInUse is the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkRetainedBytesPerEndpoint reports what the plugin keeps per
// endpoint: the informers' slim slices (store) and the published index,
// for StatefulSet-shaped services of 10 endpoints.
func BenchmarkRetainedBytesPerEndpoint(b *testing.B) {
	const services, perService = 2000, 10
	opts := buildOptions{zones: []string{"cluster.local."}}
	for b.Loop() {
		raw := make([]*discovery.EndpointSlice, services)
		next := netip.MustParseAddr("10.128.0.1")
		for i := range raw {
			raw[i] = controllerSlice(fmt.Sprintf("ns-%d", i%20), fmt.Sprintf("sts-%05d", i), next, perService)
			for range perService {
				next = next.Next()
			}
		}
		before := heapInUse()
		// What an informer and the feed hold: the store, and each
		// service's members.
		store := cache.NewStore(cache.MetaNamespaceKeyFunc)
		f := &feed{members: map[serviceRef][]member{}}
		transform := slimSlice(opts, nil)
		for _, s := range raw {
			slim, _ := transform(s.DeepCopy())
			_ = store.Add(slim)
			f.track(0, slim.(*sliceInfo))
		}
		afterStore := heapInUse()
		ix := newIndex()
		for ref := range f.members {
			svc := &service{namespace: ref.namespace, name: ref.name}
			ix.publish(ref.key(), svc, build(svc, f.slicesOf(ref), opts))
		}
		afterIndex := heapInUse()
		endpoints := float64(services * perService)
		b.ReportMetric(float64(afterStore-before)/endpoints, "store-B/endpoint")
		b.ReportMetric(float64(afterIndex-afterStore)/endpoints, "index-B/endpoint")
		runtime.KeepAlive(raw)
		runtime.KeepAlive(store)
		runtime.KeepAlive(f)
		runtime.KeepAlive(ix)
	}
}
