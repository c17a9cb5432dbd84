package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// ask sends one question with miekg/dns over net ("udp" or "tcp"); bufsize
// 0 sends no EDNS0.
func ask(t *testing.T, server, network, qname string, qtype uint16, bufsize uint16) *dns.Msg {
	t.Helper()
	resp, err := exchange(server, network, qname, qtype, bufsize)
	if err != nil {
		t.Fatalf("%s %s over %s: %v", qname, dns.TypeToString[qtype], network, err)
	}
	return resp
}

func exchange(server, network, qname string, qtype uint16, bufsize uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(qname, qtype)
	if bufsize > 0 {
		m.SetEdns0(bufsize, false)
	}
	c := &dns.Client{Net: network, Timeout: 2 * time.Second, UDPSize: 65535}
	resp, _, err := c.Exchange(m, server)
	return resp, err
}

// values returns the answer records' data (address, target, ...), sorted.
func values(rrs []dns.RR) []string {
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
			continue
		default:
			out = append(out, rr.String())
		}
	}
	slices.Sort(out)
	return out
}

// expectAnswer checks rcode and the sorted answer values of one question.
func expectAnswer(server, network, qname string, qtype uint16, rcode int, want ...string) error {
	resp, err := exchange(server, network, qname, qtype, 0)
	if err != nil {
		return err
	}
	slices.Sort(want)
	if got := values(resp.Answer); resp.Rcode != rcode || strings.Join(got, ",") != strings.Join(want, ",") {
		return fmt.Errorf("%s %s: %s %v, want %s %v", qname, dns.TypeToString[qtype],
			dns.RcodeToString[resp.Rcode], got, dns.RcodeToString[rcode], want)
	}
	return nil
}
