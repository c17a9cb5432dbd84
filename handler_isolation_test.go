package headless

import (
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"

	core "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
)

// With namespaces set, no answer may tell anything about another namespace:
// not its names, not its IPs, not that a name exists there. The test asks
// the restricted plugin every name an unrestricted one publishes over the
// same objects, and more.
func TestNamespacesIsolateEveryAnswer(t *testing.T) {
	webPorts := ports(port("http", 80, core.ProtocolTCP))
	objects := append(seedObjects(),
		headlessService("shop", "web", true),
		slice("shop", "web-1", "web", discovery.AddressTypeIPv4, webPorts,
			endpoint("web-0", "10.1.0.9"),
			endpoint("", "10.244.1.5")), // cassandra-0's IP in default too
		slice("shop", "web-6", "web", discovery.AddressTypeIPv6, webPorts, endpoint("web-0", "fd00::9")),
		headlessService("other", "web", true), // the same service name
		slice("other", "web-1", "web", discovery.AddressTypeIPv4, webPorts,
			endpoint("web-0", "10.1.0.10"), endpoint("secret", "10.77.0.1")),
		slice("other", "web-6", "web", discovery.AddressTypeIPv6, webPorts, endpoint("secret", "fd00::77")),
		// A slice in other that names shop's service: it stays in other.
		handKept("other", "web-shop", "web", discovery.AddressTypeIPv4, webPorts, endpoint("web-0", "10.1.0.11")),
	)
	const zones = "headless cluster.local in-addr.arpa ip6.arpa"
	everything, _ := newTestPlugin(t, zones, objects...)
	shopOnly, _ := newTestPlugin(t, zones+" {\n namespaces shop\n}", objects...)
	through, _ := newTestPlugin(t, zones+" {\n namespaces shop\n fallthrough\n}", objects...)

	allowedIPs := map[string]bool{"10.1.0.9": true, "10.244.1.5": true, "fd00::9": true}
	var qnames []string
	everything.index.mu.RLock()
	for rel := range everything.index.names {
		qnames = append(qnames, rel+".cluster.local.")
	}
	everything.index.mu.RUnlock()
	qnames = append(qnames, everything.index.reverseNames()...)
	for _, ip := range []string{"10.244.2.8", "10.244.3.12", "10.0.0.50", "10.1.0.10", "10.1.0.11", "10.77.0.1", "fd00::77"} {
		name, _ := dns.ReverseAddr(ip)
		qnames = append(qnames, name)
	}
	qnames = append(qnames,
		"*.svc.cluster.local.", "*.*.svc.cluster.local.", "*.default.svc.cluster.local.", "*.web.other.svc.cluster.local.",
		"_http._tcp.*.other.svc.cluster.local.", "*.web.shop.svc.cluster.local.", "_http._tcp.web.*.svc.cluster.local.",
		"secret.web.shop.svc.cluster.local.", "10-77-0-1.web.shop.svc.cluster.local.",
		"*.in-addr.arpa.", "*.77.10.in-addr.arpa.", "77.10.in-addr.arpa.", "0.77.10.in-addr.arpa.",
		"2.244.10.in-addr.arpa.", "0.0.10.in-addr.arpa.")
	slices.Sort(qnames)
	qnames = slices.Compact(qnames)

	shopIndex := map[string]bool{}
	shopOnly.index.mu.RLock()
	for rel := range shopOnly.index.names {
		shopIndex[rel+".cluster.local."] = true
	}
	shopOnly.index.mu.RUnlock()
	for _, name := range shopOnly.index.reverseNames() {
		shopIndex[name] = true
	}

	for _, qname := range qnames {
		inShop := shopIndex[qname]
		for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeSRV, dns.TypePTR, dns.TypeANY, dns.TypeTXT} {
			for _, tcp := range []bool{false, true} {
				m := new(dns.Msg)
				m.SetQuestion(qname, qtype)
				resp, _ := exchange(t, shopOnly, m, tcp)
				what := qname + " " + dns.TypeToString[qtype]
				if !inShop && resp.Rcode != dns.RcodeNameError {
					t.Errorf("%s: %s, want NXDOMAIN for a name only another namespace has", what, dns.RcodeToString[resp.Rcode])
				}
				for _, rr := range slices.Concat(resp.Answer, resp.Ns, resp.Extra) {
					if leak := leaked(rr, allowedIPs); leak != "" {
						t.Errorf("%s: %s leaks %s", what, rr, leak)
					}
				}
			}
		}
		if !inShop {
			// With fallthrough, the next plugin answers; nothing is written here.
			m := new(dns.Msg)
			m.SetQuestion(qname, dns.TypePTR)
			if resp, _ := exchange(t, through, m, false); resp != nil {
				t.Errorf("%s: answered with fallthrough set:\n%v", qname, resp)
			}
		}
	}
	// And the shop's own names answer.
	checkCases(t, shopOnly, []oddCase{
		{"5.1.244.10.in-addr.arpa.", dns.TypePTR, dns.RcodeSuccess, []string{"10-244-1-5.web.shop.svc.cluster.local."}},
		{"web-0.web.shop.svc.cluster.local.", dns.TypeA, dns.RcodeSuccess, []string{"10.1.0.9"}},
		{"_http._tcp.web.shop.svc.cluster.local.", dns.TypeSRV, dns.RcodeSuccess, []string{
			"80 10-244-1-5.web.shop.svc.cluster.local.", "80 web-0.web.shop.svc.cluster.local."}},
	})
}

// leaked returns what rr shows of another namespace: a name outside shop or
// an address not in allowed, or "".
func leaked(rr dns.RR, allowed map[string]bool) string {
	var names []string
	var ips []net.IP
	switch rr := rr.(type) {
	case *dns.A:
		names, ips = append(names, rr.Hdr.Name), append(ips, rr.A)
	case *dns.AAAA:
		names, ips = append(names, rr.Hdr.Name), append(ips, rr.AAAA)
	case *dns.SRV:
		names = append(names, rr.Target)
	case *dns.PTR:
		names = append(names, rr.Ptr)
	}
	for _, name := range names {
		name = strings.ToLower(name)
		if strings.HasSuffix(name, ".svc.cluster.local.") && !strings.HasSuffix(name, ".shop.svc.cluster.local.") {
			return name
		}
	}
	for _, ip := range ips {
		if !allowed[ip.String()] {
			return ip.String()
		}
	}
	return ""
}
