package headless

import (
	"cmp"
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/pkg/dnsutil"
	"github.com/coredns/coredns/plugin/transfer"
	"github.com/coredns/coredns/request"
	"github.com/miekg/dns"
)

// Zone transfers, for the transfer plugin: AXFR and IXFR of the records
// this plugin serves, and NOTIFY when they change.
//
// When another plugin that transfers the same zone sits behind this one
// (the kubernetes plugin, in the swap-in Corefile), the transfer holds both:
// its records, less the apex and every name this plugin answers for, after
// this plugin's. The zone's serial then adds up both plugins' serials, so
// that it moves when either's records change.

// errNotSynced fails a transfer asked for before the first sync: the
// index would be incomplete.
var errNotSynced = errors.New("not synced with the API server yet")

// serialSource is a plugin behind this one whose zone serial counts
// towards the zone's: the kubernetes plugin has this method.
type serialSource interface {
	Serial(state request.Request) uint32
}

// transferPeers returns the plugins after this one in the server block
// that transfer zones too; their records join this plugin's transfers.
func transferPeers(handlers []plugin.Handler, self plugin.Handler) []transfer.Transferer {
	var peers []transfer.Transferer
	after := false
	for _, h := range handlers {
		if h == self {
			after = true
			continue
		}
		if t, ok := h.(transfer.Transferer); ok && after {
			peers = append(peers, t)
		}
	}
	return peers
}

// serial is the SOA serial of zone: the index's, plus the serials of the
// transfer peers that have one.
func (h *Headless) serial(zone string) uint32 {
	serial := h.index.soaSerial()
	if h.clusterset != nil {
		serial += h.clusterset.soaSerial()
	}
	for _, p := range h.peers {
		if s, ok := p.(serialSource); ok {
			serial += s.Serial(request.Request{Zone: zone})
		}
	}
	return serial
}

// Transfer implements transfer.Transferer. serial 0 asks for the whole
// zone (AXFR); an IXFR from a serial that is not older than the zone's gets
// the SOA alone, and from an older one the whole zone, as the transfer
// plugin expects.
func (h *Headless) Transfer(zone string, serial uint32) (<-chan []dns.RR, error) {
	zone = strings.ToLower(zone)
	if !slices.Contains(h.zones, zone) {
		return nil, transfer.ErrNotAuthoritative
	}
	if !h.synced.Load() {
		return nil, errNotSynced
	}
	apex := h.apexes[zone]
	ttl := h.cfg.ttl
	current := h.serial(zone)
	soa := &dns.SOA{}
	apex.fillSOA(soa, current, ttl.negative)

	ch := make(chan []dns.RR)
	go func() {
		defer close(ch)
		if serial != 0 && int32(serial-current) >= 0 {
			ch <- []dns.RR{soa}
			return
		}
		ch <- []dns.RR{soa}
		ch <- apexRecords(apex, h.serverAddrs, ttl)
		owned := h.transferIndex(apex, ch)
		for _, p := range h.peers {
			h.transferPeer(p, zone, owned, ch)
		}
		ch <- []dns.RR{soa}
	}()
	return ch, nil
}

// apexRecords are the records at and near the apex besides the SOA.
func apexRecords(apex *apex, server addrSet, ttl ttls) []dns.RR {
	rrs := []dns.RR{&dns.NS{Hdr: dns.RR_Header{Name: apex.zone, Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: ttl.service}, Ns: apex.nameserver}}
	rrs = appendA(rrs, server, apex.nameserver, ttl.service)
	rrs = appendAAAA(rrs, server, apex.nameserver, ttl.service)
	if apex.forward {
		rrs = appendTXT(rrs, apex.version, dnsutil.Join(versionLabel, apex.zone), versionTTL)
	}
	return rrs
}

// transferIndex sends the records of the zone whose apex is apex, one
// service (or, in a reverse zone, one address) at a time, and returns the
// names they own.
func (h *Headless) transferIndex(apex *apex, ch chan<- []dns.RR) map[string]bool {
	zone := apex.zone
	owned := map[string]bool{}
	ttl := h.cfg.ttl
	if !apex.forward {
		_, ptrs := h.index.snapshot()
		if h.clusterset != nil {
			// An address with cluster-local PTRs has those alone.
			local := make(map[netip.Addr]bool, len(ptrs))
			for _, p := range ptrs {
				local[p.ip] = true
			}
			_, imported := h.clusterset.snapshot()
			for _, p := range imported {
				if !local[p.ip] {
					ptrs = append(ptrs, p)
				}
			}
		}
		slices.SortFunc(ptrs, func(a, b addressPTR) int { return a.ip.Compare(b.ip) })
		for _, p := range ptrs {
			name := reverseName(p.ip)
			if !dns.IsSubDomain(zone, name) {
				continue
			}
			var one [1]string
			ch <- appendPTR(nil, p.entry.targets(&one), name, ttl.ptr)
		}
		return owned
	}
	ix := h.index
	if apex.clusterset {
		ix = h.clusterset
	}
	services, _ := ix.snapshot()
	slices.SortFunc(services, func(a, b *serviceData) int { return cmp.Compare(a.rel, b.rel) })
	for _, sd := range services {
		var rrs []dns.RR
		for rel, e := range sd.names {
			name := dnsutil.Join(rel, zone)
			owned[name] = true
			if e.kind == emptyNonTerminal || e.kind == zonalPin || e.kind == zonalPrefer {
				continue
			}
			addrTTL := ttl.service
			if e.perPod() {
				addrTTL = ttl.pod
			}
			addrs := e.addresses()
			rrs = appendA(rrs, addrs, name, addrTTL)
			rrs = appendAAAA(rrs, addrs, name, addrTTL)
			if sd, targets := e.srv(); len(targets) > 0 {
				srv, _ := (&reply{}).srv(sd, targets, apex.position, name, ttl.srv, ttl.pod)
				rrs = append(rrs, srv...) // the glue is the pods' own records, sent with them
			}
		}
		ch <- rrs
	}
	return owned
}

// transferPeer sends a peer's records in zone, less its SOA and apex
// records and every name this plugin owns.
func (h *Headless) transferPeer(peer transfer.Transferer, zone string, owned map[string]bool, ch chan<- []dns.RR) {
	records, err := peer.Transfer(zone, 0)
	if err != nil {
		if err != transfer.ErrNotAuthoritative {
			log.Warningf("transfer of %s: the plugin behind failed: %v", zone, err)
		}
		return
	}
	nameserver := h.apexes[zone].nameserver
	for rrs := range records {
		keep := rrs[:0:0]
		for _, rr := range rrs {
			name := strings.ToLower(rr.Header().Name)
			switch t := rr.Header().Rrtype; {
			case t == dns.TypeSOA, name == zone, name == nameserver, owned[name]:
			default:
				keep = append(keep, rr)
			}
		}
		if len(keep) > 0 {
			ch <- keep
		}
	}
}

// notifyChanges sends NOTIFY for every zone whose serial moved, at most
// every interval, until ctx ends: a burst of changes makes one NOTIFY.
// Changes behind this plugin (its transfer peers') are seen the same way.
func (h *Headless) notifyChanges(ctx context.Context, xfr *transfer.Transfer, interval time.Duration) {
	last := map[string]uint32{}
	for _, z := range h.zones {
		last[z] = h.serial(z)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, z := range h.zones {
			if s := h.serial(z); s != last[z] {
				last[z] = s
				if err := xfr.Notify(z); err != nil {
					log.Warningf("notify for %s: %v", z, err)
				}
			}
		}
	}
}
