package headless

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"

	core "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Odd API data: what the plugin makes of objects the API server would
// reject today (older servers, hand-written or hostile data) and of odd but
// valid combinations. README "Odd data" says the same in prose.

// rdata returns the data of records (address, "port target", PTR target),
// sorted; OPT records are left out.
func rdata(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, rr.A.String())
		case *dns.AAAA:
			out = append(out, rr.AAAA.String())
		case *dns.SRV:
			out = append(out, fmt.Sprintf("%d %s", rr.Port, rr.Target))
		case *dns.PTR:
			out = append(out, rr.Ptr)
		case *dns.OPT:
		default:
			out = append(out, rr.String())
		}
	}
	slices.Sort(out)
	return out
}

// oddCase is one question and the answer it must get.
type oddCase struct {
	qname string
	qtype uint16
	rcode int
	want  []string // answer data, any order
}

func checkCases(t *testing.T, h *Headless, cases []oddCase) {
	t.Helper()
	for _, c := range cases {
		resp, _ := query(t, h, c.qname, c.qtype)
		if resp == nil {
			t.Errorf("%s %s: no reply", c.qname, dns.TypeToString[c.qtype])
			continue
		}
		want := slices.Clone(c.want)
		slices.Sort(want)
		if got := rdata(resp.Answer); resp.Rcode != c.rcode || !slices.Equal(got, want) {
			t.Errorf("%s %s: %s %v, want %s %v", c.qname, dns.TypeToString[c.qtype],
				dns.RcodeToString[resp.Rcode], got, dns.RcodeToString[c.rcode], want)
		}
	}
}

const oddZone = ".odd.svc.cluster.local."

func TestOddHostnamesFallBackToTheIPName(t *testing.T) {
	long := strings.Repeat("a", 64)
	objects := []runtime.Object{
		headlessService("odd", "web", true),
		slice("odd", "web-1", "web", discovery.AddressTypeIPv4, ports(port("http", 80, core.ProtocolTCP)),
			endpoint("Web-0", "10.5.0.1"),         // upper case
			endpoint("web.1", "10.5.0.2"),         // a dot
			endpoint("web_2", "10.5.0.3"),         // an underscore
			endpoint(long, "10.5.0.4"),            // 64 bytes
			endpoint("-web", "10.5.0.5"),          // leading hyphen
			endpoint("web-5", "10.5.0.6"),         // fine
			endpoint("xn--bcher-kva", "10.5.0.7"), // punycode is a plain label
		),
	}
	empty := ""
	eps := objects[1].(*discovery.EndpointSlice)
	eps.Endpoints = append(eps.Endpoints, discovery.Endpoint{Addresses: []string{"10.5.0.8"}, Hostname: &empty})
	h, _ := newTestPlugin(t, "headless cluster.local in-addr.arpa", objects...)
	ids := []string{"10-5-0-1", "10-5-0-2", "10-5-0-3", "10-5-0-4", "10-5-0-5", "10-5-0-8"}
	cases := []oddCase{
		{"web" + oddZone, dns.TypeA, dns.RcodeSuccess, []string{"10.5.0.1", "10.5.0.2", "10.5.0.3", "10.5.0.4", "10.5.0.5", "10.5.0.6", "10.5.0.7", "10.5.0.8"}},
		{"web-0.web" + oddZone, dns.TypeA, dns.RcodeNameError, nil},
		{"web_2.web" + oddZone, dns.TypeA, dns.RcodeNameError, nil},
		{"1.web.web" + oddZone, dns.TypeA, dns.RcodeNameError, nil},
		{"web.web" + oddZone, dns.TypeA, dns.RcodeNameError, nil}, // "web.1" made no empty non-terminal
		{"web-5.web" + oddZone, dns.TypeA, dns.RcodeSuccess, []string{"10.5.0.6"}},
		{"XN--BCHER-KVA.web" + oddZone, dns.TypeA, dns.RcodeSuccess, []string{"10.5.0.7"}},
		{"1.0.5.10.in-addr.arpa.", dns.TypePTR, dns.RcodeSuccess, []string{"10-5-0-1.web" + oddZone}},
	}
	var srv []string
	for i, id := range ids {
		addr := strings.ReplaceAll(id, "-", ".")
		cases = append(cases, oddCase{id + ".web" + oddZone, dns.TypeA, dns.RcodeSuccess, []string{addr}})
		srv = append(srv, "80 "+ids[i]+".web"+oddZone)
	}
	srv = append(srv, "80 web-5.web"+oddZone, "80 xn--bcher-kva.web"+oddZone)
	cases = append(cases, oddCase{"_http._tcp.web" + oddZone, dns.TypeSRV, dns.RcodeSuccess, srv})
	checkCases(t, h, cases)
}

func TestDuplicateEndpointsAcrossSlices(t *testing.T) {
	web := ports(port("http", 80, core.ProtocolTCP))
	h, _ := newTestPlugin(t, "headless cluster.local in-addr.arpa", headlessService("odd", "web", true),
		// The same IP, same name, in two slices (an endpoint moving between slices).
		slice("odd", "web-a", "web", discovery.AddressTypeIPv4, web, endpoint("web-0", "10.6.0.1"), endpoint("", "10.6.0.9")),
		slice("odd", "web-b", "web", discovery.AddressTypeIPv4, web, endpoint("web-0", "10.6.0.1"),
			// The same hostname with another IP.
			endpoint("web-1", "10.6.0.2")),
		slice("odd", "web-c", "web", discovery.AddressTypeIPv4, web, endpoint("web-1", "10.6.0.3"),
			// The same IP under another hostname, and not ready in one slice only.
			endpoint("alias", "10.6.0.9"), notReady(endpoint("web-0", "10.6.0.1"))),
	)
	checkCases(t, h, []oddCase{
		{"web" + oddZone, dns.TypeA, dns.RcodeSuccess, []string{"10.6.0.1", "10.6.0.2", "10.6.0.3", "10.6.0.9"}},
		{"web-0.web" + oddZone, dns.TypeA, dns.RcodeSuccess, []string{"10.6.0.1"}},
		{"web-1.web" + oddZone, dns.TypeA, dns.RcodeSuccess, []string{"10.6.0.2", "10.6.0.3"}},
		{"alias.web" + oddZone, dns.TypeA, dns.RcodeSuccess, []string{"10.6.0.9"}},
		{"10-6-0-9.web" + oddZone, dns.TypeA, dns.RcodeSuccess, []string{"10.6.0.9"}},
		{"_http._tcp.web" + oddZone, dns.TypeSRV, dns.RcodeSuccess, []string{
			"80 10-6-0-9.web" + oddZone, "80 alias.web" + oddZone, "80 web-0.web" + oddZone, "80 web-1.web" + oddZone}},
		{"1.0.6.10.in-addr.arpa.", dns.TypePTR, dns.RcodeSuccess, []string{"web-0.web" + oddZone}},
		{"2.0.6.10.in-addr.arpa.", dns.TypePTR, dns.RcodeSuccess, []string{"web-1.web" + oddZone}},
		{"3.0.6.10.in-addr.arpa.", dns.TypePTR, dns.RcodeSuccess, []string{"web-1.web" + oddZone}},
		{"9.0.6.10.in-addr.arpa.", dns.TypePTR, dns.RcodeSuccess, []string{"10-6-0-9.web" + oddZone, "alias.web" + oddZone}},
	})
	// One SRV record per name, with the glue of every IP the name holds.
	resp, _ := exchange(t, h, srvQuestion("_http._tcp.web"+oddZone), true)
	glue := map[string][]string{}
	for _, rr := range resp.Extra {
		if a, ok := rr.(*dns.A); ok {
			glue[a.Hdr.Name] = append(glue[a.Hdr.Name], a.A.String())
		}
	}
	if got := glue["web-1.web"+oddZone]; len(got) != 2 {
		t.Errorf("glue of web-1: %v, want both its IPs", got)
	}
	if len(glue) != 4 {
		t.Errorf("glue for %d names, want 4: %v", len(glue), glue)
	}
}

func srvQuestion(qname string) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(qname, dns.TypeSRV)
	return m
}

func TestSlicesWithoutAServiceAreIgnored(t *testing.T) {
	web := ports(port("http", 80, core.ProtocolTCP))
	unlabelled := handKept("odd", "loose-1", "", discovery.AddressTypeIPv4, web, endpoint("", "10.7.0.1"))
	unlabelled.Labels = nil
	h, client := newTestPlugin(t, "headless cluster.local in-addr.arpa",
		unlabelled,
		// A slice naming a service that does not exist (yet).
		handKept("odd", "ghost-1", "ghost", discovery.AddressTypeIPv4, web, endpoint("g-0", "10.7.0.2")),
		// A slice in another namespace naming a service of this one.
		headlessService("odd", "web", false),
		handKept("odd", "web-1", "web", discovery.AddressTypeIPv4, web, endpoint("w-0", "10.7.0.3")),
		handKept("elsewhere", "web-1", "web", discovery.AddressTypeIPv4, web, endpoint("intruder", "10.7.0.4")),
	)
	checkCases(t, h, []oddCase{
		{"1.0.7.10.in-addr.arpa.", dns.TypePTR, dns.RcodeNameError, nil},
		{"ghost" + oddZone, dns.TypeA, dns.RcodeNameError, nil},
		{"2.0.7.10.in-addr.arpa.", dns.TypePTR, dns.RcodeNameError, nil},
		{"web" + oddZone, dns.TypeA, dns.RcodeSuccess, []string{"10.7.0.3"}},
		{"intruder.web" + oddZone, dns.TypeA, dns.RcodeNameError, nil},
		{"4.0.7.10.in-addr.arpa.", dns.TypePTR, dns.RcodeNameError, nil},
		{"web.elsewhere.svc.cluster.local.", dns.TypeA, dns.RcodeNameError, nil},
	})

	ctx := context.Background()
	services := client.CoreV1().Services("odd")
	if _, err := services.Create(ctx, headlessService("odd", "ghost", false), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitAnswers(t, h, "the slice to join its new service", "g-0.ghost"+oddZone, dns.TypeA, dns.RcodeSuccess, 1)
	waitAnswers(t, h, "its PTR", "2.0.7.10.in-addr.arpa.", dns.TypePTR, dns.RcodeSuccess, 1)
	if err := services.Delete(ctx, "ghost", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitAnswers(t, h, "the service's names to go with it", "ghost"+oddZone, dns.TypeA, dns.RcodeNameError, 0)
	waitAnswers(t, h, "its PTR to go", "2.0.7.10.in-addr.arpa.", dns.TypePTR, dns.RcodeNameError, 0)

	unlabelled.Labels = map[string]string{discovery.LabelServiceName: "web"}
	if _, err := client.DiscoveryV1().EndpointSlices("odd").Update(ctx, unlabelled, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitAnswers(t, h, "a slice labelled later to join", "web"+oddZone, dns.TypeA, dns.RcodeSuccess, 2)
}

func TestFQDNSlicesAreIgnored(t *testing.T) {
	h, _ := newTestPlugin(t, "headless cluster.local", headlessService("odd", "ext", false),
		handKept("odd", "ext-1", "ext", discovery.AddressTypeFQDN, ports(port("http", 80, core.ProtocolTCP)),
			endpoint("db", "db.example.org"), endpoint("", "10.8.0.1")))
	checkCases(t, h, []oddCase{
		{"ext" + oddZone, dns.TypeA, dns.RcodeNameError, nil},
		{"ext" + oddZone, dns.TypeCNAME, dns.RcodeNameError, nil},
		{"db.ext" + oddZone, dns.TypeA, dns.RcodeNameError, nil},
		{"_http._tcp.ext" + oddZone, dns.TypeSRV, dns.RcodeNameError, nil},
		{"odd.svc.cluster.local.", dns.TypeA, dns.RcodeSuccess, nil}, // the namespace of a known service
	})
}

func TestOddAddresses(t *testing.T) {
	web := ports(port("http", 80, core.ProtocolTCP))
	h, _ := newTestPlugin(t, "headless cluster.local in-addr.arpa ip6.arpa", headlessService("odd", "web", true),
		slice("odd", "web-v6", "web", discovery.AddressTypeIPv6, web,
			endpoint("mapped", "::ffff:10.9.0.1"), // an IPv4 address in IPv6 clothes
			endpoint("zoned", "fe80::1%eth0"),
			endpoint("v4", "10.9.0.2"),
			endpoint("six", "fd00::9")),
		slice("odd", "web-v4", "web", discovery.AddressTypeIPv4, web,
			endpoint("mapped4", "::ffff:10.9.0.3"), // older API servers accept this in IPv4 slices
			endpoint("octal", "010.9.0.4"),
			endpoint("junk", "not-an-ip"),
			endpoint("big", "10.9.0.256"),
			endpoint("empty", ""),
			endpoint("v6", "fd00::10"),
			endpoint("multi", "10.9.0.5", "bogus", "10.9.0.6"),
			endpoint("fine", "10.9.0.7")),
	)
	checkCases(t, h, []oddCase{
		{"web" + oddZone, dns.TypeA, dns.RcodeSuccess, []string{"10.9.0.3", "10.9.0.5", "10.9.0.6", "10.9.0.7"}},
		{"web" + oddZone, dns.TypeAAAA, dns.RcodeSuccess, []string{"fd00::9"}},
		{"mapped.web" + oddZone, dns.TypeAAAA, dns.RcodeNameError, nil},
		{"mapped.web" + oddZone, dns.TypeA, dns.RcodeNameError, nil},
		{"mapped4.web" + oddZone, dns.TypeA, dns.RcodeSuccess, []string{"10.9.0.3"}},
		{"mapped4.web" + oddZone, dns.TypeAAAA, dns.RcodeSuccess, nil},
		{"3.0.9.10.in-addr.arpa.", dns.TypePTR, dns.RcodeSuccess, []string{"mapped4.web" + oddZone}},
		{"1.0.9.10.in-addr.arpa.", dns.TypePTR, dns.RcodeNameError, nil},
		{mappedReverse("1"), dns.TypePTR, dns.RcodeNameError, nil}, // ::ffff:10.9.0.1's ip6.arpa name
		{mappedReverse("3"), dns.TypePTR, dns.RcodeNameError, nil},
		{"zoned.web" + oddZone, dns.TypeAAAA, dns.RcodeNameError, nil},
		{"v4.web" + oddZone, dns.TypeA, dns.RcodeNameError, nil},
		{"v6.web" + oddZone, dns.TypeAAAA, dns.RcodeNameError, nil},
		{"octal.web" + oddZone, dns.TypeA, dns.RcodeNameError, nil},
		{"4.0.9.10.in-addr.arpa.", dns.TypePTR, dns.RcodeNameError, nil},
		{"8.0.9.10.in-addr.arpa.", dns.TypePTR, dns.RcodeNameError, nil},
		{"junk.web" + oddZone, dns.TypeA, dns.RcodeNameError, nil},
		{"big.web" + oddZone, dns.TypeA, dns.RcodeNameError, nil},
		{"empty.web" + oddZone, dns.TypeA, dns.RcodeNameError, nil},
		{"multi.web" + oddZone, dns.TypeA, dns.RcodeSuccess, []string{"10.9.0.5", "10.9.0.6"}},
		{"six.web" + oddZone, dns.TypeAAAA, dns.RcodeSuccess, []string{"fd00::9"}},
	})
}

// mappedReverse is the ip6.arpa name of ::ffff:10.9.0.<last>, for last a
// single digit.
func mappedReverse(last string) string {
	return last + ".0.0.0.9.0.a.0.f.f.f.f.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa."
}

// manySlices splits n ready endpoints of service svc into slices of at most
// 1000, as the API server requires.
func manySlices(ns, svc string, n int) []runtime.Object {
	var objects []runtime.Object
	for first := 0; first < n; first += 1000 {
		var eps []discovery.Endpoint
		for i := first; i < min(n, first+1000); i++ {
			eps = append(eps, endpoint(fmt.Sprintf("pod-%04d", i), fmt.Sprintf("10.%d.%d.%d", 100+i/62500, i/250%250, i%250+1)))
		}
		objects = append(objects, slice(ns, fmt.Sprintf("%s-%d", svc, first/1000), svc, discovery.AddressTypeIPv4,
			ports(port("http", 80, core.ProtocolTCP)), eps...))
	}
	return objects
}

func TestMoreThanAThousandEndpoints(t *testing.T) {
	const pods = 2500
	h, _ := newTestPlugin(t, "headless cluster.local", append(manySlices("odd", "huge", pods), headlessService("odd", "huge", true))...)
	for _, tc := range []struct {
		name    string
		qtype   uint16
		bufsize uint16
		tcp     bool
		limit   int
		whole   bool
	}{
		{"UDP without EDNS0", dns.TypeA, 0, false, 512, false},
		{"UDP with 1232", dns.TypeA, 1232, false, 1232, false},
		{"UDP with 4096", dns.TypeA, 4096, false, 4096, false},
		{"UDP with an absurd 65535 is held to 4096", dns.TypeA, 65535, false, 4096, false},
		{"UDP with a tiny 100 gets 512", dns.TypeA, 100, false, 512, false},
		{"TCP A", dns.TypeA, 0, true, dns.MaxMsgSize, true},
		{"TCP A with EDNS0", dns.TypeA, 1232, true, dns.MaxMsgSize, true},
		{"UDP SRV", dns.TypeSRV, 1232, false, 1232, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			qname := "huge" + oddZone
			if tc.qtype == dns.TypeSRV {
				qname = "_http._tcp." + qname
			}
			m := new(dns.Msg)
			m.SetQuestion(qname, tc.qtype)
			if tc.bufsize > 0 {
				m.SetEdns0(tc.bufsize, false)
			}
			resp, _ := exchange(t, h, m, tc.tcp)
			wire, err := resp.Pack()
			if err != nil {
				t.Fatalf("reply does not pack: %v", err)
			}
			if len(wire) > tc.limit {
				t.Errorf("reply of %d bytes, over %d", len(wire), tc.limit)
			}
			if tc.whole != !resp.Truncated || tc.whole != (len(resp.Answer) == pods) {
				t.Errorf("TC %v with %d of %d answers", resp.Truncated, len(resp.Answer), pods)
			}
			if !tc.whole && len(wire) < tc.limit/2 {
				t.Errorf("a truncated reply of %d bytes wastes the %d-byte buffer", len(wire), tc.limit)
			}
			seen := map[string]bool{}
			for _, v := range rdata(resp.Answer) {
				if seen[v] {
					t.Fatalf("%s answered twice", v)
				}
				seen[v] = true
			}
		})
	}
}

func TestAServiceTurningClusterIPAndBack(t *testing.T) {
	h, client := newTestPlugin(t, "headless cluster.local in-addr.arpa", headlessService("odd", "web", true),
		slice("odd", "web-1", "web", discovery.AddressTypeIPv4, ports(port("http", 80, core.ProtocolTCP)), endpoint("web-0", "10.10.0.1")))
	ctx := context.Background()
	services := client.CoreV1().Services("odd")
	set := func(clusterIP string) {
		t.Helper()
		s, err := services.Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		s.Spec.ClusterIP = clusterIP
		if _, err := services.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	set("10.96.0.10")
	waitAnswers(t, h, "a ClusterIP service to leave", "web"+oddZone, dns.TypeA, dns.RcodeNameError, 0)
	checkCases(t, h, []oddCase{
		{"web-0.web" + oddZone, dns.TypeA, dns.RcodeNameError, nil},
		{"_http._tcp.web" + oddZone, dns.TypeSRV, dns.RcodeNameError, nil},
		{"1.0.10.10.in-addr.arpa.", dns.TypePTR, dns.RcodeNameError, nil},
		{"odd.svc.cluster.local.", dns.TypeA, dns.RcodeNameError, nil},
	})
	if n, _ := h.index.counts(); n != 0 {
		t.Errorf("%d services still known", n)
	}
	set(core.ClusterIPNone)
	waitAnswers(t, h, "headless again", "web"+oddZone, dns.TypeA, dns.RcodeSuccess, 1)
	checkCases(t, h, []oddCase{
		{"web-0.web" + oddZone, dns.TypeA, dns.RcodeSuccess, []string{"10.10.0.1"}},
		{"1.0.10.10.in-addr.arpa.", dns.TypePTR, dns.RcodeSuccess, []string{"web-0.web" + oddZone}},
	})
	// As the real API needs it: deleted and made again under the same name.
	if err := services.Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitAnswers(t, h, "deleted", "web"+oddZone, dns.TypeA, dns.RcodeNameError, 0)
	regular := headlessService("odd", "web", true)
	regular.Spec.ClusterIP = "10.96.0.11"
	if _, err := services.Create(ctx, regular, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := services.Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := services.Create(ctx, headlessService("odd", "web", true), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitAnswers(t, h, "recreated headless", "web-0.web"+oddZone, dns.TypeA, dns.RcodeSuccess, 1)
}
