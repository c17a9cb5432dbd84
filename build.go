package headless

import (
	"cmp"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	discovery "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// service is the part of a Service that decides what is published.
type service struct {
	namespace, name string
	hasSelector     bool
}

// buildOptions are the settings of the Corefile that shape an answer set.
type buildOptions struct {
	zones           []string // forward zones; zones[0] names PTR targets
	podNames        bool     // endpoint_pod_names
	ptrHostnameOnly bool     // ptr_hostname_only
	zonal           bool     // zonal
	// clusterset: the slices are a ServiceImport's, and each endpoint is
	// named <hostname>.<cluster id> after the cluster its slice comes from
	// (the Multi-Cluster Services DNS specification).
	clusterset bool
}

// serviceData is one headless service's answer set: everything it
// publishes. It is built once per change of the service and never modified
// after, so queries read it without locks. It holds no DNS records: a reply
// needs copies of its records anyway (see reply), so the query path makes
// them straight from these addresses and names.
type serviceData struct {
	rel   string  // "web.default.svc", relative to the forward zones
	addrs addrSet // every ready address of the service, once, in the order of its pods
	// podAddrs are the pods' addresses, pod after pod; the same arrays as
	// addrs unless an address is under two names.
	podAddrs addrSet
	pods     []podData // by label
	srv      []srvData // one per named port and protocol
	// every (pod, port) of the service, named port or not, by pod then
	// port: SRV at the service's name, and (one pod's run) at a pod's.
	anyPort []srvTarget
	// options holds what only some options give a service: nil for
	// most, so that they cost one pointer.
	*options
	// labelText holds the pods' labels, one after the other. Their
	// complete names are made when asked for (an SRV or PTR answer, a
	// transfer): kept, they would be the largest part of the set.
	labelText string
	zones     []string // the forward zones, shared by every service
	slot      uint32   // its number in the index, once published (see ptrSlot)
}

// options is the part of an answer set that the zonal, ptr_hostname_only
// and multicluster options add.
type options struct {
	// topology is, with zonal, the endpoints of each zone.
	topology []zoneSet
	// noPTR marks, with ptr_hostname_only, the pods whose name is no
	// endpoint's hostname: their addresses get no PTR from them.
	noPTR bitset
	// clusters are, for a ServiceImport, the clusters its endpoints are
	// in: <cluster id>.<service>... are empty non-terminals.
	clusters []string
}

// opts returns the service's options part, made when first needed.
func (sd *serviceData) opts() *options {
	if sd.options == nil {
		sd.options = &options{}
	}
	return sd.options
}

// addrSet is addresses as A and AAAA records carry them: v4 holds four
// bytes an address, v6 sixteen. Records take slices of them as their
// net.IP, so that answers copy no address and a stored address costs its
// bytes and nothing more.
type addrSet struct{ v4, v6 []byte }

func (s addrSet) len4() int        { return len(s.v4) / net.IPv4len }
func (s addrSet) len6() int        { return len(s.v6) / net.IPv6len }
func (s addrSet) count() int       { return s.len4() + s.len6() }
func (s addrSet) ip4(i int) net.IP { return net.IP(s.v4[4*i : 4*i+4 : 4*i+4]) }
func (s addrSet) ip6(i int) net.IP { return net.IP(s.v6[16*i : 16*i+16 : 16*i+16]) }

// all calls yield with each address, IPv4 first.
func (s addrSet) all(yield func(netip.Addr) bool) {
	for i := range s.len4() {
		if !yield(netip.AddrFrom4([4]byte(s.v4[4*i:]))) {
			return
		}
	}
	for i := range s.len6() {
		if !yield(netip.AddrFrom16([16]byte(s.v6[16*i:]))) {
			return
		}
	}
}

// addrSetOf lays ips out as an addrSet, in their order.
func addrSetOf(ips []netip.Addr) addrSet {
	var s addrSet
	for _, ip := range ips {
		s = s.add(ip)
	}
	return s
}

func (s addrSet) add(ip netip.Addr) addrSet {
	if ip.Is4() {
		b := ip.As4()
		s.v4 = append(s.v4, b[:]...)
	} else {
		b := ip.As16()
		s.v6 = append(s.v6, b[:]...)
	}
	return s
}

// podData is one name under the service: a pod's hostname, or an id made
// from its address. Its addresses are a run of the service's pod address
// arrays, its label a run of the service's labelText.
type podData struct {
	off4, off6 uint32 // where its addresses start in podAddrs.v4 and .v6, in addresses
	labelOff   uint32 // where its label starts in labelText
	n4, n6     uint16
	labelLen   uint16 // "web-0"
}

// srvData is one named port's SRV RRset, "_cql._tcp.web.default.svc".
type srvData struct {
	rel     string
	targets []srvTarget // by pod label, then port
}

// srvTarget is one SRV record: a pod's name and a port. A set's targets
// are ordered by pod, so each pod's glue is written once.
type srvTarget struct {
	pod  int32
	port uint16
}

// zoneSet is what a topology zone's names (zonal option) answer: the
// addresses of the endpoints in that zone, and the SRV targets of their
// pods, every port.
type zoneSet struct {
	zone    string // lower case; may span labels ("corp.example.com")
	addrs   addrSet
	targets []srvTarget
}

// bitset is a set of small numbers; nil is empty.
type bitset []uint64

func (b bitset) has(i int32) bool { return int(i/64) < len(b) && b[i/64]&(1<<(i%64)) != 0 }

func (b *bitset) add(i int32) {
	for int(i/64) >= len(*b) {
		*b = append(*b, 0)
	}
	(*b)[i/64] |= 1 << (i % 64)
}

// podAddrs returns the addresses of pods[i].
func (sd *serviceData) podAddrSet(i int32) addrSet {
	p := &sd.pods[i]
	return addrSet{
		v4: sd.podAddrs.v4[4*p.off4 : 4*(p.off4+uint32(p.n4)) : 4*(p.off4+uint32(p.n4))],
		v6: sd.podAddrs.v6[16*p.off6 : 16*(p.off6+uint32(p.n6)) : 16*(p.off6+uint32(p.n6))],
	}
}

// podIndex finds the pod named label (pods are sorted by label).
func (sd *serviceData) podIndex(label string) (int32, bool) {
	i, found := slices.BinarySearchFunc(sd.pods, label, func(p podData, label string) int {
		return strings.Compare(sd.labelText[p.labelOff:p.labelOff+uint32(p.labelLen)], label)
	})
	return int32(i), found
}

// podTargets returns the SRV targets at pods[pod]'s name: that pod, every
// port.
func (sd *serviceData) podTargets(pod int32) []srvTarget {
	lo, _ := slices.BinarySearchFunc(sd.anyPort, pod, func(t srvTarget, p int32) int { return cmp.Compare(t.pod, p) })
	hi := lo
	for hi < len(sd.anyPort) && sd.anyPort[hi].pod == pod {
		hi++
	}
	return sd.anyPort[lo:hi:hi]
}

// label is pods[pod]'s label, "web-0".
func (sd *serviceData) label(pod int32) string {
	p := &sd.pods[pod]
	return sd.labelText[p.labelOff : p.labelOff+uint32(p.labelLen)]
}

// podRel is pods[pod]'s name relative to the zones, "web-0.web.default.svc".
func (sd *serviceData) podRel(pod int32) string {
	return sd.label(pod) + "." + sd.rel
}

// fqdn is pods[pod]'s complete name in forward zone z.
func (sd *serviceData) fqdn(pod int32, z int) string {
	var b strings.Builder
	b.Grow(sd.fqdnLen(pod, z))
	sd.writeFQDN(&b, pod, z)
	return b.String()
}

// fqdnLen is the length of pods[pod]'s complete name in forward zone z.
func (sd *serviceData) fqdnLen(pod int32, z int) int {
	n := int(sd.pods[pod].labelLen) + 1 + len(sd.rel) + 1
	if zone := sd.zones[z]; zone != "." {
		n += len(zone)
	}
	return n
}

// writeFQDN writes pods[pod]'s complete name in forward zone z to b.
func (sd *serviceData) writeFQDN(b *strings.Builder, pod int32, z int) {
	b.WriteString(sd.label(pod))
	b.WriteByte('.')
	b.WriteString(sd.rel)
	b.WriteByte('.')
	if zone := sd.zones[z]; zone != "." {
		b.WriteString(zone)
	}
}

// build computes one service's answer set from its slices. It is a pure
// function of its arguments; it returns nil when the service has no ready
// endpoint, and then nothing under the service's name exists.
func build(svc *service, endpointSlices []*sliceInfo, opts buildOptions) *serviceData {
	type target struct {
		host string
		port uint16
	}
	type srvKey struct{ name, proto string } // name "" for every port
	type srvEntry struct {
		key srvKey
		target
	}
	var (
		serviceIPs []netip.Addr
		seenIP     = map[netip.Addr]bool{}
		hosts      = map[string][]netip.Addr{}
		named      = map[string]bool{} // hosts that are some endpoint's hostname
		srvTargets = map[srvKey][]target{}
		seenSRV    = map[srvEntry]bool{} // keeps big services linear
		zoneHosts  map[string]map[string][]netip.Addr
	)
	if opts.zonal {
		zoneHosts = map[string]map[string][]netip.Addr{}
	}
	var clusters []string
	for _, slice := range endpointSlices {
		cluster := ""
		if opts.clusterset {
			// A slice that names no cluster, or one no DNS label can
			// hold, has no names to give its endpoints.
			if cluster = strings.ToLower(slice.cluster); !isLabel(cluster) {
				continue
			}
		}
		for i := range slice.addresses.len() {
			a := slice.addresses.at(i)
			if !a.ready {
				continue
			}
			ip := a.ip
			host := a.label
			if host == "" {
				host = ipLabel(ip)
			}
			if cluster != "" {
				host += "." + cluster
				if !slices.Contains(clusters, cluster) {
					clusters = append(clusters, cluster)
				}
			}
			if a.isHostname {
				named[host] = true
			}
			if !seenIP[ip] {
				seenIP[ip] = true
				serviceIPs = append(serviceIPs, ip)
			}
			if !slices.Contains(hosts[host], ip) {
				hosts[host] = append(hosts[host], ip)
			}
			if zone := a.zone; zone != "" {
				if zoneHosts[zone] == nil {
					zoneHosts[zone] = map[string][]netip.Addr{}
				}
				if !slices.Contains(zoneHosts[zone][host], ip) {
					zoneHosts[zone][host] = append(zoneHosts[zone][host], ip)
				}
			}
			for _, p := range slice.ports {
				// Every port has SRV at the service and pod names
				// (key {}); a named one also has its own RRset.
				keys := [2]srvKey{{}, {p.name, p.proto}}
				n := 2
				if p.name == "" {
					n = 1
				}
				for _, key := range keys[:n] {
					e := srvEntry{key, target{host, p.port}}
					if !seenSRV[e] {
						seenSRV[e] = true
						srvTargets[key] = append(srvTargets[key], e.target)
					}
				}
			}
		}
	}
	if len(serviceIPs) == 0 {
		return nil
	}

	zones := opts.zones
	sd := &serviceData{rel: svc.name + "." + svc.namespace + ".svc"}
	if len(clusters) > 0 {
		slices.Sort(clusters)
		sd.opts().clusters = clusters
	}
	labels := make([]string, 0, len(hosts))
	for host := range hosts {
		labels = append(labels, host)
	}
	slices.Sort(labels)
	sd.pods = make([]podData, len(labels))
	sd.zones = zones
	var names strings.Builder
	size := 0
	for _, host := range labels {
		size += len(host)
	}
	names.Grow(size)
	// The pods' addresses, pod after pod, each pod's IPv4 first; the
	// service's are the same, each once.
	n4, n6 := 0, 0
	for _, ips := range hosts {
		for _, ip := range ips {
			if ip.Is4() {
				n4++
			} else {
				n6++
			}
		}
	}
	sd.podAddrs = addrSet{v4: make([]byte, 0, 4*n4), v6: make([]byte, 0, 16*n6)}
	shared := false // an address under two names
	seen := make(map[netip.Addr]bool, len(serviceIPs))
	for i, host := range labels {
		ips := hosts[host]
		slices.SortFunc(ips, netip.Addr.Compare) // IPv4 first
		p := &sd.pods[i]
		p.off4, p.off6 = uint32(sd.podAddrs.len4()), uint32(sd.podAddrs.len6())
		for _, ip := range ips {
			sd.podAddrs = sd.podAddrs.add(ip)
			if ip.Is4() {
				p.n4++
			} else {
				p.n6++
			}
			shared = shared || seen[ip]
			seen[ip] = true
		}
		p.labelOff, p.labelLen = uint32(names.Len()), uint16(len(host))
		names.WriteString(host)
		if opts.ptrHostnameOnly && !named[host] {
			sd.opts().noPTR.add(int32(i))
		}
	}
	sd.labelText = names.String()
	sd.addrs = sd.podAddrs
	if shared {
		sd.addrs = addrSet{}
		clear(seen)
		for ip := range sd.podAddrs.all {
			if !seen[ip] {
				seen[ip] = true
				sd.addrs = sd.addrs.add(ip)
			}
		}
	}
	podIndex := func(host string) int32 {
		i, _ := slices.BinarySearch(labels, host)
		return int32(i)
	}
	// toTargets turns (host, port) pairs into a set's targets, by pod then port.
	toTargets := func(ts []target) []srvTarget {
		out := make([]srvTarget, len(ts))
		for i, t := range ts {
			out[i] = srvTarget{pod: podIndex(t.host), port: t.port}
		}
		slices.SortFunc(out, func(a, b srvTarget) int { return cmp.Or(cmp.Compare(a.pod, b.pod), cmp.Compare(a.port, b.port)) })
		return out
	}

	keys := make([]srvKey, 0, len(srvTargets))
	for k := range srvTargets {
		if k != (srvKey{}) {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b srvKey) int { return cmp.Or(cmp.Compare(a.name, b.name), cmp.Compare(a.proto, b.proto)) })
	sd.srv = make([]srvData, len(keys))
	for j, k := range keys {
		sd.srv[j] = srvData{rel: "_" + k.name + "._" + k.proto + "." + sd.rel, targets: toTargets(srvTargets[k])}
	}
	sd.anyPort = toTargets(srvTargets[srvKey{}])
	if len(sd.srv) == 1 && slices.Equal(sd.srv[0].targets, sd.anyPort) {
		sd.anyPort = sd.srv[0].targets // one named port, the usual case: one array
	}

	if len(zoneHosts) > 0 {
		names := slices.Sorted(maps.Keys(zoneHosts))
		sd.opts().topology = make([]zoneSet, len(names))
		for i, zone := range names {
			set := zoneSet{zone: zone}
			var ips []netip.Addr
			var pods []int32
			for host, hostIPs := range zoneHosts[zone] {
				for _, ip := range hostIPs {
					if !slices.Contains(ips, ip) {
						ips = append(ips, ip)
					}
				}
				pods = append(pods, podIndex(host))
			}
			slices.SortFunc(ips, netip.Addr.Compare)
			set.addrs = addrSetOf(ips)
			slices.Sort(pods)
			for _, t := range sd.anyPort {
				if _, in := slices.BinarySearch(pods, t.pod); in {
					set.targets = append(set.targets, t)
				}
			}
			sd.topology[i] = set
		}
	}
	return sd
}

// srvPort is one port of a slice: its number, and, when it can name an
// SRV RRset, its name and protocol in lower case as they appear in the SRV
// owner name ("" when it cannot).
type srvPort struct {
	name, proto string
	port        uint16
}

// srvPorts returns the slice's ports that SRV records can point at: those
// with a number.
func srvPorts(ports []discovery.EndpointPort) []srvPort {
	var out []srvPort
	for _, p := range ports {
		if p.Port == nil || *p.Port <= 0 || *p.Port > 65535 {
			continue
		}
		sp := srvPort{port: uint16(*p.Port)}
		proto := "tcp"
		if p.Protocol != nil {
			proto = strings.ToLower(string(*p.Protocol))
		}
		if p.Name != nil && isLabel(strings.ToLower(*p.Name)) && isLabel(proto) {
			sp.name, sp.proto = strings.ToLower(*p.Name), proto
		}
		out = append(out, sp)
	}
	return out
}

func isLabel(s string) bool { return len(validation.IsDNS1123Label(s)) == 0 }

func isLabelValue(s string) bool { return len(validation.IsValidLabelValue(s)) == 0 }

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
