package headless

import (
	"context"

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
	qtype := state.QType()
	if qtype == dns.TypeAXFR || qtype == dns.TypeIXFR {
		// Transfers are the transfer plugin's, which sits before this one
		// when the Corefile has it; a plugin behind may offer them too.
		if h.cfg.fall.Through(qname) {
			return plugin.NextOrFailure(h.Name(), h.Next, ctx, w, r)
		}
		return dns.RcodeRefused, nil
	}

	// Look the name up: one of the apex's, a reverse name or a forward name.
	var (
		found bool
		at    = notApex
		e     entry    // at a forward name
		ptr   ptrEntry // at a reverse name
	)
	apex := h.apexes[zone]
	rel := relativeName(qname, zone)
	switch at = apex.owns(rel); {
	case at == atApex && qtype != dns.TypeSOA && qtype != dns.TypeNS && h.cfg.fall.Through(qname):
		return plugin.NextOrFailure(h.Name(), h.Next, ctx, w, r)
	case at != notApex:
		found = true
	case !apex.forward:
		ptr, found = h.lookupReverse(qname)
	case apex.clusterset:
		e, found = h.clusterset.lookup(rel)
	default:
		e, found = h.index.lookup(rel)
		if !found && h.cfg.zonal {
			e, found = h.index.lookupZonal(rel)
		}
	}
	if !found && h.cfg.fall.Through(qname) {
		return plugin.NextOrFailure(h.Name(), h.Next, ctx, w, r)
	}

	// Assemble the reply: the records the name holds of the type asked,
	// with the TTL of their kind.
	rp := newReply(r)
	m := &rp.msg
	owner := state.QName()
	ttl := h.cfg.ttl
	switch {
	case !found:
		m.Rcode = dns.RcodeNameError
	case at == atApex && qtype == dns.TypeSOA:
		apex.fillSOA(&rp.soa, h.serial(zone), ttl.negative)
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
		if targets := ptr.targets(&one); len(targets) > 0 {
			m.Answer, m.Extra = rp.sections(len(targets), 0)
			m.Answer = appendPTR(m.Answer, targets, owner, ttl.ptr)
		}
	}
	if len(m.Answer) == 0 { // NXDOMAIN or NODATA: the zone's SOA tells how long to cache it
		apex.fillSOA(&rp.soa, h.serial(zone), ttl.negative)
		m.Ns, m.Extra = rp.sections(1, 0)
		m.Ns = append(m.Ns, &rp.soa)
	}
	fit(state, m)
	if err := w.WriteMsg(m); err != nil {
		log.Debugf("writing reply to %s: %v", state.IP(), err)
	}
	return dns.RcodeSuccess, nil
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
