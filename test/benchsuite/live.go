package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/headlessdns/headless/test/internal/benchkit"

	"github.com/miekg/dns"
	core "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// flavour is one CoreDNS configuration of the comparison.
type flavour struct {
	key, title string
	block      func(kubeconfig string) string // the plugin lines of the server block
	rcodeOnly  bool                           // its answers are not lookups: NOERROR is right
	load       bool                           // gets the dnsperf run
	changes    bool                           // gets the programming-latency run
}

var flavours = []flavour{
	{key: "whoami", title: "whoami", rcodeOnly: true, load: true,
		block: func(string) string { return "    whoami\n" }},
	{key: "headless", title: "headless", load: true, changes: true,
		block: func(kc string) string {
			return fmt.Sprintf("    headless cluster.local in-addr.arpa ip6.arpa {\n        kubeconfig %s\n    }\n", kc)
		}},
	{key: "kubernetes", title: "kubernetes", load: true, changes: true,
		block: func(kc string) string {
			return fmt.Sprintf("    kubernetes cluster.local in-addr.arpa ip6.arpa {\n        kubeconfig %s\n    }\n", kc)
		}},
	// Corefile.example's kube-dns replacement, without the parts that are
	// not about the cluster (health, forward, cache, ...).
	{key: "replacement", title: "headless + kubernetes noendpoints",
		block: func(kc string) string {
			return fmt.Sprintf(`    headless cluster.local in-addr.arpa ip6.arpa {
        kubeconfig %s
        fallthrough
    }
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig %s
        pods insecure
        noendpoints
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }
`, kc, kc)
		}},
}

// flavourResult gathers one flavour's measurements over the rounds.
type flavourResult struct {
	startup  []time.Duration // process start to first right answer
	rss      []int64         // KiB, after sync and the settle pause
	qps      []float64
	sent     int64
	lost     int64
	rcodes   map[string]int64 // over every timed run
	checked  int
	wrong    int
	examples []string
	program  []time.Duration // API write start to first answer reflecting it
	apiWrite []time.Duration // the write alone
	changeN  int             // changes made so far (names the alternate addresses)
}

// live runs the rounds against the real binary and the control plane.
func (s *suite) live(ctx context.Context, res *results) error {
	cfg := s.cfg
	data, endpoints, err := benchkit.LoadDataset(ctx, s.client, "bench-")
	if err != nil {
		return err
	}
	if len(data) == 0 {
		return errors.New("the control plane holds no headless service of the benchmark")
	}
	if len(data) != cfg.headless || endpoints != cfg.headless*cfg.pods {
		return fmt.Errorf("the control plane holds %d headless services with %d endpoints, want %d with %d (BENCH_NO_CACHE=1 starts afresh)",
			len(data), endpoints, cfg.headless, cfg.headless*cfg.pods)
	}
	res.headlessServices, res.headlessEndpoints = len(data), endpoints
	res.allEndpoints, err = countEndpoints(ctx, s)
	if err != nil {
		return err
	}
	all, distinct := benchkit.Mix(data, cfg.queries, cfg.seed)
	res.queries, res.distinct = len(all), len(distinct)
	dataFile := filepath.Join(s.work, "queries.txt")
	if err := benchkit.WriteDnsperfFile(dataFile, all); err != nil {
		return err
	}
	// Start-up waits for the last pod of the last service: a name that
	// only a complete index answers right.
	last := data[len(data)-1]
	probe := benchkit.PodA(last, last.Pods[len(last.Pods)-1])
	sample := make([]benchkit.Question, 0, 1000)
	for i := 0; i < len(distinct); i += max(1, len(distinct)/1000) {
		sample = append(sample, distinct[i])
	}
	perRound := (cfg.changes + cfg.rounds - 1) / cfg.rounds
	perRound += perRound % 2 // changes go in pairs: to a new address and back
	benchkit.Logf("dataset: %d headless services, %d headless endpoints, %d endpoints in all; query benchkit.Mix of %d lines (%d distinct), seed %d",
		len(data), endpoints, res.allEndpoints, len(all), len(distinct), cfg.seed)

	res.flavours = map[string]*flavourResult{}
	for _, f := range flavours {
		res.flavours[f.key] = &flavourResult{rcodes: map[string]int64{}}
	}
	return s.timed("rounds", func() error {
		for round := range cfg.rounds {
			for _, f := range flavours {
				qs := sample
				if round == 0 {
					qs = distinct
				}
				if err := s.oneRun(ctx, f, round, res.flavours[f.key], probe, qs, dataFile, data, perRound); err != nil {
					return fmt.Errorf("round %d, %s: %w", round+1, f.title, err)
				}
			}
		}
		return nil
	})
}

// countEndpoints counts the endpoint addresses of every slice of the
// benchmark's namespaces: what the kubernetes plugin indexes.
func countEndpoints(ctx context.Context, s *suite) (int, error) {
	n, cont := 0, ""
	for {
		list, err := s.client.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{Limit: 2000, Continue: cont})
		if err != nil {
			return 0, fmt.Errorf("listing EndpointSlices: %w", err)
		}
		for _, sl := range list.Items {
			if strings.HasPrefix(sl.Namespace, "bench-") {
				for _, ep := range sl.Endpoints {
					n += len(ep.Addresses)
				}
			}
		}
		if cont = list.Continue; cont == "" {
			return n, nil
		}
	}
}

// oneRun starts one CoreDNS of flavour f and measures it.
func (s *suite) oneRun(ctx context.Context, f flavour, round int, r *flavourResult, probe benchkit.Question,
	qs []benchkit.Question, dataFile string, data []*benchkit.HeadlessService, changes int) error {
	port, err := benchkit.FreePort()
	if err != nil {
		return err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	name := fmt.Sprintf("%s-%d", f.key, round+1)
	corefile := filepath.Join(s.work, name+".Corefile")
	text := fmt.Sprintf(".:%d {\n    bind 127.0.0.1\n%s}\n", port, f.block(s.kubeconfig))
	if err := os.WriteFile(corefile, []byte(text), 0o644); err != nil {
		return err
	}
	logPath := filepath.Join(s.work, name+".log")
	t0 := time.Now()
	p, err := benchkit.StartProc("CoreDNS "+name, logPath, []string{"GOMAXPROCS=1"},
		"taskset", "-c", s.cpuServer, s.coredns, "-conf", corefile)
	if err != nil {
		return err
	}
	defer p.Stop()
	// Anything that waits on this CoreDNS gives up as soon as it exits.
	pctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-p.Done:
			cancel(fmt.Errorf("CoreDNS exited (%v):\n%s", p.Err, benchkit.Tail(logPath, 15)))
		case <-pctx.Done():
		}
	}()
	failed := func(err error) error {
		if cause := context.Cause(pctx); cause != nil && ctx.Err() == nil {
			return cause
		}
		return err
	}

	ready, err := benchkit.WaitCorrect(pctx, addr, probe, f.rcodeOnly, 5*time.Millisecond, t0.Add(3*time.Minute))
	if err != nil {
		return failed(err)
	}
	r.startup = append(r.startup, ready.Sub(t0))
	select {
	case <-time.After(s.cfg.settle):
	case <-pctx.Done():
		return failed(pctx.Err())
	}
	rss, err := benchkit.RSSKiB(p.PID())
	if err != nil {
		return failed(err)
	}
	r.rss = append(r.rss, rss)

	c := benchkit.Check(pctx, addr, qs, f.rcodeOnly)
	if pctx.Err() != nil {
		return failed(pctx.Err())
	}
	r.checked += c.Asked
	r.wrong += c.Wrong
	if len(r.examples) < 5 {
		r.examples = append(r.examples, c.Examples...)
	}
	line := fmt.Sprintf("%-33s round %d: start-up %4dms, RSS %6.1f MiB, %d/%d answers right", f.title, round+1,
		ready.Sub(t0).Milliseconds(), float64(rss)/1024, c.Asked-c.Wrong, c.Asked)

	if f.load {
		d, err := s.dnsperf(pctx, port, dataFile, filepath.Join(s.work, name+".dnsperf"))
		if err != nil {
			return failed(err)
		}
		r.qps = append(r.qps, d.QPS)
		r.sent += d.Sent
		r.lost += d.Lost
		for k, v := range d.Rcodes {
			r.rcodes[k] += v
		}
		line += fmt.Sprintf(", %.0f QPS (%d lost, rcodes %v)", d.QPS, d.Lost, d.Rcodes)
	}
	if f.changes {
		before := len(r.program)
		if err := s.changes(pctx, addr, r, data, changes); err != nil {
			return failed(err)
		}
		line += fmt.Sprintf(", %d changes p50 %.1fms", len(r.program)-before, benchkit.Ms(benchkit.Percentile(r.program[before:], 50)))
	}
	benchkit.Logf("%s", line)
	return nil
}

func (s *suite) dnsperf(ctx context.Context, port int, dataFile, outPath string) (benchkit.DnsperfResult, error) {
	return benchkit.Dnsperf{CPU: s.cpuLoad, Port: port, DataFile: dataFile, Duration: s.cfg.duration, Out: outPath}.Run(ctx)
}

// changes moves the first endpoint of n/2 services to a new address and
// back, timing each of the n writes from its start through the API to the
// first DNS answer of addr that reflects it (asked every millisecond).
// The dataset is left as it was.
func (s *suite) changes(ctx context.Context, addr string, r *flavourResult, data []*benchkit.HeadlessService, n int) error {
	for range n / 2 {
		k := r.changeN / 2
		// A prime stride spreads the changes over the services.
		svc := data[(k*7919)%len(data)]
		original := svc.Pods[0].IP
		alternate := fmt.Sprintf("10.64.%d.%d", k/250%250, k%250+1)
		for _, ip := range []string{alternate, original.String()} {
			program, api, err := s.changeOnce(ctx, addr, svc, ip)
			if err != nil {
				if ip == alternate {
					s.restore(svc, original.String())
				}
				return err
			}
			r.program = append(r.program, program)
			r.apiWrite = append(r.apiWrite, api)
			r.changeN++
		}
	}
	return nil
}

// changeOnce sets the address of svc's first pod through the API.
func (s *suite) changeOnce(ctx context.Context, addr string, svc *benchkit.HeadlessService, ip string) (program, api time.Duration, err error) {
	slices := s.client.DiscoveryV1().EndpointSlices(svc.Namespace)
	sl, err := slices.Get(ctx, svc.Slice, metav1.GetOptions{})
	if err != nil {
		return 0, 0, err
	}
	found := false
	for i := range sl.Endpoints {
		ep := &sl.Endpoints[i]
		if ep.Hostname != nil && *ep.Hostname == svc.Pods[0].Hostname {
			ep.Addresses = []string{ip}
			found = true
		}
	}
	if !found {
		return 0, 0, fmt.Errorf("slice %s/%s has no endpoint %s", svc.Namespace, svc.Slice, svc.Pods[0].Hostname)
	}
	q := benchkit.Question{Name: benchkit.PodName(svc, svc.Pods[0]), Qtype: dns.TypeA, Want: []string{ip}}
	type answer struct {
		at  time.Time
		err error
	}
	seen := make(chan answer, 1)
	t0 := time.Now()
	if sl.Annotations == nil {
		sl.Annotations = map[string]string{}
	}
	sl.Annotations[core.EndpointsLastChangeTriggerTime] = t0.UTC().Format(time.RFC3339Nano)
	go func() {
		at, err := benchkit.WaitCorrect(ctx, addr, q, false, time.Millisecond, t0.Add(30*time.Second))
		seen <- answer{at, err}
	}()
	_, err = slices.Update(ctx, sl, metav1.UpdateOptions{})
	api = time.Since(t0)
	if err != nil {
		<-seen
		return 0, 0, fmt.Errorf("updating slice %s/%s: %w", svc.Namespace, svc.Slice, err)
	}
	a := <-seen
	if a.err != nil {
		return 0, 0, a.err
	}
	return a.at.Sub(t0), api, nil
}

// restore puts an address back after a failed change, best effort.
func (s *suite) restore(svc *benchkit.HeadlessService, ip string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sl, err := s.client.DiscoveryV1().EndpointSlices(svc.Namespace).Get(ctx, svc.Slice, metav1.GetOptions{})
	if err != nil {
		return
	}
	for i := range sl.Endpoints {
		if ep := &sl.Endpoints[i]; ep.Hostname != nil && *ep.Hostname == svc.Pods[0].Hostname {
			ep.Addresses = []string{ip}
		}
	}
	_, _ = s.client.DiscoveryV1().EndpointSlices(svc.Namespace).Update(ctx, sl, metav1.UpdateOptions{})
}
