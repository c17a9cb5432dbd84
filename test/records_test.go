package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"

	core "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
)

// namespacedBlock publishes only one namespace, so tests sharing the API
// server do not see each other's pods (and PTRs).
func namespacedBlock(ns, extra string) string {
	return `headless cluster.local in-addr.arpa ip6.arpa {
        kubeconfig {{.Kubeconfig}}
        namespaces ` + ns + `
        ` + extra + `
    }`
}

// TestRecordRulesOverTheWire checks every record rule with miekg/dns over
// UDP and TCP, with and without EDNS0, against the real binary.
func TestRecordRulesOverTheWire(t *testing.T) {
	c := env.cluster.client
	ns := newNamespace(t, env.cluster, "rules")
	webPorts := []discovery.EndpointPort{port("http", 80, core.ProtocolTCP), port("dns", 53, core.ProtocolUDP)}
	createService(t, c, ns, "web", true)
	createSlice(t, c, newSlice(ns, "web-v4", "web", discovery.AddressTypeIPv4, webPorts,
		endpoint("", "10.1.0.1"), withReady(endpoint("", "10.1.0.2"), true), withReady(endpoint("", "10.1.0.3"), false), endpoint("web-0", "10.1.0.9")))
	createSlice(t, c, newSlice(ns, "web-v4-dup", "web", discovery.AddressTypeIPv4, webPorts, endpoint("", "10.1.0.1")))
	createSlice(t, c, newSlice(ns, "web-v6", "web", discovery.AddressTypeIPv6, webPorts[:1],
		endpoint("", "fd00::1"), endpoint("web-0", "2001:db8::5")))
	createSlice(t, c, newSlice(ns, "web-fqdn", "web", discovery.AddressTypeFQDN, webPorts, endpoint("", "db.example.org")))
	createService(t, c, ns, "empty", true)
	createSlice(t, c, newSlice(ns, "empty-1", "empty", discovery.AddressTypeIPv4, webPorts, withReady(endpoint("", "10.1.1.1"), false)))
	var many []discovery.Endpoint
	for i := range 120 {
		many = append(many, endpoint(fmt.Sprintf("big-%03d", i), fmt.Sprintf("10.3.0.%d", i+1)))
	}
	createService(t, c, ns, "big", true)
	createSlice(t, c, newSlice(ns, "big-1", "big", discovery.AddressTypeIPv4, webPorts[:1], many...))

	s := startCoreDNS(t, env.cluster, namespacedBlock(ns, "ttl negative 7"))
	zone := ns + ".svc.cluster.local."
	const v6 = "fd00-0000-0000-0000-0000-0000-0000-0001"
	tests := []struct {
		name  string
		qname string
		qtype uint16
		rcode int
		want  []string
	}{
		{"service A: ready IPs once", "web." + zone, dns.TypeA, dns.RcodeSuccess, []string{"10.1.0.1", "10.1.0.2", "10.1.0.9"}},
		{"service AAAA", "web." + zone, dns.TypeAAAA, dns.RcodeSuccess, []string{"2001:db8::5", "fd00::1"}},
		{"hostname A", "web-0.web." + zone, dns.TypeA, dns.RcodeSuccess, []string{"10.1.0.9"}},
		{"hostname AAAA", "web-0.web." + zone, dns.TypeAAAA, dns.RcodeSuccess, []string{"2001:db8::5"}},
		{"IPv4 id", "10-1-0-2.web." + zone, dns.TypeA, dns.RcodeSuccess, []string{"10.1.0.2"}},
		{"IPv6 id", v6 + ".web." + zone, dns.TypeAAAA, dns.RcodeSuccess, []string{"fd00::1"}},
		{"SRV", "_http._tcp.web." + zone, dns.TypeSRV, dns.RcodeSuccess, []string{
			"80 10-1-0-1.web." + zone, "80 10-1-0-2.web." + zone, "80 " + v6 + ".web." + zone, "80 web-0.web." + zone}},
		{"SRV over UDP port", "_dns._udp.web." + zone, dns.TypeSRV, dns.RcodeSuccess, []string{
			"53 10-1-0-1.web." + zone, "53 10-1-0-2.web." + zone, "53 web-0.web." + zone}},
		{"PTR v4", "9.0.1.10.in-addr.arpa.", dns.TypePTR, dns.RcodeSuccess, []string{"web-0.web." + zone}},
		{"PTR v6", mustReverse(t, "fd00::1"), dns.TypePTR, dns.RcodeSuccess, []string{v6 + ".web." + zone}},
		{"PTR upper case", strings.ToUpper(mustReverse(t, "2001:db8::5")), dns.TypePTR, dns.RcodeSuccess, []string{"web-0.web." + zone}},
		{"not-ready pod", "10-1-0-3.web." + zone, dns.TypeA, dns.RcodeNameError, nil},
		{"not-ready PTR", "3.0.1.10.in-addr.arpa.", dns.TypePTR, dns.RcodeNameError, nil},
		{"NODATA AAAA of a v4 pod", "10-1-0-1.web." + zone, dns.TypeAAAA, dns.RcodeSuccess, nil},
		{"NODATA TXT", "web." + zone, dns.TypeTXT, dns.RcodeSuccess, nil},
		{"NODATA MX", "web." + zone, dns.TypeMX, dns.RcodeSuccess, nil},
		{"ENT namespace", zone, dns.TypeA, dns.RcodeSuccess, nil},
		{"ENT _tcp", "_tcp.web." + zone, dns.TypeSRV, dns.RcodeSuccess, nil},
		{"ENT svc", "svc.cluster.local.", dns.TypeA, dns.RcodeSuccess, nil},
		{"no ready endpoint", "empty." + zone, dns.TypeA, dns.RcodeNameError, nil},
		{"nothing under it", "_http._tcp.empty." + zone, dns.TypeSRV, dns.RcodeNameError, nil},
		{"FQDN slices ignored", "db.web." + zone, dns.TypeA, dns.RcodeNameError, nil},
		{"unknown name", "nosuch." + zone, dns.TypeA, dns.RcodeNameError, nil},
	}
	for _, tt := range tests {
		for _, network := range []string{"udp", "tcp"} {
			for _, bufsize := range []uint16{0, 1232} {
				t.Run(fmt.Sprintf("%s/%s/edns%d", tt.name, network, bufsize), func(t *testing.T) {
					resp := ask(t, s.addr, network, tt.qname, tt.qtype, bufsize)
					got := values(resp.Answer)
					want := slices.Clone(tt.want)
					slices.Sort(want)
					if resp.Rcode != tt.rcode || !slices.Equal(got, want) {
						t.Fatalf("%s %v, want %s %v", dns.RcodeToString[resp.Rcode], got, dns.RcodeToString[tt.rcode], want)
					}
					if !resp.Authoritative {
						t.Error("not authoritative")
					}
					if (resp.IsEdns0() != nil) != (bufsize > 0) {
						t.Errorf("OPT in reply %v, in query %v", resp.IsEdns0() != nil, bufsize > 0)
					}
					if len(resp.Answer) > 0 {
						for _, rr := range resp.Answer {
							if rr.Header().Name != tt.qname {
								t.Errorf("owner %s, want %s", rr.Header().Name, tt.qname)
							}
						}
						return
					}
					if len(resp.Ns) != 1 || resp.Ns[0].Header().Rrtype != dns.TypeSOA {
						t.Fatalf("negative answer without SOA: %v", resp.Ns)
					}
					if soa := resp.Ns[0].(*dns.SOA); soa.Hdr.Ttl != 7 || soa.Minttl != 7 {
						t.Errorf("SOA TTL %d minimum %d, want the negative TTL 7", soa.Hdr.Ttl, soa.Minttl)
					}
				})
			}
		}
	}

	t.Run("SRV glue", func(t *testing.T) {
		resp := ask(t, s.addr, "udp", "_http._tcp.web."+zone, dns.TypeSRV, 1232)
		if got := values(resp.Extra); strings.Join(got, " ") != "10.1.0.1 10.1.0.2 10.1.0.9 2001:db8::5 fd00::1" {
			t.Errorf("glue %v", got)
		}
	})
	t.Run("letter case of the question is kept", func(t *testing.T) {
		qname := "WeB." + strings.ToUpper(ns) + ".Svc.Cluster.Local."
		resp := ask(t, s.addr, "udp", qname, dns.TypeA, 0)
		if len(resp.Answer) != 3 || resp.Answer[0].Header().Name != qname {
			t.Errorf("answer %v", resp.Answer)
		}
	})
	t.Run("truncation", func(t *testing.T) {
		udp := ask(t, s.addr, "udp", "big."+zone, dns.TypeA, 0)
		if !udp.Truncated || len(udp.Answer) >= 120 || wireLen(udp) > 512 {
			t.Errorf("UDP without EDNS0: TC %v, %d answers, %d bytes", udp.Truncated, len(udp.Answer), wireLen(udp))
		}
		edns := ask(t, s.addr, "udp", "big."+zone, dns.TypeA, 4096)
		if edns.Truncated || len(edns.Answer) != 120 {
			t.Errorf("UDP with a 4096 buffer: TC %v, %d answers", edns.Truncated, len(edns.Answer))
		}
		tcp := ask(t, s.addr, "tcp", "_http._tcp.big."+zone, dns.TypeSRV, 0)
		if tcp.Truncated || len(tcp.Answer) != 120 || len(tcp.Extra) != 120 {
			t.Errorf("TCP: TC %v, %d answers, %d glue", tcp.Truncated, len(tcp.Answer), len(tcp.Extra))
		}
		srv := ask(t, s.addr, "udp", "_http._tcp.big."+zone, dns.TypeSRV, 0)
		if !srv.Truncated || wireLen(srv) > 512 {
			t.Errorf("SRV over UDP: TC %v, %d bytes", srv.Truncated, wireLen(srv))
		}
	})
}

// wireLen is the size of a reply as it came over the wire (compressed).
func wireLen(m *dns.Msg) int {
	m.Compress = true
	return m.Len()
}
