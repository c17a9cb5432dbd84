package headless

import (
	"cmp"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coredns/coredns/plugin/pkg/dnsutil"

	discovery "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// serviceData is everything one headless service publishes. It is built
// once per change of the service and never modified after it is published,
// so queries read it without locks. It holds no DNS records: a reply needs
// copies of its records anyway (see reply), so the query path makes them
// straight from these addresses and names, and the index keeps only what
// tells one record from another.
type serviceData struct {
	rel   string    // "web.default.svc", relative to the forward zones
	addrs addrSet   // every ready address of the service
	pods  []podData // by label
	srv   []srvData // one per named port and protocol
	// fqdns[i*zones+z] is pods[i]'s complete name in forward zone z:
	// SRV targets, glue owners and (zone 0) PTR targets share them.
	fqdns []string
	zones int
}

// addrSet is addresses as A and AAAA records carry them, sorted, IPv4
// first. The addresses of a service share one backing array.
type addrSet struct {
	ips []net.IP
	v4  int // ips[:v4] are IPv4, ips[v4:] IPv6
}

func (s addrSet) a() []net.IP    { return s.ips[:s.v4] }
func (s addrSet) aaaa() []net.IP { return s.ips[s.v4:] }

// podData is one name under the service: a pod's hostname, or an id made
// from its address.
type podData struct {
	rel   string // "web-0.web.default.svc"
	addrs addrSet
}

// srvData is one SRV RRset, "_cql._tcp.web.default.svc", and its glue.
type srvData struct {
	rel     string
	targets []srvTarget // by pod label, then port
	glue    []int32     // pods whose addresses follow as glue, in order
	glueA   int         // their IPv4 addresses
	glueAll int         // all their addresses
	weight  uint16
}

type srvTarget struct {
	pod  int32
	port uint16
}

// fqdn is pods[pod]'s complete name in forward zone z.
func (sd *serviceData) fqdn(pod int32, z int) string { return sd.fqdns[int(pod)*sd.zones+z] }

// entryKind says what a forward name is.
type entryKind uint8

const (
	emptyNonTerminal entryKind = iota // exists for the names below it: svc, a namespace, _tcp.web...
	serviceName                       // web.default.svc
	podName                           // web-0.web.default.svc
	srvName                           // _cql._tcp.web.default.svc
)

// entry is what the index holds at one forward name: a kind, and for all
// but empty non-terminals the service and which of its pods or SRV RRsets.
// It is a value, so a name costs its map slot and nothing more.
type entry struct {
	svc  *serviceData
	kind entryKind
	i    int32
}

// addresses returns the entry's A/AAAA addresses and their TTL.
func (e entry) addresses(t ttls) (addrSet, uint32) {
	switch e.kind {
	case serviceName:
		return e.svc.addrs, t.service
	case podName:
		return e.svc.pods[e.i].addrs, t.pod
	}
	return addrSet{}, 0
}

// ptrEntry is the PTR RRset of one address. Almost always one pod of one
// service holds the address, and the entry names that pod, costing nothing
// beyond its map slot; an address under several names or services gets a
// merged set.
type ptrEntry struct {
	svc    *serviceData // the one holder, when shared is nil
	pod    int32
	shared *ptrSet
}

// targets returns the entry's PTR targets; one is room for the usual one.
func (e ptrEntry) targets(one *[1]string) []string {
	if e.shared != nil {
		return e.shared.targets
	}
	one[0] = e.svc.fqdn(e.pod, 0)
	return one[:]
}

// owners returns who holds the entry's address.
func (e ptrEntry) owners() []ptrOwner {
	switch {
	case e.shared != nil:
		return e.shared.owners
	case e.svc != nil:
		return []ptrOwner{{svc: e.svc, pods: []int32{e.pod}}}
	}
	return nil
}

// ptrSet is the merged PTR RRset of an address held under several names.
type ptrSet struct {
	targets []string // sorted, distinct
	owners  []ptrOwner
}

// ptrOwner is one service's pods holding an address.
type ptrOwner struct {
	svc  *serviceData
	pods []int32
}

// service is the part of a Service that decides what is published.
type service struct {
	namespace, name string
	hasSelector     bool
}

// published is the bookkeeping of one known service, for replacing it.
type published struct {
	namespace string
	data      *serviceData // nil while it has no ready endpoint
}

// index holds the published answers. Queries take the read lock for one map
// lookup; the informer side rebuilds one service at a time and swaps its
// entries in under the write lock, so an update costs what that service has,
// whatever the number of services.
type index struct {
	zones    []string // forward zones; zones[0] names PTR targets
	ttl      ttls
	podNames bool

	mu    sync.RWMutex
	names map[string]entry // forward names relative to their zone, lower case
	ptr   map[netip.Addr]ptrEntry
	// PTR names below each reverse empty non-terminal (244.10.in-addr.arpa.
	// for 10.244.1.5): while any, it answers NODATA, not NXDOMAIN (RFC 8020).
	reverseENT map[string]int
	serial     uint32

	// Writer-side state, guarded by buildMu.
	buildMu   sync.Mutex
	services  map[string]*published // known headless services, by "namespace/name"
	perNS     map[string]int        // known services per namespace
	endpoints int
}

func newIndex(zones []string, t ttls, podNames bool) *index {
	return &index{
		zones:      zones,
		ttl:        t,
		podNames:   podNames,
		names:      map[string]entry{},
		ptr:        map[netip.Addr]ptrEntry{},
		reverseENT: map[string]int{},
		serial:     uint32(time.Now().Unix()),
		services:   map[string]*published{},
		perNS:      map[string]int{},
	}
}

// lookup returns the entry at a forward name relative to its zone.
func (ix *index) lookup(rel string) (entry, bool) {
	ix.mu.RLock()
	e, ok := ix.names[rel]
	ix.mu.RUnlock()
	return e, ok
}

// lookupReverse returns the PTR entry at a full reverse name (none at a
// reverse empty non-terminal), and whether the name exists.
func (ix *index) lookupReverse(name string) (ptrEntry, bool) {
	ip, isAddress := parseReverseName(name)
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if isAddress {
		e, ok := ix.ptr[ip]
		return e, ok
	}
	return ptrEntry{}, ix.reverseENT[name] > 0
}

// soaSerial is the serial of the zones' SOA: the time of the last change.
func (ix *index) soaSerial() uint32 {
	ix.mu.RLock()
	s := ix.serial
	ix.mu.RUnlock()
	return s
}

// counts returns the known headless services and their published ready
// endpoint addresses.
func (ix *index) counts() (services, endpoints int) {
	ix.buildMu.Lock()
	defer ix.buildMu.Unlock()
	return len(ix.services), ix.endpoints
}

// rebuild republishes the service keyed "namespace/name" from what read
// returns: the service (nil when it is gone or filtered out) and its slices.
// Rebuilds are serialized and read their input inside the lock, so the last
// rebuild of a service always publishes the latest state.
func (ix *index) rebuild(key string, read func() (*service, []*discovery.EndpointSlice)) {
	ix.buildMu.Lock()
	defer ix.buildMu.Unlock()
	svc, endpointSlices := read()
	var sd *serviceData
	if svc != nil {
		sd = ix.build(svc, endpointSlices)
	}
	ix.publish(key, svc, sd)
}

// build computes what one service publishes. It returns nil when the
// service has no ready endpoint: then nothing under its name exists.
func (ix *index) build(svc *service, endpointSlices []*discovery.EndpointSlice) *serviceData {
	type srvKey struct{ name, proto string }
	type target struct {
		host string
		port uint16
	}
	type srvEntry struct {
		key srvKey
		target
	}
	var (
		serviceIPs []netip.Addr
		seenIP     = map[netip.Addr]bool{}
		hosts      = map[string][]netip.Addr{}
		srvTargets = map[srvKey][]target{}
		seenSRV    = map[srvEntry]bool{} // keeps big services linear
	)
	for _, slice := range endpointSlices {
		var want func(netip.Addr) bool
		switch slice.AddressType {
		case discovery.AddressTypeIPv4:
			want = netip.Addr.Is4
		case discovery.AddressTypeIPv6:
			// An IPv4-mapped address (::ffff:10.0.0.1) is an IPv4 address,
			// never an IPv6 endpoint: no AAAA, no ip6.arpa name for it.
			want = func(ip netip.Addr) bool { return ip.Is6() && !ip.Is4In6() }
		default: // FQDN and anything unknown have no place in A/AAAA answers
			continue
		}
		ports := namedPorts(slice.Ports)
		for i := range slice.Endpoints {
			ep := &slice.Endpoints[i]
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			for _, text := range ep.Addresses {
				ip, err := netip.ParseAddr(text)
				if slice.AddressType == discovery.AddressTypeIPv4 {
					ip = ip.Unmap() // older API servers let ::ffff:10.0.0.1 into IPv4 slices
				}
				if err != nil || ip.Zone() != "" || !want(ip) {
					continue
				}
				host := ix.endpointLabel(ep, ip)
				if !seenIP[ip] {
					seenIP[ip] = true
					serviceIPs = append(serviceIPs, ip)
				}
				if !slices.Contains(hosts[host], ip) {
					hosts[host] = append(hosts[host], ip)
				}
				for _, p := range ports {
					e := srvEntry{srvKey{p.name, p.proto}, target{host, p.port}}
					if !seenSRV[e] {
						seenSRV[e] = true
						srvTargets[e.key] = append(srvTargets[e.key], e.target)
					}
				}
			}
		}
	}
	if len(serviceIPs) == 0 {
		return nil
	}

	sd := &serviceData{rel: svc.name + "." + svc.namespace + ".svc", zones: len(ix.zones)}
	// Every address once, in one backing array; pods' sets point into it.
	slices.SortFunc(serviceIPs, netip.Addr.Compare) // IPv4 first
	raw := make([]byte, 0, 16*len(serviceIPs))
	wire := make(map[netip.Addr]net.IP, len(serviceIPs))
	sd.addrs.ips = make([]net.IP, len(serviceIPs))
	for i, ip := range serviceIPs {
		if ip.Is4() {
			b := ip.As4()
			raw = append(raw, b[:]...)
			sd.addrs.v4++
			sd.addrs.ips[i] = net.IP(raw[len(raw)-4 : len(raw) : len(raw)])
		} else {
			b := ip.As16()
			raw = append(raw, b[:]...)
			sd.addrs.ips[i] = net.IP(raw[len(raw)-16 : len(raw) : len(raw)])
		}
		wire[ip] = sd.addrs.ips[i]
	}

	labels := make([]string, 0, len(hosts))
	podIPs := 0
	for host, ips := range hosts {
		labels = append(labels, host)
		podIPs += len(ips)
	}
	slices.Sort(labels)
	sd.pods = make([]podData, len(labels))
	sd.fqdns = make([]string, len(labels)*len(ix.zones))
	all := make([]net.IP, 0, podIPs) // the pods' address lists, end to end
	for i, host := range labels {
		ips := hosts[host]
		slices.SortFunc(ips, netip.Addr.Compare) // IPv4 first
		start := len(all)
		v4 := 0
		for _, ip := range ips {
			all = append(all, wire[ip])
			if ip.Is4() {
				v4++
			}
		}
		for z, zone := range ix.zones {
			sd.fqdns[i*len(ix.zones)+z] = dnsutil.Join(host, sd.rel, zone)
		}
		// The relative name is the start of the first complete name.
		sd.pods[i] = podData{
			rel:   sd.fqdns[i*len(ix.zones)][:len(host)+1+len(sd.rel)],
			addrs: addrSet{ips: all[start:len(all):len(all)], v4: v4},
		}
	}

	keys := make([]srvKey, 0, len(srvTargets))
	for k := range srvTargets {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b srvKey) int { return cmp.Or(cmp.Compare(a.name, b.name), cmp.Compare(a.proto, b.proto)) })
	sd.srv = make([]srvData, len(keys))
	for j, k := range keys {
		targets := srvTargets[k]
		slices.SortFunc(targets, func(a, b target) int {
			return cmp.Or(cmp.Compare(a.host, b.host), cmp.Compare(a.port, b.port))
		})
		set := &sd.srv[j]
		set.rel = "_" + k.name + "._" + k.proto + "." + sd.rel
		set.weight = uint16(max(1, 100/len(targets)))
		set.targets = make([]srvTarget, len(targets))
		for i, t := range targets {
			pod, _ := slices.BinarySearch(labels, t.host)
			set.targets[i] = srvTarget{pod: int32(pod), port: t.port}
			if !slices.Contains(set.glue, int32(pod)) {
				set.glue = append(set.glue, int32(pod))
				set.glueA += sd.pods[pod].addrs.v4
				set.glueAll += len(sd.pods[pod].addrs.ips)
			}
		}
	}
	return sd
}

// names lists every forward name sd publishes, with its entry.
func (sd *serviceData) names(yield func(string, entry) bool) {
	if !yield(sd.rel, entry{svc: sd, kind: serviceName}) {
		return
	}
	for i := range sd.pods {
		if !yield(sd.pods[i].rel, entry{svc: sd, kind: podName, i: int32(i)}) {
			return
		}
	}
	for j := range sd.srv {
		rel := sd.srv[j].rel
		if !yield(rel, entry{svc: sd, kind: srvName, i: int32(j)}) {
			return
		}
		// "_tcp.web.default.svc": the SRV name without its first label.
		if !yield(rel[strings.IndexByte(rel, '.')+1:], entry{kind: emptyNonTerminal}) {
			return
		}
	}
}

// ptrPods returns, per address of sd, the pods that hold it.
func (sd *serviceData) ptrPods() map[netip.Addr][]int32 {
	out := make(map[netip.Addr][]int32, len(sd.addrs.ips))
	for i := range sd.pods {
		for _, wire := range sd.pods[i].addrs.ips {
			ip, _ := netip.AddrFromSlice(wire)
			out[ip] = append(out[ip], int32(i))
		}
	}
	return out
}

// publish replaces what the service key published before with sd (nil
// removes it), keeping the shared names (svc and namespace empty
// non-terminals, PTRs and reverse empty non-terminals) right.
func (ix *index) publish(key string, svc *service, sd *serviceData) {
	old := ix.services[key]
	if old == nil && svc == nil {
		return
	}
	var next *published
	if svc != nil {
		next = &published{namespace: svc.namespace, data: sd}
	}

	// PTR owners first: which addresses change, and to what. Only this
	// writer changes ix.ptr, so it may read it unlocked.
	type ptrChange struct {
		entry  ptrEntry
		exists bool
	}
	ptrChanges := map[netip.Addr]ptrChange{}
	var newPods map[netip.Addr][]int32
	if sd != nil {
		newPods = sd.ptrPods()
	}
	if old != nil && old.data != nil {
		for ip := range old.data.ptrPods() {
			ptrChanges[ip] = ptrChange{}
		}
	}
	for ip := range newPods {
		ptrChanges[ip] = ptrChange{}
	}
	for ip := range ptrChanges {
		var owners []ptrOwner
		if cur, ok := ix.ptr[ip]; ok {
			owners = slices.DeleteFunc(slices.Clone(cur.owners()), func(o ptrOwner) bool { return old != nil && o.svc == old.data })
		}
		if pods, ok := newPods[ip]; ok {
			owners = append(owners, ptrOwner{svc: sd, pods: pods})
		}
		e, exists := newPTREntry(owners)
		ptrChanges[ip] = ptrChange{e, exists}
	}

	// Namespace and svc empty non-terminals follow the known services: a
	// service counts even with no ready endpoint (then it publishes no
	// name of its own).
	nsDelta := map[string]int{}
	if old != nil {
		nsDelta[old.namespace]--
		if old.data != nil {
			ix.endpoints -= len(old.data.addrs.ips)
		}
		delete(ix.services, key)
	}
	if next != nil {
		nsDelta[next.namespace]++
		if sd != nil {
			ix.endpoints += len(sd.addrs.ips)
		}
		ix.services[key] = next
	}
	ents := map[string]bool{} // name → exists
	for ns, d := range nsDelta {
		before := ix.perNS[ns]
		after := before + d
		if after == 0 {
			delete(ix.perNS, ns)
		} else {
			ix.perNS[ns] = after
		}
		if (before == 0) != (after == 0) {
			ents[ns+".svc"] = after > 0
		}
	}
	ents["svc"] = len(ix.services) > 0

	ix.mu.Lock()
	defer ix.mu.Unlock()
	if old != nil && old.data != nil {
		for name := range old.data.names {
			delete(ix.names, name)
		}
	}
	if sd != nil {
		for name, e := range sd.names {
			// A name that is both a service's _tcp and an SRV name of
			// another cannot happen: labels starting with _ are not
			// hostnames or service names. So the last write wins safely.
			ix.names[name] = e
		}
	}
	for name, exists := range ents {
		if !exists {
			delete(ix.names, name)
		} else if _, ok := ix.names[name]; !ok {
			ix.names[name] = entry{kind: emptyNonTerminal}
		}
	}
	for ip, c := range ptrChanges {
		_, had := ix.ptr[ip]
		if c.exists {
			ix.ptr[ip] = c.entry
		} else {
			delete(ix.ptr, ip)
		}
		if had != c.exists {
			ix.countReverseAncestors(reverseName(ip), c.exists)
		}
	}
	ix.serial++
}

// newPTREntry makes the PTR entry of an address from its holders; it does
// not exist when none is left.
func newPTREntry(owners []ptrOwner) (ptrEntry, bool) {
	switch {
	case len(owners) == 0:
		return ptrEntry{}, false
	case len(owners) == 1 && len(owners[0].pods) == 1:
		return ptrEntry{svc: owners[0].svc, pod: owners[0].pods[0]}, true
	}
	var targets []string
	for _, o := range owners {
		for _, pod := range o.pods {
			targets = append(targets, o.svc.fqdn(pod, 0))
		}
	}
	slices.Sort(targets)
	return ptrEntry{shared: &ptrSet{targets: slices.Compact(targets), owners: owners}}, true
}

// countReverseAncestors adds (or takes away) one PTR name below each
// ancestor of name, up to in-addr.arpa. or ip6.arpa. Callers hold mu.
func (ix *index) countReverseAncestors(name string, added bool) {
	for {
		name = name[strings.IndexByte(name, '.')+1:]
		if name == "in-addr.arpa." || name == "ip6.arpa." || name == "" {
			return
		}
		switch before := ix.reverseENT[name]; {
		case added:
			ix.reverseENT[name] = before + 1
		case before <= 1:
			delete(ix.reverseENT, name)
		default:
			ix.reverseENT[name] = before - 1
		}
	}
}

// parseReverseName returns the address a complete reverse name stands for:
// four decimal labels under in-addr.arpa. or 32 nibbles under ip6.arpa.,
// written as reverseName writes them (lower case, no leading zeros). It
// allocates nothing.
func parseReverseName(name string) (netip.Addr, bool) {
	if rest, ok := strings.CutSuffix(name, ".in-addr.arpa."); ok {
		var b [4]byte
		for i := 3; i >= 0; i-- {
			label := rest
			if i > 0 {
				dot := strings.IndexByte(rest, '.')
				if dot < 0 {
					return netip.Addr{}, false
				}
				label, rest = rest[:dot], rest[dot+1:]
			}
			if len(label) == 0 || len(label) > 3 || (len(label) > 1 && label[0] == '0') {
				return netip.Addr{}, false
			}
			v := 0
			for _, c := range []byte(label) {
				if c < '0' || c > '9' {
					return netip.Addr{}, false
				}
				v = 10*v + int(c-'0')
			}
			if v > 255 {
				return netip.Addr{}, false
			}
			b[i] = byte(v)
		}
		return netip.AddrFrom4(b), true
	}
	if rest, ok := strings.CutSuffix(name, ".ip6.arpa."); ok && len(rest) == 63 {
		var b [16]byte
		for i := range 32 {
			c := rest[2*i]
			if i < 31 && rest[2*i+1] != '.' {
				return netip.Addr{}, false
			}
			var v byte
			switch {
			case c >= '0' && c <= '9':
				v = c - '0'
			case c >= 'a' && c <= 'f':
				v = c - 'a' + 10
			default:
				return netip.Addr{}, false
			}
			// The first label is the last nibble.
			pos := 31 - i
			if pos%2 == 0 {
				b[pos/2] |= v << 4
			} else {
				b[pos/2] |= v
			}
		}
		return netip.AddrFrom16(b), true
	}
	return netip.Addr{}, false
}

type namedPort struct {
	name, proto string
	port        uint16
}

// namedPorts returns the slice's ports that can have SRV records: named,
// with a number, in lower case as they appear in the SRV owner name.
func namedPorts(ports []discovery.EndpointPort) []namedPort {
	var out []namedPort
	for _, p := range ports {
		if p.Name == nil || p.Port == nil || *p.Port <= 0 || *p.Port > 65535 {
			continue
		}
		name := strings.ToLower(*p.Name)
		if len(validation.IsDNS1123Label(name)) > 0 {
			continue
		}
		proto := "tcp"
		if p.Protocol != nil {
			proto = strings.ToLower(string(*p.Protocol))
		}
		if len(validation.IsDNS1123Label(proto)) > 0 {
			continue
		}
		out = append(out, namedPort{name, proto, uint16(*p.Port)})
	}
	return out
}

// endpointLabel is the DNS label that names one endpoint address under its
// service: its hostname; with endpoint_pod_names, its pod's name; else an
// id made from the IP.
func (ix *index) endpointLabel(ep *discovery.Endpoint, ip netip.Addr) string {
	if ep.Hostname != nil && isLabel(*ep.Hostname) {
		return *ep.Hostname
	}
	if ix.podNames && ep.TargetRef != nil && ep.TargetRef.Kind == "Pod" && isLabel(ep.TargetRef.Name) {
		return ep.TargetRef.Name
	}
	return ipLabel(ip)
}

func isLabel(s string) bool { return len(validation.IsDNS1123Label(s)) == 0 }

// ipLabel names an address as a DNS label: 10-244-1-5 for IPv4 (as CoreDNS
// does), and the eight fully written groups joined by hyphens for IPv6, so
// that no label starts or ends with a hyphen and each address has one name.
func ipLabel(ip netip.Addr) string {
	if ip.Is4() {
		return strings.ReplaceAll(ip.String(), ".", "-")
	}
	b := ip.As16()
	var sb strings.Builder
	sb.Grow(39)
	for i := 0; i < 16; i += 2 {
		if i > 0 {
			sb.WriteByte('-')
		}
		g := strconv.FormatUint(uint64(b[i])<<8|uint64(b[i+1]), 16)
		sb.WriteString(strings.Repeat("0", 4-len(g)))
		sb.WriteString(g)
	}
	return sb.String()
}

// reverseName is the in-addr.arpa. (IPv4) or ip6.arpa. (IPv6, IPv4-mapped
// included) name of ip, in lower case.
func reverseName(ip netip.Addr) string {
	var sb strings.Builder
	if ip.Is4() {
		b := ip.As4()
		for i := 3; i >= 0; i-- {
			sb.WriteString(strconv.Itoa(int(b[i])))
			sb.WriteByte('.')
		}
		sb.WriteString("in-addr.arpa.")
		return sb.String()
	}
	const hex = "0123456789abcdef"
	b := ip.As16()
	for i := 15; i >= 0; i-- {
		sb.WriteByte(hex[b[i]&0xf])
		sb.WriteByte('.')
		sb.WriteByte(hex[b[i]>>4])
		sb.WriteByte('.')
	}
	sb.WriteString("ip6.arpa.")
	return sb.String()
}
