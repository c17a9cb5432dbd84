package headless

import (
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

// entryKind says what a forward name is.
type entryKind uint8

const (
	emptyNonTerminal entryKind = iota // exists for the names below it: svc, a namespace, _tcp.web...
	serviceName                       // web.default.svc
	podName                           // web-0.web.default.svc
	srvName                           // _cql._tcp.web.default.svc
	zonalName                         // us-east-1a.pin._zone.web.default.svc (and prefer)
	zonalPin                          // pin._zone.web.default.svc: zones with no endpoint below it
	zonalPrefer                       // prefer._zone.web.default.svc: likewise
)

// Labels of zone-scoped names (zonal option):
// <topology-zone>.pin._zone.<service>... and <topology-zone>.prefer._zone....
const (
	zoneAnchor  = "_zone"
	pinLabel    = "pin"
	preferLabel = "prefer"
)

// entry is what the index holds at one forward name: a kind, and for all
// but empty non-terminals the answer set and which of its pods, SRV RRsets
// or zones. It is a value, so a name costs its map slot and nothing more.
type entry struct {
	svc  *serviceData
	kind entryKind
	i    int32
}

// addresses returns the A/AAAA addresses at the entry's name: none but at
// a service, pod or zone-scoped name.
func (e entry) addresses() addrSet {
	switch e.kind {
	case serviceName:
		return e.svc.addrs
	case podName:
		return e.svc.podAddrSet(e.i)
	case zonalName:
		return e.svc.topology[e.i].addrs
	}
	return addrSet{}
}

// perPod tells whether the entry names one pod, whose records take the pod
// TTL, rather than a set of them.
func (e entry) perPod() bool { return e.kind == podName }

// srv returns the SRV targets at the entry's name, with the answer set
// they point into: a named port's RRset; every pod and port at a service
// name; one pod's ports at its name; a zone's pods at a zone-scoped name.
func (e entry) srv() (*serviceData, []srvTarget) {
	switch e.kind {
	case srvName:
		return e.svc, e.svc.srv[e.i].targets
	case serviceName:
		return e.svc, e.svc.anyPort
	case podName:
		return e.svc, e.svc.podTargets(e.i)
	case zonalName:
		return e.svc, e.svc.topology[e.i].targets
	}
	return nil, nil
}

// ptrEntry is the PTR RRset of one address. Almost always one pod of one
// service holds the address, and the entry names that pod, costing nothing
// beyond its map slot; an address under several names or services gets a
// merged set.
type ptrEntry struct {
	svc    *serviceData // the one holder, when shared is nil
	pod    int32
	shared *ptrSet
}

// targets returns the entry's PTR targets (none at a reverse empty
// non-terminal); one is room for the usual one.
func (e ptrEntry) targets(one *[1]string) []string {
	switch {
	case e.shared != nil:
		return e.shared.targets
	case e.svc != nil:
		one[0] = e.svc.fqdn(e.pod, 0)
		return one[:]
	}
	return nil
}

// exists tells an address's entry from none.
func (e ptrEntry) exists() bool { return e.svc != nil || e.shared != nil }

// owners returns who holds the entry's address.
func (e ptrEntry) owners() []ptrOwner {
	switch {
	case e.shared != nil:
		return e.shared.owners
	case e.svc != nil:
		return []ptrOwner{{svc: e.svc, pods: []int32{e.pod}}}
	}
	return nil
}

// ptrSet is the merged PTR RRset of an address held under several names.
type ptrSet struct {
	targets []string // sorted, distinct
	owners  []ptrOwner
}

// ptrOwner is one service's pods holding an address.
type ptrOwner struct {
	svc  *serviceData
	pods []int32
}

// published is the bookkeeping of one known service, for replacing it.
type published struct {
	namespace string
	data      *serviceData // nil while it has no ready endpoint
}

// index holds the published answers. Queries take the read lock for a map
// lookup or two; publish swaps one service's entries in under the write lock, so
// an update costs what that service has, whatever the number of services.
type index struct {
	mu    sync.RWMutex
	names map[string]entry // forward names relative to their zone, lower case
	// The PTR entries by address, IPv4 ones keyed by four bytes: a map
	// slot per endpoint address, so its size counts. An address of
	// several holders has its merged set in ptrShared.
	ptr4      map[[4]byte]ptrSlot
	ptr6      map[[16]byte]ptrSlot
	ptrShared map[netip.Addr]*ptrSet
	// bySlot is the answer sets the PTR slots name, by slot number: PTR
	// slots hold numbers, not pointers, so that they are half the size
	// and the collector never scans them.
	bySlot    []*serviceData
	freeSlots []uint32
	// PTR names below each reverse empty non-terminal (244.10.in-addr.arpa.
	// for 10.244.1.5): while any, it answers NODATA, not NXDOMAIN (RFC 8020).
	reverseENT map[string]int
	serial     uint32

	// Writer-side state, guarded by writeMu.
	writeMu   sync.Mutex
	services  map[string]*published // known headless services, by "namespace/name"
	perNS     map[string]int        // known services per namespace
	endpoints int
}

func newIndex() *index {
	return &index{
		names:      map[string]entry{},
		ptr4:       map[[4]byte]ptrSlot{},
		ptr6:       map[[16]byte]ptrSlot{},
		ptrShared:  map[netip.Addr]*ptrSet{},
		reverseENT: map[string]int{},
		serial:     uint32(time.Now().Unix()),
		services:   map[string]*published{},
		perNS:      map[string]int{},
	}
}

// lookup returns the entry at a forward name relative to its zone.
func (ix *index) lookup(rel string) (entry, bool) {
	ix.mu.RLock()
	e, ok := ix.names[rel]
	if !ok {
		e, ok = ix.lookupPod(rel)
	}
	ix.mu.RUnlock()
	return e, ok
}

// lookupPod finds a pod's name, <label>.<service>.<namespace>.svc: pods are
// not in names (a map slot per endpoint would cost more than the rest of
// its data), so it finds the service, the last three labels, and the
// label among its pods. In clusterset zones a label is <hostname>.<cluster>.
// Callers hold mu.
func (ix *index) lookupPod(rel string) (entry, bool) {
	dot := len(rel)
	for range 3 {
		if dot = strings.LastIndexByte(rel[:dot], '.'); dot < 0 {
			return entry{}, false
		}
	}
	svc, ok := ix.names[rel[dot+1:]]
	if !ok || svc.kind != serviceName {
		return entry{}, false
	}
	i, found := svc.svc.podIndex(rel[:dot])
	return entry{svc: svc.svc, kind: podName, i: i}, found
}

// lookupZonal answers a zone-scoped name whose zone holds no endpoint of
// its service (those of zones that do are in names): under pin._zone it
// exists and is empty, under prefer._zone it answers as the service. The
// zone may span labels, so everything left of the directive is the zone.
func (ix *index) lookupZonal(rel string) (entry, bool) {
	// The last "._zone." is the anchor: a zone value may hold one, a
	// service or namespace name never does.
	i := strings.LastIndex(rel, "."+zoneAnchor+".")
	dot := strings.LastIndexByte(rel[:max(i, 0)], '.')
	if i < 0 || dot < 0 {
		return entry{}, false
	}
	anchor, ok := ix.lookup(rel[dot+1:]) // pin._zone.web.default.svc
	switch {
	case !ok:
		return entry{}, false
	case anchor.kind == zonalPin:
		return entry{kind: emptyNonTerminal}, true
	case anchor.kind == zonalPrefer:
		return entry{svc: anchor.svc, kind: serviceName}, true
	}
	return entry{}, false
}

// lookupReverse returns the PTR entry at a full reverse name (none at a
// reverse empty non-terminal), and whether the name exists.
func (ix *index) lookupReverse(name string) (ptrEntry, bool) {
	ip, isAddress := parseReverseName(name)
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if isAddress {
		return ix.getPTR(ip)
	}
	return ptrEntry{}, ix.reverseENT[name] > 0
}

// ptrSlot is what the PTR maps hold of an address: its one holder (the
// answer set at bySlot[svc], and its pod), or pod -1 when ptrShared has its
// merged set.
type ptrSlot struct {
	svc uint32
	pod int32
}

// takeSlot returns a free slot number, growing bySlot under mu when there
// is none. Callers hold writeMu.
func (ix *index) takeSlot() uint32 {
	if n := len(ix.freeSlots); n > 0 {
		slot := ix.freeSlots[n-1]
		ix.freeSlots = ix.freeSlots[:n-1]
		return slot
	}
	ix.mu.Lock()
	ix.bySlot = append(ix.bySlot, nil)
	ix.mu.Unlock()
	return uint32(len(ix.bySlot) - 1)
}

// getPTR returns the PTR entry of ip. Callers hold mu (or writeMu).
func (ix *index) getPTR(ip netip.Addr) (ptrEntry, bool) {
	var slot ptrSlot
	var ok bool
	if ip.Is4() {
		slot, ok = ix.ptr4[ip.As4()]
	} else {
		slot, ok = ix.ptr6[ip.As16()]
	}
	switch {
	case !ok:
		return ptrEntry{}, false
	case slot.pod < 0:
		return ptrEntry{shared: ix.ptrShared[ip]}, true
	}
	return ptrEntry{svc: ix.bySlot[slot.svc], pod: slot.pod}, true
}

// setPTR stores (exists) or removes the PTR entry of ip. Callers hold mu.
func (ix *index) setPTR(ip netip.Addr, e ptrEntry, exists bool) {
	var slot ptrSlot
	delete(ix.ptrShared, ip)
	switch {
	case e.shared != nil:
		slot = ptrSlot{pod: -1}
		ix.ptrShared[ip] = e.shared
	case e.svc != nil:
		slot = ptrSlot{svc: e.svc.slot, pod: e.pod}
	}
	switch {
	case ip.Is4() && exists:
		ix.ptr4[ip.As4()] = slot
	case ip.Is4():
		delete(ix.ptr4, ip.As4())
	case exists:
		ix.ptr6[ip.As16()] = slot
	default:
		delete(ix.ptr6, ip.As16())
	}
}

// addressPTR is one address's PTR entry.
type addressPTR struct {
	ip    netip.Addr
	entry ptrEntry
}

// snapshot returns, consistently, every published answer set and every
// PTR entry, for a zone transfer. Both are immutable once published.
func (ix *index) snapshot() ([]*serviceData, []addressPTR) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	var services []*serviceData
	for _, e := range ix.names {
		if e.kind == serviceName {
			services = append(services, e.svc)
		}
	}
	ptrs := make([]addressPTR, 0, len(ix.ptr4)+len(ix.ptr6))
	for b := range ix.ptr4 {
		ip := netip.AddrFrom4(b)
		e, _ := ix.getPTR(ip)
		ptrs = append(ptrs, addressPTR{ip, e})
	}
	for b := range ix.ptr6 {
		ip := netip.AddrFrom16(b)
		e, _ := ix.getPTR(ip)
		ptrs = append(ptrs, addressPTR{ip, e})
	}
	return services, ptrs
}

// soaSerial is the serial of the zones' SOA: the time of the last change.
func (ix *index) soaSerial() uint32 {
	ix.mu.RLock()
	s := ix.serial
	ix.mu.RUnlock()
	return s
}

// counts returns the known headless services and their published ready
// endpoint addresses.
func (ix *index) counts() (services, endpoints int) {
	ix.writeMu.Lock()
	defer ix.writeMu.Unlock()
	return len(ix.services), ix.endpoints
}

// names lists every forward name sd publishes, with its entry.
func (sd *serviceData) names(yield func(string, entry) bool) {
	if !yield(sd.rel, entry{svc: sd, kind: serviceName}) {
		return
	}
	for i := range sd.pods {
		if !yield(sd.podRel(int32(i)), entry{svc: sd, kind: podName, i: int32(i)}) {
			return
		}
	}
	var clusters []string
	if sd.options != nil {
		clusters = sd.clusters
	}
	for _, cluster := range clusters {
		if !yield(cluster+"."+sd.rel, entry{kind: emptyNonTerminal}) {
			return
		}
	}
	for j := range sd.srv {
		rel := sd.srv[j].rel
		if !yield(rel, entry{svc: sd, kind: srvName, i: int32(j)}) {
			return
		}
		// "_tcp.web.default.svc": the SRV name without its first label.
		if !yield(rel[strings.IndexByte(rel, '.')+1:], entry{kind: emptyNonTerminal}) {
			return
		}
	}
	if sd.options == nil || sd.topology == nil {
		return
	}
	anchor := zoneAnchor + "." + sd.rel
	if !yield(anchor, entry{kind: emptyNonTerminal}) ||
		!yield(pinLabel+"."+anchor, entry{svc: sd, kind: zonalPin}) ||
		!yield(preferLabel+"."+anchor, entry{svc: sd, kind: zonalPrefer}) {
		return
	}
	for i, set := range sd.topology {
		for _, directive := range []string{pinLabel, preferLabel} {
			if !yield(set.zone+"."+directive+"."+anchor, entry{svc: sd, kind: zonalName, i: int32(i)}) {
				return
			}
		}
	}
}

// ptrPods returns, per address of sd, the pods whose names its PTR
// records point at.
func (sd *serviceData) ptrPods() map[netip.Addr][]int32 {
	out := make(map[netip.Addr][]int32, sd.addrs.count())
	for i := range sd.pods {
		if sd.options != nil && sd.noPTR.has(int32(i)) {
			continue
		}
		for ip := range sd.podAddrSet(int32(i)).all {
			out[ip] = append(out[ip], int32(i))
		}
	}
	return out
}

// publish replaces what the service key published before with sd (nil
// removes it), keeping the shared names (svc and namespace empty
// non-terminals, PTRs and reverse empty non-terminals) right. svc is nil
// when the service is gone (or not headless, or filtered out); sd is nil
// when it has no ready endpoint.
func (ix *index) publish(key string, svc *service, sd *serviceData) {
	ix.writeMu.Lock()
	defer ix.writeMu.Unlock()
	old := ix.services[key]
	if old == nil && svc == nil {
		return
	}
	var next *published
	if svc != nil {
		next = &published{namespace: svc.namespace, data: sd}
	}
	// The new answer set takes its predecessor's slot, or a free one.
	var freed []uint32
	switch {
	case sd != nil && old != nil && old.data != nil:
		sd.slot = old.data.slot
	case sd != nil:
		sd.slot = ix.takeSlot()
	case old != nil && old.data != nil:
		freed = append(freed, old.data.slot)
	}

	// PTR owners first: which addresses change, and to what. Only the
	// holder of writeMu changes the PTR maps, so it may read them without mu.
	type ptrChange struct {
		entry  ptrEntry
		exists bool
	}
	ptrChanges := map[netip.Addr]ptrChange{}
	var newPods map[netip.Addr][]int32
	if sd != nil {
		newPods = sd.ptrPods()
	}
	if old != nil && old.data != nil {
		for ip := range old.data.ptrPods() {
			ptrChanges[ip] = ptrChange{}
		}
	}
	for ip := range newPods {
		ptrChanges[ip] = ptrChange{}
	}
	for ip := range ptrChanges {
		var owners []ptrOwner
		if cur, ok := ix.getPTR(ip); ok {
			owners = slices.DeleteFunc(slices.Clone(cur.owners()), func(o ptrOwner) bool { return old != nil && o.svc == old.data })
		}
		if pods, ok := newPods[ip]; ok {
			owners = append(owners, ptrOwner{svc: sd, pods: pods})
		}
		e, exists := newPTREntry(owners)
		ptrChanges[ip] = ptrChange{e, exists}
	}

	// Namespace and svc empty non-terminals follow the known services: a
	// service counts even with no ready endpoint (then it publishes no
	// name of its own).
	nsDelta := map[string]int{}
	if old != nil {
		nsDelta[old.namespace]--
		if old.data != nil {
			ix.endpoints -= old.data.addrs.count()
		}
		delete(ix.services, key)
	}
	if next != nil {
		nsDelta[next.namespace]++
		if sd != nil {
			ix.endpoints += sd.addrs.count()
		}
		ix.services[key] = next
	}
	ents := map[string]bool{} // name → exists
	for ns, d := range nsDelta {
		before := ix.perNS[ns]
		after := before + d
		if after == 0 {
			delete(ix.perNS, ns)
		} else {
			ix.perNS[ns] = after
		}
		if (before == 0) != (after == 0) {
			ents[ns+".svc"] = after > 0
		}
	}
	ents["svc"] = len(ix.services) > 0

	ix.mu.Lock()
	defer ix.mu.Unlock()
	if sd != nil {
		ix.bySlot[sd.slot] = sd
	}
	for _, n := range freed {
		ix.bySlot[n] = nil
		ix.freeSlots = append(ix.freeSlots, n)
	}
	if old != nil && old.data != nil {
		for name, e := range old.data.names {
			if e.kind != podName {
				delete(ix.names, name)
			}
		}
	}
	if sd != nil {
		for name, e := range sd.names {
			// A name that is both a service's _tcp and an SRV name of
			// another cannot happen: labels starting with _ are not
			// hostnames or service names. So the last write wins safely.
			// Pods are found through their service (lookupPod).
			if e.kind != podName {
				ix.names[name] = e
			}
		}
	}
	for name, exists := range ents {
		if !exists {
			delete(ix.names, name)
		} else if _, ok := ix.names[name]; !ok {
			ix.names[name] = entry{kind: emptyNonTerminal}
		}
	}
	for ip, c := range ptrChanges {
		_, had := ix.getPTR(ip)
		ix.setPTR(ip, c.entry, c.exists)
		if had != c.exists {
			ix.countReverseAncestors(reverseName(ip), c.exists)
		}
	}
	ix.serial++
}

// newPTREntry makes the PTR entry of an address from its holders; it does
// not exist when none is left.
func newPTREntry(owners []ptrOwner) (ptrEntry, bool) {
	switch {
	case len(owners) == 0:
		return ptrEntry{}, false
	case len(owners) == 1 && len(owners[0].pods) == 1:
		return ptrEntry{svc: owners[0].svc, pod: owners[0].pods[0]}, true
	}
	var targets []string
	for _, o := range owners {
		for _, pod := range o.pods {
			targets = append(targets, o.svc.fqdn(pod, 0))
		}
	}
	slices.Sort(targets)
	return ptrEntry{shared: &ptrSet{targets: slices.Compact(targets), owners: owners}}, true
}

// countReverseAncestors adds (or takes away) one PTR name below each
// ancestor of name, up to in-addr.arpa. or ip6.arpa. Callers hold mu.
func (ix *index) countReverseAncestors(name string, added bool) {
	reverseParents(name, func(parent string) {
		switch before := ix.reverseENT[parent]; {
		case added:
			ix.reverseENT[parent] = before + 1
		case before <= 1:
			delete(ix.reverseENT, parent)
		default:
			ix.reverseENT[parent] = before - 1
		}
	})
}
