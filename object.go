package headless

import (
	"sync"
	"time"

	core "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	mcs "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"
)

// The first step of the flow: what the informers keep of each API object.
// The transforms run as objects arrive, before they are stored, so the
// stores hold only what build reads.

// Labels and annotations of EndpointSlices that the plugin reads.
const (
	headlessLabel     = "service.kubernetes.io/headless"
	managedByLabel    = "endpointslice.kubernetes.io/managed-by"
	controllerManager = "endpointslice-controller.k8s.io"
	triggerTimeKey    = "endpoints.kubernetes.io/last-change-trigger-time"

	// The labels of the EndpointSlices a Multi-Cluster Services
	// implementation imports: the ServiceImport, and the cluster the
	// endpoints are in.
	importedServiceLabel = mcs.LabelServiceName
	sourceClusterLabel   = mcs.LabelSourceCluster
)

var (
	// hasSelector stands for any selector; shared, so never written to.
	hasSelector = map[string]string{"": ""}
	// Every slim endpoint's readiness points at one of these; never
	// written to either.
	isReady, isNotReady = true, false
)

// slimService keeps of a Service only what build reads. Of its selector
// that is only whether it has one, so every service with a selector shares
// hasSelector: its own map would cost more than the rest.
func slimService(obj any) (any, error) {
	s, ok := obj.(*core.Service)
	if !ok {
		return obj, nil
	}
	slim := &core.Service{
		ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: s.Namespace, ResourceVersion: s.ResourceVersion},
		Spec:       core.ServiceSpec{ClusterIP: s.Spec.ClusterIP},
	}
	if len(s.Spec.Selector) > 0 {
		slim.Spec.Selector = hasSelector
	}
	return slim, nil
}

// slimServiceImport keeps of a ServiceImport only whether it is headless.
func slimServiceImport(obj any) (any, error) {
	s, ok := obj.(*mcs.ServiceImport)
	if !ok {
		return obj, nil
	}
	return &mcs.ServiceImport{
		ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: s.Namespace, ResourceVersion: s.ResourceVersion},
		Spec:       mcs.ServiceImportSpec{Type: s.Spec.Type},
	}, nil
}

// slimSlice returns the transform that keeps of an EndpointSlice only what
// build reads: no managedFields, hints, owner references or other
// annotations; the pod an endpoint names only with endpoint_pod_names, its
// zone only with zonal.
func slimSlice(opts buildOptions) cache.TransformFunc {
	zones := &interned{}
	return func(obj any) (any, error) {
		s, ok := obj.(*discovery.EndpointSlice)
		if !ok {
			return obj, nil
		}
		out := &discovery.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{
				Name: s.Name, Namespace: s.Namespace, ResourceVersion: s.ResourceVersion,
			},
			AddressType: s.AddressType,
			Ports:       s.Ports,
			Endpoints:   make([]discovery.Endpoint, len(s.Endpoints)),
		}
		for _, key := range []string{discovery.LabelServiceName, importedServiceLabel, sourceClusterLabel} {
			if value, ok := s.Labels[key]; ok {
				if out.Labels == nil {
					out.Labels = map[string]string{}
				}
				out.Labels[key] = value
			}
		}
		if t, ok := s.Annotations[triggerTimeKey]; ok {
			out.Annotations = map[string]string{triggerTimeKey: t}
		}
		for i, ep := range s.Endpoints {
			slim := discovery.Endpoint{Addresses: ep.Addresses, Hostname: ep.Hostname}
			if r := ep.Conditions.Ready; r != nil {
				slim.Conditions.Ready = &isNotReady
				if *r {
					slim.Conditions.Ready = &isReady
				}
			}
			if opts.podNames && ep.TargetRef != nil {
				slim.TargetRef = &core.ObjectReference{Kind: ep.TargetRef.Kind, Name: ep.TargetRef.Name}
			}
			if opts.zonal && ep.Zone != nil {
				slim.Zone = zones.get(*ep.Zone)
			}
			out.Endpoints[i] = slim
		}
		return out, nil
	}
}

// interned shares one copy of each string among the slim objects: a
// cluster has a handful of zones and thousands of endpoints naming them.
type interned struct{ m sync.Map }

func (in *interned) get(s string) *string {
	if p, ok := in.m.Load(s); ok {
		return p.(*string)
	}
	p, _ := in.m.LoadOrStore(s, &s)
	return p.(*string)
}

// serviceKeyOf returns "namespace/service" of a slice (possibly a deleted
// one's tombstone), or "" when it names no service.
func serviceKeyOf(obj any) string { return sliceOwnerKey(obj, discovery.LabelServiceName) }

// importKeyOf returns "namespace/service" of the ServiceImport an imported
// slice belongs to, or "".
func importKeyOf(obj any) string { return sliceOwnerKey(obj, importedServiceLabel) }

func sliceOwnerKey(obj any, label string) string {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	s, ok := obj.(*discovery.EndpointSlice)
	if !ok || s == nil {
		return ""
	}
	name := s.Labels[label]
	if name == "" {
		return ""
	}
	return s.Namespace + "/" + name
}

// triggerTime is when the endpoints of a slice last changed, as the
// controller that wrote it says.
func triggerTime(obj any) (time.Time, bool) {
	s, ok := obj.(*discovery.EndpointSlice)
	if !ok || s == nil {
		return time.Time{}, false
	}
	v, ok := s.Annotations[triggerTimeKey]
	if !ok {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	return t, err == nil
}
