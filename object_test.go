package headless

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	discovery "k8s.io/api/discovery/v1"

	core "k8s.io/api/core/v1"
)

func TestInformersKeepASlimProjection(t *testing.T) {
	ready := true
	full := &discovery.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: "s", Namespace: "ns", UID: "uid", ResourceVersion: "7",
			Labels:          map[string]string{discovery.LabelServiceName: "svc", "app": "x", headlessLabel: ""},
			Annotations:     map[string]string{triggerTimeKey: "2026-01-01T00:00:00Z", "huge": "annotation"},
			ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager"}},
			OwnerReferences: []metav1.OwnerReference{{Name: "svc"}},
		},
		AddressType: discovery.AddressTypeIPv4,
		Endpoints: []discovery.Endpoint{{
			Addresses:  []string{"10.0.0.1"},
			Conditions: discovery.EndpointConditions{Ready: &ready, Serving: &ready},
			NodeName:   new("node-1"),
			Zone:       new("zone-a"),
			TargetRef:  &core.ObjectReference{Kind: "Pod", Name: "p", Namespace: "ns", UID: "u"},
		}},
	}
	obj, _ := slimSlice(buildOptions{podNames: true})(full)
	s := obj.(*discovery.EndpointSlice)
	if len(s.ManagedFields) != 0 || len(s.OwnerReferences) != 0 || s.UID != "" {
		t.Errorf("metadata kept: %+v", s.ObjectMeta)
	}
	if len(s.Labels) != 1 || len(s.Annotations) != 1 {
		t.Errorf("labels %v annotations %v, want only the service name and trigger time", s.Labels, s.Annotations)
	}
	ep := s.Endpoints[0]
	if ep.NodeName != nil || ep.Zone != nil || ep.Conditions.Serving != nil || ep.TargetRef.UID != "" {
		t.Errorf("endpoint kept too much: %+v", ep)
	}
	if ep.Conditions.Ready == nil || !*ep.Conditions.Ready || ep.TargetRef.Name != "p" {
		t.Errorf("endpoint lost what the index reads: %+v", ep)
	}
}
