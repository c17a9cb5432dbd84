package e2e

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	core "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	programmingMetric = "coredns_headless_dns_programming_duration_seconds"
	// triggerTimeAnnotation is where the endpointslice controller writes
	// when the endpoints of a slice last changed (the Ready condition's
	// transition time of the pod that changed).
	triggerTimeAnnotation = "endpoints.kubernetes.io/last-change-trigger-time"
	withSelector          = "headless_with_selector"
	withoutSelector       = "headless_without_selector"
	// smallProgramming bounds one observation: a change reaches DNS within
	// a second, and the trigger time a kubelet writes (a pod condition's
	// lastTransitionTime) is cut to whole seconds, so it can seem up to a
	// second older than it is. 4.096 is the histogram bucket above that,
	// with room for a busy machine.
	smallProgramming = 4.096
)

// programming is one service kind's series of the programming duration
// histogram.
type programming struct {
	count, sum float64
	buckets    map[float64]float64 // upper bound -> cumulative count
}

var metricLine = regexp.MustCompile(`^(\w+)(?:\{([^}]*)\})? (\S+)$`)

// scrapeProgramming reads the programming duration histogram of each
// service kind from CoreDNS's prometheus endpoint.
func scrapeProgramming(s *corednsServer) (map[string]*programming, error) {
	resp, err := http.Get("http://" + s.metrics + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]*programming{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		m := metricLine.FindStringSubmatch(sc.Text())
		if m == nil || !strings.HasPrefix(m[1], programmingMetric+"_") {
			continue
		}
		labels := map[string]string{}
		for pair := range strings.SplitSeq(m[2], ",") {
			if k, v, ok := strings.Cut(pair, "="); ok {
				labels[k] = strings.Trim(v, `"`)
			}
		}
		value, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", sc.Text(), err)
		}
		kind := labels["service_kind"]
		p := out[kind]
		if p == nil {
			p = &programming{buckets: map[float64]float64{}}
			out[kind] = p
		}
		switch strings.TrimPrefix(m[1], programmingMetric+"_") {
		case "count":
			p.count = value
		case "sum":
			p.sum = value
		case "bucket":
			le, err := strconv.ParseFloat(labels["le"], 64)
			if err != nil {
				return nil, fmt.Errorf("%q: %w", sc.Text(), err)
			}
			p.buckets[le] = value
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for _, kind := range []string{withSelector, withoutSelector} {
		if out[kind] == nil {
			return nil, fmt.Errorf("no %s series for %s", programmingMetric, kind)
		}
	}
	return out, nil
}

// bucket is the cumulative count of the bucket whose upper bound is le
// (as printed, 0.001·2¹² may be 4.096 or a hair off it).
func (p *programming) bucket(t *testing.T, le float64) float64 {
	t.Helper()
	for bound, n := range p.buckets {
		if math.Abs(bound-le) < 1e-9 {
			return n
		}
	}
	t.Fatalf("no bucket with upper bound %v in %v", le, p.buckets)
	return 0
}

// programmingCounter follows the histogram of one CoreDNS from a starting
// point, so that a test can require exactly the observations its changes
// made.
type programmingCounter struct {
	s     *corednsServer
	start map[string]*programming
}

func newProgrammingCounter(t *testing.T, s *corednsServer) *programmingCounter {
	t.Helper()
	start, err := scrapeProgramming(s)
	if err != nil {
		t.Fatal(err)
	}
	return &programmingCounter{s: s, start: start}
}

// reaches waits until kind has been observed exactly want times since the
// start and the other kind exactly other times, failing at once when
// either has gone past (a change counted twice, or one that is no change
// of endpoints counted at all).
func (c *programmingCounter) reaches(t *testing.T, what, kind string, want int, otherKind string, other int) {
	t.Helper()
	eventually(t, lifecycleWithin, what, func() error {
		now, err := scrapeProgramming(c.s)
		if err != nil {
			return err
		}
		got := int(now[kind].count - c.start[kind].count)
		gotOther := int(now[otherKind].count - c.start[otherKind].count)
		if got > want || gotOther > other {
			t.Fatalf("%s: %d observations of %s and %d of %s since the start, want %d and %d", what, got, kind, gotOther, otherKind, want, other)
		}
		if got != want || gotOther != other {
			return fmt.Errorf("%d observations of %s and %d of %s, want %d and %d", got, kind, gotOther, otherKind, want, other)
		}
		return nil
	})
}

// observed checks that every observation of kind since the start is
// positive and at most smallProgramming, and logs their mean.
func (c *programmingCounter) observed(t *testing.T, kind string) {
	t.Helper()
	now, err := scrapeProgramming(c.s)
	if err != nil {
		t.Fatal(err)
	}
	n := now[kind].count - c.start[kind].count
	sum := now[kind].sum - c.start[kind].sum
	small := now[kind].bucket(t, smallProgramming) - c.start[kind].bucket(t, smallProgramming)
	if n == 0 {
		t.Fatalf("%s: no observation", kind)
	}
	if sum <= 0 || small != n {
		t.Errorf("%s: %v observations summing to %.3fs, %v of them at most %vs; want each positive and at most %vs", kind, n, sum, small, smallProgramming, smallProgramming)
	}
	t.Logf("%s: %v observations, mean %s", kind, n, time.Duration(sum/n*float64(time.Second)).Round(time.Millisecond))
}

// TestDNSProgrammingDuration: coredns_headless_dns_programming_duration_seconds
// counts each change of endpoints once, for both kinds of headless
// Service, with small positive durations. For a Service with a selector the
// trigger time is the endpointslice controller's annotation, written when
// a pod's readiness changes (a kubelet's probe, here setPodReady). For a
// Service without one, a slice kept by hand counts when it carries the
// annotation; the mirroring controller's slices, which never do, are not
// counted, nor is a rewrite of a slice that leaves its trigger time as it
// was.
func TestDNSProgrammingDuration(t *testing.T) {
	cp := env.cluster
	cp.requireCluster(t)
	c := cp.client
	ctx := context.Background()
	ns := newNamespace(t, cp, "latency")
	pods := applyArticleStatefulSet(t, cp, ns)
	createService(t, c, ns, "external", false)
	createService(t, c, ns, "mirrored", false)
	mirrored := func(ips ...string) string {
		out := "apiVersion: v1\nkind: Endpoints\nmetadata:\n  name: mirrored\nsubsets:\n- addresses:\n"
		for _, ip := range ips {
			out += "  - ip: " + ip + "\n"
		}
		return out + "  ports:\n  - name: http\n    port: 80\n"
	}
	cp.applyYAML(t, ns, mirrored("10.8.1.1"))
	// The trigger times already in the slices when CoreDNS starts are old
	// changes, programmed by whoever served DNS then, and not counted:
	// start once the controllers are done with every pod and the Endpoints.
	eventually(t, lifecycleWithin, "the slices settled", func() error {
		if got := cp.sliceReadiness(t, ns, "cassandra"); len(got) != 3 || !got["cassandra-0"] || !got["cassandra-1"] || !got["cassandra-2"] {
			return fmt.Errorf("cassandra's endpoints %v", got)
		}
		list, err := c.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discovery.LabelServiceName + "=mirrored"})
		if err != nil || len(list.Items) != 1 {
			return fmt.Errorf("mirrored's slices: %v %v", len(list.Items), err)
		}
		if _, ok := list.Items[0].Annotations[triggerTimeAnnotation]; ok {
			t.Fatalf("the mirroring controller wrote %s; this test expects it not to", triggerTimeAnnotation)
		}
		return nil
	})
	s := startCoreDNS(t, cp, namespacedBlock(ns, ""))
	zone := ns + ".svc.cluster.local."
	counter := newProgrammingCounter(t, s)

	t.Run(withSelector, func(t *testing.T) {
		ips := func(notReady string) []string {
			var out []string
			for _, p := range pods {
				if p.Name != notReady {
					out = append(out, p.IP)
				}
			}
			return out
		}
		// One change at a time, each in DNS before the next: the
		// controller would fold changes made together into one update.
		// Changes are in different seconds (see inNextSecond).
		changes := 0
		for _, step := range []struct {
			pod   string
			ready bool
		}{{"cassandra-0", false}, {"cassandra-0", true}, {"cassandra-2", false}, {"cassandra-2", true}} {
			inNextSecond(t, cp, ns, "cassandra", step.pod)
			cp.setPodReady(t, ns, step.pod, step.ready)
			changes++
			notReady := ""
			if !step.ready {
				notReady = step.pod
			}
			eventually(t, lifecycleWithin, fmt.Sprintf("%s ready=%v in DNS", step.pod, step.ready), func() error {
				return expectAnswer(s.addr, "udp", "cassandra."+zone, dns.TypeA, dns.RcodeSuccess, ips(notReady)...)
			})
			counter.reaches(t, fmt.Sprintf("change %d counted", changes), withSelector, changes, withoutSelector, 0)
			slice := cp.controllerSlices(t, ns, "cassandra")
			if len(slice) != 1 || slice[0].Annotations[triggerTimeAnnotation] == "" {
				t.Fatalf("the controller's slices have no %s: %+v", triggerTimeAnnotation, slice)
			}
		}
		counter.observed(t, withSelector)
	})

	t.Run(withoutSelector, func(t *testing.T) {
		start, err := scrapeProgramming(s)
		if err != nil {
			t.Fatal(err)
		}
		counter.start = start // the other kind's count is settled now
		stamp := func(sl *discovery.EndpointSlice) {
			sl.Annotations = map[string]string{triggerTimeAnnotation: time.Now().UTC().Format(time.RFC3339Nano)}
		}
		inDNS := func(what, name string, ips ...string) {
			t.Helper()
			eventually(t, lifecycleWithin, what, func() error {
				return expectAnswer(s.addr, "udp", name+"."+zone, dns.TypeA, dns.RcodeSuccess, ips...)
			})
		}
		sl := newSlice(ns, "external-hand", "external", discovery.AddressTypeIPv4, nil, endpoint("", "10.8.0.1"))
		delete(sl.Labels, "service.kubernetes.io/headless")
		sl.Labels[discovery.LabelManagedBy] = keptByHand
		stamp(sl)
		createSlice(t, c, sl)
		inDNS("the hand-kept slice created", "external", "10.8.0.1")
		counter.reaches(t, "the created slice counted", withoutSelector, 1, withSelector, 0)

		// The mirroring controller's slice changes, without a trigger
		// time: answered, not counted (the next change proves it was
		// seen and left out, as the count must then be exactly 2).
		cp.applyYAML(t, ns, mirrored("10.8.1.1", "10.8.1.2"))
		inDNS("the mirrored slice changed", "mirrored", "10.8.1.1", "10.8.1.2")

		// A rewrite of the hand-kept slice that keeps its trigger time
		// (a label added) is no new change of endpoints.
		cur, err := c.DiscoveryV1().EndpointSlices(ns).Get(ctx, sl.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cur.Labels["e2e.headless.test/touched"] = "yes"
		cur = updateSlice(t, c, cur)

		cur.Endpoints = append(cur.Endpoints, endpoint("", "10.8.0.2"))
		stamp(cur)
		updateSlice(t, c, cur)
		inDNS("the hand-kept slice changed", "external", "10.8.0.1", "10.8.0.2")
		counter.reaches(t, "the changed slice counted, and nothing else", withoutSelector, 2, withSelector, 0)
		counter.observed(t, withoutSelector)
	})
}

// inNextSecond waits until the wall clock is in a later second than the
// last change of the pod's readiness and than the trigger time of the
// Service's slices. The API keeps condition times in whole seconds, and
// two changes within one second are indistinguishable by their trigger
// times: the endpointslice controller takes a pod's transition time as a
// new change only when it is later than the one it last saw (a pod whose
// readiness flips twice within a second is one change to it, and the
// second update of the slice carries no trigger time at all), and the
// plugin takes a slice whose trigger time did not move as no new change.
func inNextSecond(t *testing.T, cp *controlPlane, ns, svc, pod string) {
	t.Helper()
	p, err := cp.client.CoreV1().Pods(ns).Get(context.Background(), pod, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var last time.Time
	for _, c := range p.Status.Conditions {
		if c.Type == core.PodReady {
			last = c.LastTransitionTime.Time
		}
	}
	for _, sl := range cp.controllerSlices(t, ns, svc) {
		if v, ok := sl.Annotations[triggerTimeAnnotation]; ok {
			trigger, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				t.Fatalf("slice %s: %s %q: %v", sl.Name, triggerTimeAnnotation, v, err)
			}
			if trigger.After(last) {
				last = trigger
			}
		}
	}
	eventually(t, 2*time.Second, "a second later than the last change of "+svc, func() error {
		if now := time.Now().Truncate(time.Second); !now.After(last) {
			return fmt.Errorf("now %s, last change %s", now, last)
		}
		return nil
	})
}

// TestDNSProgrammingDurationCountsChangesWithinOneSecond: two pods of one
// Service turn not ready within the same second, one after the other. The
// endpointslice controller writes the slice twice, and both writes carry the
// same trigger time, as pod conditions keep whole seconds. Each write
// changes the endpoints, so each is a change programmed into DNS, and each
// is counted, as kube-proxy counts its own.
func TestDNSProgrammingDurationCountsChangesWithinOneSecond(t *testing.T) {
	cp := env.cluster
	cp.requireCluster(t)
	ns := newNamespace(t, cp, "samesecond")
	pods := applyArticleStatefulSet(t, cp, ns)
	s := startCoreDNS(t, cp, namespacedBlock(ns, ""))
	svc := "cassandra." + ns + ".svc.cluster.local."
	// A slow machine can split the two changes over two seconds; then
	// both pods turn ready again and the case is tried once more.
	for attempt := 1; ; attempt++ {
		counter := newProgrammingCounter(t, s)
		inNextSecond(t, cp, ns, "cassandra", "cassandra-0")
		inNextSecond(t, cp, ns, "cassandra", "cassandra-1")
		// Start at the top of a second, so both changes fall within it.
		second := time.Now().Truncate(time.Second)
		eventually(t, 2*time.Second, "the next second", func() error {
			if !time.Now().Truncate(time.Second).After(second) {
				return fmt.Errorf("still in %s", second)
			}
			return nil
		})
		var triggers []string
		for i, pod := range []string{"cassandra-0", "cassandra-1"} {
			cp.setPodReady(t, ns, pod, false)
			eventually(t, lifecycleWithin, pod+" not ready in DNS", func() error {
				var ips []string
				for _, p := range pods[i+1:] {
					ips = append(ips, p.IP)
				}
				return expectAnswer(s.addr, "udp", svc, dns.TypeA, dns.RcodeSuccess, ips...)
			})
			triggers = append(triggers, cp.controllerSlices(t, ns, "cassandra")[0].Annotations[triggerTimeAnnotation])
		}
		if triggers[0] != "" && triggers[0] == triggers[1] {
			t.Logf("two slice updates, both with trigger time %s (attempt %d)", triggers[0], attempt)
			counter.reaches(t, "both changes counted", withSelector, 2, withoutSelector, 0)
			return
		}
		if attempt == 5 {
			t.Fatalf("in 5 attempts, two changes never shared a trigger time (last %v)", triggers)
		}
		t.Logf("the two changes did not share a trigger time (%v); again", triggers)
		for _, pod := range []string{"cassandra-0", "cassandra-1"} {
			cp.setPodReady(t, ns, pod, true)
		}
		eventually(t, lifecycleWithin, "every pod ready again in DNS", func() error {
			var ips []string
			for _, p := range pods {
				ips = append(ips, p.IP)
			}
			return expectAnswer(s.addr, "udp", svc, dns.TypeA, dns.RcodeSuccess, ips...)
		})
	}
}
