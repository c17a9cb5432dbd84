package headless

import (
	"context"
	"slices"

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
		// No transfers from here; a plugin behind may offer them.
		if h.cfg.fall.Through(qname) {
			return plugin.NextOrFailure(h.Name(), h.Next, ctx, w, r)
		}
		return dns.RcodeRefused, nil
	}

	// Look the name up: the apex, a reverse name or a forward name.
	var (
		found bool
		e     entry    // at a forward name
		ptr   ptrEntry // at a reverse name
	)
	switch rel := relativeName(qname, zone); {
	case rel == "":
		if qtype != dns.TypeSOA && h.cfg.fall.Through(qname) {
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

	// Assemble the reply: the records the name holds of the type asked,
	// with the TTL of their kind.
	rp := newReply(r)
	m := &rp.msg
	owner := state.QName()
	ttl := h.cfg.ttl
	switch {
	case !found:
		m.Rcode = dns.RcodeNameError
	case qname == zone && qtype == dns.TypeSOA:
		h.apexes[zone].fillSOA(&rp.soa, h.index.soaSerial(), ttl.negative)
		rp.soa.Hdr.Name = owner
		m.Answer, m.Extra = rp.sections(1, 0)
		m.Answer = append(m.Answer, &rp.soa)
	case qtype == dns.TypeA || qtype == dns.TypeAAAA:
		addrs, addrTTL := e.addresses(), ttl.service
		if e.perPod() {
			addrTTL = ttl.pod
		}
		if qtype == dns.TypeA && len(addrs.a()) > 0 {
			m.Answer, m.Extra = rp.sections(len(addrs.a()), 0)
			m.Answer = appendA(m.Answer, addrs.a(), owner, addrTTL)
		} else if qtype == dns.TypeAAAA && len(addrs.aaaa()) > 0 {
			m.Answer, m.Extra = rp.sections(len(addrs.aaaa()), 0)
			m.Answer = appendAAAA(m.Answer, addrs.aaaa(), owner, addrTTL)
		}
	case qtype == dns.TypeSRV:
		if sd, set, ok := e.srv(); ok {
			z := slices.Index(h.cfg.forwardZones, zone)
			m.Answer, m.Extra = rp.srv(sd, set, z, owner, ttl.srv, ttl.pod)
		}
	case qtype == dns.TypePTR:
		var one [1]string
		if targets := ptr.targets(&one); len(targets) > 0 {
			m.Answer, m.Extra = rp.sections(len(targets), 0)
			m.Answer = appendPTR(m.Answer, targets, owner, ttl.ptr)
		}
	}
	if len(m.Answer) == 0 { // NXDOMAIN or NODATA: the zone's SOA tells how long to cache it
		h.apexes[zone].fillSOA(&rp.soa, h.index.soaSerial(), ttl.negative)
		m.Ns, m.Extra = rp.sections(1, 0)
		m.Ns = append(m.Ns, &rp.soa)
	}
	fit(state, m)
	if err := w.WriteMsg(m); err != nil {
		log.Debugf("writing reply to %s: %v", state.IP(), err)
	}
	return dns.RcodeSuccess, nil
}
