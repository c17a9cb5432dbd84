package headless

import (
	"github.com/miekg/dns"
	"strings"
)

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

// addresses makes the A (qtype A) or AAAA records of addrs, owned by owner.
func (rp *reply) addresses(qtype uint16, addrs addrSet, owner string, ttl uint32) (answer, extra []dns.RR) {
	n := addrs.len4()
	if qtype == dns.TypeAAAA {
		n = addrs.len6()
	}
	if n == 0 {
		return nil, nil
	}
	answer, extra = rp.sections(n, 0)
	if qtype == dns.TypeA {
		return appendA(answer, addrs, owner, ttl), extra
	}
	return appendAAAA(answer, addrs, owner, ttl), extra
}

// ns makes the NS record of a zone, owned by owner, naming target, with
// target's addresses as glue.
func (rp *reply) ns(owner, target string, glue addrSet, ttl uint32) (answer, extra []dns.RR) {
	answer, extra = rp.sections(1, glue.count())
	answer = append(answer, &dns.NS{Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: ttl}, Ns: target})
	extra = appendA(extra, glue, target, ttl)
	return answer, appendAAAA(extra, glue, target, ttl)
}

// srv makes an SRV RRset in zone z, owned by owner, pointing at targets of
// sd, and its glue, all in one array; srvTTL is the SRV records' TTL,
// podTTL the glue's. The weights are equal, and add up to about 100.
func (rp *reply) srv(sd *serviceData, targets []srvTarget, z int, owner string, srvTTL, podTTL uint32) (answer, extra []dns.RR) {
	// The glue is every address of each target pod, once: targets are
	// ordered by pod, so a pod's records follow a change of pod. The
	// pods' names are made into one string, each once.
	glueA, glueAll, namesLen := 0, 0, 0
	for i, t := range targets {
		if i == 0 || t.pod != targets[i-1].pod {
			p := &sd.pods[t.pod]
			glueA += int(p.n4)
			glueAll += int(p.n4) + int(p.n6)
			namesLen += sd.fqdnLen(t.pod, z)
		}
	}
	var b strings.Builder
	b.Grow(namesLen)
	for i, t := range targets {
		if i == 0 || t.pod != targets[i-1].pod {
			sd.writeFQDN(&b, t.pod, z)
		}
	}
	names := b.String()
	// nameOf returns the name of targets[i]'s pod, given the end of the
	// previous pod's name in names.
	nameOf := func(i int, end *int) string {
		if i == 0 || targets[i].pod != targets[i-1].pod {
			start := *end
			*end += sd.fqdnLen(targets[i].pod, z)
			return names[start:*end]
		}
		return names[*end-sd.fqdnLen(targets[i].pod, z) : *end]
	}
	type srvAndGlue struct {
		srv  dns.SRV
		a    dns.A
		aaaa dns.AAAA
	}
	copies := make([]srvAndGlue, max(len(targets), glueA, glueAll-glueA))
	answer, extra = rp.sections(len(targets), glueAll)
	weight := uint16(max(1, 100/len(targets)))
	end := 0
	for i, t := range targets {
		copies[i].srv = dns.SRV{
			Hdr:    dns.RR_Header{Name: owner, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: srvTTL},
			Weight: weight, Port: t.port, Target: nameOf(i, &end),
		}
		answer = append(answer, &copies[i].srv)
	}
	// Glue: every A record, then every AAAA record, pod by pod.
	a, aaaa := 0, 0
	end = 0
	for i, t := range targets {
		if i > 0 && t.pod == targets[i-1].pod {
			continue
		}
		name, addrs := nameOf(i, &end), sd.podAddrSet(t.pod)
		for i := range addrs.len4() {
			copies[a].a = dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: podTTL}, A: addrs.ip4(i)}
			extra = append(extra, &copies[a].a)
			a++
		}
	}
	end = 0
	for i, t := range targets {
		if i > 0 && t.pod == targets[i-1].pod {
			continue
		}
		name, addrs := nameOf(i, &end), sd.podAddrSet(t.pod)
		for i := range addrs.len6() {
			copies[aaaa].aaaa = dns.AAAA{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: podTTL}, AAAA: addrs.ip6(i)}
			extra = append(extra, &copies[aaaa].aaaa)
			aaaa++
		}
	}
	return answer, extra
}

// appendA makes the A records of addrs owned by owner, in one new array,
// and appends them to out. Records are always new: plugins downstream
// (rewrite, cache) change names and TTLs in place. The addresses are
// shared, and read only.
func appendA(out []dns.RR, addrs addrSet, owner string, ttl uint32) []dns.RR {
	records := make([]dns.A, addrs.len4())
	for i := range records {
		records[i] = dns.A{Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl}, A: addrs.ip4(i)}
		out = append(out, &records[i])
	}
	return out
}

// appendAAAA is appendA for IPv6.
func appendAAAA(out []dns.RR, addrs addrSet, owner string, ttl uint32) []dns.RR {
	records := make([]dns.AAAA, addrs.len6())
	for i := range records {
		records[i] = dns.AAAA{Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: ttl}, AAAA: addrs.ip6(i)}
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

// appendTXT makes a TXT record owned by owner holding text.
func appendTXT(out []dns.RR, text, owner string, ttl uint32) []dns.RR {
	return append(out, &dns.TXT{Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: ttl}, Txt: []string{text}})
}
