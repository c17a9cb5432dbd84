package e2e

import (
	"context"
	"testing"

	core "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

func createService(t *testing.T, client kubernetes.Interface, ns, name string, selector bool, ports ...core.ServicePort) {
	t.Helper()
	svc := &core.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       core.ServiceSpec{ClusterIP: core.ClusterIPNone, Ports: ports},
	}
	if selector {
		svc.Spec.Selector = map[string]string{"app": name}
	}
	if len(ports) == 0 {
		svc.Spec.Ports = []core.ServicePort{{Name: "http", Port: 80}}
	}
	if _, err := client.CoreV1().Services(ns).Create(context.Background(), svc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating service %s/%s: %v", ns, name, err)
	}
}

// The managed-by label of EndpointSlices.
const (
	// handWritten marks the slices the tests write themselves. The real
	// endpointslice controller of the shared cluster leaves them alone (it
	// keeps only the slices labelled with its own name), and so the tests
	// can give a Service with a selector the odd data they want.
	handWritten = "e2e.headless.test"
	// controllerManaged is the endpointslice controller's own name.
	controllerManaged = "endpointslice-controller.k8s.io"
)

// newSlice returns an EndpointSlice of service svc, labelled as a headless
// service's slices are (service.kubernetes.io/headless, which the plugin
// selects on) but managed by handWritten.
func newSlice(ns, name, svc string, family discovery.AddressType, ports []discovery.EndpointPort, eps ...discovery.Endpoint) *discovery.EndpointSlice {
	return &discovery.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{
			discovery.LabelServiceName:       svc,
			"service.kubernetes.io/headless": "",
			discovery.LabelManagedBy:         handWritten,
		}},
		AddressType: family,
		Ports:       ports,
		Endpoints:   eps,
	}
}

func createSlice(t *testing.T, client kubernetes.Interface, s *discovery.EndpointSlice) {
	t.Helper()
	if _, err := client.DiscoveryV1().EndpointSlices(s.Namespace).Create(context.Background(), s, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating slice %s/%s: %v", s.Namespace, s.Name, err)
	}
}

func updateSlice(t *testing.T, client kubernetes.Interface, s *discovery.EndpointSlice) *discovery.EndpointSlice {
	t.Helper()
	out, err := client.DiscoveryV1().EndpointSlices(s.Namespace).Update(context.Background(), s, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("updating slice %s/%s: %v", s.Namespace, s.Name, err)
	}
	return out
}

func endpoint(hostname string, addrs ...string) discovery.Endpoint {
	ep := discovery.Endpoint{Addresses: addrs}
	if hostname != "" {
		ep.Hostname = &hostname
	}
	return ep
}

func withReady(ep discovery.Endpoint, ready bool) discovery.Endpoint {
	ep.Conditions.Ready = &ready
	return ep
}

func port(name string, number int32, proto core.Protocol) discovery.EndpointPort {
	p := discovery.EndpointPort{Port: &number, Protocol: &proto}
	if name != "" {
		p.Name = &name
	}
	return p
}
