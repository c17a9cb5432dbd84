package headless

import (
	"context"
	"net"
	"slices"
	"sort"
	"strings"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/request"
	"github.com/miekg/dns"
)

// ServeDNS answers names under the plugin's zones from the published index.
func (h *Headless) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	if len(r.Question) != 1 {
		return plugin.NextOrFailure(h.Name(), h.Next, ctx, w, r)
	}
	state := request.Request{W: w, Req: r}
	qname := state.Name() // lower case, for the lookup; owner names keep the case asked
	zone := matchZone(h.zones, qname)
	if zone == "" || state.QClass() != dns.ClassINET {
		return plugin.NextOrFailure(h.Name(), h.Next, ctx, w, r)
	}
	if r.Opcode != dns.OpcodeQuery { // NOTIFY, UPDATE...: this zone takes none
		return dns.RcodeNotImplemented, nil
	}
	if !h.synced.Load() {
		return dns.RcodeServerFailure, nil
	}
	if t := state.QType(); t == dns.TypeAXFR || t == dns.TypeIXFR {
		// No transfers from here; a plugin behind may offer them.
		if h.cfg.fall.Through(qname) {
			return plugin.NextOrFailure(h.Name(), h.Next, ctx, w, r)
		}
		return dns.RcodeRefused, nil
	}

	var (
		found bool
		e     entry    // at a forward name
		ptr   ptrEntry // at a reverse name
	)
	switch rel := relativeName(qname, zone); {
	case rel == "":
		if state.QType() != dns.TypeSOA && h.cfg.fall.Through(qname) {
			return plugin.NextOrFailure(h.Name(), h.Next, ctx, w, r)
		}
		found = true // the apex exists, and holds only the SOA
	case isReverseZone(zone):
		ptr, found = h.index.lookupReverse(qname)
	default:
		e, found = h.index.lookup(rel)
	}
	if !found && h.cfg.fall.Through(qname) {
		return plugin.NextOrFailure(h.Name(), h.Next, ctx, w, r)
	}

	rp := newReply(r)
	m := &rp.msg
	owner := state.QName()
	ttl := h.cfg.ttl
	switch qtype := state.QType(); {
	case !found:
		m.Rcode = dns.RcodeNameError
	case qname == zone && qtype == dns.TypeSOA:
		h.fillSOA(&rp.soa, zone)
		rp.soa.Hdr.Name = owner
		m.Answer, m.Extra = rp.sections(1, 0)
		m.Answer = append(m.Answer, &rp.soa)
	case qtype == dns.TypeA || qtype == dns.TypeAAAA:
		addrs, ttl := e.addresses(ttl)
		if qtype == dns.TypeA && addrs.v4 > 0 {
			m.Answer, m.Extra = rp.sections(addrs.v4, 0)
			m.Answer = appendA(m.Answer, addrs.a(), owner, ttl)
		} else if qtype == dns.TypeAAAA && len(addrs.aaaa()) > 0 {
			m.Answer, m.Extra = rp.sections(len(addrs.aaaa()), 0)
			m.Answer = appendAAAA(m.Answer, addrs.aaaa(), owner, ttl)
		}
	case qtype == dns.TypeSRV && e.kind == srvName:
		z := slices.Index(h.cfg.forwardZones, zone)
		m.Answer, m.Extra = rp.srv(e.svc, &e.svc.srv[e.i], z, owner, ttl)
	case qtype == dns.TypePTR && (ptr.svc != nil || ptr.shared != nil):
		var one [1]string
		targets := ptr.targets(&one)
		m.Answer, m.Extra = rp.sections(len(targets), 0)
		m.Answer = appendPTR(m.Answer, targets, owner, ttl.ptr)
	}
	if len(m.Answer) == 0 { // NXDOMAIN or NODATA: the zone's SOA tells how long to cache it
		h.fillSOA(&rp.soa, zone)
		m.Ns, m.Extra = rp.sections(1, 0)
		m.Ns = append(m.Ns, &rp.soa)
	}
	fit(state, m)
	if err := w.WriteMsg(m); err != nil {
		log.Debugf("writing reply to %s: %v", state.IP(), err)
	}
	return dns.RcodeSuccess, nil
}

// reply is a reply message with room for what most replies hold, allocated
// at once: the question, eight record pointers and an SOA. With the one
// array of record copies made per reply, a query costs two allocations,
// three when a big answer needs more pointers.
type reply struct {
	msg      dns.Msg
	question [1]dns.Question
	slots    [8]dns.RR
	soa      dns.SOA
}

// newReply starts the reply to r, as dns.Msg.SetReply would: same id,
// opcode, RD and CD flags, and question; authoritative.
func newReply(r *dns.Msg) *reply {
	rp := &reply{}
	m := &rp.msg
	m.Id, m.Response, m.Opcode, m.Authoritative = r.Id, true, r.Opcode, true
	if m.Opcode == dns.OpcodeQuery {
		m.RecursionDesired, m.CheckingDisabled = r.RecursionDesired, r.CheckingDisabled
	}
	rp.question[0] = r.Question[0]
	m.Question = rp.question[:]
	return rp
}

// sections returns an empty section with room for n records, and an empty
// additional section with room for extra records and an OPT record, both in
// the inline slots when they suffice. Only one call per reply.
func (rp *reply) sections(n, extra int) (records, additional []dns.RR) {
	var all []dns.RR
	if n+extra+1 <= len(rp.slots) {
		all = rp.slots[:]
	} else {
		all = make([]dns.RR, n+extra+1)
	}
	return all[:0:n], all[n : n : n+extra+1]
}

// srv makes an SRV RRset in zone z, owned by owner, and its glue, all in
// one array.
func (rp *reply) srv(sd *serviceData, set *srvData, z int, owner string, t ttls) (answer, extra []dns.RR) {
	type srvAndGlue struct {
		srv  dns.SRV
		a    dns.A
		aaaa dns.AAAA
	}
	copies := make([]srvAndGlue, max(len(set.targets), set.glueA, set.glueAll-set.glueA))
	answer, extra = rp.sections(len(set.targets), set.glueAll)
	for i, target := range set.targets {
		copies[i].srv = dns.SRV{
			Hdr:    dns.RR_Header{Name: owner, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: t.srv},
			Weight: set.weight, Port: target.port, Target: sd.fqdn(target.pod, z),
		}
		answer = append(answer, &copies[i].srv)
	}
	// Glue: every A record, then every AAAA record, pod by pod.
	a, aaaa := 0, 0
	for _, pod := range set.glue {
		name, addrs := sd.fqdn(pod, z), sd.pods[pod].addrs
		for _, ip := range addrs.a() {
			copies[a].a = dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: t.pod}, A: ip}
			extra = append(extra, &copies[a].a)
			a++
		}
	}
	for _, pod := range set.glue {
		name, addrs := sd.fqdn(pod, z), sd.pods[pod].addrs
		for _, ip := range addrs.aaaa() {
			copies[aaaa].aaaa = dns.AAAA{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: t.pod}, AAAA: ip}
			extra = append(extra, &copies[aaaa].aaaa)
			aaaa++
		}
	}
	return answer, extra
}

// appendA makes A records owned by owner for ips, in one new array, and
// appends them to out. Records are always new: plugins downstream (rewrite,
// cache) change names and TTLs in place. The addresses are shared, and
// read only.
func appendA(out []dns.RR, ips []net.IP, owner string, ttl uint32) []dns.RR {
	records := make([]dns.A, len(ips))
	for i, ip := range ips {
		records[i] = dns.A{Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl}, A: ip}
		out = append(out, &records[i])
	}
	return out
}

// appendAAAA is appendA for IPv6.
func appendAAAA(out []dns.RR, ips []net.IP, owner string, ttl uint32) []dns.RR {
	records := make([]dns.AAAA, len(ips))
	for i, ip := range ips {
		records[i] = dns.AAAA{Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: ttl}, AAAA: ip}
		out = append(out, &records[i])
	}
	return out
}

// appendPTR makes PTR records owned by owner pointing at targets.
func appendPTR(out []dns.RR, targets []string, owner string, ttl uint32) []dns.RR {
	records := make([]dns.PTR, len(targets))
	for i, target := range targets {
		records[i] = dns.PTR{Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: ttl}, Ptr: target}
		out = append(out, &records[i])
	}
	return out
}

// Name implements plugin.Handler.
func (h *Headless) Name() string { return pluginName }

// matchZone returns the longest of zones that holds qname, or "". Both are
// lower case and fully qualified. Unlike plugin.Zones.Matches it splits no
// labels, so it allocates nothing on the query path.
func matchZone(zones []string, qname string) string {
	if strings.IndexByte(qname, '\\') >= 0 {
		// Escaped dots make labels that plain suffixes misread.
		return plugin.Zones(zones).Matches(qname)
	}
	best := ""
	for _, z := range zones {
		if len(z) <= len(best) || len(z) > len(qname) {
			continue
		}
		if z == "." || qname == z || (strings.HasSuffix(qname, z) && qname[len(qname)-len(z)-1] == '.') {
			best = z
		}
	}
	return best
}

// relativeName strips zone from qname: "web.default.svc" for
// "web.default.svc.cluster.local." in "cluster.local.", and "" at the apex.
func relativeName(qname, zone string) string {
	switch {
	case len(qname) == len(zone):
		return ""
	case zone == ".":
		return qname[:len(qname)-1]
	default:
		return qname[:len(qname)-len(zone)-1]
	}
}

// fillSOA writes the zone's SOA, owned by the zone, into soa.
func (h *Headless) fillSOA(soa *dns.SOA, zone string) {
	neg := h.cfg.ttl.negative
	names := h.soaNames[zone]
	*soa = dns.SOA{
		Hdr:     dns.RR_Header{Name: zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: neg},
		Ns:      names[0],
		Mbox:    names[1],
		Serial:  h.index.soaSerial(),
		Refresh: 7200,
		Retry:   1800,
		Expire:  86400,
		Minttl:  neg,
	}
}

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
