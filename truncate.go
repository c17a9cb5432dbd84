package headless

import (
	"net"
	"slices"
	"sort"
	"strings"

	"github.com/coredns/coredns/request"
	"github.com/miekg/dns"
)

// maxUDPSize caps the EDNS0 buffer size clients advertise.
const maxUDPSize = 4096

// fit makes a reply fit the client's buffer: over UDP 512 bytes or its EDNS0
// size (at most 4096), over TCP the largest message there is. Glue goes first
// and does not set TC (RFC 2181 §9); only when answer records must go is TC
// set. So TCP replies are complete unless a service has more addresses than
// 64 KiB holds.
func fit(state request.Request, m *dns.Msg) {
	state.SizeAndDo(m)
	size := state.Size() // over TCP the 65535 bytes a message can hold at all
	if state.Proto() == "udp" {
		// However much a client claims to take, UDP replies stay within
		// 4096 bytes (RFC 6891 §6.2.5): bigger ones fragment, and would
		// make this server a generous amplifier.
		size = min(size, maxUDPSize)
	}
	m.Compress = false
	if m.Len() <= size { // the common case costs no compression map
		return
	}
	m.Compress = true
	// Names can point back only this far into a message: past it the
	// sizes fitCounted counts would be too small.
	const maxPointerOffset = 1 << 14
	if size <= maxPointerOffset && fitCounted(m, size) {
		return
	}
	var opt []dns.RR
	glue := m.Extra
	if o := m.IsEdns0(); o != nil {
		opt = []dns.RR{o}
		glue = slices.DeleteFunc(slices.Clone(glue), func(rr dns.RR) bool { return rr == dns.RR(o) })
	}
	// Glue goes whole RRsets at a time (RFC 2181 §9): cut only where the
	// owner or type changes. Find the first cut that no longer fits.
	cuts := []int{0}
	for i := 1; i <= len(glue); i++ {
		if i == len(glue) || !sameRRset(glue[i-1], glue[i]) {
			cuts = append(cuts, i)
		}
	}
	tooMany := sort.Search(len(cuts), func(c int) bool {
		k := cuts[c]
		m.Extra = append(glue[:k:k], opt...)
		return m.Len() > size
	})
	if tooMany > 0 {
		k := cuts[tooMany-1]
		m.Extra = append(glue[:k:k], opt...)
		return
	}
	m.Extra = opt
	m.Truncate(size) // drops answers, and sets TC
}

// fitCounted makes a compressed reply fit in size by counting its records
// rather than measuring the message, and reports whether it could: it
// counts A, AAAA and SRV answers owned by the question's name, and A and
// AAAA glue owned by SRV targets, since each of those owners compresses to
// a pointer (see countedLen). Answers that do not all fit go as far as they
// do, with TC and no glue; otherwise glue goes whole RRsets at a time (RFC
// 2181 §9), as far as it fits, without TC.
func fitCounted(m *dns.Msg, size int) bool {
	name := m.Question[0].Name
	if len(m.Answer) == 0 || len(m.Ns) > 0 || strings.IndexByte(name, '\\') >= 0 {
		return false
	}
	const header, question = 12, 4 // question: the name, then type and class
	used := header + len(name) + 1 + question
	glue := m.Extra
	var opt []dns.RR
	if n := len(glue); n > 0 && glue[n-1].Header().Rrtype == dns.TypeOPT {
		opt, glue = glue[n-1:], glue[:n-1]
		used += dns.Len(opt[0]) // no name to compress
	}
	for _, rr := range glue {
		if _, srv := m.Answer[0].(*dns.SRV); !srv || (rr.Header().Rrtype != dns.TypeA && rr.Header().Rrtype != dns.TypeAAAA) {
			return false
		}
	}
	fitting := -1 // answers that fit, when not all do
	for i, rr := range m.Answer {
		n, ok := countedLen(rr)
		if !ok || rr.Header().Name != name {
			return false
		}
		if used+n > size && fitting < 0 {
			fitting = i
		}
		used += n
	}
	if fitting >= 0 {
		m.Answer = m.Answer[:fitting]
		m.Truncated = true
		m.Extra = append(glue[:0], opt...) // in place: the slice is this reply's own
		return true
	}
	keep := 0
	for keep < len(glue) {
		end, setLen := keep, 0
		for ; end < len(glue) && sameRRset(glue[keep], glue[end]); end++ {
			n, _ := countedLen(glue[end])
			setLen += n
		}
		if used+setLen > size {
			break
		}
		used, keep = used+setLen, end
	}
	if keep < len(glue) {
		m.Extra = append(glue[:keep], opt...)
	}
	return true
}

// countedLen is the size of a record in a compressed reply when its owner
// stands earlier in the message, so that it is a pointer, and its data
// holds no name that compresses: A, AAAA, and SRV, whose targets are never
// compressed. ok is false for other records.
func countedLen(rr dns.RR) (n int, ok bool) {
	const pointer, fixed = 2, 10 // the owner; type, class, TTL and data length
	switch rr := rr.(type) {
	case *dns.A:
		return pointer + fixed + net.IPv4len, true
	case *dns.AAAA:
		return pointer + fixed + net.IPv6len, true
	case *dns.SRV:
		if strings.IndexByte(rr.Target, '\\') >= 0 {
			return 0, false
		}
		const priorityWeightPort = 6
		return pointer + fixed + priorityWeightPort + len(rr.Target) + 1, true
	}
	return 0, false
}

func sameRRset(a, b dns.RR) bool {
	ha, hb := a.Header(), b.Header()
	return ha.Rrtype == hb.Rrtype && ha.Class == hb.Class && strings.EqualFold(ha.Name, hb.Name)
}
