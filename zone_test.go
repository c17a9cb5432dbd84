package headless

import (
	"strings"
	"testing"

	"github.com/coredns/coredns/plugin"
	"github.com/miekg/dns"
)

func TestMatchZone(t *testing.T) {
	zones := []string{"cluster.local.", "in-addr.arpa.", "244.10.in-addr.arpa.", "."}
	for qname, want := range map[string]string{
		"cluster.local.":                 "cluster.local.",
		"a.svc.cluster.local.":           "cluster.local.",
		"acluster.local.":                ".",
		"5.1.244.10.in-addr.arpa.":       "244.10.in-addr.arpa.",
		"5.1.245.10.in-addr.arpa.":       "in-addr.arpa.",
		"example.org.":                   ".",
		"cluster.local.cluster.local.":   "cluster.local.",
		"svc.cluster.local.example.org.": ".",
	} {
		if got := matchZone(zones, qname); got != want {
			t.Errorf("matchZone(%s) = %q, want %q", qname, got, want)
		}
	}
	if got := matchZone([]string{"cluster.local."}, "example.org."); got != "" {
		t.Errorf("outside every zone: %q", got)
	}
}

func TestEscapedDotsDoNotFoolZoneMatching(t *testing.T) {
	h, _ := newTestPlugin(t, "headless cluster.local", seedObjects()...)
	// Labels "a.cluster" and "local": the name is under local., not cluster.local.
	if resp, rcode := query(t, h, `a\.cluster.local.`, dns.TypeA); resp != nil || rcode != dns.RcodeNameError {
		t.Fatalf("answered a name outside the zone: %v", resp)
	}
}

// canonicalName returns name as it reaches ServeDNS from the wire
// (state.Name(): packed, unpacked, lower case), or false when it is not a
// name a message can carry.
func canonicalName(name string) (string, bool) {
	if _, ok := dns.IsDomainName(name); !ok {
		return "", false
	}
	buf := make([]byte, 256)
	n, err := dns.PackDomainName(dns.Fqdn(name), buf, 0, nil, false)
	if err != nil {
		return "", false
	}
	out, _, err := dns.UnpackDomainName(buf[:n], 0)
	if err != nil {
		return "", false
	}
	return strings.ToLower(out), true
}

// FuzzMatchZone checks matchZone, which compares strings to stay off the
// heap, against CoreDNS's label-splitting plugin.Zones.Matches.
func FuzzMatchZone(f *testing.F) {
	for _, seed := range [][2]string{
		{"cluster.local. in-addr.arpa.", "web.default.svc.cluster.local."},
		{"cluster.local. local.", "xcluster.local."},
		{". cluster.local.", "example.org."},
		{"a\\.b.", "x.a\\.b."},
		{"b.", "a\\.b."},
		{"10.in-addr.arpa. in-addr.arpa.", "5.1.244.10.in-addr.arpa."},
		{"cluster.local.", "cluster.local."},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, zoneList, qname string) {
		var zones []string
		for _, z := range strings.Fields(zoneList) {
			if z, ok := canonicalName(z); ok {
				zones = append(zones, z)
			}
		}
		qname, ok := canonicalName(qname)
		if !ok {
			return
		}
		if got, want := matchZone(zones, qname), plugin.Zones(zones).Matches(qname); got != want {
			t.Fatalf("matchZone(%q, %q) = %q, plugin.Zones.Matches says %q", zones, qname, got, want)
		}
	})
}
