package headless

import (
	"testing"

	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"

	core "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

func inZone(ep discovery.Endpoint, zone string) discovery.Endpoint {
	ep.Zone = &zone
	return ep
}

// zonalWorld is a database spread over zones, one of them spelled in
// upper case, one spanning labels, one no DNS name can hold, and one pod
// with no zone.
func zonalWorld() []runtime.Object {
	return []runtime.Object{
		headlessService("prod", "db", true),
		slice("prod", "db-1", "db", discovery.AddressTypeIPv4, ports(port("pg", 5432, core.ProtocolTCP)),
			inZone(endpoint("db-0", "10.0.1.1"), "us-east-1a"),
			inZone(endpoint("db-1", "10.0.2.1"), "us-east-1b"),
			inZone(endpoint("db-2", "10.0.1.2"), "US-East-1A"),
			endpoint("db-3", "10.0.3.1"),
			inZone(endpoint("db-4", "10.0.4.1"), "corp.example.com"),
			inZone(endpoint("db-5", "10.0.5.1"), "bad..zone"),
			inZone(notReady(endpoint("db-6", "10.0.6.1")), "us-west-2a")),
		headlessService("prod", "idle", true),
		slice("prod", "idle-1", "idle", discovery.AddressTypeIPv4, nil, inZone(notReady(endpoint("idle-0", "10.0.9.1")), "us-east-1a")),
	}
}

func TestZonalNames(t *testing.T) {
	h, _ := newTestPlugin(t, "headless cluster.local {\n zonal\n ttl service 7\n ttl srv 8\n ttl pod 9\n}", zonalWorld()...)
	const db = "._zone.db.prod.svc.cluster.local."
	soa := []dns.RR{test.SOA("cluster.local.	5	IN	SOA	ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5")}
	a := func(name string, ips ...string) []dns.RR {
		var out []dns.RR
		for _, ip := range ips {
			out = append(out, test.A(name+"	7	IN	A	"+ip))
		}
		return out
	}
	everyAddress := []string{"10.0.1.1", "10.0.1.2", "10.0.2.1", "10.0.3.1", "10.0.4.1", "10.0.5.1"}
	for _, tc := range []struct {
		name string
		tc   test.Case
	}{
		{"pin answers the zone's endpoints, whatever case the API spelled the zone in",
			test.Case{Qname: "us-east-1a.pin" + db, Qtype: dns.TypeA, Answer: a("us-east-1a.pin"+db, "10.0.1.1", "10.0.1.2")}},
		{"prefer answers the zone's endpoints when it has some",
			test.Case{Qname: "us-east-1b.prefer" + db, Qtype: dns.TypeA, Answer: a("us-east-1b.prefer"+db, "10.0.2.1")}},
		{"pin of a zone without endpoints is NODATA",
			test.Case{Qname: "us-west-2a.pin" + db, Qtype: dns.TypeA, Ns: soa}},
		{"prefer of a zone without endpoints answers every endpoint",
			test.Case{Qname: "us-west-2a.prefer" + db, Qtype: dns.TypeA, Answer: a("us-west-2a.prefer"+db, everyAddress...)}},
		{"a zone spanning labels",
			test.Case{Qname: "corp.example.com.pin" + db, Qtype: dns.TypeA, Answer: a("corp.example.com.pin"+db, "10.0.4.1")}},
		{"the tail of such a zone is another zone, without endpoints",
			test.Case{Qname: "example.com.pin" + db, Qtype: dns.TypeA, Ns: soa}},
		{"an endpoint whose zone no DNS name can hold is in no zone",
			test.Case{Qname: "zone.pin" + db, Qtype: dns.TypeA, Ns: soa}},
		{"SRV of a zone: its pods, every port, with glue",
			test.Case{Qname: "us-east-1a.pin" + db, Qtype: dns.TypeSRV, Answer: []dns.RR{
				test.SRV("us-east-1a.pin" + db + "	8	IN	SRV	0 50 5432 db-0.db.prod.svc.cluster.local."),
				test.SRV("us-east-1a.pin" + db + "	8	IN	SRV	0 50 5432 db-2.db.prod.svc.cluster.local."),
			}, Extra: []dns.RR{
				test.A("db-0.db.prod.svc.cluster.local.	9	IN	A	10.0.1.1"),
				test.A("db-2.db.prod.svc.cluster.local.	9	IN	A	10.0.1.2"),
			}}},
		{"other types are NODATA", test.Case{Qname: "us-east-1a.pin" + db, Qtype: dns.TypeTXT, Ns: soa}},
		{"pin._zone is an empty non-terminal", test.Case{Qname: "pin" + db, Qtype: dns.TypeA, Ns: soa}},
		{"_zone is an empty non-terminal", test.Case{Qname: db[1:], Qtype: dns.TypeA, Ns: soa}},
		{"an unknown directive does not exist", test.Case{Qname: "us-east-1a.near" + db, Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: soa}},
		{"zone-scoped names of a service with no ready endpoint do not exist",
			test.Case{Qname: "us-east-1a.pin._zone.idle.prod.svc.cluster.local.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: soa}},
		{"zone-scoped names of an unknown service do not exist",
			test.Case{Qname: "us-east-1a.prefer._zone.nosuch.prod.svc.cluster.local.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: soa}},
		{"plain names are untouched", test.Case{Qname: "db.prod.svc.cluster.local.", Qtype: dns.TypeA, Answer: a("db.prod.svc.cluster.local.", everyAddress...)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, _ := query(t, h, tc.tc.Qname, tc.tc.Qtype)
			if err := test.SortAndCheck(resp, tc.tc); err != nil {
				t.Fatalf("%v\n%v", err, resp)
			}
		})
	}
}

func TestZonalNamesNeedTheOption(t *testing.T) {
	h, _ := newTestPlugin(t, "headless cluster.local", zonalWorld()...)
	for _, qname := range []string{"us-east-1a.pin._zone.db.prod.svc.cluster.local.", "x.prefer._zone.db.prod.svc.cluster.local.", "_zone.db.prod.svc.cluster.local."} {
		if resp, _ := query(t, h, qname, dns.TypeA); resp.Rcode != dns.RcodeNameError {
			t.Errorf("%s without zonal: %s, want NXDOMAIN", qname, dns.RcodeToString[resp.Rcode])
		}
	}
}

func TestZonalNamesFollowNamespaces(t *testing.T) {
	h, _ := newTestPlugin(t, "headless cluster.local {\n zonal\n namespaces other\n}", zonalWorld()...)
	for _, qname := range []string{"us-east-1a.pin._zone.db.prod.svc.cluster.local.", "x.prefer._zone.db.prod.svc.cluster.local."} {
		if resp, _ := query(t, h, qname, dns.TypeA); resp.Rcode != dns.RcodeNameError {
			t.Errorf("%s outside the namespaces: %s, want NXDOMAIN", qname, dns.RcodeToString[resp.Rcode])
		}
	}
}
