package headless

import (
	"cmp"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/coredns/coredns/plugin/pkg/dnsutil"

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
	rel   string    // "web.default.svc", relative to the forward zones
	addrs addrSet   // every ready address of the service
	pods  []podData // by label
	srv   []srvData // one per named port and protocol
	// every (pod, port) of the service, named port or not, by pod then
	// port: SRV at the service's name, and (one pod's run) at a pod's.
	anyPort []srvTarget
	// topology is, with the zonal option, the endpoints of each zone.
	topology []zoneSet
	// noPTR marks, with ptr_hostname_only, the pods whose name is no
	// endpoint's hostname: their addresses get no PTR from them.
	noPTR bitset
	// clusters are, for a ServiceImport, the clusters its endpoints are
	// in: <cluster id>.<service>... are empty non-terminals.
	clusters []string
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

// fqdn is pods[pod]'s complete name in forward zone z.
func (sd *serviceData) fqdn(pod int32, z int) string { return sd.fqdns[int(pod)*sd.zones+z] }

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

// build computes one service's answer set from its slices. It is a pure
// function of its arguments; it returns nil when the service has no ready
// endpoint, and then nothing under the service's name exists.
func build(svc *service, endpointSlices []*discovery.EndpointSlice, opts buildOptions) *serviceData {
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
			if cluster = strings.ToLower(slice.Labels[sourceClusterLabel]); !isLabel(cluster) {
				continue
			}
		}
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
		ports := srvPorts(slice.Ports)
		for i := range slice.Endpoints {
			ep := &slice.Endpoints[i]
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			zone := ""
			if opts.zonal {
				zone = topologyZone(ep.Zone)
			}
			for _, text := range ep.Addresses {
				ip, err := netip.ParseAddr(text)
				if slice.AddressType == discovery.AddressTypeIPv4 {
					ip = ip.Unmap() // older API servers let ::ffff:10.0.0.1 into IPv4 slices
				}
				if err != nil || ip.Zone() != "" || !want(ip) {
					continue
				}
				host, isHostname := endpointLabel(ep, ip, opts.podNames)
				if cluster != "" {
					host += "." + cluster
					if !slices.Contains(clusters, cluster) {
						clusters = append(clusters, cluster)
					}
				}
				if isHostname {
					named[host] = true
				}
				if !seenIP[ip] {
					seenIP[ip] = true
					serviceIPs = append(serviceIPs, ip)
				}
				if !slices.Contains(hosts[host], ip) {
					hosts[host] = append(hosts[host], ip)
				}
				if zone != "" {
					if zoneHosts[zone] == nil {
						zoneHosts[zone] = map[string][]netip.Addr{}
					}
					if !slices.Contains(zoneHosts[zone][host], ip) {
						zoneHosts[zone][host] = append(zoneHosts[zone][host], ip)
					}
				}
				for _, p := range ports {
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
	}
	if len(serviceIPs) == 0 {
		return nil
	}

	zones := opts.zones
	sd := &serviceData{rel: svc.name + "." + svc.namespace + ".svc", zones: len(zones)}
	slices.Sort(clusters)
	sd.clusters = clusters
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
	// wireSet makes an addrSet of ips, sorted, from the shared addresses.
	wireSet := func(ips []netip.Addr, into []net.IP) ([]net.IP, addrSet) {
		slices.SortFunc(ips, netip.Addr.Compare) // IPv4 first
		start, v4 := len(into), 0
		for _, ip := range ips {
			into = append(into, wire[ip])
			if ip.Is4() {
				v4++
			}
		}
		return into, addrSet{ips: into[start:len(into):len(into)], v4: v4}
	}

	labels := make([]string, 0, len(hosts))
	podIPs := 0
	for host, ips := range hosts {
		labels = append(labels, host)
		podIPs += len(ips)
	}
	slices.Sort(labels)
	sd.pods = make([]podData, len(labels))
	sd.fqdns = make([]string, len(labels)*len(zones))
	all := make([]net.IP, 0, podIPs) // the pods' address lists, end to end
	for i, host := range labels {
		var addrs addrSet
		all, addrs = wireSet(hosts[host], all)
		for z, zone := range zones {
			sd.fqdns[i*len(zones)+z] = dnsutil.Join(host, sd.rel, zone)
		}
		// The relative name is the start of the first complete name.
		sd.pods[i] = podData{rel: sd.fqdns[i*len(zones)][:len(host)+1+len(sd.rel)], addrs: addrs}
		if opts.ptrHostnameOnly && !named[host] {
			sd.noPTR.add(int32(i))
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

	if len(zoneHosts) > 0 {
		names := slices.Sorted(maps.Keys(zoneHosts))
		sd.topology = make([]zoneSet, len(names))
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
			_, set.addrs = wireSet(ips, nil)
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

// topologyZone returns an endpoint's topology zone as zonal names spell it
// (lower case), or "" when it has none or one no DNS name can hold. Zone
// values are label values (63 bytes of letters, digits, '-', '_' and '.'),
// and a dot separates DNS labels, so an empty label ("a..b") is refused.
func topologyZone(zone *string) string {
	if zone == nil || *zone == "" || len(validation.IsValidLabelValue(*zone)) > 0 || strings.Contains(*zone, "..") {
		return ""
	}
	return strings.ToLower(*zone)
}

// endpointLabel is the DNS label that names one endpoint address under its
// service: its hostname; with endpoint_pod_names, its pod's name; else an
// id made from the IP. isHostname tells the first case.
func endpointLabel(ep *discovery.Endpoint, ip netip.Addr, podNames bool) (label string, isHostname bool) {
	if ep.Hostname != nil && isLabel(*ep.Hostname) {
		return *ep.Hostname, true
	}
	if podNames && ep.TargetRef != nil && ep.TargetRef.Kind == "Pod" && isLabel(ep.TargetRef.Name) {
		return ep.TargetRef.Name, false
	}
	return ipLabel(ip), false
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
