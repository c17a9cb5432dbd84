package headless

import (
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/pkg/dnsutil"
	"github.com/miekg/dns"
)

// matchZone returns the longest of zones that holds qname, or "". Both are
// lower case and fully qualified. Unlike plugin.Zones.Matches it splits no
// labels, so it allocates nothing on the query path.
func matchZone(zones []string, qname string) string {
	if strings.IndexByte(qname, '\\') >= 0 {
		// Escaped dots make labels that plain suffixes misread.
		return plugin.Zones(zones).Matches(qname)
	}
	best := ""
	for _, z := range zones {
		if len(z) <= len(best) || len(z) > len(qname) {
			continue
		}
		if z == "." || qname == z || (strings.HasSuffix(qname, z) && qname[len(qname)-len(z)-1] == '.') {
			best = z
		}
	}
	return best
}

// relativeName strips zone from qname: "web.default.svc" for
// "web.default.svc.cluster.local." in "cluster.local.", and "" at the apex.
func relativeName(qname, zone string) string {
	switch {
	case len(qname) == len(zone):
		return ""
	case zone == ".":
		return qname[:len(qname)-1]
	default:
		return qname[:len(qname)-len(zone)-1]
	}
}

// The names the plugin holds at and near each zone's apex, besides the SOA.
const (
	nameserverLabels = "ns.dns"      // this server, as the NS record and the SOA's MNAME name it
	versionLabel     = "dns-version" // the schema version TXT record of forward zones
	// The versions of the Kubernetes DNS specification (cluster zones) and
	// of the Multi-Cluster Services DNS specification (clusterset zones)
	// that the records follow.
	clusterSchemaVersion    = "1.1.0"
	clustersetSchemaVersion = "1.0.0"
	versionTTL              = 28800 // as the kubernetes plugin gives it
)

// apex describes a zone's apex: the SOA, the NS record naming this server
// (ns.dns.<zone>, in every zone, as the kubernetes plugin names it), the
// server's address records, and in forward zones the schema version.
type apex struct {
	zone       string
	forward    bool
	clusterset bool   // a multicluster zone: names of ServiceImports
	position   int    // a forward zone's place among the zones its answer sets name
	nameserver string // ns.dns.<zone>
	rname      string
	version    string // the TXT record at dns-version.<zone>
}

// newApexes describes the apex of each of the config's zones.
func newApexes(cfg *config) map[string]*apex {
	apexes := map[string]*apex{}
	add := func(zone string, a apex) {
		a.zone = zone
		a.nameserver = dnsutil.Join(nameserverLabels, zone)
		a.rname = dnsutil.Join("hostmaster", zone)
		apexes[zone] = &a
	}
	for i, z := range cfg.clusterZones() {
		add(z, apex{forward: true, position: i, version: clusterSchemaVersion})
	}
	for i, z := range cfg.clustersetZones {
		add(z, apex{forward: true, clusterset: true, position: i, version: clustersetSchemaVersion})
	}
	for _, z := range cfg.reverseZones {
		add(z, apex{})
	}
	return apexes
}

// apexName says which of the apex's names a name is.
type apexName uint8

const (
	notApex         apexName = iota
	atApex                   // the zone itself: SOA and NS
	atNameserver             // ns.dns.<zone>: this server's A and AAAA
	atNameserverENT          // dns.<zone>: an empty non-terminal
	atVersion                // dns-version.<zone>: TXT
)

// owns tells which apex name rel (relative to the zone, lower case) is.
func (a *apex) owns(rel string) apexName {
	switch {
	case rel == "":
		return atApex
	case rel == nameserverLabels:
		return atNameserver
	case rel == nameserverLabels[strings.IndexByte(nameserverLabels, '.')+1:]:
		return atNameserverENT
	case rel == versionLabel && a.forward:
		return atVersion
	}
	return notApex
}

// fillSOA writes the zone's SOA into soa. negative is both its TTL and its
// minimum, which tells resolvers how long to cache a negative answer
// (RFC 2308).
func (a *apex) fillSOA(soa *dns.SOA, serial, negative uint32) {
	*soa = dns.SOA{
		Hdr:     dns.RR_Header{Name: a.zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: negative},
		Ns:      a.nameserver,
		Mbox:    a.rname,
		Serial:  serial,
		Refresh: 7200,
		Retry:   1800,
		Expire:  86400,
		Minttl:  negative,
	}
}

// serverAddresses returns the addresses this server answers on, for
// ns.dns.<zone>: the addresses its server block binds, or with none bound
// every interface's. Loopback addresses count only when there is nothing
// else, as when the server binds 127.0.0.1 alone.
func serverAddresses(bound []string) addrSet {
	hosts := bound
	unbound := len(hosts) == 0 || slices.ContainsFunc(hosts, func(h string) bool {
		ip, err := netip.ParseAddr(h)
		return h == "" || (err == nil && ip.IsUnspecified())
	})
	if unbound {
		hosts = nil
		if addrs, err := net.InterfaceAddrs(); err == nil {
			for _, addr := range addrs {
				hosts = append(hosts, addr.String())
			}
		}
	}
	var ips, loopback []netip.Addr
	for _, host := range hosts {
		prefix, err := netip.ParsePrefix(host)
		ip := prefix.Addr()
		if err != nil {
			if ip, err = netip.ParseAddr(host); err != nil {
				continue
			}
		}
		ip = ip.Unmap().WithZone("")
		switch {
		case ip.IsUnspecified() || ip.IsLinkLocalUnicast() || slices.Contains(ips, ip) || slices.Contains(loopback, ip):
		case ip.IsLoopback():
			loopback = append(loopback, ip)
		default:
			ips = append(ips, ip)
		}
	}
	if len(ips) == 0 {
		ips = loopback
	}
	slices.SortFunc(ips, netip.Addr.Compare)
	return addrSetOf(ips)
}
