package headless

import (
	"slices"
	"testing"

	"github.com/miekg/dns"

	core "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

func TestTTLKinds(t *testing.T) {
	h, _ := newTestPlugin(t, `headless cluster.local in-addr.arpa {
		ttl service 11
		ttl pod 12
		ttl srv 13
		ttl ptr 14
		ttl negative 15
	}`, seedObjects()...)
	tests := []struct {
		name    string
		qname   string
		qtype   uint16
		section func(*dns.Msg) []dns.RR
		want    uint32
	}{
		{"service A", "cassandra.default.svc.cluster.local.", dns.TypeA, answer, 11},
		{"pod A", "cassandra-0.cassandra.default.svc.cluster.local.", dns.TypeA, answer, 12},
		{"SRV", "_cql._tcp.cassandra.default.svc.cluster.local.", dns.TypeSRV, answer, 13},
		{"SRV glue takes the pod TTL", "_cql._tcp.cassandra.default.svc.cluster.local.", dns.TypeSRV, extra, 12},
		{"PTR", "5.1.244.10.in-addr.arpa.", dns.TypePTR, answer, 14},
		{"NXDOMAIN SOA", "nosuch.default.svc.cluster.local.", dns.TypeA, authority, 15},
		{"NODATA SOA", "cassandra.default.svc.cluster.local.", dns.TypeTXT, authority, 15},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, _ := query(t, h, tt.qname, tt.qtype)
			rrs := tt.section(resp)
			if len(rrs) == 0 {
				t.Fatalf("no records in the section:\n%v", resp)
			}
			for _, rr := range rrs {
				if rr.Header().Ttl != tt.want {
					t.Errorf("%s: TTL %d, want %d", rr.Header().Name, rr.Header().Ttl, tt.want)
				}
				if soa, ok := rr.(*dns.SOA); ok && soa.Minttl != tt.want {
					t.Errorf("SOA minimum %d, want %d", soa.Minttl, tt.want)
				}
			}
		})
	}
}

func answer(m *dns.Msg) []dns.RR    { return m.Answer }
func extra(m *dns.Msg) []dns.RR     { return m.Extra }
func authority(m *dns.Msg) []dns.RR { return m.Ns }

func TestFallthrough(t *testing.T) {
	tests := []struct {
		name      string
		corefile  string
		qname     string
		wantNext  bool
		wantRcode int
	}{
		{"unknown name goes to the next plugin", "headless cluster.local {\n fallthrough\n}", "nosuch.default.svc.cluster.local.", true, 0},
		{"known names are still answered", "headless cluster.local {\n fallthrough\n}", "cassandra.default.svc.cluster.local.", false, dns.RcodeSuccess},
		{"NODATA is an answer, not a fallthrough", "headless cluster.local {\n fallthrough\n}", "default.svc.cluster.local.", false, dns.RcodeSuccess},
		{"only the listed zones fall through", "headless cluster.local in-addr.arpa {\n fallthrough in-addr.arpa\n}", "nosuch.default.svc.cluster.local.", false, dns.RcodeNameError},
		{"a listed reverse zone falls through", "headless cluster.local in-addr.arpa {\n fallthrough in-addr.arpa\n}", "1.1.1.10.in-addr.arpa.", true, 0},
		{"without fallthrough NXDOMAIN is final", "headless cluster.local", "nosuch.default.svc.cluster.local.", false, dns.RcodeNameError},
		{"apex questions other than SOA go on", "headless cluster.local {\n fallthrough\n}", "cluster.local.", true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, _ := newTestPlugin(t, tt.corefile, seedObjects()...)
			resp, _ := query(t, h, tt.qname, dns.TypeA)
			if tt.wantNext {
				if resp != nil {
					t.Fatalf("answered instead of passing on:\n%v", resp)
				}
				return
			}
			if resp == nil || resp.Rcode != tt.wantRcode {
				t.Fatalf("want rcode %d, got %v", tt.wantRcode, resp)
			}
		})
	}
}

func TestNamespacesLimitEveryRecordKind(t *testing.T) {
	objects := append(seedObjects(),
		headlessService("shop", "web", true),
		slice("shop", "web-1", "web", discovery.AddressTypeIPv4, ports(port("http", 80, core.ProtocolTCP)),
			endpoint("web-0", "10.1.0.9"), endpoint("", "10.244.1.5")), // shares cassandra-0's IP
	)
	h, _ := newTestPlugin(t, "headless cluster.local in-addr.arpa {\n namespaces shop\n}", objects...)
	for _, tc := range []struct {
		qname string
		qtype uint16
		rcode int
		n     int
	}{
		{"web.shop.svc.cluster.local.", dns.TypeA, dns.RcodeSuccess, 2},
		{"_http._tcp.web.shop.svc.cluster.local.", dns.TypeSRV, dns.RcodeSuccess, 2},
		{"9.0.1.10.in-addr.arpa.", dns.TypePTR, dns.RcodeSuccess, 1},
		{"5.1.244.10.in-addr.arpa.", dns.TypePTR, dns.RcodeSuccess, 1}, // only the shop name
		{"cassandra.default.svc.cluster.local.", dns.TypeA, dns.RcodeNameError, 0},
		{"cassandra-0.cassandra.default.svc.cluster.local.", dns.TypeA, dns.RcodeNameError, 0},
		{"_cql._tcp.cassandra.default.svc.cluster.local.", dns.TypeSRV, dns.RcodeNameError, 0},
		{"default.svc.cluster.local.", dns.TypeA, dns.RcodeNameError, 0},
	} {
		resp, _ := query(t, h, tc.qname, tc.qtype)
		if resp.Rcode != tc.rcode || len(resp.Answer) != tc.n {
			t.Errorf("%s: rcode %d with %d answers, want %d with %d:\n%v", tc.qname, resp.Rcode, len(resp.Answer), tc.rcode, tc.n, resp)
		}
		for _, rr := range resp.Answer {
			if ptr, ok := rr.(*dns.PTR); ok && ptr.Ptr != "10-244-1-5.web.shop.svc.cluster.local." && ptr.Ptr != "web-0.web.shop.svc.cluster.local." {
				t.Errorf("PTR outside the namespaces: %v", rr)
			}
		}
	}
}

func TestLabelsLimitEveryRecordKind(t *testing.T) {
	public := headlessService("default", "public", true)
	public.Labels = map[string]string{"dns": "public"}
	objects := append(seedObjects(), public,
		slice("default", "public-1", "public", discovery.AddressTypeIPv4, ports(port("http", 80, core.ProtocolTCP)),
			endpoint("p-0", "10.9.0.1")))
	h, _ := newTestPlugin(t, "headless cluster.local in-addr.arpa {\n labels dns=public\n}", objects...)
	for _, tc := range []struct {
		qname string
		qtype uint16
		rcode int
	}{
		{"public.default.svc.cluster.local.", dns.TypeA, dns.RcodeSuccess},
		{"_http._tcp.public.default.svc.cluster.local.", dns.TypeSRV, dns.RcodeSuccess},
		{"1.0.9.10.in-addr.arpa.", dns.TypePTR, dns.RcodeSuccess},
		{"cassandra.default.svc.cluster.local.", dns.TypeA, dns.RcodeNameError},
		{"_cql._tcp.cassandra.default.svc.cluster.local.", dns.TypeSRV, dns.RcodeNameError},
		{"5.1.244.10.in-addr.arpa.", dns.TypePTR, dns.RcodeNameError},
	} {
		resp, _ := query(t, h, tc.qname, tc.qtype)
		if resp.Rcode != tc.rcode {
			t.Errorf("%s: rcode %d, want %d", tc.qname, resp.Rcode, tc.rcode)
		}
	}
}

func TestEndpointPodNames(t *testing.T) {
	objects := []runtime.Object{
		headlessService("default", "web", true),
		slice("default", "web-1", "web", discovery.AddressTypeIPv4, ports(port("http", 80, core.ProtocolTCP)),
			podRef(endpoint("", "10.1.0.1"), "web-7d9f-abcde"),
			podRef(endpoint("named", "10.1.0.2"), "web-7d9f-fghij"), // hostname wins
			podRef(endpoint("", "10.1.0.3"), "not.a.label"),         // not a DNS label: IP id
			discovery.Endpoint{Addresses: []string{"10.1.0.4"}}),    // no pod at all
	}
	tests := []struct {
		name     string
		corefile string
		exists   []string
		missing  []string
	}{
		{"pod names when asked for", "headless cluster.local {\n endpoint_pod_names\n}",
			[]string{"web-7d9f-abcde", "named", "10-1-0-3", "10-1-0-4"}, []string{"10-1-0-1", "web-7d9f-fghij"}},
		{"IP ids by default", "headless cluster.local",
			[]string{"10-1-0-1", "named", "10-1-0-3", "10-1-0-4"}, []string{"web-7d9f-abcde"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, _ := newTestPlugin(t, tt.corefile, objects...)
			for _, host := range tt.exists {
				if resp, _ := query(t, h, host+".web.default.svc.cluster.local.", dns.TypeA); resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 {
					t.Errorf("%s: want one A record, got\n%v", host, resp)
				}
			}
			for _, host := range tt.missing {
				if resp, _ := query(t, h, host+".web.default.svc.cluster.local.", dns.TypeA); resp.Rcode != dns.RcodeNameError {
					t.Errorf("%s: want NXDOMAIN, got rcode %d", host, resp.Rcode)
				}
			}
		})
	}
}

func TestANameHeldBySeveralEndpointsAnswersAllTheirIPs(t *testing.T) {
	h, _ := newTestPlugin(t, "headless cluster.local", headlessService("default", "db", false),
		handKept("default", "db-1", "db", discovery.AddressTypeIPv4, nil, endpoint("primary", "10.0.0.1"), endpoint("primary", "10.0.0.2")))
	resp, _ := query(t, h, "primary.db.default.svc.cluster.local.", dns.TypeA)
	if len(resp.Answer) != 2 {
		t.Fatalf("want both IPs, got\n%v", resp)
	}
}

// A StatefulSet pod behind its own headless service and a second one that
// names it by address: by default its IP has a PTR for each (as the
// specification says), and getnameinfo takes whichever comes first; with
// ptr_hostname_only only the stable name, so forward and reverse agree.
func TestPTRHostnameOnly(t *testing.T) {
	objects := append(seedObjects(),
		headlessService("default", "cassandra-peers", true),
		slice("default", "peers-1", "cassandra-peers", discovery.AddressTypeIPv4, nil, endpoint("", "10.244.1.5")))
	stable := "cassandra-0.cassandra.default.svc.cluster.local."
	for _, tc := range []struct {
		name     string
		corefile string
		want     map[string][]string // reverse name → PTR targets; nil: NXDOMAIN
	}{
		{"a PTR for every name by default", "headless cluster.local in-addr.arpa", map[string][]string{
			"5.1.244.10.in-addr.arpa.": {stable, "10-244-1-5.cassandra-peers.default.svc.cluster.local."},
			"50.0.0.10.in-addr.arpa.":  {"10-0-0-50.external-db.default.svc.cluster.local."},
		}},
		{"only hostnames with ptr_hostname_only", "headless cluster.local in-addr.arpa {\n ptr_hostname_only\n}", map[string][]string{
			"5.1.244.10.in-addr.arpa.": {stable},
			"50.0.0.10.in-addr.arpa.":  nil, // no endpoint of it has a hostname
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, _ := newTestPlugin(t, tc.corefile, objects...)
			for qname, want := range tc.want {
				resp, _ := query(t, h, qname, dns.TypePTR)
				var got []string
				for _, rr := range resp.Answer {
					got = append(got, rr.(*dns.PTR).Ptr)
				}
				slices.Sort(got)
				slices.Sort(want)
				if !slices.Equal(got, want) || (want == nil) != (resp.Rcode == dns.RcodeNameError) {
					t.Errorf("%s: %s %v, want %v", qname, dns.RcodeToString[resp.Rcode], got, want)
				}
			}
			// Forward names stay as they were.
			if resp, _ := query(t, h, "10-0-0-50.external-db.default.svc.cluster.local.", dns.TypeA); len(resp.Answer) != 1 {
				t.Errorf("the forward name of an address without PTR: %v", resp)
			}
		})
	}
}
