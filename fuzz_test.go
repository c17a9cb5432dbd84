package headless

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/pkg/dnsutil"
	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"

	core "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
)

// fuzzWorld is the seed world plus what makes replies big or odd: a service
// whose answers need truncation, and dual-stack names.
func fuzzWorld() []runtime.Object {
	return append(append(seedObjects(), bigService(60)...),
		headlessService("shop", "web", true),
		slice("shop", "web-v6", "web", discovery.AddressTypeIPv6, ports(port("http", 80, core.ProtocolTCP)),
			endpoint("web-0", "fd00::1"), endpoint("", "2001:db8::5")),
		slice("shop", "web-v4", "web", discovery.AddressTypeIPv4, ports(port("http", 80, core.ProtocolTCP)),
			endpoint("web-0", "10.1.0.9")))
}

// The seeds of both targets are in testdata/fuzz, written from
// fuzzseeds_test.go.

// FuzzServeDNS feeds arbitrary messages (whatever miekg/dns can unpack) to
// the handler, over UDP or TCP. It must answer or pass on, never panic, and
// a reply must be a well-formed answer to that very question: it packs, has
// the query's ID, opcode and question, fits the client's buffer over UDP,
// mirrors EDNS0, and has an rcode and sections that agree.
func FuzzServeDNS(f *testing.F) {
	h, _ := newTestPlugin(f, "headless cluster.local in-addr.arpa ip6.arpa", fuzzWorld()...)
	f.Fuzz(func(t *testing.T, wire []byte, tcp bool) {
		m := new(dns.Msg)
		if err := m.Unpack(wire); err != nil {
			return // the server drops what does not unpack
		}
		// What the reply must mirror, taken before ServeDNS (which reuses
		// the query's OPT record for the reply).
		id, opcode, rd := m.Id, m.Opcode, m.RecursionDesired
		var question dns.Question
		if len(m.Question) == 1 {
			question = m.Question[0]
		}
		limit := dns.MaxMsgSize
		opt := m.IsEdns0()
		do := opt != nil && opt.Do()
		if !tcp {
			limit = dns.MinMsgSize
			if opt != nil {
				limit = min(max(int(opt.UDPSize()), dns.MinMsgSize), maxUDPSize)
			}
		}

		rec := dnstest.NewRecorder(&test.ResponseWriter{TCP: tcp})
		rcode, err := h.ServeDNS(context.Background(), rec, m)
		if err != nil {
			t.Fatalf("ServeDNS: %v", err)
		}
		r := rec.Msg
		if r == nil {
			// Nothing written: passed on (the next plugin says NXDOMAIN
			// here), or an error rcode for the server to write.
			switch rcode {
			case dns.RcodeNameError, dns.RcodeNotImplemented, dns.RcodeRefused:
			default:
				t.Fatalf("nothing written, rcode %s", dns.RcodeToString[rcode])
			}
			if len(m.Question) == 1 && rcode == dns.RcodeNotImplemented && m.Opcode == dns.OpcodeQuery {
				t.Fatal("NOTIMP for a query")
			}
			return
		}
		if rcode != dns.RcodeSuccess {
			t.Fatalf("wrote a reply and returned %s too", dns.RcodeToString[rcode])
		}
		if len(m.Question) != 1 {
			t.Fatalf("answered a message with %d questions", len(m.Question))
		}
		wireReply, err := r.Pack()
		if err != nil {
			t.Fatalf("reply does not pack: %v\n%v", err, r)
		}
		if len(wireReply) > limit {
			t.Fatalf("reply of %d bytes over a %d-byte limit (tcp %v)", len(wireReply), limit, tcp)
		}
		back := new(dns.Msg)
		if err := back.Unpack(wireReply); err != nil {
			t.Fatalf("reply does not unpack: %v", err)
		}
		switch {
		case r.Id != id || r.Opcode != opcode || r.RecursionDesired != rd:
			t.Fatalf("header does not mirror the query: %v", r.MsgHdr)
		case !r.Response || !r.Authoritative:
			t.Fatalf("not an authoritative response: %v", r.MsgHdr)
		case len(r.Question) != 1 || r.Question[0] != question:
			t.Fatalf("question %v, asked %v", r.Question, question)
		case r.Truncated && tcp:
			t.Fatal("TC over TCP for a reply that fits 64 KiB")
		case (r.IsEdns0() != nil) != (opt != nil):
			t.Fatalf("OPT in reply %v, in query %v", r.IsEdns0() != nil, opt != nil)
		case opt != nil && r.IsEdns0().Do() != do:
			t.Fatal("DO bit not mirrored")
		}
		switch r.Rcode {
		case dns.RcodeSuccess, dns.RcodeNameError:
		default:
			t.Fatalf("rcode %s", dns.RcodeToString[r.Rcode])
		}
		if r.Rcode == dns.RcodeNameError && len(r.Answer) > 0 {
			t.Fatal("NXDOMAIN with answers")
		}
		if len(r.Answer) == 0 && !r.Truncated {
			if len(r.Ns) != 1 || r.Ns[0].Header().Rrtype != dns.TypeSOA {
				t.Fatalf("negative answer without the zone's SOA: %v", r.Ns)
			}
			if zone := r.Ns[0].Header().Name; !dns.IsSubDomain(zone, strings.ToLower(question.Name)) {
				t.Fatalf("SOA of %s for %s", zone, question.Name)
			}
		}
		for _, rr := range r.Answer {
			if h := rr.Header(); h.Rrtype != question.Qtype || h.Name != question.Name || h.Class != dns.ClassINET {
				t.Fatalf("answer %v to %v", rr, question)
			}
		}
		for _, rr := range r.Extra {
			switch rr.Header().Rrtype {
			case dns.TypeOPT:
			case dns.TypeA, dns.TypeAAAA:
				if question.Qtype != dns.TypeSRV {
					t.Fatalf("additional %v for a %s question", rr, dns.TypeToString[question.Qtype])
				}
			default:
				t.Fatalf("additional %v", rr)
			}
		}
	})
}

// FuzzParse feeds arbitrary text to the Corefile parser as a headless
// block. It must return a configuration or an error, never both and never
// neither, and what it accepts must be usable: a forward zone, lower-case
// fully qualified zones, TTLs in range, valid namespaces.
func FuzzParse(f *testing.F) {
	client := fake.NewClientset()
	f.Fuzz(func(t *testing.T, rest string) {
		// CoreDNS hands the plugin only its own directive's tokens, so
		// every input starts with it.
		input := "headless" + rest
		// kubeconfig reads a file: keep the fuzzer away from devices and
		// kernel files that never end.
		for _, bad := range []string{"dev/", "proc/", "sys/", "fd/"} {
			if strings.Contains(input, bad) {
				return
			}
		}
		cfg, err := parse(testController(input))
		if (cfg == nil) == (err == nil) {
			t.Fatalf("config %v and error %v", cfg, err)
		}
		if err != nil {
			if !strings.Contains(err.Error(), "Testfile:") && err.Error() != "this plugin can only be used once per Server Block" {
				t.Fatalf("error without a place: %v", err)
			}
			return
		}
		if len(cfg.forwardZones) == 0 {
			t.Fatal("no forward zone")
		}
		for _, z := range append(cfg.forwardZones, cfg.reverseZones...) {
			if z != strings.ToLower(z) || !dns.IsFqdn(z) {
				t.Fatalf("zone %q", z)
			}
			if _, ok := dns.IsDomainName(z); !ok {
				t.Fatalf("zone %q is not a domain name", z)
			}
			if isReverseZone(z) != slices.Contains(cfg.reverseZones, z) {
				t.Fatalf("zone %q in the wrong list", z)
			}
		}
		for _, ttl := range []uint32{cfg.ttl.service, cfg.ttl.pod, cfg.ttl.srv, cfg.ttl.ptr, cfg.ttl.negative} {
			if ttl > maxTTL {
				t.Fatalf("ttl %d", ttl)
			}
		}
		if cfg.startupTimeout < 0 {
			t.Fatalf("startup_timeout %s", cfg.startupTimeout)
		}
		for _, ns := range cfg.namespaces {
			if !isLabel(ns) {
				t.Fatalf("namespace %q", ns)
			}
		}
		if cfg.endpoint != "" && !strings.HasPrefix(cfg.endpoint, "http://") && !strings.HasPrefix(cfg.endpoint, "https://") {
			t.Fatalf("endpoint %q", cfg.endpoint)
		}
		// A plugin built from it answers without panicking.
		h := newHeadless(cfg, client, nil)
		h.synced.Store(true)
		h.Next = test.NextHandler(dns.RcodeNameError, nil)
		for _, z := range h.zones {
			m := new(dns.Msg)
			m.SetQuestion(dnsutil.Join("x", z), dns.TypeA)
			if _, err := h.ServeDNS(context.Background(), dnstest.NewRecorder(&test.ResponseWriter{}), m); err != nil {
				t.Fatal(err)
			}
		}
	})
}
