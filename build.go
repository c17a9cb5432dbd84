package headless

import (
	"cmp"
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
	zones    []string // forward zones; zones[0] names PTR targets
	podNames bool     // endpoint_pod_names
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

// build computes one service's answer set from its slices. It is a pure
// function of its arguments; it returns nil when the service has no ready
// endpoint, and then nothing under the service's name exists.
func build(svc *service, endpointSlices []*discovery.EndpointSlice, opts buildOptions) *serviceData {
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
				host := endpointLabel(ep, ip, opts.podNames)
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

	zones := opts.zones
	sd := &serviceData{rel: svc.name + "." + svc.namespace + ".svc", zones: len(zones)}
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
	sd.fqdns = make([]string, len(labels)*len(zones))
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
		for z, zone := range zones {
			sd.fqdns[i*len(zones)+z] = dnsutil.Join(host, sd.rel, zone)
		}
		// The relative name is the start of the first complete name.
		sd.pods[i] = podData{
			rel:   sd.fqdns[i*len(zones)][:len(host)+1+len(sd.rel)],
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
func endpointLabel(ep *discovery.Endpoint, ip netip.Addr, podNames bool) string {
	if ep.Hostname != nil && isLabel(*ep.Hostname) {
		return *ep.Hostname
	}
	if podNames && ep.TargetRef != nil && ep.TargetRef.Kind == "Pod" && isLabel(ep.TargetRef.Name) {
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
