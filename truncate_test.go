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
