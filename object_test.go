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
			for _, a := range s.addresses {
				got = append(got, a.addr().String())
				zone := ""
				if a.zone != nil {
					zone = *a.zone
				}
				if a.label != tc.label || zone != tc.zone || !a.ready() {
					t.Errorf("address %s: label %q zone %q ready %v", a.addr(), a.label, zone, a.ready())
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
	if a := (endpointAddress{ip: netip.MustParseAddr("fd00::1").As16()}); a.addr().String() != "fd00::1" {
		t.Errorf("IPv6 address read back as %s", a.addr())
	}
}
