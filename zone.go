package headless

import (
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

// apex is what a zone's apex says of the zone: the SOA's server and
// mailbox names.
type apex struct {
	zone, mname, rname string
}

func newApex(zone string) apex {
	return apex{zone: zone, mname: dnsutil.Join("ns.dns", zone), rname: dnsutil.Join("hostmaster", zone)}
}

// fillSOA writes the zone's SOA into soa. negative is both its TTL and its
// minimum, which tells resolvers how long to cache a negative answer
// (RFC 2308).
func (a apex) fillSOA(soa *dns.SOA, serial, negative uint32) {
	*soa = dns.SOA{
		Hdr:     dns.RR_Header{Name: a.zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: negative},
		Ns:      a.mname,
		Mbox:    a.rname,
		Serial:  serial,
		Refresh: 7200,
		Retry:   1800,
		Expire:  86400,
		Minttl:  negative,
	}
}
