package e2e

// Workloads behind headless Services, driven through the real controllers
// and kwok's simulated kubelets, and what DNS must say at each step: a
// StatefulSet scaled up and down, a deleted pod coming back, a rolling
// update, readiness lost and regained; publishNotReadyAddresses; and a
// Deployment whose pods set hostname and subdomain. Each step is followed
// by polling DNS until it agrees with the pods the API server lists, never
// by sleeping.

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// lifecycleWithin bounds how long DNS may take to agree with the pods after
// the API server lists them ready (or gone). Changes reach DNS within a
// second (visibleWithin); the slack is for the endpointslice controller on
// a busy two-core machine.
const lifecycleWithin = 10 * time.Second

// transferBlock is the plugin for one namespace with zone transfers open
// to anyone: the tests read the whole zone to prove that nothing is left
// of a pod that went (a ghost record would hide from the questions a test
// thinks of asking, not from AXFR).
func transferBlock(ns string) string {
	return `transfer {
        to *
    }
    ` + namespacedBlock(ns, "")
}

// headlessService is what DNS must serve for a headless Service whose
// endpoints carry their pods' names as hostnames (a StatefulSet's, or a
// Service with publishNotReadyAddresses): the Service's A records, each
// pod's name, the SRV records of one named TCP port with their glue, and
// each pod IP's PTR.
type headlessService struct {
	server   string // CoreDNS, with transferBlock
	ns, name string
	portName string
	port     int
}

// fqdn is the Service's name, or with host the name of one of its pods.
func (h headlessService) fqdn(host string) string {
	name := h.name + "." + h.ns + ".svc.cluster.local."
	if host != "" {
		name = host + "." + name
	}
	return name
}

func (h headlessService) srvName() string { return "_" + h.portName + "._tcp." + h.fqdn("") }

// serves is nil when DNS answers exactly the published pods and nothing of
// the gone ones: the Service's A records, each published pod's name and
// PTR, the named port's SRV records and their glue (over TCP, where
// nothing is cut), NXDOMAIN for the names and PTRs of gone pods (unless a
// published pod now holds that name or address), and a zone transfer that
// holds these records and no other.
func (h headlessService) serves(published, gone []podInfo) error {
	var ips, targets []string
	names := map[string]bool{}
	glue := map[string]string{} // target -> address
	for _, p := range published {
		ips = append(ips, p.IP)
		targets = append(targets, fmt.Sprintf("%d %s", h.port, h.fqdn(p.Name)))
		names[p.Name] = true
		glue[h.fqdn(p.Name)] = p.IP
	}
	rcode := dns.RcodeSuccess
	if len(published) == 0 {
		rcode = dns.RcodeNameError // a Service with no ready endpoint has no names
	}
	if err := expectAnswer(h.server, "udp", h.fqdn(""), dns.TypeA, rcode, ips...); err != nil {
		return err
	}
	for _, p := range published {
		if err := expectAnswer(h.server, "udp", h.fqdn(p.Name), dns.TypeA, dns.RcodeSuccess, p.IP); err != nil {
			return err
		}
		reverse, _ := dns.ReverseAddr(p.IP)
		if err := expectAnswer(h.server, "udp", reverse, dns.TypePTR, dns.RcodeSuccess, h.fqdn(p.Name)); err != nil {
			return err
		}
	}
	resp, err := exchange(h.server, "tcp", h.srvName(), dns.TypeSRV, 0)
	if err != nil {
		return err
	}
	slices.Sort(targets)
	if got := values(resp.Answer); resp.Rcode != rcode || !slices.Equal(got, targets) {
		return fmt.Errorf("%s SRV: %s %v, want %s %v", h.srvName(), dns.RcodeToString[resp.Rcode], got, dns.RcodeToString[rcode], targets)
	}
	gotGlue := map[string]string{}
	for _, rr := range resp.Extra {
		if a, ok := rr.(*dns.A); ok {
			if prev, dup := gotGlue[a.Hdr.Name]; dup {
				return fmt.Errorf("%s SRV: glue of %s names %s and %s", h.srvName(), a.Hdr.Name, prev, a.A)
			}
			gotGlue[a.Hdr.Name] = a.A.String()
		}
	}
	if fmt.Sprint(gotGlue) != fmt.Sprint(glue) {
		return fmt.Errorf("%s SRV: glue %v, want %v", h.srvName(), gotGlue, glue)
	}
	for _, p := range gone {
		if !names[p.Name] {
			if err := expectAnswer(h.server, "udp", h.fqdn(p.Name), dns.TypeA, dns.RcodeNameError); err != nil {
				return fmt.Errorf("gone pod: %w", err)
			}
		}
		if p.IP != "" && !slices.Contains(ips, p.IP) {
			reverse, _ := dns.ReverseAddr(p.IP)
			if err := expectAnswer(h.server, "udp", reverse, dns.TypePTR, dns.RcodeNameError); err != nil {
				return fmt.Errorf("gone pod %s: %w", p.Name, err)
			}
		}
	}
	return h.transferHolds(published)
}

// transferHolds is nil when the zone transfers hold exactly the records of
// the published pods: in cluster.local, everything at and below the
// Service's name; in in-addr.arpa, every PTR (the server publishes this
// namespace alone).
func (h headlessService) transferHolds(published []podInfo) error {
	var want []string
	add := func(owner string, typ uint16, data string) {
		want = append(want, owner+" "+dns.TypeToString[typ]+" "+data)
	}
	for _, p := range published {
		target := h.fqdn(p.Name)
		srv := fmt.Sprintf("%d %s", h.port, target)
		reverse, _ := dns.ReverseAddr(p.IP)
		add(h.fqdn(""), dns.TypeA, p.IP)
		add(h.fqdn(""), dns.TypeSRV, srv)
		add(h.srvName(), dns.TypeSRV, srv)
		add(target, dns.TypeA, p.IP)
		add(target, dns.TypeSRV, srv)
		add(reverse, dns.TypePTR, target)
	}
	slices.Sort(want)
	var got []string
	for _, zone := range []string{"cluster.local.", "in-addr.arpa."} {
		rrs, err := transferZone(h.server, zone)
		if err != nil {
			return fmt.Errorf("AXFR %s: %w", zone, err)
		}
		for _, rr := range rrs {
			owner := strings.ToLower(rr.Header().Name)
			if owner == h.fqdn("") || strings.HasSuffix(owner, "."+h.fqdn("")) || rr.Header().Rrtype == dns.TypePTR {
				got = append(got, owner+" "+dns.TypeToString[rr.Header().Rrtype]+" "+values([]dns.RR{rr})[0])
			}
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		return fmt.Errorf("the zone transfers hold\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	return nil
}

// transferZone is an AXFR of zone from server, every record once.
func transferZone(server, zone string) ([]dns.RR, error) {
	m := new(dns.Msg)
	m.SetAxfr(zone)
	envelopes, err := (&dns.Transfer{}).In(m, server)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []dns.RR
	for e := range envelopes {
		if e.Error != nil {
			return nil, e.Error
		}
		for _, rr := range e.RR {
			if !seen[rr.String()] { // the SOA opens and closes the transfer
				seen[rr.String()] = true
				out = append(out, rr)
			}
		}
	}
	return out, nil
}

// podsByName indexes pods by name.
func podsByName(pods []podInfo) map[string]podInfo {
	out := map[string]podInfo{}
	for _, p := range pods {
		out[p.Name] = p
	}
	return out
}

// applyArticleStatefulSet applies the article's cassandra Service (named
// port cql) and StatefulSet (examples/cassandra.yaml) to namespace ns, as
// kubectl apply -n ns does, and waits for its three pods.
func applyArticleStatefulSet(t *testing.T, cp *controlPlane, ns string) []podInfo {
	t.Helper()
	cp.kubectl(t, "apply", "--server-side", "-n", ns, "-f", filepath.Join(env.root, "examples", "cassandra.yaml"))
	return cp.waitPodsReady(t, ns, "app=cassandra", 3)
}

// TestStatefulSetLifeInDNS runs the article's StatefulSet through its life
// and requires DNS to follow every step: the names, SRV targets and PTRs
// of new pods appear when it scales up; when it scales down every record of
// the pods that went goes (service A, pod names, SRV and its glue, PTRs,
// and nothing left in a zone transfer); a deleted pod comes back under the
// same name with the address it now has; during a rolling update every
// answer names a pod with an address that pod really had, and the Service
// never loses its name; a pod failing its readiness probe leaves every
// record and comes back when it passes again.
func TestStatefulSetLifeInDNS(t *testing.T) {
	cp := env.cluster
	cp.requireCluster(t)
	ctx := context.Background()
	ns := newNamespace(t, cp, "life")
	pods := applyArticleStatefulSet(t, cp, ns)
	s := startCoreDNS(t, cp, transferBlock(ns))
	svc := headlessService{server: s.addr, ns: ns, name: "cassandra", portName: "cql", port: 9042}
	// follows waits until DNS serves published and nothing of gone, and
	// says how long that took.
	follows := func(t *testing.T, what string, published, gone []podInfo) {
		t.Helper()
		took := eventually(t, lifecycleWithin, what, func() error { return svc.serves(published, gone) })
		t.Logf("%s: in DNS %s after the API server listed it", what, took.Round(time.Millisecond))
	}
	follows(t, "three pods", pods, nil)

	if !t.Run("scale 3 to 5", func(t *testing.T) {
		cp.kubectl(t, "-n", ns, "scale", "statefulset", "cassandra", "--replicas=5")
		pods = cp.waitPodsReady(t, ns, "app=cassandra", 5)
		if got := podsByName(pods); got["cassandra-3"].IP == "" || got["cassandra-4"].IP == "" {
			t.Fatalf("pods %+v, want cassandra-0 to cassandra-4", pods)
		}
		follows(t, "cassandra-3 and cassandra-4 added", pods, nil)
	}) {
		return
	}

	if !t.Run("scale 5 to 2", func(t *testing.T) {
		before := pods
		cp.kubectl(t, "-n", ns, "scale", "statefulset", "cassandra", "--replicas=2")
		pods = cp.waitPodsReady(t, ns, "app=cassandra", 2)
		follows(t, "cassandra-2 to cassandra-4 removed", pods, before[2:])
	}) {
		return
	}

	if !t.Run("pod deleted comes back", func(t *testing.T) {
		old := podsByName(pods)["cassandra-1"]
		cp.kubectl(t, "-n", ns, "delete", "pod", "cassandra-1", "--wait=false")
		eventually(t, podsReadyWithin, "cassandra-1 made anew and ready", func() error {
			if p := podsByName(cp.pods(t, ns, "app=cassandra"))["cassandra-1"]; p.UID == old.UID || !p.Ready || p.IP == "" {
				return fmt.Errorf("not yet: %+v", p)
			}
			return nil
		})
		pods = cp.waitPodsReady(t, ns, "app=cassandra", 2)
		now := podsByName(pods)["cassandra-1"]
		// kwok hands out the lowest address of the node free at that
		// moment, and the old pod may still hold its own: the new pod may
		// have the old address or another. Either way the name must
		// follow, and an address left behind must lose its PTR.
		t.Logf("cassandra-1 was %s on %s, is %s on %s (address changed: %v)", old.IP, old.Node, now.IP, now.Node, old.IP != now.IP)
		follows(t, "cassandra-1 recreated", pods, []podInfo{old})
	}) {
		return
	}

	if !t.Run("rolling update", func(t *testing.T) {
		before := podsByName(pods)
		seen := newAddressHistory(pods)
		// While it rolls, a goroutine asks everything over and over. An
		// answer may lag the API server by a moment, so each address DNS
		// gives a name is kept and checked, once the roll is over and the
		// last addresses are known, against every address that pod had.
		stop, watched := make(chan struct{}), make(chan rollWatch, 1)
		stopWatching := sync.OnceFunc(func() { close(stop) })
		defer stopWatching() // also when the test fails half-way
		go svc.watchRoll(seen.names(), seen.addresses(), stop, watched)
		cp.kubectl(t, "-n", ns, "patch", "statefulset", "cassandra", "--type=merge",
			"-p", `{"spec":{"template":{"metadata":{"annotations":{"e2e.headless.test/rollout":"2"}}}}}`)
		took := eventually(t, 2*time.Minute, "the rolling update done", func() error {
			seen.add(cp.pods(t, ns, "app=cassandra"))
			sts, err := cp.client.AppsV1().StatefulSets(ns).Get(ctx, "cassandra", metav1.GetOptions{})
			if err != nil {
				return err
			}
			st := sts.Status
			if st.ObservedGeneration < sts.Generation || st.UpdatedReplicas != *sts.Spec.Replicas ||
				st.ReadyReplicas != *sts.Spec.Replicas || st.CurrentRevision != st.UpdateRevision {
				return fmt.Errorf("status %+v", st)
			}
			for _, p := range cp.pods(t, ns, "app=cassandra") {
				if p.UID == before[p.Name].UID || !p.Ready || p.Terminating {
					return fmt.Errorf("pod %+v not replaced and ready", p)
				}
			}
			return nil
		})
		pods = cp.waitPodsReady(t, ns, "app=cassandra", 2)
		seen.add(pods)
		follows(t, "the rolled pods", pods, slices.Collect(maps.Values(before)))
		stopWatching()
		w := <-watched
		if w.err != nil {
			t.Errorf("during the rolling update: %v", w.err)
		}
		for _, s := range w.sightings {
			if err := seen.check(s); err != nil {
				t.Errorf("during the rolling update: %v", err)
			}
		}
		// Each pod is out of service between its deletion and its
		// successor's readiness: DNS must have shown it, or the questions
		// above proved nothing about the roll.
		if w.short == 0 {
			t.Errorf("in %d rounds of questions the Service never had fewer than 2 addresses: the roll went unseen", w.rounds)
		}
		t.Logf("rolled in %s; %d rounds of questions (%d with a pod out of service), %d addresses given, each one its pod had",
			took.Round(time.Millisecond), w.rounds, w.short, len(w.sightings))
	}) {
		return
	}

	t.Run("readiness lost and regained", func(t *testing.T) {
		byName := podsByName(pods)
		cp.setPodReady(t, ns, "cassandra-0", false)
		follows(t, "cassandra-0 not ready", []podInfo{byName["cassandra-1"]}, []podInfo{byName["cassandra-0"]})
		cp.setPodReady(t, ns, "cassandra-0", true)
		follows(t, "cassandra-0 ready again", pods, nil)
	})
}

// addressSighting is one address DNS gave for a name: name is a pod's
// name, or empty for the Service's own name (any pod's address will do).
type addressSighting struct {
	question, name, ip string
}

// addressHistory is every address each pod has been seen with.
type addressHistory map[string]map[string]bool

func newAddressHistory(pods []podInfo) addressHistory {
	h := addressHistory{}
	h.add(pods)
	return h
}

func (h addressHistory) add(pods []podInfo) {
	for _, p := range pods {
		if p.IP == "" {
			continue
		}
		if h[p.Name] == nil {
			h[p.Name] = map[string]bool{}
		}
		h[p.Name][p.IP] = true
	}
}

func (h addressHistory) names() []string { return slices.Sorted(maps.Keys(h)) }

func (h addressHistory) addresses() []string {
	var out []string
	for _, ips := range h {
		for ip := range ips {
			if !slices.Contains(out, ip) {
				out = append(out, ip)
			}
		}
	}
	slices.Sort(out)
	return out
}

func (h addressHistory) check(s addressSighting) error {
	if s.name != "" {
		if h[s.name][s.ip] {
			return nil
		}
		return fmt.Errorf("%s: %s, an address pod %s never had (it had %v)", s.question, s.ip, s.name, h[s.name])
	}
	for _, ips := range h {
		if ips[s.ip] {
			return nil
		}
	}
	return fmt.Errorf("%s: %s, the address of no pod (pods had %v)", s.question, s.ip, h)
}

// rollWatch is what watchRoll saw.
type rollWatch struct {
	rounds    int // rounds of questions
	short     int // rounds in which the Service had fewer addresses than pods
	sightings []addressSighting
	err       error // the first answer that was wrong whatever the pods' addresses
}

// watchRoll asks sightings of the pods named names over and over, every
// 10 ms, until stop closes, then sends what it saw. It asks for the PTRs
// of addrs and of every address an answer gave.
func (h headlessService) watchRoll(names, addrs []string, stop <-chan struct{}, out chan<- rollWatch) {
	var w rollWatch
	tick := time.NewTicker(10 * time.Millisecond) // a pace, not a wait
	defer tick.Stop()
	for {
		found, n, err := h.sightings(names, addrs)
		if err != nil && w.err == nil {
			w.err = err
		}
		w.rounds++
		if n < len(names) {
			w.short++
		}
		for _, s := range found {
			if !slices.Contains(addrs, s.ip) {
				addrs = append(addrs, s.ip)
			}
		}
		w.sightings = append(w.sightings, found...)
		select {
		case <-stop:
			out <- w
			return
		case <-tick.C:
		}
	}
}

// sightings asks for the Service, each pod of names, the named port's SRV
// records and the PTR of each of addrs, and returns which address each
// answer gave which name, and how many addresses the Service had. It fails
// when the Service has no address (a rolling update replaces one pod at a
// time, so one is always ready), or when an SRV target, its glue or a PTR
// names no pod.
func (h headlessService) sightings(names, addrs []string) ([]addressSighting, int, error) {
	var out []addressSighting
	resp, err := exchange(h.server, "udp", h.fqdn(""), dns.TypeA, 0)
	if err != nil {
		return nil, 0, err
	}
	if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) == 0 {
		return nil, 0, fmt.Errorf("%s: %s with %d addresses, want at least one", h.fqdn(""), dns.RcodeToString[resp.Rcode], len(resp.Answer))
	}
	count := len(resp.Answer)
	for _, ip := range values(resp.Answer) {
		out = append(out, addressSighting{h.fqdn(""), "", ip})
	}
	byTarget := map[string]string{}
	for _, name := range names {
		byTarget[h.fqdn(name)] = name
		resp, err := exchange(h.server, "udp", h.fqdn(name), dns.TypeA, 0)
		if err != nil {
			return nil, count, err
		}
		for _, ip := range values(resp.Answer) {
			out = append(out, addressSighting{h.fqdn(name), name, ip})
		}
	}
	resp, err = exchange(h.server, "tcp", h.srvName(), dns.TypeSRV, 0)
	if err != nil {
		return nil, count, err
	}
	for _, rr := range resp.Answer {
		if srv, ok := rr.(*dns.SRV); ok {
			if _, ok := byTarget[srv.Target]; !ok {
				return nil, count, fmt.Errorf("%s: target %s is no pod of %v", h.srvName(), srv.Target, names)
			}
		}
	}
	for _, rr := range resp.Extra {
		if a, ok := rr.(*dns.A); ok {
			name, ok := byTarget[a.Hdr.Name]
			if !ok {
				return nil, count, fmt.Errorf("%s: glue for %s, no pod of %v", h.srvName(), a.Hdr.Name, names)
			}
			out = append(out, addressSighting{h.srvName() + " glue", name, a.A.String()})
		}
	}
	for _, ip := range addrs {
		reverse, _ := dns.ReverseAddr(ip)
		resp, err := exchange(h.server, "udp", reverse, dns.TypePTR, 0)
		if err != nil {
			return nil, count, err
		}
		for _, target := range values(resp.Answer) {
			name, ok := byTarget[target]
			if !ok {
				return nil, count, fmt.Errorf("%s: PTR %s names no pod of %v", reverse, target, names)
			}
			out = append(out, addressSighting{reverse + " PTR", name, ip})
		}
	}
	return out, count, nil
}

// rabbitManifest is the pattern of RabbitMQ's, Cassandra's and etcd's
// manifests: the StatefulSet's governing Service publishes its pods before
// they are ready (publishNotReadyAddresses), so that members starting up
// find each other by name and form the cluster, while clients use a second
// Service that lists ready pods only.
const rabbitManifest = `apiVersion: v1
kind: Service
metadata:
  name: rabbitmq-nodes
spec:
  clusterIP: None
  publishNotReadyAddresses: true
  selector:
    app: rabbitmq
  ports:
  - name: epmd
    port: 4369
  - name: cluster-rpc
    port: 25672
---
apiVersion: v1
kind: Service
metadata:
  name: rabbitmq
spec:
  clusterIP: None
  selector:
    app: rabbitmq
  ports:
  - name: amqp
    port: 5672
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: rabbitmq
spec:
  serviceName: rabbitmq-nodes
  replicas: 3
  podManagementPolicy: Parallel
  selector:
    matchLabels:
      app: rabbitmq
  template:
    metadata:
      labels:
        app: rabbitmq
    spec:
      containers:
      - name: rabbitmq
        image: rabbitmq:4.1
        ports:
        - containerPort: 5672
          name: amqp
        - containerPort: 4369
          name: epmd
        - containerPort: 25672
          name: cluster-rpc
`

// TestPublishNotReadyAddressesKeepsPeersInDNS: a pod that is not ready (a
// member still joining its cluster, whose readiness probe fails until it
// has) keeps every record under a Service with publishNotReadyAddresses:
// its name, its place in the Service's A records and SRV records, and its
// PTR, so its peers can reach it. The client-facing Service beside it,
// without the flag, drops the pod until it is ready.
func TestPublishNotReadyAddressesKeepsPeersInDNS(t *testing.T) {
	cp := env.cluster
	cp.requireCluster(t)
	ns := newNamespace(t, cp, "pnra")
	cp.applyYAML(t, ns, rabbitManifest)
	pods := cp.waitPodsReady(t, ns, "app=rabbitmq", 3)
	s := startCoreDNS(t, cp, transferBlock(ns))
	peers := headlessService{server: s.addr, ns: ns, name: "rabbitmq-nodes", portName: "epmd", port: 4369}
	client := "rabbitmq." + ns + ".svc.cluster.local."
	var all []string
	for _, p := range pods {
		all = append(all, p.IP)
	}
	// ptrs is what the PTR of a pod's address must hold: its stable name,
	// and while it is ready its name under the client Service (an id made
	// of its address, as it has no hostname there).
	ptrs := func(p podInfo, ready bool) []string {
		out := []string{peers.fqdn(p.Name)}
		if ready {
			out = append(out, strings.ReplaceAll(p.IP, ".", "-")+"."+client)
		}
		return out
	}
	everything := func(notReady string) func() error {
		return func() error {
			var ready []string
			for _, p := range pods {
				if p.Name != notReady {
					ready = append(ready, p.IP)
				}
			}
			if err := expectAnswer(s.addr, "udp", peers.fqdn(""), dns.TypeA, dns.RcodeSuccess, all...); err != nil {
				return err
			}
			if err := expectAnswer(s.addr, "udp", client, dns.TypeA, dns.RcodeSuccess, ready...); err != nil {
				return err
			}
			var targets []string
			for _, p := range pods {
				targets = append(targets, fmt.Sprintf("4369 %s", peers.fqdn(p.Name)))
				if err := expectAnswer(s.addr, "udp", peers.fqdn(p.Name), dns.TypeA, dns.RcodeSuccess, p.IP); err != nil {
					return err
				}
				reverse, _ := dns.ReverseAddr(p.IP)
				if err := expectAnswer(s.addr, "udp", reverse, dns.TypePTR, dns.RcodeSuccess, ptrs(p, p.Name != notReady)...); err != nil {
					return err
				}
			}
			return expectAnswer(s.addr, "tcp", peers.srvName(), dns.TypeSRV, dns.RcodeSuccess, targets...)
		}
	}
	eventually(t, lifecycleWithin, "every pod in both Services", everything(""))

	cp.setPodReady(t, ns, "rabbitmq-1", false)
	eventually(t, lifecycleWithin, "rabbitmq-1 not ready: still a peer, no longer a client endpoint", everything("rabbitmq-1"))
	// The controller marks every endpoint of such a Service ready, whatever
	// its pod says; that is what DNS goes by.
	for _, sl := range cp.controllerSlices(t, ns, "rabbitmq-nodes") {
		for _, ep := range sl.Endpoints {
			if ep.Conditions.Ready == nil || !*ep.Conditions.Ready {
				t.Errorf("slice %s: endpoint %v not ready, want ready under publishNotReadyAddresses", sl.Name, ep.Addresses)
			}
		}
	}
	if got := cp.sliceReadiness(t, ns, "rabbitmq")["rabbitmq-1"]; got {
		t.Error("the client Service's slice says rabbitmq-1 is ready")
	}

	cp.setPodReady(t, ns, "rabbitmq-1", true)
	eventually(t, lifecycleWithin, "rabbitmq-1 ready again in both Services", everything(""))
}

// TestPodHostnameAndSubdomain is the conformance case "DNS for pods for
// Subdomain" with a Deployment: pods whose spec sets hostname and a
// subdomain naming a headless Service are answered at
// hostname.subdomain.ns.svc.cluster.local, with a PTR back to that name.
// A Deployment's replicas share the hostname of their template, so with
// several the one name holds every ready replica's address, each address
// reverse-resolves to it, and the named port has one SRV record (the
// target is one name; an RRset holds no duplicates, RFC 2181 §5) whose glue
// is every address.
func TestPodHostnameAndSubdomain(t *testing.T) {
	cp := env.cluster
	cp.requireCluster(t)
	ns := newNamespace(t, cp, "subdomain")
	cp.applyYAML(t, ns, `apiVersion: v1
kind: Service
metadata:
  name: dns-test-service-2
spec:
  clusterIP: None
  selector:
    app: querier
  ports:
  - name: http
    port: 80
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: querier
spec:
  replicas: 1
  selector:
    matchLabels:
      app: querier
  template:
    metadata:
      labels:
        app: querier
    spec:
      hostname: dns-querier-2
      subdomain: dns-test-service-2
      containers:
      - name: querier
        image: registry.k8s.io/e2e-test-images/agnhost:2.53
        ports:
        - containerPort: 80
          name: http
`)
	s := startCoreDNS(t, cp, namespacedBlock(ns, ""))
	svc := "dns-test-service-2." + ns + ".svc.cluster.local."
	name := "dns-querier-2." + svc
	answers := func(pods []podInfo) func() error {
		return func() error {
			var ips []string
			for _, p := range pods {
				ips = append(ips, p.IP)
				reverse, _ := dns.ReverseAddr(p.IP)
				if err := expectAnswer(s.addr, "udp", reverse, dns.TypePTR, dns.RcodeSuccess, name); err != nil {
					return err
				}
			}
			if err := expectAnswer(s.addr, "udp", name, dns.TypeA, dns.RcodeSuccess, ips...); err != nil {
				return err
			}
			if err := expectAnswer(s.addr, "udp", svc, dns.TypeA, dns.RcodeSuccess, ips...); err != nil {
				return err
			}
			resp, err := exchange(s.addr, "tcp", "_http._tcp."+svc, dns.TypeSRV, 0)
			if err != nil {
				return err
			}
			slices.Sort(ips)
			if got := values(resp.Answer); !slices.Equal(got, []string{"80 " + name}) {
				return fmt.Errorf("_http._tcp SRV %v, want one record, 80 %s", got, name)
			}
			if got := values(resp.Extra); !slices.Equal(got, ips) {
				return fmt.Errorf("_http._tcp SRV glue %v, want %v", got, ips)
			}
			return nil
		}
	}

	pods := cp.waitPodsReady(t, ns, "app=querier", 1)
	eventually(t, lifecycleWithin, "the pod at hostname.subdomain", answers(pods))
	cp.kubectl(t, "-n", ns, "scale", "deployment", "querier", "--replicas=3")
	pods = cp.waitPodsReady(t, ns, "app=querier", 3)
	eventually(t, lifecycleWithin, "three replicas under one hostname", answers(pods))
	cp.kubectl(t, "-n", ns, "scale", "deployment", "querier", "--replicas=1")
	left := cp.waitPodsReady(t, ns, "app=querier", 1)
	eventually(t, lifecycleWithin, "the name narrowed to the replica left", answers(left))
	for _, p := range pods {
		if p.IP != left[0].IP {
			reverse, _ := dns.ReverseAddr(p.IP)
			if err := expectAnswer(s.addr, "udp", reverse, dns.TypePTR, dns.RcodeNameError); err != nil {
				t.Errorf("a removed replica's address: %v", err)
			}
		}
	}
}
