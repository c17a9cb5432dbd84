package headless

import (
	"context"
	"strings"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/request"
	"github.com/miekg/dns"
)

// ServeDNS answers names under the plugin's zones from the published index.
// It reads the question and looks the name up first, in a small stack
// frame, and builds a reply only when the name is its to answer: most
// questions a cluster DNS gets are for other plugins (search-path misses,
// ClusterIP Services, external names), and the plugins behind run on the
// same goroutine stack, which has to grow (a copy, on every query) if a
// plugin in front makes it deeper.
func (h *Headless) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	var q asked
	switch h.find(r, &q) {
	case passOn:
		return plugin.NextOrFailure(h.Name(), h.Next, ctx, w, r)
	case refuse:
		return q.rcode, nil
	}
	h.answer(w, r, &q)
	return dns.RcodeSuccess, nil
}

// asked is what find learns of a question.
type asked struct {
	qname string // lower case, for the lookup; owner names keep the case asked
	qtype uint16
	zone  string
	apex  *apex
	at    apexName
	found bool
	e     entry    // at a forward name
	ptr   ptrEntry // at a reverse name
	rcode int      // with refuse: the rcode to return, writing nothing
}

// action is what ServeDNS does with a question.
type action int

const (
	answerIt action = iota // answer it from q
	passOn                 // hand it to the next plugin
	refuse                 // return q.rcode, writing nothing
)

// find reads r's question and looks its name up; it says what ServeDNS does
// with it.
func (h *Headless) find(r *dns.Msg, q *asked) action {
	if len(r.Question) != 1 {
		return passOn
	}
	q.qname = strings.ToLower(r.Question[0].Name)
	q.zone = matchZone(h.zones, q.qname)
	if q.zone == "" || r.Question[0].Qclass != dns.ClassINET {
		return passOn
	}
	if r.Opcode != dns.OpcodeQuery { // NOTIFY, UPDATE...: this zone takes none
		q.rcode = dns.RcodeNotImplemented
		return refuse
	}
	if !h.synced.Load() {
		q.rcode = dns.RcodeServerFailure
		return refuse
	}
	q.qtype = r.Question[0].Qtype
	if q.qtype == dns.TypeAXFR || q.qtype == dns.TypeIXFR {
		// Transfers are the transfer plugin's, which sits before this one
		// when the Corefile has it; a plugin behind may offer them too.
		if h.cfg.fall.Through(q.qname) {
			return passOn
		}
		q.rcode = dns.RcodeRefused
		return refuse
	}

	// One of the apex's names, a reverse name or a forward name.
	q.apex = h.apexes[q.zone]
	rel := relativeName(q.qname, q.zone)
	switch q.at = q.apex.owns(rel); {
	case q.at == atApex && q.qtype != dns.TypeSOA && q.qtype != dns.TypeNS && h.cfg.fall.Through(q.qname):
		return passOn
	case q.at != notApex:
		q.found = true
	case !q.apex.forward:
		q.ptr, q.found = h.lookupReverse(q.qname)
	case q.apex.clusterset:
		q.e, q.found = h.clusterset.lookup(rel)
	default:
		q.e, q.found = h.index.lookup(rel)
		if !q.found && h.cfg.zonal {
			q.e, q.found = h.index.lookupZonal(rel)
		}
	}
	if !q.found && h.cfg.fall.Through(q.qname) {
		return passOn
	}
	return answerIt
}

// answer writes the reply to q: the records its name holds of the type
// asked, with the TTL of their kind.
func (h *Headless) answer(w dns.ResponseWriter, r *dns.Msg, q *asked) {
	state := request.Request{W: w, Req: r}
	rp := newReply(r)
	m := &rp.msg
	owner := r.Question[0].Name
	qtype, apex, e, ttl := q.qtype, q.apex, &q.e, h.cfg.ttl
	switch at := q.at; {
	case !q.found:
		m.Rcode = dns.RcodeNameError
	case at == atApex && qtype == dns.TypeSOA:
		apex.fillSOA(&rp.soa, h.serial(q.zone), ttl.negative)
		rp.soa.Hdr.Name = owner
		m.Answer, m.Extra = rp.sections(1, 0)
		m.Answer = append(m.Answer, &rp.soa)
	case at == atApex && qtype == dns.TypeNS:
		m.Answer, m.Extra = rp.ns(owner, apex.nameserver, h.serverAddrs, ttl.service)
	case at == atNameserver && (qtype == dns.TypeA || qtype == dns.TypeAAAA):
		m.Answer, m.Extra = rp.addresses(qtype, h.serverAddrs, owner, ttl.service)
	case at == atVersion && qtype == dns.TypeTXT:
		m.Answer, m.Extra = rp.sections(1, 0)
		m.Answer = appendTXT(m.Answer, apex.version, owner, versionTTL)
	case at != notApex:
		// Another type at an apex name: NODATA.
	case qtype == dns.TypeA || qtype == dns.TypeAAAA:
		addrTTL := ttl.service
		if e.perPod() {
			addrTTL = ttl.pod
		}
		m.Answer, m.Extra = rp.addresses(qtype, e.addresses(), owner, addrTTL)
	case qtype == dns.TypeSRV:
		if sd, targets := e.srv(); len(targets) > 0 {
			m.Answer, m.Extra = rp.srv(sd, targets, apex.position, owner, ttl.srv, ttl.pod)
		}
	case qtype == dns.TypePTR:
		var one [1]string
		if targets := q.ptr.targets(&one); len(targets) > 0 {
			m.Answer, m.Extra = rp.sections(len(targets), 0)
			m.Answer = appendPTR(m.Answer, targets, owner, ttl.ptr)
		}
	}
	if len(m.Answer) == 0 { // NXDOMAIN or NODATA: the zone's SOA tells how long to cache it
		apex.fillSOA(&rp.soa, h.serial(q.zone), ttl.negative)
		m.Ns, m.Extra = rp.sections(1, 0)
		m.Ns = append(m.Ns, &rp.soa)
	}
	fit(state, m)
	if err := w.WriteMsg(m); err != nil {
		log.Debugf("writing reply to %s: %v", state.IP(), err)
	}
}

// lookupReverse finds a reverse name among the cluster's PTRs, then, for an
// address with none, among the ServiceImports': an address has the PTRs of
// its cluster-local names when it has any (the Multi-Cluster Services DNS
// specification, 2.4.3).
func (h *Headless) lookupReverse(name string) (ptrEntry, bool) {
	ptr, found := h.index.lookupReverse(name)
	if h.clusterset != nil && !ptr.exists() {
		if imported, ok := h.clusterset.lookupReverse(name); ok {
			return imported, true
		}
	}
	return ptr, found
}
