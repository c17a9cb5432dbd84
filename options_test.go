package headless

import (
	"fmt"
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

// bigService has n ready pods with long hostnames and a named port.
func bigService(n int) []runtime.Object {
	var eps []discovery.Endpoint
	for i := range n {
		eps = append(eps, endpoint(fmt.Sprintf("a-rather-long-stateful-pod-name-%04d", i), fmt.Sprintf("10.2.%d.%d", i/250, i%250+1)))
	}
	return []runtime.Object{
		headlessService("default", "big", true),
		slice("default", "big-1", "big", discovery.AddressTypeIPv4, ports(port("http", 80, core.ProtocolTCP)), eps...),
	}
}

func TestTruncation(t *testing.T) {
	tests := []struct {
		name        string
		pods        int
		qname       string
		qtype       uint16
		bufsize     uint16 // 0: no EDNS0
		tcp         bool
		wantTC      bool
		wantAnswers int // -1: fewer than pods
		wantAllGlue bool
	}{
		{"small answer is whole", 3, "big.default.svc.cluster.local.", dns.TypeA, 0, false, false, 3, true},
		{"A answer over 512 bytes sets TC", 100, "big.default.svc.cluster.local.", dns.TypeA, 0, false, true, -1, true},
		{"EDNS0 buffer makes room", 100, "big.default.svc.cluster.local.", dns.TypeA, 4096, false, false, 100, true},
		{"TCP answers are complete", 400, "big.default.svc.cluster.local.", dns.TypeA, 0, true, false, 400, true},
		{"SRV glue that does not fit is dropped without TC", 5, "_http._tcp.big.default.svc.cluster.local.", dns.TypeSRV, 0, false, false, 5, false},
		{"SRV answers that do not fit set TC", 40, "_http._tcp.big.default.svc.cluster.local.", dns.TypeSRV, 0, false, true, -1, false},
		{"SRV over TCP keeps all glue", 40, "_http._tcp.big.default.svc.cluster.local.", dns.TypeSRV, 0, true, false, 40, true},
		{"TCP drops glue past 64 KiB, without TC", 600, "_http._tcp.big.default.svc.cluster.local.", dns.TypeSRV, 0, true, false, 600, false},
		{"TCP sets TC past 64 KiB of answers", 5000, "big.default.svc.cluster.local.", dns.TypeA, 0, true, true, -1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, _ := newTestPlugin(t, "headless cluster.local", bigService(tt.pods)...)
			m := new(dns.Msg)
			m.SetQuestion(tt.qname, tt.qtype)
			if tt.bufsize > 0 {
				m.SetEdns0(tt.bufsize, false)
			}
			resp, _ := exchange(t, h, m, tt.tcp)
			if resp.Truncated != tt.wantTC {
				t.Errorf("TC = %v, want %v", resp.Truncated, tt.wantTC)
			}
			switch {
			case tt.wantAnswers >= 0 && len(resp.Answer) != tt.wantAnswers:
				t.Errorf("%d answers, want %d", len(resp.Answer), tt.wantAnswers)
			case tt.wantAnswers < 0 && len(resp.Answer) >= tt.pods:
				t.Errorf("%d answers, want fewer than %d", len(resp.Answer), tt.pods)
			}
			glue := 0
			for _, rr := range resp.Extra {
				if rr.Header().Rrtype != dns.TypeOPT {
					glue++
				}
			}
			if tt.qtype == dns.TypeSRV && (glue == len(resp.Answer)) != tt.wantAllGlue {
				t.Errorf("%d glue records for %d answers", glue, len(resp.Answer))
			}
			if (resp.IsEdns0() != nil) != (tt.bufsize > 0) {
				t.Errorf("OPT in reply: %v, want %v", resp.IsEdns0() != nil, tt.bufsize > 0)
			}
			limit := 512
			if tt.bufsize > 0 {
				limit = int(tt.bufsize)
			}
			if tt.tcp {
				limit = dns.MaxMsgSize
			}
			if _, err := resp.Pack(); err != nil {
				t.Errorf("reply does not pack: %v", err)
			}
			if resp.Len() > limit {
				t.Errorf("reply is %d bytes, over the %d the client can take", resp.Len(), limit)
			}
		})
	}
}

func TestGlueIsDroppedWholeRRsetsAtATime(t *testing.T) {
	var eps []discovery.Endpoint
	for i := range 6 {
		for j := range 3 {
			eps = append(eps, endpoint(fmt.Sprintf("h%d", i), fmt.Sprintf("10.4.%d.%d", i, j+1)))
		}
	}
	h, _ := newTestPlugin(t, "headless cluster.local", headlessService("default", "multi", false),
		handKept("default", "multi-1", "multi", discovery.AddressTypeIPv4, ports(port("http", 80, core.ProtocolTCP)), eps...))
	resp, _ := query(t, h, "_http._tcp.multi.default.svc.cluster.local.", dns.TypeSRV)
	if resp.Truncated || len(resp.Answer) != 6 {
		t.Fatalf("TC %v with %d answers", resp.Truncated, len(resp.Answer))
	}
	perOwner := map[string]int{}
	for _, rr := range resp.Extra {
		perOwner[rr.Header().Name]++
	}
	if len(resp.Extra) == 18 {
		t.Fatal("all glue fit: the test needs a smaller buffer")
	}
	for owner, n := range perOwner {
		if n != 3 {
			t.Errorf("glue for %s has %d of its 3 A records", owner, n)
		}
	}
}

// The query path works out what fits without measuring the message (the
// index measured SRV answers; address answers are counted): the sums must
// be exact, neither dropping glue that fits nor letting a reply outgrow the
// client's buffer, and glue goes only as far as it must.
func TestCountedRepliesFitExactly(t *testing.T) {
	for _, pods := range []int{1, 2, 5, 9, 10, 14, 30, 60} {
		objects := bigService(pods)
		// Half the pods dual-stack, so glue has AAAA RRsets too.
		var eps []discovery.Endpoint
		for i := range pods / 2 {
			eps = append(eps, endpoint(fmt.Sprintf("a-rather-long-stateful-pod-name-%04d", i), fmt.Sprintf("fd00::%x", i+1)))
		}
		objects = append(objects, slice("default", "big-6", "big", discovery.AddressTypeIPv6, ports(port("http", 80, core.ProtocolTCP)), eps...))
		h, _ := newTestPlugin(t, "headless cluster.local", objects...)
		// Every few bytes from 512 up, so that some limit falls just
		// short of each glue RRset, plus the usual sizes.
		bufsizes := []uint16{0, 1232, 4096}
		for b := uint16(512); b < 2400 && pods >= 9 && pods <= 30; b += 5 {
			bufsizes = append(bufsizes, b)
		}
		for _, bufsize := range bufsizes {
			for _, q := range []struct {
				name  string
				qtype uint16
			}{
				{"_http._tcp.big.default.svc.cluster.local.", dns.TypeSRV},
				{"_HTTP._tcp.Big.default.svc.cluster.local.", dns.TypeSRV},
				{"big.default.svc.cluster.local.", dns.TypeA},
				{"big.default.svc.cluster.local.", dns.TypeAAAA},
				{"BIG.default.svc.cluster.local.", dns.TypeA},
			} {
				m := new(dns.Msg)
				m.SetQuestion(q.name, q.qtype)
				limit := 512
				if bufsize > 0 {
					m.SetEdns0(bufsize, false)
					limit = int(bufsize)
				}
				what := fmt.Sprintf("%d pods, buffer %d, %s %s", pods, limit, q.name, dns.TypeToString[q.qtype])
				resp, _ := exchange(t, h, m, false)
				packed, err := resp.Pack()
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				if len(packed) > limit {
					t.Errorf("%s: %d bytes", what, len(packed))
				}
				// The whole reply, measured the slow way.
				whole, _ := exchange(t, h, m, true)
				glue := func(msg *dns.Msg) []dns.RR {
					return slices.DeleteFunc(slices.Clone(msg.Extra), func(rr dns.RR) bool { return rr.Header().Rrtype == dns.TypeOPT })
				}
				kept, all := glue(resp), glue(whole)
				if resp.Truncated {
					if len(kept) != 0 {
						t.Errorf("%s: TC with %d glue records", what, len(kept))
					}
					// As many answers as miekg/dns's own Truncate keeps.
					ref := whole.Copy()
					ref.Extra = nil
					if o := resp.IsEdns0(); o != nil {
						ref.Extra = []dns.RR{o}
					}
					ref.Compress = true
					ref.Truncate(limit)
					if len(ref.Answer) != len(resp.Answer) {
						t.Errorf("%s: TC with %d answers, miekg/dns keeps %d", what, len(resp.Answer), len(ref.Answer))
					}
					continue
				}
				if len(resp.Answer) != len(whole.Answer) {
					t.Errorf("%s: %d of %d answers without TC", what, len(resp.Answer), len(whole.Answer))
				}
				if len(kept) == len(all) {
					continue
				}
				// Glue stopped short: the next RRset must not have fitted.
				next := len(kept) + 1
				for next < len(all) && sameRRset(all[next-1], all[next]) {
					next++
				}
				more := resp.Copy()
				more.Extra = all[:next:next]
				if o := resp.IsEdns0(); o != nil {
					more.Extra = append(more.Extra, o)
				}
				more.Compress = true
				if more.Len() <= limit {
					t.Errorf("%s: %d of %d glue records kept, yet %d would fit (%d bytes)", what, len(kept), len(all), next, more.Len())
				}
			}
		}
	}
}
