package headless

import (
	"context"
	"testing"

	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"
)

// FuzzServeDNS feeds arbitrary messages (whatever miekg/dns can unpack) to
// the handler: it must answer or pass on, never panic, and whatever it
// writes must pack.
func FuzzServeDNS(f *testing.F) {
	for _, q := range []struct {
		name  string
		qtype uint16
	}{
		{"cassandra.default.svc.cluster.local.", dns.TypeA},
		{"_cql._tcp.cassandra.default.svc.cluster.local.", dns.TypeSRV},
		{"5.1.244.10.in-addr.arpa.", dns.TypePTR},
		{"cluster.local.", dns.TypeSOA},
		{"\\000.\\255x.svc.cluster.local.", dns.TypeANY},
		{".", dns.TypeNS},
	} {
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.qtype)
		m.SetEdns0(1232, true)
		wire, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(wire, false)
	}
	h, _ := newTestPlugin(f, "headless cluster.local in-addr.arpa ip6.arpa", seedObjects()...)
	f.Fuzz(func(t *testing.T, wire []byte, tcp bool) {
		m := new(dns.Msg)
		if err := m.Unpack(wire); err != nil {
			return // the server drops what does not unpack
		}
		rec := dnstest.NewRecorder(&test.ResponseWriter{TCP: tcp})
		if _, err := h.ServeDNS(context.Background(), rec, m); err != nil {
			t.Fatalf("ServeDNS: %v", err)
		}
		if rec.Msg != nil {
			if _, err := rec.Msg.Pack(); err != nil {
				t.Fatalf("reply does not pack: %v\n%v", err, rec.Msg)
			}
		}
	})
}
