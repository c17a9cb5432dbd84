package headless

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"

	core "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
)

// sliceUpdateEndpoints is how many endpoints each service of the
// BenchmarkSliceUpdate index has (StatefulSet pods, one slice per service).
const sliceUpdateEndpoints = 10

// BenchmarkSliceUpdate measures applying one EndpointSlice change to the
// index: one endpoint of one service gets a new address, and that service
// is built and published. The index around it holds 1k, 10k or 100k
// endpoints; the cost must not grow with it. Informers are left out: this
// is build and publish, as the watcher calls them.
func BenchmarkSliceUpdate(b *testing.B) {
	for _, total := range []int{1_000, 10_000, 100_000} {
		b.Run(fmt.Sprintf("endpoints=%d", total), func(b *testing.B) {
			ix := newIndex()
			opts := buildOptions{zones: []string{"cluster.local."}}
			services := total / sliceUpdateEndpoints
			slices := make([]*discovery.EndpointSlice, services)
			next := netip.MustParseAddr("10.128.0.1")
			for i := range services {
				ns := fmt.Sprintf("ns-%02d", i%20)
				name := fmt.Sprintf("sts-%06d", i)
				var eps []discovery.Endpoint
				for k := range sliceUpdateEndpoints {
					eps = append(eps, endpoint(fmt.Sprintf("%s-%d", name, k), next.String()))
					next = next.Next()
				}
				s := slice(ns, name+"-abcde", name, discovery.AddressTypeIPv4,
					ports(port("web", 8080, core.ProtocolTCP)), eps...)
				slices[i] = s
				svc := &service{namespace: ns, name: name, hasSelector: true}
				ix.publish(ns+"/"+name, svc, build(svc, slim(opts, s), opts))
			}
			if _, endpoints := ix.counts(); endpoints != total {
				b.Fatalf("index holds %d endpoints, want %d", endpoints, total)
			}

			// The changed service sits in the middle of the index.
			i := services / 2
			changed := slices[i].DeepCopy()
			svc := &service{namespace: changed.Namespace, name: changed.Labels[discovery.LabelServiceName], hasSelector: true}
			key := svc.namespace + "/" + svc.name
			// Two precomputed addresses, alternated, so that every
			// iteration is a real change and nothing is formatted in the loop.
			addrs := [2]string{"10.64.0.1", slices[i].Endpoints[0].Addresses[0]}
			changedSlices := []*discovery.EndpointSlice{changed}
			// Collect the set-up's garbage now, not inside the timed loop.
			runtime.GC()
			b.ReportAllocs()
			for n := 0; b.Loop(); n++ {
				changed.Endpoints[0].Addresses[0] = addrs[n&1]
				ix.publish(key, svc, build(svc, slim(opts, changedSlices...), opts))
			}
			b.StopTimer()
			if _, endpoints := ix.counts(); endpoints != total {
				b.Fatalf("index holds %d endpoints after the updates, want %d", endpoints, total)
			}
		})
	}
}
