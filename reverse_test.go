package headless

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/coredns/coredns/plugin/pkg/dnsutil"

	"github.com/miekg/dns"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestReverseNames(t *testing.T) {
	for tc, want := range map[string]string{
		"10.244.1.5":  "5.1.244.10.in-addr.arpa.",
		"2001:db8::5": "5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.",
		"fd00::ABCD":  "d.c.b.a.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.",
	} {
		ip := netip.MustParseAddr(tc)
		if got := reverseName(ip); got != want {
			t.Errorf("reverseName(%s) = %s, want %s", tc, got, want)
		}
	}
}

func TestReverseEmptyNonTerminalsFollowTheirPTRs(t *testing.T) {
	h, client := newTestPlugin(t, "headless cluster.local in-addr.arpa ip6.arpa", seedObjects()...)
	for _, tc := range []struct {
		qname string
		rcode int
	}{
		{"1.244.10.in-addr.arpa.", dns.RcodeSuccess},
		{"244.10.in-addr.arpa.", dns.RcodeSuccess},
		{"10.in-addr.arpa.", dns.RcodeSuccess},
		{"9.244.10.in-addr.arpa.", dns.RcodeNameError},
		{"11.in-addr.arpa.", dns.RcodeNameError},
		{"0.ip6.arpa.", dns.RcodeNameError},
	} {
		resp, _ := query(t, h, tc.qname, dns.TypePTR)
		if resp.Rcode != tc.rcode || len(resp.Answer) != 0 {
			t.Errorf("%s: %s with %d answers, want %s and none", tc.qname, dns.RcodeToString[resp.Rcode], len(resp.Answer), dns.RcodeToString[tc.rcode])
		}
	}
	if err := client.CoreV1().Services("default").Delete(context.Background(), "cassandra", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitAnswers(t, h, "244.10 to go with the last PTR under it", "244.10.in-addr.arpa.", dns.TypePTR, dns.RcodeNameError, 0)
	// external-db's 10.0.0.50 and .51 still hold 10.in-addr.arpa.
	waitAnswers(t, h, "10 to stay", "10.in-addr.arpa.", dns.TypePTR, dns.RcodeSuccess, 0)
}

// ip6ArpaName spells out every nibble of ip's 16 bytes under ip6.arpa.,
// IPv4-mapped addresses included.
func ip6ArpaName(ip netip.Addr) string {
	const hex = "0123456789abcdef"
	b := ip.As16()
	var sb strings.Builder
	for i := 15; i >= 0; i-- {
		sb.WriteByte(hex[b[i]&0xf])
		sb.WriteByte('.')
		sb.WriteByte(hex[b[i]>>4])
		sb.WriteByte('.')
	}
	return sb.String() + "ip6.arpa."
}

// FuzzParseReverseName checks the query path's allocation-free reverse-name
// parser against CoreDNS's dnsutil.ExtractAddressFromReverse: every address
// it reads is the one CoreDNS reads, and every name CoreDNS reads that is
// spelled as the index spells its names (lower case, no leading zeros,
// every nibble) it reads too.
func FuzzParseReverseName(f *testing.F) {
	for _, seed := range []string{
		"5.1.244.10.in-addr.arpa.", "05.1.244.10.in-addr.arpa.", "256.1.1.1.in-addr.arpa.",
		"1.244.10.in-addr.arpa.", "5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.",
		"5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.B.D.0.1.0.0.2.ip6.arpa.",
		"1.0.0.0.0.0.a.0.f.f.f.f.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa.",
		"1.2.3.4.ip6.arpa.", "x.in-addr.arpa.", "in-addr.arpa.",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, name string) {
		ip, ok := parseReverseName(name)
		extracted := dnsutil.ExtractAddressFromReverse(name)
		if ok {
			if want := net.ParseIP(extracted); want == nil || !want.Equal(ip.AsSlice()) {
				t.Fatalf("parseReverseName(%q) = %s, CoreDNS reads %q", name, ip, extracted)
			}
			return
		}
		addr, err := netip.ParseAddr(extracted)
		if err != nil {
			return // neither reads an address
		}
		canonical := reverseName(addr.Unmap())
		if strings.HasSuffix(name, ".ip6.arpa.") {
			canonical = ip6ArpaName(addr)
		}
		if name == canonical {
			t.Fatalf("parseReverseName(%q) reads no address, CoreDNS reads %s", name, extracted)
		}
	})
}
