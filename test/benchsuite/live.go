package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

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
	data, endpoints, err := loadDataset(ctx, s.client)
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
	all, distinct := mix(data, cfg.queries, cfg.seed)
	res.queries, res.distinct = len(all), len(distinct)
	dataFile := filepath.Join(s.work, "queries.txt")
	if err := writeDnsperfFile(dataFile, all); err != nil {
		return err
	}
	// Start-up waits for the last pod of the last service: a name that
	// only a complete index answers right.
	last := data[len(data)-1]
	probe := podA(last, last.pods[len(last.pods)-1])
	sample := make([]question, 0, 1000)
	for i := 0; i < len(distinct); i += max(1, len(distinct)/1000) {
		sample = append(sample, distinct[i])
	}
	perRound := (cfg.changes + cfg.rounds - 1) / cfg.rounds
	perRound += perRound % 2 // changes go in pairs: to a new address and back
	logf("dataset: %d headless services, %d headless endpoints, %d endpoints in all; query mix of %d lines (%d distinct), seed %d",
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
func (s *suite) oneRun(ctx context.Context, f flavour, round int, r *flavourResult, probe question,
	qs []question, dataFile string, data []*headlessService, changes int) error {
	port, err := freePort()
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
	p, err := startProc("CoreDNS "+name, logPath, []string{"GOMAXPROCS=1"},
		"taskset", "-c", s.cpuServer, s.coredns, "-conf", corefile)
	if err != nil {
		return err
	}
	defer p.stop()
	// Anything that waits on this CoreDNS gives up as soon as it exits.
	pctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-p.done:
			cancel(fmt.Errorf("CoreDNS exited (%v):\n%s", p.err, tail(logPath, 15)))
		case <-pctx.Done():
		}
	}()
	failed := func(err error) error {
		if cause := context.Cause(pctx); cause != nil && ctx.Err() == nil {
			return cause
		}
		return err
	}

	ready, err := waitCorrect(pctx, addr, probe, f.rcodeOnly, 5*time.Millisecond, t0.Add(3*time.Minute))
	if err != nil {
		return failed(err)
	}
	r.startup = append(r.startup, ready.Sub(t0))
	select {
	case <-time.After(s.cfg.settle):
	case <-pctx.Done():
		return failed(pctx.Err())
	}
	rss, err := rssKiB(p.pid())
	if err != nil {
		return failed(err)
	}
	r.rss = append(r.rss, rss)

	c := check(pctx, addr, qs, f.rcodeOnly)
	if pctx.Err() != nil {
		return failed(pctx.Err())
	}
	r.checked += c.asked
	r.wrong += c.wrong
	if len(r.examples) < 5 {
		r.examples = append(r.examples, c.examples...)
	}
	line := fmt.Sprintf("%-33s round %d: start-up %4dms, RSS %6.1f MiB, %d/%d answers right", f.title, round+1,
		ready.Sub(t0).Milliseconds(), float64(rss)/1024, c.asked-c.wrong, c.asked)

	if f.load {
		d, err := s.dnsperf(pctx, port, dataFile, filepath.Join(s.work, name+".dnsperf"))
		if err != nil {
			return failed(err)
		}
		r.qps = append(r.qps, d.qps)
		r.sent += d.sent
		r.lost += d.lost
		for k, v := range d.rcodes {
			r.rcodes[k] += v
		}
		line += fmt.Sprintf(", %.0f QPS (%d lost, rcodes %v)", d.qps, d.lost, d.rcodes)
	}
	if f.changes {
		before := len(r.program)
		if err := s.changes(pctx, addr, r, data, changes); err != nil {
			return failed(err)
		}
		line += fmt.Sprintf(", %d changes p50 %.1fms", len(r.program)-before, ms(percentile(r.program[before:], 50)))
	}
	logf("%s", line)
	return nil
}

// dnsperfResult is what the suite reads from dnsperf's statistics.
type dnsperfResult struct {
	qps        float64
	sent, lost int64
	rcodes     map[string]int64
}

func (s *suite) dnsperf(ctx context.Context, port int, dataFile, outPath string) (dnsperfResult, error) {
	secs := strconv.Itoa(int(s.cfg.duration / time.Second))
	cmd := exec.CommandContext(ctx, "taskset", "-c", s.cpuLoad, "dnsperf", "-s", "127.0.0.1", "-p", strconv.Itoa(port),
		"-d", dataFile, "-l", secs, "-q", "100", "-t", "2", "-T", "1", "-c", "1")
	out, err := cmd.CombinedOutput()
	_ = os.WriteFile(outPath, out, 0o644)
	if err != nil {
		return dnsperfResult{}, fmt.Errorf("dnsperf: %v\n%s", err, lastLines(string(out), 10))
	}
	return parseDnsperf(string(out))
}

// parseDnsperf reads the statistics block dnsperf prints at the end.
func parseDnsperf(out string) (dnsperfResult, error) {
	d := dnsperfResult{rcodes: map[string]int64{}}
	var haveQPS, haveSent bool
	for _, line := range strings.Split(out, "\n") {
		key, value, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(value)
		if len(fields) == 0 {
			continue
		}
		var err error
		switch key {
		case "Queries sent":
			d.sent, err = strconv.ParseInt(fields[0], 10, 64)
			haveSent = true
		case "Queries lost":
			d.lost, err = strconv.ParseInt(fields[0], 10, 64)
		case "Queries per second":
			d.qps, err = strconv.ParseFloat(fields[0], 64)
			haveQPS = true
		case "Response codes":
			// "NOERROR 123 (99.9%), NXDOMAIN 1 (0.1%)"
			for _, part := range strings.Split(value, ",") {
				f := strings.Fields(part)
				if len(f) < 2 {
					continue
				}
				n, perr := strconv.ParseInt(f[1], 10, 64)
				if perr != nil {
					err = perr
					break
				}
				d.rcodes[f[0]] += n
			}
		}
		if err != nil {
			return d, fmt.Errorf("dnsperf output, %q: %v", line, err)
		}
	}
	if !haveQPS || !haveSent {
		return d, fmt.Errorf("no statistics in dnsperf's output:\n%s", lastLines(out, 10))
	}
	return d, nil
}

// changes moves the first endpoint of n/2 services to a new address and
// back, timing each of the n writes from its start through the API to the
// first DNS answer of addr that reflects it (asked every millisecond).
// The dataset is left as it was.
func (s *suite) changes(ctx context.Context, addr string, r *flavourResult, data []*headlessService, n int) error {
	for range n / 2 {
		k := r.changeN / 2
		// A prime stride spreads the changes over the services.
		svc := data[(k*7919)%len(data)]
		original := svc.pods[0].ip
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
func (s *suite) changeOnce(ctx context.Context, addr string, svc *headlessService, ip string) (program, api time.Duration, err error) {
	slices := s.client.DiscoveryV1().EndpointSlices(svc.namespace)
	sl, err := slices.Get(ctx, svc.slice, metav1.GetOptions{})
	if err != nil {
		return 0, 0, err
	}
	found := false
	for i := range sl.Endpoints {
		ep := &sl.Endpoints[i]
		if ep.Hostname != nil && *ep.Hostname == svc.pods[0].hostname {
			ep.Addresses = []string{ip}
			found = true
		}
	}
	if !found {
		return 0, 0, fmt.Errorf("slice %s/%s has no endpoint %s", svc.namespace, svc.slice, svc.pods[0].hostname)
	}
	q := question{name: podName(svc, svc.pods[0]), qtype: dns.TypeA, want: []string{ip}}
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
		at, err := waitCorrect(ctx, addr, q, false, time.Millisecond, t0.Add(30*time.Second))
		seen <- answer{at, err}
	}()
	_, err = slices.Update(ctx, sl, metav1.UpdateOptions{})
	api = time.Since(t0)
	if err != nil {
		<-seen
		return 0, 0, fmt.Errorf("updating slice %s/%s: %w", svc.namespace, svc.slice, err)
	}
	a := <-seen
	if a.err != nil {
		return 0, 0, a.err
	}
	return a.at.Sub(t0), api, nil
}

// restore puts an address back after a failed change, best effort.
func (s *suite) restore(svc *headlessService, ip string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sl, err := s.client.DiscoveryV1().EndpointSlices(svc.namespace).Get(ctx, svc.slice, metav1.GetOptions{})
	if err != nil {
		return
	}
	for i := range sl.Endpoints {
		if ep := &sl.Endpoints[i]; ep.Hostname != nil && *ep.Hostname == svc.pods[0].hostname {
			ep.Addresses = []string{ip}
		}
	}
	_, _ = s.client.DiscoveryV1().EndpointSlices(svc.namespace).Update(ctx, sl, metav1.UpdateOptions{})
}
