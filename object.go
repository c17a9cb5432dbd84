package headless

import (
	"net/netip"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	core "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	mcs "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"
)

// The first step of the flow: what the informers keep of each API object.
// The transforms run as objects arrive, before they are stored, and turn
// each into a compact value of the plugin's own: the informers' stores hold
// those, and nothing else of the API objects, so that the memory they cost
// is a few tens of bytes per endpoint.

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

// objectKey is the namespace, name and resource version of a stored
// object. Its GetObjectMeta lets client-go's stores key and version the
// compact values as they do API objects.
type objectKey struct {
	namespace, name, resourceVersion string
}

// GetObjectMeta implements metav1.ObjectMetaAccessor.
func (k *objectKey) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Namespace: k.namespace, Name: k.name, ResourceVersion: k.resourceVersion}
}

// version is the object's resource version.
func (k *objectKey) version() string { return k.resourceVersion }

func keyOf(m metav1.ObjectMeta) objectKey {
	return objectKey{namespace: m.Namespace, name: m.Name, resourceVersion: m.ResourceVersion}
}

// serviceInfo is what the plugin keeps of a Service or a ServiceImport.
type serviceInfo struct {
	objectKey
	headless    bool // clusterIP None, or a Headless ServiceImport
	hasSelector bool
}

// slimService returns the transform of Services.
func slimService(in *intake) cache.TransformFunc {
	return func(obj any) (any, error) {
		s, ok := obj.(*core.Service)
		if !ok {
			return obj, nil
		}
		in.took(decodedSize(s))
		return &serviceInfo{objectKey: keyOf(s.ObjectMeta), headless: s.Spec.ClusterIP == core.ClusterIPNone, hasSelector: len(s.Spec.Selector) > 0}, nil
	}
}

// slimServiceImport returns the transform of ServiceImports.
func slimServiceImport(in *intake) cache.TransformFunc {
	return func(obj any) (any, error) {
		s, ok := obj.(*mcs.ServiceImport)
		if !ok {
			return obj, nil
		}
		in.took(4096) // generated without a Size method; small objects
		return &serviceInfo{objectKey: keyOf(s.ObjectMeta), headless: s.Spec.Type == mcs.Headless}, nil
	}
}

// sliceInfo is what the plugin keeps of an EndpointSlice: the service it
// belongs to, its ports, and each address of its endpoints.
type sliceInfo struct {
	objectKey
	service string // the Service (or ServiceImport) it belongs to; "" for none
	cluster string // of an imported slice: the cluster its endpoints are in
	trigger time.Time
	ports   []srvPort
	// addresses are the slice's endpoint addresses of its own family,
	// one entry per address: an endpoint with several has an entry for
	// each, all with its name and state.
	addresses []endpointAddress
}

// endpointAddress is one address of an endpoint, with what build needs of
// the endpoint.
type endpointAddress struct {
	ip    ipBytes
	label string  // the endpoint's name under its service, when it has one; see endpointLabel
	zone  *string // its topology zone, kept with zonal only; shared
	flags uint8
}

const (
	addressReady    uint8 = 1 << iota // the endpoint is ready (or says nothing)
	addressIPv4                       // ip holds an IPv4 address
	labelIsHostname                   // label is the endpoint's hostname
)

// ipBytes is an address as 16 bytes, IPv4 in its mapped form; the
// addressIPv4 flag tells which.
type ipBytes [16]byte

func (a endpointAddress) addr() netip.Addr {
	ip := netip.AddrFrom16(a.ip)
	if a.flags&addressIPv4 != 0 {
		return ip.Unmap()
	}
	return ip
}

func (a endpointAddress) ready() bool { return a.flags&addressReady != 0 }

// slimSlice returns the transform of EndpointSlices. It keeps the labels
// that name the owner, the trigger time, the ports that SRV records can
// point at, and for each address that belongs in an answer its endpoint's
// readiness and name: its hostname; with endpoint_pod_names, its pod's
// name; with zonal, its zone. Everything else of the slice is dropped here:
// managedFields, hints, node names, owner references, other annotations.
func slimSlice(opts buildOptions, in *intake) cache.TransformFunc {
	zones := &interned{}
	return func(obj any) (any, error) {
		s, ok := obj.(*discovery.EndpointSlice)
		if !ok {
			return obj, nil
		}
		in.took(decodedSize(s))
		out := &sliceInfo{objectKey: keyOf(s.ObjectMeta), ports: srvPorts(s.Ports)}
		out.service = s.Labels[discovery.LabelServiceName]
		if opts.clusterset {
			out.service, out.cluster = s.Labels[importedServiceLabel], s.Labels[sourceClusterLabel]
		}
		if t, ok := s.Annotations[triggerTimeKey]; ok {
			out.trigger, _ = time.Parse(time.RFC3339Nano, t)
		}
		var want func(netip.Addr) bool
		switch s.AddressType {
		case discovery.AddressTypeIPv4:
			want = netip.Addr.Is4
		case discovery.AddressTypeIPv6:
			// An IPv4-mapped address (::ffff:10.0.0.1) is an IPv4 address,
			// never an IPv6 endpoint: no AAAA, no ip6.arpa name for it.
			want = func(ip netip.Addr) bool { return ip.Is6() && !ip.Is4In6() }
		default: // FQDN and anything unknown have no place in A/AAAA answers
			return out, nil
		}
		n := 0
		for i := range s.Endpoints {
			n += len(s.Endpoints[i].Addresses)
		}
		out.addresses = make([]endpointAddress, 0, n)
		for i := range s.Endpoints {
			ep := &s.Endpoints[i]
			var flags uint8
			if ep.Conditions.Ready == nil || *ep.Conditions.Ready {
				flags |= addressReady
			}
			label, isHostname := endpointLabel(ep, opts.podNames)
			if isHostname {
				flags |= labelIsHostname
			}
			var zone *string
			if opts.zonal {
				if z := topologyZone(ep.Zone); z != "" {
					zone = zones.get(z)
				}
			}
			for _, text := range ep.Addresses {
				ip, err := netip.ParseAddr(text)
				if s.AddressType == discovery.AddressTypeIPv4 {
					ip = ip.Unmap() // older API servers let ::ffff:10.0.0.1 into IPv4 slices
				}
				if err != nil || ip.Zone() != "" || !want(ip) {
					continue
				}
				a := endpointAddress{ip: ip.As16(), label: label, zone: zone, flags: flags}
				if ip.Is4() {
					a.flags |= addressIPv4
				}
				out.addresses = append(out.addresses, a)
			}
		}
		return out, nil
	}
}

// endpointLabel is the DNS label that names an endpoint under its service
// when it has a name: its hostname; with endpoint_pod_names, its pod's
// name. "" means build names it after its address. isHostname tells the
// first case.
func endpointLabel(ep *discovery.Endpoint, podNames bool) (label string, isHostname bool) {
	if ep.Hostname != nil && isLabel(*ep.Hostname) {
		return *ep.Hostname, true
	}
	if podNames && ep.TargetRef != nil && ep.TargetRef.Kind == "Pod" && isLabel(ep.TargetRef.Name) {
		return ep.TargetRef.Name, false
	}
	return "", false
}

// topologyZone returns an endpoint's topology zone as zonal names spell it
// (lower case), or "" when it has none or one no DNS name can hold. Zone
// values are label values (63 bytes of letters, digits, '-', '_' and '.'),
// and a dot separates DNS labels, so an empty label ("a..b") is refused.
func topologyZone(zone *string) string {
	if zone == nil || *zone == "" || !isLabelValue(*zone) || strings.Contains(*zone, "..") {
		return ""
	}
	return strings.ToLower(*zone)
}

// intake keeps the heap near its live size while a large list comes in.
// After an API server restart every informer lists again, and each object
// is decoded whole before its transform slims it: that garbage, the
// objects' full size, would grow the heap, and the process's resident
// memory, to twice the live data before the collector runs (GOGC=100),
// just when a cluster-wide restart hits every DNS replica at once. The
// transforms count what they take in, and past a share of the live heap
// the intake collects. Ordinary change rates reach that share rarely.
type intake struct {
	taken  atomic.Int64
	budget atomic.Int64 // bytes taken in between collections
}

// intakeShare is the share of the live heap that objects taken in may add
// before a collection; at least intakeMin. The estimate of what decoding
// took counts about half of what the watch stream allocates around it, so
// the heap grows by about twice that share.
const (
	intakeShare = 16 // 1/16
	intakeMin   = 1 << 20
)

func newIntake() *intake {
	in := &intake{}
	in.budget.Store(intakeMin)
	return in
}

// took counts n bytes of decoded objects, and collects when they pass the
// budget. A nil intake counts nothing.
func (in *intake) took(n int) {
	if in == nil || in.taken.Add(int64(n)) < in.budget.Load() {
		return
	}
	in.taken.Store(0)
	runtime.GC()
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(sample)
	if sample[0].Value.Kind() == metrics.KindUint64 {
		in.budget.Store(max(intakeMin, int64(sample[0].Value.Uint64())/intakeShare))
	}
}

// decodedSize estimates what decoding an object allocated: about three
// times its protobuf size (measured for controller-written EndpointSlices).
func decodedSize(obj interface{ Size() int }) int { return 3 * obj.Size() }

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
func serviceKeyOf(obj any) string {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	s, ok := obj.(*sliceInfo)
	if !ok || s == nil || s.service == "" {
		return ""
	}
	return s.namespace + "/" + s.service
}

// triggerTime is when the endpoints of a slice last changed, as the
// controller that wrote it says.
func triggerTime(obj any) (time.Time, bool) {
	s, ok := obj.(*sliceInfo)
	if !ok || s == nil || s.trigger.IsZero() {
		return time.Time{}, false
	}
	return s.trigger, true
}
