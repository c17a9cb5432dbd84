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
	"github.com/miekg/dns"

	discovery "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// node is everything published at one DNS name. It is built once per change
// and never modified after it is published, so queries read it without locks.
// Owner names of a, aaaa, srv and ptr are left empty: the query fills in the
// question's name as asked.
type node struct {
	a    []dns.A
	aaaa []dns.AAAA
	srv  []srvSet // one per forward zone, for SRV names only
	ptr  []dns.PTR
}

// emptyNonTerminal is every name that exists only for the names below it:
// svc, a namespace, a service's _tcp. One node serves them all.
var emptyNonTerminal = &node{}

// srvSet is an SRV RRset and its glue, for one forward zone: targets and
// glue owner names are complete names in that zone.
type srvSet struct {
	srv  []dns.SRV
	a    []dns.A
	aaaa []dns.AAAA
	// compressedLen is the size of the whole reply to the SRV question in
	// lower case, compressed, without OPT record: the query path knows
	// from it whether a reply fits without measuring it again.
	compressedLen int
}

// service is the part of a Service that decides what is published.
type service struct {
	namespace, name string
	hasSelector     bool
}

// serviceAnswers is what one service publishes, ready to be swapped in.
type serviceAnswers struct {
	names     map[string]*node        // relative to the zone, e.g. "web-0.web.default.svc"
	ptr       map[netip.Addr][]string // pod names that hold each IP, in the primary zone
	endpoints int                     // ready endpoint addresses, deduplicated
}

// ptrOwner is one service's names for an IP. An IP is almost always held
// by one service, so a short slice beats a map here.
type ptrOwner struct {
	service string   // "namespace/name"
	targets []string // full pod names in the primary zone
}

// published is the bookkeeping of one known service, for replacing it.
type published struct {
	namespace string
	names     []string
	ptrIPs    []netip.Addr
	endpoints int
}

// index holds the published answers. Queries take the read lock for one map
// lookup; the informer side rebuilds one service at a time and swaps its
// nodes in under the write lock, so an update costs what that service has,
// whatever the number of services.
type index struct {
	zones    []string // forward zones; zones[0] names PTR targets
	ttl      ttls
	podNames bool

	mu      sync.RWMutex
	names   map[string]*node // forward names relative to their zone, lower case
	reverse map[string]*node // full reverse names, lower case
	serial  uint32

	// Writer-side state, guarded by buildMu.
	buildMu   sync.Mutex
	services  map[string]*published     // known headless services, by "namespace/name"
	perNS     map[string]int            // known services per namespace
	ptrOwners map[netip.Addr][]ptrOwner // who holds each IP, for its PTRs
	endpoints int
	// PTR names below each reverse empty non-terminal (244.10.in-addr.arpa.
	// for 10.244.1.5): while any, it answers NODATA, not NXDOMAIN (RFC 8020).
	reverseENT map[string]int
}

func newIndex(zones []string, t ttls, podNames bool) *index {
	return &index{
		zones:      zones,
		ttl:        t,
		podNames:   podNames,
		names:      map[string]*node{},
		reverse:    map[string]*node{},
		serial:     uint32(time.Now().Unix()),
		services:   map[string]*published{},
		perNS:      map[string]int{},
		ptrOwners:  map[netip.Addr][]ptrOwner{},
		reverseENT: map[string]int{},
	}
}

// lookup returns the node at a forward name relative to its zone.
func (ix *index) lookup(rel string) *node {
	ix.mu.RLock()
	n := ix.names[rel]
	ix.mu.RUnlock()
	return n
}

// lookupReverse returns the node at a full reverse name.
func (ix *index) lookupReverse(name string) *node {
	ix.mu.RLock()
	n := ix.reverse[name]
	ix.mu.RUnlock()
	return n
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
	var sa *serviceAnswers
	if svc != nil {
		sa = ix.build(svc, endpointSlices)
	}
	ix.publish(key, svc, sa)
}

// build computes every answer of one service. It returns nil when the service
// has no ready endpoint: then nothing under its name exists.
func (ix *index) build(svc *service, endpointSlices []*discovery.EndpointSlice) *serviceAnswers {
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

	svcName := svc.name + "." + svc.namespace + ".svc"
	// Every complete pod name, per zone, built once: SRV targets, glue
	// owners and PTR targets share these strings.
	fqdns := make([]map[string]string, len(ix.zones))
	for z, zone := range ix.zones {
		fqdns[z] = make(map[string]string, len(hosts))
		for host := range hosts {
			fqdns[z][host] = dnsutil.Join(host, svcName, zone)
		}
	}
	sa := &serviceAnswers{
		names:     map[string]*node{},
		ptr:       map[netip.Addr][]string{},
		endpoints: len(serviceIPs),
	}
	sa.names[svcName] = ix.addressNode(serviceIPs, ix.ttl.service)
	for host, ips := range hosts {
		sa.names[host+"."+svcName] = ix.addressNode(ips, ix.ttl.pod)
		for _, ip := range ips {
			sa.ptr[ip] = append(sa.ptr[ip], fqdns[0][host])
		}
	}
	for k, targets := range srvTargets {
		slices.SortFunc(targets, func(a, b target) int {
			return cmp.Or(cmp.Compare(a.host, b.host), cmp.Compare(a.port, b.port))
		})
		n := &node{srv: make([]srvSet, len(ix.zones))}
		weight := uint16(max(1, 100/len(targets)))
		for z := range ix.zones {
			set := &n.srv[z]
			set.srv = make([]dns.SRV, 0, len(targets))
			set.a = make([]dns.A, 0, len(targets))
			glued := map[string]bool{}
			for _, t := range targets {
				name := fqdns[z][t.host]
				set.srv = append(set.srv, dns.SRV{
					Hdr:    dns.RR_Header{Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: ix.ttl.srv},
					Weight: weight, Port: t.port, Target: name,
				})
				if glued[name] {
					continue
				}
				glued[name] = true
				glue := ix.addressNode(hosts[t.host], ix.ttl.pod)
				for _, rr := range glue.a {
					rr.Hdr.Name = name
					set.a = append(set.a, rr)
				}
				for _, rr := range glue.aaaa {
					rr.Hdr.Name = name
					set.aaaa = append(set.aaaa, rr)
				}
			}
		}
		owner := "_" + k.name + "._" + k.proto + "." + svcName
		for z, zone := range ix.zones {
			n.srv[z].compressedLen = compressedReplyLen(dnsutil.Join(owner, zone), &n.srv[z])
		}
		sa.names[owner] = n
		if _, ok := sa.names["_"+k.proto+"."+svcName]; !ok {
			sa.names["_"+k.proto+"."+svcName] = emptyNonTerminal
		}
	}
	for ip := range sa.ptr {
		slices.Sort(sa.ptr[ip])
	}
	return sa
}

// compressedReplyLen measures the reply to an SRV question for owner, as
// the query path builds it, compressed.
func compressedReplyLen(owner string, set *srvSet) int {
	m := &dns.Msg{Compress: true, Question: []dns.Question{{Name: owner, Qtype: dns.TypeSRV, Qclass: dns.ClassINET}}}
	for _, rr := range set.srv {
		rr.Hdr.Name = owner
		m.Answer = append(m.Answer, &rr)
	}
	for i := range set.a {
		m.Extra = append(m.Extra, &set.a[i])
	}
	for i := range set.aaaa {
		m.Extra = append(m.Extra, &set.aaaa[i])
	}
	return m.Len()
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

// addressNode holds A and AAAA templates for ips, sorted so that answers
// are stable (the loadbalance plugin shuffles them if wanted).
func (ix *index) addressNode(ips []netip.Addr, ttl uint32) *node {
	sorted := slices.Clone(ips)
	slices.SortFunc(sorted, netip.Addr.Compare)
	v4 := 0
	for _, ip := range sorted {
		if ip.Is4() {
			v4++
		}
	}
	n := &node{}
	if v4 > 0 {
		n.a = make([]dns.A, 0, v4)
	}
	if v4 < len(sorted) {
		n.aaaa = make([]dns.AAAA, 0, len(sorted)-v4)
	}
	// One backing array for every address of the node, not one each.
	raw := make([]byte, 0, 16*len(sorted))
	for _, ip := range sorted {
		if ip.Is4() {
			b := ip.As4()
			raw = append(raw, b[:]...)
			n.a = append(n.a, dns.A{
				Hdr: dns.RR_Header{Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl},
				A:   net.IP(raw[len(raw)-4 : len(raw) : len(raw)]),
			})
		} else {
			b := ip.As16()
			raw = append(raw, b[:]...)
			n.aaaa = append(n.aaaa, dns.AAAA{
				Hdr:  dns.RR_Header{Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: ttl},
				AAAA: net.IP(raw[len(raw)-16 : len(raw) : len(raw)]),
			})
		}
	}
	return n
}

// publish replaces what the service key published before with sa (nil
// removes it), keeping the shared names (svc and namespace empty
// non-terminals, PTRs) right.
func (ix *index) publish(key string, svc *service, sa *serviceAnswers) {
	old := ix.services[key]
	if old == nil && svc == nil {
		return
	}
	// A known service counts for the namespace's empty non-terminal even
	// with no ready endpoint (then it publishes no name of its own).
	var next *published
	if svc != nil {
		next = &published{namespace: svc.namespace}
	}
	if sa != nil {
		next.endpoints = sa.endpoints
		for name := range sa.names {
			next.names = append(next.names, name)
		}
		for ip := range sa.ptr {
			next.ptrIPs = append(next.ptrIPs, ip)
		}
	}

	// PTR owners first: which reverse names change, and to what.
	touched := map[netip.Addr]bool{}
	if old != nil {
		for _, ip := range old.ptrIPs {
			ix.ptrOwners[ip] = slices.DeleteFunc(ix.ptrOwners[ip], func(o ptrOwner) bool { return o.service == key })
			touched[ip] = true
		}
	}
	if sa != nil {
		for ip, targets := range sa.ptr {
			ix.ptrOwners[ip] = append(ix.ptrOwners[ip], ptrOwner{service: key, targets: targets})
			touched[ip] = true
		}
	}
	reverse := make(map[string]*node, len(touched))
	for ip := range touched {
		name := reverseName(ip)
		n := ix.ptrNode(ip)
		reverse[name] = n
		// Only this writer changes ix.reverse, so it may read it unlocked.
		if had := ix.reverse[name] != nil; had != (n != nil) {
			ix.countReverseAncestors(name, n != nil, reverse)
		}
	}

	// Namespace and svc empty non-terminals follow the published count.
	nsDelta := map[string]int{}
	if old != nil {
		nsDelta[old.namespace]--
		ix.endpoints -= old.endpoints
		delete(ix.services, key)
	}
	if next != nil {
		nsDelta[next.namespace]++
		ix.endpoints += next.endpoints
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
	if old != nil {
		for _, name := range old.names {
			delete(ix.names, name)
		}
	}
	if sa != nil {
		for name, n := range sa.names {
			ix.names[name] = n
		}
	}
	for name, exists := range ents {
		if !exists {
			delete(ix.names, name)
		} else if ix.names[name] == nil {
			ix.names[name] = emptyNonTerminal
		}
	}
	for name, n := range reverse {
		if n == nil {
			delete(ix.reverse, name)
		} else {
			ix.reverse[name] = n
		}
	}
	ix.serial++
	ix.mu.Unlock()
}

// countReverseAncestors adds (or takes away) one PTR name below each
// ancestor of name, up to in-addr.arpa. or ip6.arpa., and records in changes
// the ancestors that start or stop existing. Callers hold buildMu.
func (ix *index) countReverseAncestors(name string, added bool, changes map[string]*node) {
	for {
		name = name[strings.IndexByte(name, '.')+1:]
		if name == "in-addr.arpa." || name == "ip6.arpa." || name == "" {
			return
		}
		switch before := ix.reverseENT[name]; {
		case added && before == 0:
			ix.reverseENT[name] = 1
			changes[name] = emptyNonTerminal
		case added:
			ix.reverseENT[name] = before + 1
		case before <= 1:
			delete(ix.reverseENT, name)
			changes[name] = nil
		default:
			ix.reverseENT[name] = before - 1
		}
	}
}

// ptrNode builds the PTR answers of one IP from every service holding it, or
// nil when none does. Callers hold buildMu.
func (ix *index) ptrNode(ip netip.Addr) *node {
	owners := ix.ptrOwners[ip]
	if len(owners) == 0 {
		delete(ix.ptrOwners, ip)
		return nil
	}
	var targets []string
	for _, o := range owners {
		targets = append(targets, o.targets...)
	}
	slices.Sort(targets)
	targets = slices.Compact(targets)
	n := &node{ptr: make([]dns.PTR, len(targets))}
	for i, t := range targets {
		n.ptr[i] = dns.PTR{
			Hdr: dns.RR_Header{Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: ix.ttl.ptr},
			Ptr: t,
		}
	}
	return n
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
