package headless

import (
	"net/netip"
	"testing"
	"time"

	core "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

// slim turns API slices into what the informers keep of them.
func slim(opts buildOptions, in ...*discovery.EndpointSlice) []*sliceInfo {
	transform := slimSlice(opts, nil)
	out := make([]*sliceInfo, len(in))
	for i, s := range in {
		obj, _ := transform(s)
		out[i] = obj.(*sliceInfo)
	}
	return out
}

func TestInformersKeepACompactProjection(t *testing.T) {
	ready := true
	full := &discovery.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: "s", Namespace: "ns", UID: "uid", ResourceVersion: "7",
			Labels:          map[string]string{discovery.LabelServiceName: "svc", "app": "x", headlessLabel: ""},
			Annotations:     map[string]string{triggerTimeKey: "2026-01-01T00:00:00.5Z", "huge": "annotation"},
			ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager"}},
			OwnerReferences: []metav1.OwnerReference{{Name: "svc"}},
		},
		AddressType: discovery.AddressTypeIPv4,
		Ports:       ports(port("HTTP", 80, core.ProtocolTCP), port("", 81, core.ProtocolUDP)),
		Endpoints: []discovery.Endpoint{{
			Addresses:  []string{"10.0.0.1", "::ffff:10.0.0.2", "fd00::1", "junk"},
			Conditions: discovery.EndpointConditions{Ready: &ready, Serving: &ready},
			NodeName:   new("node-1"),
			Zone:       new("Zone-A"),
			TargetRef:  &core.ObjectReference{Kind: "Pod", Name: "p", Namespace: "ns", UID: "u"},
		}},
	}
	for _, tc := range []struct {
		name      string
		opts      buildOptions
		label     string
		zone      string
		addresses []string
	}{
		{"by default, no pod name and no zone", buildOptions{}, "", "", []string{"10.0.0.1", "10.0.0.2"}},
		{"the pod's name with endpoint_pod_names, the zone with zonal", buildOptions{podNames: true, zonal: true}, "p", "zone-a", []string{"10.0.0.1", "10.0.0.2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := slim(tc.opts, full)[0]
			if s.namespace != "ns" || s.name != "s" || s.resourceVersion != "7" || s.service != "svc" {
				t.Errorf("key and owner: %+v", s.objectKey)
			}
			if want := time.Date(2026, 1, 1, 0, 0, 0, 5e8, time.UTC); !s.trigger.Equal(want) {
				t.Errorf("trigger time %v, want %v", s.trigger, want)
			}
			if len(s.ports) != 2 || s.ports[0] != (srvPort{"http", "tcp", 80}) || s.ports[1] != (srvPort{"", "", 81}) {
				t.Errorf("ports %+v", s.ports)
			}
			var got []string
			for i := range s.addresses.len() {
				a := s.addresses.at(i)
				got = append(got, a.ip.String())
				if a.label != tc.label || a.zone != tc.zone || !a.ready {
					t.Errorf("address %s: label %q zone %q ready %v", a.ip, a.label, a.zone, a.ready)
				}
			}
			if len(got) != len(tc.addresses) || got[0] != tc.addresses[0] || got[1] != tc.addresses[1] {
				t.Errorf("addresses %v, want %v (IPv4 ones, unmapped)", got, tc.addresses)
			}
			if key, err := cache.MetaNamespaceKeyFunc(s); err != nil || key != "ns/s" {
				t.Errorf("client-go's key of the compact value: %q, %v", key, err)
			}
		})
	}
}

// Each address keeps its own endpoint's name and state in the packed list,
// in both families, an endpoint of several addresses naming each.
func TestSlimSliceKeepsEachAddressWithItsEndpoint(t *testing.T) {
	for _, family := range []struct {
		addressType discovery.AddressType
		a, b, c     string
	}{
		{discovery.AddressTypeIPv4, "10.0.0.1", "10.0.0.2", "10.0.0.3"},
		{discovery.AddressTypeIPv6, "fd00::1", "fd00::2", "fd00::3"},
	} {
		t.Run(string(family.addressType), func(t *testing.T) {
			s := slice("ns", "s", "svc", family.addressType, nil,
				endpoint("web-0", family.a, family.b),
				endpoint("", family.c),
				notReady(endpoint("web-1", family.a)),
				podRef(endpoint("", family.b), "pod-x"))
			got := slim(buildOptions{podNames: true}, s)[0].addresses
			want := []endpointAddress{
				{ip: netip.MustParseAddr(family.a), label: "web-0", ready: true, isHostname: true},
				{ip: netip.MustParseAddr(family.b), label: "web-0", ready: true, isHostname: true},
				{ip: netip.MustParseAddr(family.c), ready: true},
				{ip: netip.MustParseAddr(family.a), label: "web-1", isHostname: true},
				{ip: netip.MustParseAddr(family.b), label: "pod-x", ready: true},
			}
			if got.len() != len(want) {
				t.Fatalf("%d addresses, want %d", got.len(), len(want))
			}
			for i, w := range want {
				if a := got.at(i); a != w {
					t.Errorf("address %d: %+v, want %+v", i, a, w)
				}
			}
			if !got.equal(&got) {
				t.Error("a list differs from itself")
			}
		})
	}
}
