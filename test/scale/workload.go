package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	apps "k8s.io/api/apps/v1"
	core "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/headlessdns/headless/test/internal/benchkit"
)

// group is a number of workloads of one kind and size in each unit
// namespace, each behind a Service of its own: Deployments behind
// ClusterIP Services, StatefulSets behind headless ones.
type group struct {
	sts   bool
	count int
	pods  int
}

// fullUnit is one namespace of the cluster, after the load test's groups
// (workloads of 250, 30 and 5 pods): 1,000 pods, 850 of them in 71
// Deployments behind ClusterIP Services and 150 in 15 StatefulSets behind
// headless Services (15% of the endpoints: the load test itself has one
// small and one medium StatefulSet per namespace; the brief asks for
// 10-20%).
var fullUnit = []group{
	{false, 1, 250}, {false, 10, 30}, {false, 60, 5},
	{true, 3, 30}, {true, 12, 5},
}

// quickUnit is SCALE_QUICK's: 200 pods, 40 of them headless.
var quickUnit = []group{
	{false, 1, 50}, {false, 2, 30}, {false, 10, 5},
	{true, 1, 30}, {true, 2, 5},
}

func unitPods(unit []group) (all, headless int) {
	for _, g := range unit {
		all += g.count * g.pods
		if g.sts {
			headless += g.count * g.pods
		}
	}
	return all, headless
}

const (
	unitLabel    = "scale.headless.test/unit"
	unitPrefix   = "scale-u"
	probeNS      = "scale-probe"
	probeService = "probe"
	rolloutNS    = "scale-rollout"
	rolloutName  = "big"
	harnessOwner = "scale.headless.test"
)

func unitNamespace(u int) string { return fmt.Sprintf("%s%02d", unitPrefix, u) }

func workloadName(g group, i int) string {
	kind := "d"
	if g.sts {
		kind = "s"
	}
	return fmt.Sprintf("%s%d-%02d", kind, g.pods, i)
}

func podTemplate(name string, labels map[string]string) core.PodTemplateSpec {
	return core.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec: core.PodSpec{
			Containers: []core.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10",
				Ports: []core.ContainerPort{{Name: "http", ContainerPort: 8080}}}},
			TerminationGracePeriodSeconds: ptr(int64(1)),
		},
	}
}

func ptr[T any](v T) *T { return &v }

// workload returns the Service and the Deployment or StatefulSet of one
// member of a group.
func workload(ns, name string, sts bool, replicas int) (*core.Service, any) {
	labels := map[string]string{"app": name, unitLabel: ns}
	svc := &core.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{unitLabel: ns}},
		Spec: core.ServiceSpec{Selector: map[string]string{"app": name},
			Ports: []core.ServicePort{{Name: "http", Protocol: core.ProtocolTCP, Port: 80, TargetPort: intstr.FromString("http")}}},
	}
	n := int32(replicas)
	if sts {
		svc.Spec.ClusterIP = core.ClusterIPNone
		return svc, &apps.StatefulSet{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: apps.StatefulSetSpec{ServiceName: name, Replicas: &n, PodManagementPolicy: apps.ParallelPodManagement,
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}}, Template: podTemplate(name, labels)},
		}
	}
	return svc, &apps.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: apps.DeploymentSpec{Replicas: &n,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}}, Template: podTemplate(name, labels)},
	}
}

// create makes an object, taking an existing one as made.
func (h *harness) create(ctx context.Context, obj any) error {
	c := h.cp.Client
	var err error
	switch o := obj.(type) {
	case *core.Namespace:
		_, err = c.CoreV1().Namespaces().Create(ctx, o, metav1.CreateOptions{})
	case *core.Service:
		_, err = c.CoreV1().Services(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
	case *apps.Deployment:
		_, err = c.AppsV1().Deployments(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
	case *apps.StatefulSet:
		_, err = c.AppsV1().StatefulSets(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
	case *discovery.EndpointSlice:
		_, err = c.DiscoveryV1().EndpointSlices(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
	default:
		return fmt.Errorf("cannot create %T", obj)
	}
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// grow creates unit namespaces up to units and waits until every pod is
// ready and every ready pod is an endpoint of its Service's slices.
func (h *harness) grow(ctx context.Context, units int) error {
	var objs []any
	for u := h.units; u < units; u++ {
		ns := unitNamespace(u)
		if err := h.create(ctx, &core.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return err
		}
		for _, g := range h.cfg.unit {
			for i := range g.count {
				svc, wl := workload(ns, workloadName(g, i), g.sts, g.pods)
				objs = append(objs, svc, wl)
			}
		}
	}
	all, _ := unitPods(h.cfg.unit)
	want := units * all
	benchkit.Logf("creating %d Services and workloads in %d new namespaces (%d pods at this size)", len(objs)/2, units-h.units, want)
	if err := h.createAll(ctx, objs); err != nil {
		return err
	}
	h.units = units
	start := time.Now()
	if err := h.waitPods(ctx, want, time.Duration(want)*100*time.Millisecond+5*time.Minute); err != nil {
		return err
	}
	benchkit.Logf("%d pods ready in %.0fs", want, time.Since(start).Seconds())
	if err := h.waitEndpoints(ctx, want); err != nil {
		return err
	}
	return h.loadCatalog(ctx)
}

func (h *harness) createAll(ctx context.Context, objs []any) error {
	var (
		mu    sync.Mutex
		first error
		next  int
		wg    sync.WaitGroup
	)
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(15 * time.Second):
				mu.Lock()
				n := next
				mu.Unlock()
				benchkit.Logf("  objects: %d of %d written", n, len(objs))
			}
		}
	}()
	for range 16 {
		wg.Go(func() {
			for {
				mu.Lock()
				if next >= len(objs) || first != nil {
					mu.Unlock()
					return
				}
				o := objs[next]
				next++
				mu.Unlock()
				if err := h.create(ctx, o); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return first
}

// waitPods waits until want pods with the unit label are ready, with an
// address, showing progress.
func (h *harness) waitPods(ctx context.Context, want int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	last := time.Time{}
	for {
		ready, total, bound := 0, 0, 0
		cont := ""
		for {
			list, err := h.cp.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: unitLabel, Limit: 5000, Continue: cont})
			if err != nil {
				return err
			}
			for i := range list.Items {
				p := &list.Items[i]
				total++
				if p.Spec.NodeName != "" {
					bound++
				}
				if benchkit.PodReady(p) && p.Status.PodIP != "" && p.DeletionTimestamp == nil {
					ready++
				}
			}
			if cont = list.Continue; cont == "" {
				break
			}
		}
		if ready >= want {
			return nil
		}
		if time.Since(last) > 10*time.Second {
			benchkit.Logf("  pods: %d created, %d scheduled, %d ready of %d", total, bound, ready, want)
			last = time.Now()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d pods ready after %v", ready, want, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

// endpointCounts are the endpoint addresses of every EndpointSlice (what
// the kubernetes plugin indexes) and of those the headless plugin indexes
// (labelled headless, or not the endpointslice controller's).
type endpointCounts struct {
	All      int `json:"all"`
	Headless int `json:"headless"`
	Ready    int `json:"ready"`
	Slices   int `json:"slices"`
	Services int `json:"services"`
	HLSvc    int `json:"headless_services"`
}

func (h *harness) countEndpoints(ctx context.Context) (endpointCounts, error) {
	var n endpointCounts
	cont := ""
	for {
		list, err := h.cp.Client.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{Limit: 2000, Continue: cont})
		if err != nil {
			return n, err
		}
		for _, s := range list.Items {
			_, hl := s.Labels[core.IsHeadlessService]
			if s.Labels[discovery.LabelManagedBy] != "endpointslice-controller.k8s.io" {
				hl = true
			}
			n.Slices++
			for _, ep := range s.Endpoints {
				n.All += len(ep.Addresses)
				if hl {
					n.Headless += len(ep.Addresses)
				}
				if ep.Conditions.Ready == nil || *ep.Conditions.Ready {
					n.Ready += len(ep.Addresses)
				}
			}
		}
		if cont = list.Continue; cont == "" {
			break
		}
	}
	svcs, err := h.cp.Client.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return n, err
	}
	n.Services = len(svcs.Items)
	for _, s := range svcs.Items {
		if s.Spec.ClusterIP == core.ClusterIPNone {
			n.HLSvc++
		}
	}
	return n, nil
}

// waitEndpoints waits until the slices hold want ready endpoints of the
// unit namespaces, plus the probe's.
func (h *harness) waitEndpoints(ctx context.Context, want int) error {
	deadline := time.Now().Add(5 * time.Minute)
	for {
		n, err := h.countEndpoints(ctx)
		if err == nil && n.Ready >= want+1 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the slices hold %d ready endpoints, want %d (last error %v)", n.Ready, want+1, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// createProbe makes a selectorless headless Service with one hand-kept
// slice (not the controller's: both plugins index it): the relist phase
// moves its address while the API server is down.
func (h *harness) createProbe(ctx context.Context) error {
	if err := h.create(ctx, &core.Namespace{ObjectMeta: metav1.ObjectMeta{Name: probeNS}}); err != nil {
		return err
	}
	svc := &core.Service{ObjectMeta: metav1.ObjectMeta{Name: probeService, Namespace: probeNS},
		Spec: core.ServiceSpec{ClusterIP: core.ClusterIPNone, Ports: []core.ServicePort{{Name: "http", Port: 80}}}}
	if err := h.create(ctx, svc); err != nil {
		return err
	}
	return h.create(ctx, probeSlice(probeAddress(0)))
}

func probeAddress(n int) string { return fmt.Sprintf("192.0.2.%d", 10+n%200) }

func probeSlice(ip string) *discovery.EndpointSlice {
	tcp := core.ProtocolTCP
	return &discovery.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: probeService + "-1", Namespace: probeNS, Labels: map[string]string{
			discovery.LabelServiceName: probeService, discovery.LabelManagedBy: harnessOwner}},
		AddressType: discovery.AddressTypeIPv4,
		Ports:       []discovery.EndpointPort{{Name: ptr("http"), Protocol: &tcp, Port: ptr(int32(80))}},
		Endpoints:   []discovery.Endpoint{{Addresses: []string{ip}, Hostname: ptr("p"), Conditions: discovery.EndpointConditions{Ready: ptr(true)}}},
	}
}

func probeQuestion(ip string) benchkit.Question {
	return benchkit.Question{Name: probeService + "." + probeNS + ".svc." + benchkit.Zone, Qtype: dns.TypeA, Want: []string{ip}}
}

// setProbe moves the probe's address.
func (h *harness) setProbe(ctx context.Context, ip string) error {
	c := h.cp.Client.DiscoveryV1().EndpointSlices(probeNS)
	s, err := c.Get(ctx, probeService+"-1", metav1.GetOptions{})
	if err != nil {
		return err
	}
	s.Endpoints[0].Addresses = []string{ip}
	_, err = c.Update(ctx, s, metav1.UpdateOptions{})
	return err
}

// catalog is what the query mixes are drawn from.
type catalog struct {
	namespaces []string
	clusterIP  map[string][]clusterIPService // by namespace
	headless   map[string][]*benchkit.HeadlessService
	hlAll      []*benchkit.HeadlessService
	podIPs     []netip.Addr // every ready endpoint address of the units
	counts     endpointCounts
}

type clusterIPService struct{ name, ip string }

func (c *catalog) lastHeadlessPod() benchkit.Question {
	s := c.hlAll[len(c.hlAll)-1]
	return benchkit.PodA(s, s.Pods[len(s.Pods)-1])
}

func (c *catalog) lastClusterIP() benchkit.Question {
	ns := c.namespaces[len(c.namespaces)-1]
	s := c.clusterIP[ns][len(c.clusterIP[ns])-1]
	return benchkit.Question{Name: s.name + "." + ns + ".svc." + benchkit.Zone, Qtype: dns.TypeA, Want: []string{s.ip}}
}

func (h *harness) loadCatalog(ctx context.Context) error {
	c := &catalog{clusterIP: map[string][]clusterIPService{}, headless: map[string][]*benchkit.HeadlessService{}}
	svcs, err := h.cp.Client.CoreV1().Services("").List(ctx, metav1.ListOptions{LabelSelector: unitLabel})
	if err != nil {
		return err
	}
	for _, s := range svcs.Items {
		if s.Spec.ClusterIP != core.ClusterIPNone && s.Spec.ClusterIP != "" {
			c.clusterIP[s.Namespace] = append(c.clusterIP[s.Namespace], clusterIPService{s.Name, s.Spec.ClusterIP})
		}
	}
	for ns, l := range c.clusterIP {
		slices.SortFunc(l, func(a, b clusterIPService) int { return strings.Compare(a.name, b.name) })
		c.namespaces = append(c.namespaces, ns)
	}
	slices.Sort(c.namespaces)
	c.hlAll, _, err = benchkit.LoadDataset(ctx, h.cp.Client, unitPrefix)
	if err != nil {
		return err
	}
	for _, s := range c.hlAll {
		c.headless[s.Namespace] = append(c.headless[s.Namespace], s)
	}
	if len(c.namespaces) == 0 || len(c.hlAll) == 0 {
		return fmt.Errorf("the cluster has %d unit namespaces with ClusterIP services and %d headless services", len(c.namespaces), len(c.hlAll))
	}
	cont := ""
	for {
		list, err := h.cp.Client.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{Limit: 2000, Continue: cont})
		if err != nil {
			return err
		}
		for _, s := range list.Items {
			if !strings.HasPrefix(s.Namespace, unitPrefix) {
				continue
			}
			for _, ep := range s.Endpoints {
				if ep.Conditions.Ready == nil || *ep.Conditions.Ready {
					if ip, err := netip.ParseAddr(ep.Addresses[0]); err == nil {
						c.podIPs = append(c.podIPs, ip)
					}
				}
			}
		}
		if cont = list.Continue; cont == "" {
			break
		}
	}
	if c.counts, err = h.countEndpoints(ctx); err != nil {
		return err
	}
	h.cat = c
	return nil
}

// query is one line of a dnsperf data file, with the rcode it must get.
type query struct {
	name  string
	qtype uint16
	rcode int
}

// lookup kinds of the cluster mix, with their weights in percent of
// lookups (getaddrinfo calls or their like, each expanded below into the
// queries a pod's glibc sends with kubelet's resolv.conf).
var lookupWeights = []struct {
	kind   string
	weight int
}{
	{"clusterip-short", 45}, // "svc": a Service of its own namespace
	{"clusterip-ns", 15},    // "svc.otherns"
	{"headless-short", 8},   // "sts": a headless Service of its namespace
	{"headless-pod", 8},     // "sts-3.sts": a peer of a StatefulSet
	{"external", 17},        // "api7.example.com": outside the cluster
	{"srv", 4},              // SRV of a Service's named port, fully qualified
	{"ptr", 3},              // a pod address, reversed
}

// clusterMix draws n queries: lookups of the kinds above from a client pod
// in a random unit namespace, each expanded as glibc does with ndots:5 and
// search "<ns>.svc.cluster.local svc.cluster.local cluster.local": a name
// with fewer than five dots is tried with each search domain first, then
// as is, and A and AAAA are asked together for each try, until a try
// answers.
func (c *catalog) clusterMix(n int, seed uint64) []query {
	r := rand.New(rand.NewPCG(seed, 0x636c7573746572))
	total := 0
	for _, w := range lookupWeights {
		total += w.weight
	}
	var out []query
	search := func(ns string) []string {
		return []string{ns + ".svc." + benchkit.Zone, "svc." + benchkit.Zone, benchkit.Zone}
	}
	// resolve expands a relative name; hit is the index of the search
	// domain that answers (len(search) for the name as is), AAAA's rcode
	// being aaaa there.
	resolve := func(ns, name string, hit int) {
		domains := search(ns)
		for i := 0; i <= len(domains); i++ {
			fq := name + "."
			if i < len(domains) {
				fq = name + "." + domains[i]
			}
			rcode := dns.RcodeNameError
			if i == hit {
				rcode = dns.RcodeSuccess
			}
			out = append(out, query{fq, dns.TypeA, rcode}, query{fq, dns.TypeAAAA, rcode})
			if i == hit {
				return
			}
		}
	}
	for len(out) < n {
		ns := c.namespaces[r.IntN(len(c.namespaces))]
		x := r.IntN(total)
		kind := ""
		for _, w := range lookupWeights {
			if x < w.weight {
				kind = w.kind
				break
			}
			x -= w.weight
		}
		switch kind {
		case "clusterip-short":
			l := c.clusterIP[ns]
			resolve(ns, l[r.IntN(len(l))].name, 0)
		case "clusterip-ns":
			other := c.namespaces[r.IntN(len(c.namespaces))]
			l := c.clusterIP[other]
			resolve(ns, l[r.IntN(len(l))].name+"."+other, 1)
		case "headless-short", "headless-pod":
			l := c.headless[ns]
			if len(l) == 0 {
				continue
			}
			s := l[r.IntN(len(l))]
			name := s.Name
			if kind == "headless-pod" {
				name = s.Pods[r.IntN(len(s.Pods))].Hostname + "." + s.Name
			}
			resolve(ns, name, 0)
		case "external":
			resolve(ns, fmt.Sprintf("api%d.example.com", r.IntN(200)), 3)
		case "srv":
			if r.IntN(2) == 0 {
				l := c.clusterIP[ns]
				out = append(out, query{"_http._tcp." + l[r.IntN(len(l))].name + "." + ns + ".svc." + benchkit.Zone, dns.TypeSRV, dns.RcodeSuccess})
			} else if l := c.headless[ns]; len(l) > 0 {
				out = append(out, query{"_http._tcp." + l[r.IntN(len(l))].FQDN(), dns.TypeSRV, dns.RcodeSuccess})
			}
		case "ptr":
			ip := c.podIPs[r.IntN(len(c.podIPs))]
			name, _ := dns.ReverseAddr(ip.String())
			out = append(out, query{name, dns.TypePTR, -1}) // the answer depends on the configuration
		}
	}
	return out[:n]
}
