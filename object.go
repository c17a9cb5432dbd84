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
	addresses addressList
}

// addressList is a slice's endpoint addresses, packed: thousands of
// slices hold them for as long as the plugin runs, so each address costs
// its bytes, four of bookkeeping and its endpoint's name, once.
type addressList struct {
	ips []byte // each address's bytes: 4 in an IPv4 slice, 16 in an IPv6 one
	v6  bool
	// meta is, per address, its state flags and where its endpoint's
	// label is in labels (see addressMeta).
	meta   []uint32
	labels string    // the endpoints' labels, one after the other
	zones  []*string // per address, its topology zone; with zonal only; shared
}

// An address's meta: the label's offset in labels (high 24 bits), its
// length (6 bits; labels are at most 63 bytes) and two flags.
const (
	addressReady    uint32 = 1 << iota // the endpoint is ready (or says nothing)
	labelIsHostname                    // the label is the endpoint's hostname
	labelLenShift   = 2
	labelOffShift   = 8
	maxLabelsLen    = 1 << (32 - labelOffShift)
)

// endpointAddress is one address of an endpoint, with what build needs of
// the endpoint.
type endpointAddress struct {
	ip         netip.Addr
	label      string // the endpoint's name under its service, when it has one; see endpointLabel
	zone       string // its topology zone, with zonal
	ready      bool
	isHostname bool // label is the endpoint's hostname
}

func (l *addressList) len() int { return len(l.meta) }

// at returns the i-th address.
func (l *addressList) at(i int) endpointAddress {
	m := l.meta[i]
	off, n := m>>labelOffShift, (m>>labelLenShift)&63
	a := endpointAddress{label: l.labels[off : off+n], ready: m&addressReady != 0, isHostname: m&labelIsHostname != 0}
	if l.v6 {
		a.ip = netip.AddrFrom16([16]byte(l.ips[16*i:]))
	} else {
		a.ip = netip.AddrFrom4([4]byte(l.ips[4*i:]))
	}
	if l.zones != nil && l.zones[i] != nil {
		a.zone = *l.zones[i]
	}
	return a
}

// equal tells whether two lists hold the same addresses, names and states.
func (l *addressList) equal(o *addressList) bool {
	if l.v6 != o.v6 || string(l.ips) != string(o.ips) || len(l.meta) != len(o.meta) || len(l.zones) != len(o.zones) {
		return false
	}
	for i := range l.meta {
		if a, b := l.at(i), o.at(i); a != b {
			return false
		}
	}
	return true
}

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
		n, labelsLen := 0, 0
		for i := range s.Endpoints {
			n += len(s.Endpoints[i].Addresses)
			label, _ := endpointLabel(&s.Endpoints[i], opts.podNames)
			labelsLen += len(label)
		}
		l := &out.addresses
		l.v6 = s.AddressType == discovery.AddressTypeIPv6
		width := 4
		if l.v6 {
			width = 16
		}
		l.ips = make([]byte, 0, width*n)
		l.meta = make([]uint32, 0, n)
		var labels strings.Builder
		labels.Grow(min(labelsLen, maxLabelsLen))
		if opts.zonal {
			l.zones = make([]*string, 0, n)
		}
		for i := range s.Endpoints {
			ep := &s.Endpoints[i]
			var meta uint32
			if ep.Conditions.Ready == nil || *ep.Conditions.Ready {
				meta |= addressReady
			}
			label, isHostname := endpointLabel(ep, opts.podNames)
			if isHostname {
				meta |= labelIsHostname
			}
			var zone *string
			if opts.zonal {
				if z := topologyZone(ep.Zone); z != "" {
					zone = zones.get(z)
				}
			}
			labelAt := uint32(labels.Len())<<labelOffShift | uint32(len(label))<<labelLenShift
			written := false
			for _, text := range ep.Addresses {
				ip, err := netip.ParseAddr(text)
				if s.AddressType == discovery.AddressTypeIPv4 {
					ip = ip.Unmap() // older API servers let ::ffff:10.0.0.1 into IPv4 slices
				}
				if err != nil || ip.Zone() != "" || !want(ip) {
					continue
				}
				if !written && label != "" {
					// No API server takes a slice of 16 MiB of names;
					// past that, an endpoint is named after its address.
					if labels.Len()+len(label) > maxLabelsLen {
						labelAt, meta = 0, meta&^labelIsHostname
					} else {
						labels.WriteString(label)
					}
					written = true
				}
				if l.v6 {
					b := ip.As16()
					l.ips = append(l.ips, b[:]...)
				} else {
					b := ip.As4()
					l.ips = append(l.ips, b[:]...)
				}
				l.meta = append(l.meta, meta|labelAt)
				if opts.zonal {
					l.zones = append(l.zones, zone)
				}
			}
		}
		l.labels = labels.String()
		if labels.Len() < labels.Cap() {
			// Endpoints without a usable address wrote no label: keep
			// only what was written.
			l.labels = strings.Clone(l.labels)
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

// asSlice returns the slim slice obj is (or a deleted one's tombstone
// holds), or nil.
func asSlice(obj any) *sliceInfo {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	s, _ := obj.(*sliceInfo)
	return s
}

// serviceRef returns the service a slice belongs to; false when it names
// none (or s is nil).
func (s *sliceInfo) serviceRef() (serviceRef, bool) {
	if s == nil || s.service == "" {
		return serviceRef{}, false
	}
	return serviceRef{s.namespace, s.service}, true
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
