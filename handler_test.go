package headless

import (
	"testing"

	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"

	core "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

const baseCorefile = `headless cluster.local in-addr.arpa ip6.arpa`

// recordWorld holds the seed's objects plus a dual-stack service with every
// odd case the record rules speak of.
func recordWorld() []runtime.Object {
	web := ports(port("http", 80, core.ProtocolTCP), port("dns", 53, core.ProtocolUDP), port("", 8080, core.ProtocolTCP))
	return append(seedObjects(),
		headlessService("shop", "web", true),
		slice("shop", "web-v4a", "web", discovery.AddressTypeIPv4, web,
			endpoint("", "10.1.0.1"),
			ready(endpoint("", "10.1.0.2")),
			notReady(endpoint("", "10.1.0.3")),
			endpoint("web-0", "10.1.0.9")),
		slice("shop", "web-v4b", "web", discovery.AddressTypeIPv4, web,
			endpoint("", "10.1.0.1")), // the same address again: answered once
		slice("shop", "web-v6", "web", discovery.AddressTypeIPv6, ports(port("http", 80, core.ProtocolTCP)),
			endpoint("", "fd00::1"),
			endpoint("web-0", "2001:db8::5")),
		slice("shop", "web-fqdn", "web", discovery.AddressTypeFQDN, web,
			endpoint("", "db.example.org")),

		headlessService("shop", "empty", true),
		slice("shop", "empty-1", "empty", discovery.AddressTypeIPv4, web, notReady(endpoint("", "10.1.1.1"))),
		headlessService("shop", "noslice", true),

		// Not headless: the API server's field selector keeps it out, and so
		// does the index if a server ignored the selector.
		&core.Service{ObjectMeta: headlessService("shop", "regular", true).ObjectMeta,
			Spec: core.ServiceSpec{ClusterIP: "10.96.0.20"}},
		handKept("shop", "regular-1", "regular", discovery.AddressTypeIPv4, web, endpoint("", "10.1.2.1")),
		// A slice whose service does not exist.
		handKept("shop", "ghost-1", "ghost", discovery.AddressTypeIPv4, web, endpoint("", "10.1.3.1")),
	)
}

func soaFor(zone string) dns.RR {
	return test.SOA(zone + "	5	IN	SOA	ns.dns." + zone + " hostmaster." + zone + " 1 7200 1800 86400 5")
}

func TestRecordRules(t *testing.T) {
	h, _ := newTestPlugin(t, baseCorefile, recordWorld()...)
	h.serverAddrs = serverAddresses([]string{"192.0.2.53"})
	const v6a = "fd00-0000-0000-0000-0000-0000-0000-0001"
	nxdomain := func(qname string, qtype uint16) test.Case {
		return test.Case{Qname: qname, Qtype: qtype, Rcode: dns.RcodeNameError, Ns: []dns.RR{soaFor("cluster.local.")}}
	}
	nodata := func(qname string, qtype uint16) test.Case {
		return test.Case{Qname: qname, Qtype: qtype, Rcode: dns.RcodeSuccess, Ns: []dns.RR{soaFor("cluster.local.")}}
	}
	tests := []struct {
		name string
		tc   test.Case
	}{
		{"service A lists every ready pod IP", test.Case{Qname: "cassandra.default.svc.cluster.local.", Qtype: dns.TypeA, Answer: []dns.RR{
			test.A("cassandra.default.svc.cluster.local.	5	IN	A	10.244.1.5"),
			test.A("cassandra.default.svc.cluster.local.	5	IN	A	10.244.2.8"),
			test.A("cassandra.default.svc.cluster.local.	5	IN	A	10.244.3.12"),
		}}},
		{"service A skips not-ready endpoints and deduplicates across slices", test.Case{Qname: "web.shop.svc.cluster.local.", Qtype: dns.TypeA, Answer: []dns.RR{
			test.A("web.shop.svc.cluster.local.	5	IN	A	10.1.0.1"),
			test.A("web.shop.svc.cluster.local.	5	IN	A	10.1.0.2"),
			test.A("web.shop.svc.cluster.local.	5	IN	A	10.1.0.9"),
		}}},
		{"service AAAA lists the IPv6 slice", test.Case{Qname: "web.shop.svc.cluster.local.", Qtype: dns.TypeAAAA, Answer: []dns.RR{
			test.AAAA("web.shop.svc.cluster.local.	5	IN	AAAA	2001:db8::5"),
			test.AAAA("web.shop.svc.cluster.local.	5	IN	AAAA	fd00::1"),
		}}},
		{"selectorless service with a hand-kept slice", test.Case{Qname: "external-db.default.svc.cluster.local.", Qtype: dns.TypeA, Answer: []dns.RR{
			test.A("external-db.default.svc.cluster.local.	5	IN	A	10.0.0.50"),
			test.A("external-db.default.svc.cluster.local.	5	IN	A	10.0.0.51"),
		}}},
		{"pod name from the endpoint hostname", test.Case{Qname: "cassandra-0.cassandra.default.svc.cluster.local.", Qtype: dns.TypeA, Answer: []dns.RR{
			test.A("cassandra-0.cassandra.default.svc.cluster.local.	5	IN	A	10.244.1.5"),
		}}},
		{"a hostname held in both families answers A", test.Case{Qname: "web-0.web.shop.svc.cluster.local.", Qtype: dns.TypeA, Answer: []dns.RR{
			test.A("web-0.web.shop.svc.cluster.local.	5	IN	A	10.1.0.9"),
		}}},
		{"a hostname held in both families answers AAAA", test.Case{Qname: "web-0.web.shop.svc.cluster.local.", Qtype: dns.TypeAAAA, Answer: []dns.RR{
			test.AAAA("web-0.web.shop.svc.cluster.local.	5	IN	AAAA	2001:db8::5"),
		}}},
		{"pod name from an IPv4 address", test.Case{Qname: "10-1-0-1.web.shop.svc.cluster.local.", Qtype: dns.TypeA, Answer: []dns.RR{
			test.A("10-1-0-1.web.shop.svc.cluster.local.	5	IN	A	10.1.0.1"),
		}}},
		{"pod name from an IPv6 address", test.Case{Qname: v6a + ".web.shop.svc.cluster.local.", Qtype: dns.TypeAAAA, Answer: []dns.RR{
			test.AAAA(v6a + ".web.shop.svc.cluster.local.	5	IN	AAAA	fd00::1"),
		}}},
		{"not-ready endpoint has no pod name", nxdomain("10-1-0-3.web.shop.svc.cluster.local.", dns.TypeA)},
		{"SRV lists each pod of a named port, with glue", test.Case{Qname: "_cql._tcp.cassandra.default.svc.cluster.local.", Qtype: dns.TypeSRV,
			Answer: []dns.RR{
				test.SRV("_cql._tcp.cassandra.default.svc.cluster.local.	5	IN	SRV	0 33 9042 cassandra-0.cassandra.default.svc.cluster.local."),
				test.SRV("_cql._tcp.cassandra.default.svc.cluster.local.	5	IN	SRV	0 33 9042 cassandra-1.cassandra.default.svc.cluster.local."),
				test.SRV("_cql._tcp.cassandra.default.svc.cluster.local.	5	IN	SRV	0 33 9042 cassandra-2.cassandra.default.svc.cluster.local."),
			},
			Extra: []dns.RR{
				test.A("cassandra-0.cassandra.default.svc.cluster.local.	5	IN	A	10.244.1.5"),
				test.A("cassandra-1.cassandra.default.svc.cluster.local.	5	IN	A	10.244.2.8"),
				test.A("cassandra-2.cassandra.default.svc.cluster.local.	5	IN	A	10.244.3.12"),
			}}},
		{"SRV targets merge both families and every slice", test.Case{Qname: "_http._tcp.web.shop.svc.cluster.local.", Qtype: dns.TypeSRV,
			Answer: []dns.RR{
				test.SRV("_http._tcp.web.shop.svc.cluster.local.	5	IN	SRV	0 25 80 10-1-0-1.web.shop.svc.cluster.local."),
				test.SRV("_http._tcp.web.shop.svc.cluster.local.	5	IN	SRV	0 25 80 10-1-0-2.web.shop.svc.cluster.local."),
				test.SRV("_http._tcp.web.shop.svc.cluster.local.	5	IN	SRV	0 25 80 " + v6a + ".web.shop.svc.cluster.local."),
				test.SRV("_http._tcp.web.shop.svc.cluster.local.	5	IN	SRV	0 25 80 web-0.web.shop.svc.cluster.local."),
			},
			Extra: []dns.RR{
				test.A("10-1-0-1.web.shop.svc.cluster.local.	5	IN	A	10.1.0.1"),
				test.A("10-1-0-2.web.shop.svc.cluster.local.	5	IN	A	10.1.0.2"),
				test.AAAA(v6a + ".web.shop.svc.cluster.local.	5	IN	AAAA	fd00::1"),
				test.A("web-0.web.shop.svc.cluster.local.	5	IN	A	10.1.0.9"),
				test.AAAA("web-0.web.shop.svc.cluster.local.	5	IN	AAAA	2001:db8::5"),
			}}},
		{"SRV of a UDP port", test.Case{Qname: "_dns._udp.web.shop.svc.cluster.local.", Qtype: dns.TypeSRV,
			Answer: []dns.RR{
				test.SRV("_dns._udp.web.shop.svc.cluster.local.	5	IN	SRV	0 33 53 10-1-0-1.web.shop.svc.cluster.local."),
				test.SRV("_dns._udp.web.shop.svc.cluster.local.	5	IN	SRV	0 33 53 10-1-0-2.web.shop.svc.cluster.local."),
				test.SRV("_dns._udp.web.shop.svc.cluster.local.	5	IN	SRV	0 33 53 web-0.web.shop.svc.cluster.local."),
			},
			Extra: []dns.RR{
				test.A("10-1-0-1.web.shop.svc.cluster.local.	5	IN	A	10.1.0.1"),
				test.A("10-1-0-2.web.shop.svc.cluster.local.	5	IN	A	10.1.0.2"),
				test.A("web-0.web.shop.svc.cluster.local.	5	IN	A	10.1.0.9"),
				test.AAAA("web-0.web.shop.svc.cluster.local.	5	IN	AAAA	2001:db8::5"),
			}}},
		{"SRV of a port with another protocol does not exist", nxdomain("_dns._tcp.web.shop.svc.cluster.local.", dns.TypeSRV)},
		{"unnamed ports have no SRV", nxdomain("_5432._tcp.external-db.default.svc.cluster.local.", dns.TypeSRV)},
		{"A on an SRV name is NODATA", nodata("_cql._tcp.cassandra.default.svc.cluster.local.", dns.TypeA)},
		{"PTR of a pod IP names the pod", test.Case{Qname: "5.1.244.10.in-addr.arpa.", Qtype: dns.TypePTR, Answer: []dns.RR{
			test.PTR("5.1.244.10.in-addr.arpa.	5	IN	PTR	cassandra-0.cassandra.default.svc.cluster.local."),
		}}},
		{"PTR of an IPv6 pod IP", test.Case{Qname: "5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.", Qtype: dns.TypePTR, Answer: []dns.RR{
			test.PTR("5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.	5	IN	PTR	web-0.web.shop.svc.cluster.local."),
		}}},
		{"PTR of an address-named pod", test.Case{Qname: "1.0.1.10.in-addr.arpa.", Qtype: dns.TypePTR, Answer: []dns.RR{
			test.PTR("1.0.1.10.in-addr.arpa.	5	IN	PTR	10-1-0-1.web.shop.svc.cluster.local."),
		}}},
		{"PTR names match case-insensitively", test.Case{Qname: "5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.B.D.0.1.0.0.2.IP6.ARPA.", Qtype: dns.TypePTR, Answer: []dns.RR{
			test.PTR("5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.B.D.0.1.0.0.2.IP6.ARPA.	5	IN	PTR	web-0.web.shop.svc.cluster.local."),
		}}},
		{"PTR of a not-ready IP does not exist", test.Case{Qname: "3.0.1.10.in-addr.arpa.", Qtype: dns.TypePTR, Rcode: dns.RcodeNameError, Ns: []dns.RR{soaFor("in-addr.arpa.")}}},
		{"A on a PTR name is NODATA", test.Case{Qname: "5.1.244.10.in-addr.arpa.", Qtype: dns.TypeA, Ns: []dns.RR{soaFor("in-addr.arpa.")}}},
		{"AAAA on an IPv4-only service is NODATA", nodata("cassandra.default.svc.cluster.local.", dns.TypeAAAA)},
		{"TXT on a service is NODATA", nodata("cassandra.default.svc.cluster.local.", dns.TypeTXT)},
		{"MX on a pod is NODATA", nodata("cassandra-1.cassandra.default.svc.cluster.local.", dns.TypeMX)},
		{"ANY is NODATA", nodata("cassandra.default.svc.cluster.local.", dns.TypeANY)},
		{"namespace is an empty non-terminal", nodata("default.svc.cluster.local.", dns.TypeA)},
		{"svc is an empty non-terminal", nodata("svc.cluster.local.", dns.TypeA)},
		{"_tcp under a service is an empty non-terminal", nodata("_tcp.cassandra.default.svc.cluster.local.", dns.TypeSRV)},
		{"service without ready endpoints does not exist", nxdomain("empty.shop.svc.cluster.local.", dns.TypeA)},
		{"nothing under a service without ready endpoints", nxdomain("_http._tcp.empty.shop.svc.cluster.local.", dns.TypeSRV)},
		{"service without slices does not exist", nxdomain("noslice.shop.svc.cluster.local.", dns.TypeA)},
		{"ClusterIP service is not published", nxdomain("regular.shop.svc.cluster.local.", dns.TypeA)},
		{"slice without a service is not published", nxdomain("ghost.shop.svc.cluster.local.", dns.TypeA)},
		{"FQDN slices are ignored", nxdomain("db.web.shop.svc.cluster.local.", dns.TypeA)},
		{"namespace without headless services does not exist", nxdomain("kube-system.svc.cluster.local.", dns.TypeA)},
		{"unknown service", nxdomain("nosuch.default.svc.cluster.local.", dns.TypeA)},
		{"unknown pod", nxdomain("cassandra-9.cassandra.default.svc.cluster.local.", dns.TypeA)},
		{"names below a pod do not exist", nxdomain("x.cassandra-0.cassandra.default.svc.cluster.local.", dns.TypeA)},
		{"pod-style names are not ours", nxdomain("10-244-1-5.default.pod.cluster.local.", dns.TypeA)},
		{"SRV at the service name: every pod and port, as the kubernetes plugin answers it", test.Case{Qname: "cassandra.default.svc.cluster.local.", Qtype: dns.TypeSRV, Answer: []dns.RR{
			test.SRV("cassandra.default.svc.cluster.local.	5	IN	SRV	0 33 9042 cassandra-0.cassandra.default.svc.cluster.local."),
			test.SRV("cassandra.default.svc.cluster.local.	5	IN	SRV	0 33 9042 cassandra-1.cassandra.default.svc.cluster.local."),
			test.SRV("cassandra.default.svc.cluster.local.	5	IN	SRV	0 33 9042 cassandra-2.cassandra.default.svc.cluster.local."),
		}, Extra: []dns.RR{
			test.A("cassandra-0.cassandra.default.svc.cluster.local.	5	IN	A	10.244.1.5"),
			test.A("cassandra-1.cassandra.default.svc.cluster.local.	5	IN	A	10.244.2.8"),
			test.A("cassandra-2.cassandra.default.svc.cluster.local.	5	IN	A	10.244.3.12"),
		}}},
		{"SRV at the service name includes unnamed ports", test.Case{Qname: "external-db.default.svc.cluster.local.", Qtype: dns.TypeSRV, Answer: []dns.RR{
			test.SRV("external-db.default.svc.cluster.local.	5	IN	SRV	0 50 5432 10-0-0-50.external-db.default.svc.cluster.local."),
			test.SRV("external-db.default.svc.cluster.local.	5	IN	SRV	0 50 5432 10-0-0-51.external-db.default.svc.cluster.local."),
		}, Extra: []dns.RR{
			test.A("10-0-0-50.external-db.default.svc.cluster.local.	5	IN	A	10.0.0.50"),
			test.A("10-0-0-51.external-db.default.svc.cluster.local.	5	IN	A	10.0.0.51"),
		}}},
		{"SRV at a pod name: that pod, every port", test.Case{Qname: "cassandra-1.cassandra.default.svc.cluster.local.", Qtype: dns.TypeSRV, Answer: []dns.RR{
			test.SRV("cassandra-1.cassandra.default.svc.cluster.local.	5	IN	SRV	0 100 9042 cassandra-1.cassandra.default.svc.cluster.local."),
		}, Extra: []dns.RR{
			test.A("cassandra-1.cassandra.default.svc.cluster.local.	5	IN	A	10.244.2.8"),
		}}},
		{"apex SOA", test.Case{Qname: "cluster.local.", Qtype: dns.TypeSOA, Answer: []dns.RR{soaFor("cluster.local.")}}},
		{"apex NS names this server", test.Case{Qname: "cluster.local.", Qtype: dns.TypeNS, Answer: []dns.RR{
			test.NS("cluster.local.	5	IN	NS	ns.dns.cluster.local."),
		}, Extra: []dns.RR{test.A("ns.dns.cluster.local.	5	IN	A	192.0.2.53")}}},
		{"the NS target resolves", test.Case{Qname: "ns.dns.cluster.local.", Qtype: dns.TypeA, Answer: []dns.RR{
			test.A("ns.dns.cluster.local.	5	IN	A	192.0.2.53"),
		}}},
		{"the NS target's parent is an empty non-terminal", nodata("dns.cluster.local.", dns.TypeA)},
		{"the NS target has no AAAA on an IPv4 server", nodata("ns.dns.cluster.local.", dns.TypeAAAA)},
		{"a reverse zone's NS target is in that zone, and resolves", test.Case{Qname: "ns.dns.in-addr.arpa.", Qtype: dns.TypeA, Answer: []dns.RR{
			test.A("ns.dns.in-addr.arpa.	5	IN	A	192.0.2.53"),
		}}},
		{"dns-version TXT, as the Kubernetes DNS specification asks", test.Case{Qname: "dns-version.cluster.local.", Qtype: dns.TypeTXT, Answer: []dns.RR{
			test.TXT(`dns-version.cluster.local.	28800	IN	TXT	"1.1.0"`),
		}}},
		{"dns-version has only TXT", nodata("dns-version.cluster.local.", dns.TypeA)},
		{"apex has nothing else", nodata("cluster.local.", dns.TypeA)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, _ := query(t, h, tt.tc.Qname, tt.tc.Qtype)
			if resp == nil {
				t.Fatal("no reply written")
			}
			if !resp.Authoritative {
				t.Error("reply is not authoritative")
			}
			if err := test.SortAndCheck(resp, tt.tc); err != nil {
				t.Fatalf("%v\n%v", err, resp)
			}
		})
	}
}

func TestNegativeAnswersCarryZoneSOA(t *testing.T) {
	h, _ := newTestPlugin(t, "headless cluster.local in-addr.arpa {\n ttl negative 30\n}", seedObjects()...)
	for _, qname := range []string{"nosuch.default.svc.cluster.local.", "9.9.9.9.in-addr.arpa."} {
		resp, _ := query(t, h, qname, dns.TypeA)
		if len(resp.Ns) != 1 {
			t.Fatalf("%s: want one SOA in authority, got %v", qname, resp.Ns)
		}
		soa := resp.Ns[0].(*dns.SOA)
		if soa.Hdr.Ttl != 30 || soa.Minttl != 30 {
			t.Errorf("%s: SOA TTL %d minimum %d, want 30 and 30", qname, soa.Hdr.Ttl, soa.Minttl)
		}
		zone := "cluster.local."
		if qname[0] == '9' {
			zone = "in-addr.arpa."
		}
		if soa.Hdr.Name != zone {
			t.Errorf("%s: SOA owner %s, want %s", qname, soa.Hdr.Name, zone)
		}
	}
}

func TestOwnerNamesKeepTheQuestionsLetterCase(t *testing.T) {
	h, _ := newTestPlugin(t, baseCorefile, seedObjects()...)
	for _, tc := range []struct {
		qname string
		qtype uint16
	}{
		{"CaSsAnDrA.DeFaUlT.SvC.cLuStEr.LoCaL.", dns.TypeA},
		{"CASSANDRA-0.cassandra.default.svc.cluster.local.", dns.TypeA},
		{"_CQL._Tcp.Cassandra.Default.Svc.Cluster.Local.", dns.TypeSRV},
		{"5.1.244.10.IN-ADDR.arpa.", dns.TypePTR},
	} {
		resp, _ := query(t, h, tc.qname, tc.qtype)
		if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) == 0 {
			t.Fatalf("%s: rcode %d, %d answers", tc.qname, resp.Rcode, len(resp.Answer))
		}
		if resp.Question[0].Name != tc.qname {
			t.Errorf("question became %s", resp.Question[0].Name)
		}
		for _, rr := range resp.Answer {
			if rr.Header().Name != tc.qname {
				t.Errorf("owner %s, want %s as asked", rr.Header().Name, tc.qname)
			}
		}
	}
}

func TestZonesOutsideThePluginGoToTheNextPlugin(t *testing.T) {
	h, _ := newTestPlugin(t, baseCorefile, seedObjects()...)
	resp, rcode := query(t, h, "example.org.", dns.TypeA)
	if resp != nil || rcode != dns.RcodeNameError {
		t.Fatalf("want the next plugin's rcode and no reply of ours, got %d and %v", rcode, resp)
	}
	// PTR zones are ours only when listed.
	h, _ = newTestPlugin(t, "headless cluster.local", seedObjects()...)
	if resp, _ := query(t, h, "5.1.244.10.in-addr.arpa.", dns.TypePTR); resp != nil {
		t.Fatalf("in-addr.arpa. is not listed, yet the plugin answered %v", resp)
	}
}

func TestServfailBeforeFirstSync(t *testing.T) {
	h, _ := newTestPlugin(t, "headless cluster.local in-addr.arpa {\n fallthrough\n}", seedObjects()...)
	h.synced.Store(false)
	for _, qname := range []string{"cassandra.default.svc.cluster.local.", "nosuch.cluster.local.", "5.1.244.10.in-addr.arpa."} {
		if resp, rcode := query(t, h, qname, dns.TypeA); resp != nil || rcode != dns.RcodeServerFailure {
			t.Errorf("%s before sync: rcode %d reply %v, want SERVFAIL", qname, rcode, resp)
		}
	}
	if resp, rcode := query(t, h, "example.org.", dns.TypeA); resp != nil || rcode != dns.RcodeNameError {
		t.Errorf("names outside the zones still go to the next plugin: rcode %d", rcode)
	}
	if h.Ready() {
		t.Error("Ready before sync")
	}
	if got := testutil.ToFloat64(syncedGauge); got != 0 {
		t.Errorf("synced gauge %v before sync", got)
	}
	h.synced.Store(true)
	if got := testutil.ToFloat64(syncedGauge); got != 1 {
		t.Errorf("synced gauge %v after sync", got)
	}
	if resp, _ := query(t, h, "cassandra.default.svc.cluster.local.", dns.TypeA); resp == nil || len(resp.Answer) != 3 {
		t.Errorf("after sync: %v", resp)
	}
}

func TestNonINETClassGoesToTheNextPlugin(t *testing.T) {
	h, _ := newTestPlugin(t, baseCorefile, seedObjects()...)
	m := new(dns.Msg)
	m.SetQuestion("cassandra.default.svc.cluster.local.", dns.TypeA)
	m.Question[0].Qclass = dns.ClassCHAOS
	if resp, rcode := exchange(t, h, m, false); resp != nil || rcode != dns.RcodeNameError {
		t.Fatalf("CHAOS: got rcode %d reply %v", rcode, resp)
	}
}

func TestANamespaceWithOnlyAnEmptyHeadlessServiceIsNODATA(t *testing.T) {
	h, _ := newTestPlugin(t, baseCorefile, headlessService("quiet", "idle", true))
	resp, _ := query(t, h, "quiet.svc.cluster.local.", dns.TypeA)
	if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 0 || len(resp.Ns) != 1 {
		t.Fatalf("want NODATA for the namespace, got\n%v", resp)
	}
	if resp, _ := query(t, h, "idle.quiet.svc.cluster.local.", dns.TypeA); resp.Rcode != dns.RcodeNameError {
		t.Fatalf("want NXDOMAIN for the service without endpoints, got\n%v", resp)
	}
	if resp, _ := query(t, h, "svc.cluster.local.", dns.TypeA); resp.Rcode != dns.RcodeSuccess {
		t.Fatalf("want NODATA for svc, got\n%v", resp)
	}
}

func TestOnlyQueriesAreAnswered(t *testing.T) {
	h, _ := newTestPlugin(t, baseCorefile, seedObjects()...)
	for _, tc := range []struct {
		name   string
		opcode int
		qtype  uint16
		want   int
	}{
		{"UPDATE is not implemented", dns.OpcodeUpdate, dns.TypeSOA, dns.RcodeNotImplemented},
		{"NOTIFY is not implemented", dns.OpcodeNotify, dns.TypeSOA, dns.RcodeNotImplemented},
		{"AXFR is refused", dns.OpcodeQuery, dns.TypeAXFR, dns.RcodeRefused},
		{"IXFR is refused", dns.OpcodeQuery, dns.TypeIXFR, dns.RcodeRefused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := new(dns.Msg)
			m.SetQuestion("cluster.local.", tc.qtype)
			m.Opcode = tc.opcode
			if resp, rcode := exchange(t, h, m, true); resp != nil || rcode != tc.want {
				t.Fatalf("rcode %s, reply %v; want %s", dns.RcodeToString[rcode], resp, dns.RcodeToString[tc.want])
			}
		})
	}
}

func TestApexSOAKeepsTheQuestionsLetterCase(t *testing.T) {
	h, _ := newTestPlugin(t, baseCorefile, seedObjects()...)
	resp, _ := query(t, h, "ClUsTeR.LoCaL.", dns.TypeSOA)
	if len(resp.Answer) != 1 || resp.Answer[0].Header().Name != "ClUsTeR.LoCaL." {
		t.Fatalf("answer %v", resp.Answer)
	}
}

// Plugins after this one in the reply's path (rewrite, cache) change the
// records they get in place: those must be copies, never the index's own.
func TestRepliesCanBeChangedWithoutChangingTheIndex(t *testing.T) {
	h, _ := newTestPlugin(t, "headless cluster.local in-addr.arpa", seedObjects()...)
	for _, q := range []struct {
		qname string
		qtype uint16
	}{
		{"cassandra.default.svc.cluster.local.", dns.TypeA},
		{"_cql._tcp.cassandra.default.svc.cluster.local.", dns.TypeSRV},
		{"5.1.244.10.in-addr.arpa.", dns.TypePTR},
		{"nosuch.default.svc.cluster.local.", dns.TypeA},
	} {
		before, _ := query(t, h, q.qname, q.qtype)
		want := before.Copy().String()
		for _, section := range [][]dns.RR{before.Answer, before.Ns, before.Extra} {
			for _, rr := range section {
				rr.Header().Name = "changed.example."
				rr.Header().Ttl = 99999
				switch rr := rr.(type) {
				case *dns.SRV:
					rr.Target = "changed.example."
				case *dns.PTR:
					rr.Ptr = "changed.example."
				}
			}
		}
		after, _ := query(t, h, q.qname, q.qtype)
		after.Id = before.Id
		if got := after.String(); got != want {
			t.Errorf("%s: changing one reply changed the next:\n%s\nwant\n%s", q.qname, got, want)
		}
	}
}
