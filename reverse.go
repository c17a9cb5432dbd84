package headless

import (
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// isReverseZone tells whether a lower-case zone is in-addr.arpa. or
// ip6.arpa., or below. It runs on the query path, so it compares strings
// instead of splitting labels.
func isReverseZone(zone string) bool {
	for _, arpa := range []string{"in-addr.arpa.", "ip6.arpa."} {
		if zone == arpa || strings.HasSuffix(zone, "."+arpa) {
			return true
		}
	}
	return false
}

// reverseName is the in-addr.arpa. (IPv4) or ip6.arpa. (IPv6) name of ip,
// in lower case. It is made on the write path only.
func reverseName(ip netip.Addr) string {
	name, _ := dns.ReverseAddr(ip.String())
	return name
}

// reverseParents calls yield for each ancestor of a reverse name, nearest
// first, down to but not including in-addr.arpa. or ip6.arpa.: the empty
// non-terminals a PTR name keeps in existence (RFC 8020).
func reverseParents(name string, yield func(string)) {
	for {
		name = name[strings.IndexByte(name, '.')+1:]
		if name == "in-addr.arpa." || name == "ip6.arpa." || name == "" {
			return
		}
		yield(name)
	}
}

// parseReverseName returns the address a complete reverse name stands for:
// four decimal labels under in-addr.arpa. or 32 nibbles under ip6.arpa.,
// written as reverseName writes them (lower case, no leading zeros). Any
// other spelling names no address here. It runs on the query path and
// allocates nothing.
func parseReverseName(name string) (netip.Addr, bool) {
	if rest, ok := strings.CutSuffix(name, ".in-addr.arpa."); ok {
		var b [4]byte
		for i := 3; i >= 0; i-- {
			label := rest
			if i > 0 {
				dot := strings.IndexByte(rest, '.')
				if dot < 0 {
					return netip.Addr{}, false
				}
				label, rest = rest[:dot], rest[dot+1:]
			}
			if len(label) == 0 || len(label) > 3 || (len(label) > 1 && label[0] == '0') {
				return netip.Addr{}, false
			}
			v := 0
			for _, c := range []byte(label) {
				if c < '0' || c > '9' {
					return netip.Addr{}, false
				}
				v = 10*v + int(c-'0')
			}
			if v > 255 {
				return netip.Addr{}, false
			}
			b[i] = byte(v)
		}
		return netip.AddrFrom4(b), true
	}
	if rest, ok := strings.CutSuffix(name, ".ip6.arpa."); ok && len(rest) == 63 {
		var b [16]byte
		for i := range 32 {
			c := rest[2*i]
			if i < 31 && rest[2*i+1] != '.' {
				return netip.Addr{}, false
			}
			var v byte
			switch {
			case c >= '0' && c <= '9':
				v = c - '0'
			case c >= 'a' && c <= 'f':
				v = c - 'a' + 10
			default:
				return netip.Addr{}, false
			}
			// The first label is the last nibble.
			pos := 31 - i
			if pos%2 == 0 {
				b[pos/2] |= v << 4
			} else {
				b[pos/2] |= v
			}
		}
		return netip.AddrFrom16(b), true
	}
	return netip.Addr{}, false
}
