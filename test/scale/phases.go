package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	apps "k8s.io/api/apps/v1"
	core "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/headlessdns/headless/test/internal/benchkit"
)

// memory starts each configuration alone, through a counting proxy, waits
// for its first right answer and cfg.settle more, and reads its memory and
// the API traffic of its sync. At the largest size the heap profiles are
// kept, with pprof's top.
func (h *harness) memory(ctx context.Context, units int, last bool) error {
	size := sizeResult{Units: units, Endpoints: h.cat.counts, Pods: units * first(unitPods(h.cfg.unit)),
		Mem: map[string]memReading{}, Sync: map[string]float64{}, API: map[string]map[string]apiCount{}}
	benchkit.Logf("%d pods, %d services (%d headless), %d endpoints (%d headless) in %d slices",
		size.Pods, size.Endpoints.Services, size.Endpoints.HLSvc, size.Endpoints.All, size.Endpoints.Headless, size.Endpoints.Slices)
	for _, fl := range flavours {
		s, err := h.startServer(ctx, fl, fmt.Sprintf("mem%d", units), serverOptions{proxy: true, pin: true})
		if err != nil {
			return err
		}
		select {
		case <-time.After(h.cfg.settle):
		case <-ctx.Done():
			s.stop()
			return ctx.Err()
		}
		profile := ""
		if last {
			profile = filepath.Join(h.cfg.out, "heap-"+fl.Key+".pprof")
		}
		m, err := s.readMemory(profile)
		api := s.proxy.snapshot()
		s.stop()
		if err != nil {
			return err
		}
		size.Mem[fl.Key], size.Sync[fl.Key], size.API[fl.Key] = m, s.synced.Seconds(), api
		benchkit.Logf("  %-36s synced in %5.2fs, RSS %s, live heap %s", fl.Title, s.synced.Seconds(),
			benchkit.MiB(m.RSSKiB), benchkit.MiB(m.HeapAlloc/1024))
		if profile != "" {
			top, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-sample_index=inuse_space", "-nodecount=25", h.coredns, profile).CombinedOutput()
			if err == nil {
				_ = os.WriteFile(strings.TrimSuffix(profile, ".pprof")+".top.txt", top, 0o644)
			}
		}
	}
	h.res.Sizes = append(h.res.Sizes, size)
	if last {
		return h.profiles(ctx)
	}
	return nil
}

// profiles starts the two plugins alone again with the heap profiler
// sampling every 4 KiB allocated (the default, 512 KiB, says little of a
// heap of a few MiB) and keeps their heap profiles and pprof's top, by
// inuse_space: where the bytes go. The memory figures are not taken from
// these processes.
func (h *harness) profiles(ctx context.Context) error {
	for _, fl := range []flavour{headlessAlone, kubernetesAlone} {
		s, err := h.startServer(ctx, fl, "profile", serverOptions{pin: true, env: []string{"GODEBUG=memprofilerate=4096"}})
		if err != nil {
			return err
		}
		select {
		case <-time.After(h.cfg.settle):
		case <-ctx.Done():
			s.stop()
			return ctx.Err()
		}
		profile := filepath.Join(h.cfg.out, "heap-"+fl.Key+"-fine.pprof")
		_, err = s.readMemory(profile)
		s.stop()
		if err != nil {
			return err
		}
		top, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-sample_index=inuse_space", "-nodecount=40", h.coredns, profile).CombinedOutput()
		if err != nil {
			return fmt.Errorf("go tool pprof: %v\n%s", err, top)
		}
		path := strings.TrimSuffix(profile, ".pprof") + ".top.txt"
		if err := os.WriteFile(path, top, 0o644); err != nil {
			return err
		}
		benchkit.Logf("  heap profile of %s: %s", fl.Title, path)
	}
	return nil
}

func first(a, _ int) int { return a }

// cpuProfiles runs each mix once more against the swap-in, stock and the
// two plugins alone, with the CPU profiler on for the run, and keeps the
// profiles and pprof's top by cumulative time: where a query's time goes
// (the server's reading and writing, each plugin of the chain). The
// throughput figures are not taken from these runs.
func (h *harness) cpuProfiles(ctx context.Context, clusterFile, hlFile string) error {
	cfg := h.cfg
	seconds := max(1, int(cfg.duration/time.Second)-2)
	for _, fl := range flavours {
		s, err := h.startServer(ctx, fl, "cpu", serverOptions{pin: true})
		if err != nil {
			return err
		}
		err = func() error {
			defer s.stop()
			mixes := [][2]string{{"headless", hlFile}}
			if fl.forward {
				mixes = append(mixes, [2]string{"cluster", clusterFile})
			}
			for _, mix := range mixes {
				load := make(chan error, 1)
				go func() {
					_, err := benchkit.Dnsperf{CPU: h.cpuLoad, Port: s.ports.dns, DataFile: mix[1], Duration: cfg.duration}.Run(ctx)
					load <- err
				}()
				time.Sleep(time.Second) // past start-up
				body, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=%d", s.ports.pprof, seconds))
				if lerr := <-load; err == nil {
					err = lerr
				}
				if err != nil {
					return err
				}
				profile := filepath.Join(cfg.out, fmt.Sprintf("cpu-%s-%s.pprof", fl.Key, mix[0]))
				if err := os.WriteFile(profile, body, 0o644); err != nil {
					return err
				}
				top, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-cum", "-nodecount=80", h.coredns, profile).CombinedOutput()
				if err != nil {
					return fmt.Errorf("go tool pprof: %v\n%s", err, top)
				}
				if err := os.WriteFile(strings.TrimSuffix(profile, ".pprof")+".top.txt", top, 0o644); err != nil {
					return err
				}
				benchkit.Logf("  CPU profile of %s, %s mix: %s", fl.Title, mix[0], strings.TrimSuffix(profile, ".pprof")+".top.txt")
			}
			return nil
		}()
		if err != nil {
			return fmt.Errorf("%s: %w", fl.Title, err)
		}
	}
	return nil
}

// throughput runs dnsperf against each configuration in turn, pinned to
// one CPU with dnsperf on the other, over rounds: the cluster mix (the
// configurations that forward) and the headless mix (all of them).
func (h *harness) throughput(ctx context.Context) error {
	cfg := h.cfg
	cluster := h.cat.clusterMix(cfg.queries, cfg.seed)
	clusterFile := filepath.Join(cfg.out, "queries-cluster.txt")
	if err := writeQueries(clusterFile, cluster); err != nil {
		return err
	}
	hlAll, hlDistinct := benchkit.Mix(h.cat.hlAll, cfg.queries, cfg.seed)
	hlFile := filepath.Join(cfg.out, "queries-headless.txt")
	if err := benchkit.WriteDnsperfFile(hlFile, hlAll); err != nil {
		return err
	}
	sample := hlDistinct[:min(len(hlDistinct), 2000)]
	restore, err := h.quietCluster()
	if err != nil {
		return err
	}
	defer restore()
	q := &qpsResult{Cluster: map[string]*mixRuns{}, Headless: map[string]*mixRuns{}, Wrong: map[string]int{}, Checked: map[string]int{},
		Lookups: lookupWeightsMap(), ClusterLines: len(cluster), HeadlessLines: len(hlAll)}
	h.res.QPS = q
	for round := range cfg.rounds {
		for _, fl := range append(flavours, swapinCached) {
			s, err := h.startServer(ctx, fl, fmt.Sprintf("qps%d", round+1), serverOptions{pin: true})
			if err != nil {
				return err
			}
			err = func() error {
				defer s.stop()
				if round == 0 {
					c := benchkit.Check(ctx, s.addr, sample, false)
					wrong, checked := c.Wrong, c.Asked
					if fl.forward {
						w, n := checkRcodes(ctx, s.addr, cluster[:min(len(cluster), 2000)])
						wrong, checked = wrong+w, checked+n
					}
					q.Wrong[fl.Key], q.Checked[fl.Key] = wrong, checked
					for _, e := range c.Examples {
						benchkit.Logf("  wrong answer from %s: %s", fl.Title, e)
					}
				}
				line := fmt.Sprintf("  round %d %-36s", round+1, fl.Title)
				// Throughput: as many queries as 100 outstanding allow.
				// Latency: a second run at a fixed rate, every query's
				// latency reported (-v costs dnsperf time, so not in the
				// throughput run).
				run := func(file string, m map[string]*mixRuns, what string) error {
					out := func(kind string) string {
						return filepath.Join(cfg.out, fmt.Sprintf("dnsperf-%s-%s-%s-%d.txt", what, kind, fl.Key, round+1))
					}
					d, err := benchkit.Dnsperf{CPU: h.cpuLoad, Port: s.ports.dns, DataFile: file, Duration: cfg.duration, Out: out("qps")}.Run(ctx)
					if err != nil {
						return err
					}
					l, err := benchkit.Dnsperf{CPU: h.cpuLoad, Port: s.ports.dns, DataFile: file, Duration: cfg.duration, MaxQPS: cfg.latencyQPS,
						Latencies: true, Out: out("latency")}.Run(ctx)
					if err != nil {
						return err
					}
					r := m[fl.Key]
					if r == nil {
						r = &mixRuns{Rcodes: map[string]int64{}}
						m[fl.Key] = r
					}
					r.QPS = append(r.QPS, d.QPS)
					r.P99ms = append(r.P99ms, float64(benchkit.Percentile(l.Latencies, 99))*1000)
					r.P50ms = append(r.P50ms, float64(benchkit.Percentile(l.Latencies, 50))*1000)
					r.Lost += d.Lost + l.Lost
					for k, v := range d.Rcodes {
						r.Rcodes[k] += v
					}
					line += fmt.Sprintf(", %s %.0f QPS, p50/p99 %.2f/%.2f ms at %d QPS", what, d.QPS, r.P50ms[len(r.P50ms)-1], r.P99ms[len(r.P99ms)-1], cfg.latencyQPS)
					return nil
				}
				if fl.forward {
					if err := run(clusterFile, q.Cluster, "cluster"); err != nil {
						return err
					}
				}
				if err := run(hlFile, q.Headless, "headless"); err != nil {
					return err
				}
				benchkit.Logf("%s", line)
				return nil
			}()
			if err != nil {
				return fmt.Errorf("%s: %w", fl.Title, err)
			}
		}
	}
	return h.cpuProfiles(ctx, clusterFile, hlFile)
}

func lookupWeightsMap() map[string]int {
	m := map[string]int{}
	for _, w := range lookupWeights {
		m[w.kind] = w.weight
	}
	return m
}

func writeQueries(path string, qs []query) error {
	var b strings.Builder
	for _, q := range qs {
		fmt.Fprintf(&b, "%s %s\n", q.name, dns.TypeToString[q.qtype])
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// checkRcodes asks the distinct queries of qs once and counts the rcodes
// that are not the expected ones.
func checkRcodes(ctx context.Context, addr string, qs []query) (wrong, asked int) {
	seen := map[string]bool{}
	for _, q := range qs {
		key := q.name + "/" + dns.TypeToString[q.qtype]
		if seen[key] || q.rcode < 0 || ctx.Err() != nil {
			continue
		}
		seen[key] = true
		asked++
		r, err := benchkit.Ask(addr, q.name, q.qtype, 2*time.Second)
		if err != nil || r.Rcode != q.rcode {
			wrong++
			if wrong <= 3 {
				got := "no reply"
				if err == nil {
					got = dns.RcodeToString[r.Rcode]
				}
				benchkit.Logf("  %s %s: %s, want %s", q.name, dns.TypeToString[q.qtype], got, dns.RcodeToString[q.rcode])
			}
		}
	}
	return wrong, asked
}

// relist runs every configuration at once (the full Corefiles, whose
// caches leave the cluster domain alone), then stops kube-testenv
// (etcd, the API server, the controllers and kwok) and starts it again on
// the same state directory. It samples each server's RSS all along and
// reads its VmHWM (reset at the steady point), and moves the probe's
// address as soon as the API server takes a write again: the time from that
// write until each server answers the new address is when its answers are
// current again.
func (h *harness) relist(ctx context.Context) error {
	var servers []*server
	defer func() {
		for _, s := range servers {
			s.stop()
		}
	}()
	for _, fl := range flavours {
		s, err := h.startServer(ctx, fl, "relist", serverOptions{})
		if err != nil {
			return err
		}
		servers = append(servers, s)
	}
	select {
	case <-time.After(h.cfg.settle):
	case <-ctx.Done():
		return ctx.Err()
	}
	r := &relistResult{Steady: map[string]int64{}, PeakHWM: map[string]int64{}, PeakSampled: map[string]int64{}, Current: map[string]float64{}}
	h.res.Relist = r
	for _, s := range servers {
		rss, err := benchkit.RSSKiB(s.proc.PID())
		if err != nil {
			return err
		}
		r.Steady[s.fl.Key] = rss
		if err := benchkit.ResetPeakRSS(s.proc.PID()); err != nil {
			return err
		}
	}
	// Sampling, every 50ms, until stopped.
	var mu sync.Mutex
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			for _, s := range servers {
				if rss, err := benchkit.RSSKiB(s.proc.PID()); err == nil {
					mu.Lock()
					r.PeakSampled[s.fl.Key] = max(r.PeakSampled[s.fl.Key], rss)
					mu.Unlock()
				}
			}
			select {
			case <-stopSampling:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	// A client of its own, from the same kubeconfig: the same URL and
	// credentials after the restart.
	rc, err := clientcmd.BuildConfigFromFlags("", h.cp.Kubeconfig)
	if err != nil {
		return err
	}
	rc.Timeout = 2 * time.Second
	direct, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	newIP := probeAddress(1)
	down := time.Now()
	benchkit.Logf("stopping kube-testenv (etcd, API server, controllers, kwok)")
	h.cp.Stop()
	r.StopSeconds = time.Since(down).Seconds()
	type up struct {
		at, changed time.Time
		err         error
	}
	upCh := make(chan up, 1)
	go func() {
		// The change is written as soon as the API server takes a write:
		// every 50 ms until one is accepted.
		for {
			err := h.setProbeWith(ctx, direct, newIP)
			if err == nil || ctx.Err() != nil {
				now := time.Now()
				upCh <- up{now, now, err}
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	benchkit.Logf("starting kube-testenv again on %s", h.cp.Dir)
	restarted := make(chan error, 1)
	go func() { restarted <- h.cp.Start(ctx, 16*time.Minute) }()
	var u up
	select {
	case u = <-upCh:
	case err := <-restarted:
		if err != nil {
			return err
		}
		u = <-upCh
	}
	if u.err != nil {
		return u.err
	}
	r.OutageSeconds = u.at.Sub(down).Seconds()
	benchkit.Logf("the API server took the probe's move to %s %.1fs after the stop", newIP, r.OutageSeconds)
	q := probeQuestion(newIP)
	var wg sync.WaitGroup
	var errs []error
	for _, s := range servers {
		wg.Go(func() {
			at, err := benchkit.WaitCorrect(ctx, s.addr, q, false, 5*time.Millisecond, time.Now().Add(5*time.Minute))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", s.fl.Title, err))
				return
			}
			r.Current[s.fl.Key] = at.Sub(u.at).Seconds()
			benchkit.Logf("  %-36s current again %.2fs after that write", s.fl.Title, at.Sub(u.at).Seconds())
		})
	}
	wg.Wait()
	if err := <-restarted; err != nil {
		return err
	}
	r.ClusterBackSeconds = time.Since(down).Seconds()
	// The relist's garbage settles within a few GC cycles; the peak is
	// read after the whole cluster is back and 20s more.
	select {
	case <-time.After(20 * time.Second):
	case <-ctx.Done():
		return ctx.Err()
	}
	close(stopSampling)
	<-sampled
	for _, s := range servers {
		hwm, err := benchkit.StatusKiB(s.proc.PID(), "VmHWM")
		if err != nil {
			return err
		}
		r.PeakHWM[s.fl.Key] = hwm
	}
	if len(errs) > 0 {
		return errs[0]
	}
	return h.loadCatalog(ctx)
}

func (h *harness) setProbeWith(ctx context.Context, c kubernetes.Interface, ip string) error {
	saved := h.cp.Client
	defer func() { h.cp.Client = saved }()
	h.cp.Client = c
	return h.setProbe(ctx, ip)
}

// rollout creates a StatefulSet of cfg.rolloutPods pods behind a headless
// Service, starts the swap-in and the stock configurations at once (each
// through a counting proxy), and rolls the StatefulSet (a new pod
// template: its controller replaces the pods one at a time, highest
// ordinal first). The harness watches the pods itself; whenever a pod's
// readiness changes (ready with an address, or not), it asks each server
// for the pod's name every millisecond until the answer reflects it (the
// address, or NXDOMAIN). A change superseded before a server showed it is
// not counted, for any server.
func (h *harness) rollout(ctx context.Context) error {
	cfg := h.cfg
	c := h.cp.Client
	if err := h.create(ctx, &core.Namespace{ObjectMeta: metav1.ObjectMeta{Name: rolloutNS}}); err != nil {
		return err
	}
	svc, wl := workload(rolloutNS, rolloutName, true, cfg.rolloutPods)
	if err := h.create(ctx, svc); err != nil {
		return err
	}
	sts := wl.(*apps.StatefulSet)
	sts.Spec.PodManagementPolicy = apps.ParallelPodManagement
	if err := h.create(ctx, sts); err != nil {
		return err
	}
	if _, err := benchkit.WaitPodsReady(ctx, c, rolloutNS, "app="+rolloutName, cfg.rolloutPods, 10*time.Minute, func(n int) {
		benchkit.Logf("  rollout StatefulSet: %d of %d pods ready", n, cfg.rolloutPods)
	}); err != nil {
		return err
	}
	var servers []*server
	defer func() {
		for _, s := range servers {
			s.stop()
		}
	}()
	for _, fl := range []flavour{swapin, stock} {
		s, err := h.startServer(ctx, fl, "rollout", serverOptions{proxy: true})
		if err != nil {
			return err
		}
		servers = append(servers, s)
	}
	r := &rolloutResult{Pods: cfg.rolloutPods, Latency: map[string][]float64{}, APIBefore: map[string]map[string]apiCount{}, APIAfter: map[string]map[string]apiCount{}}
	h.res.Rollout = r
	for _, s := range servers {
		r.APIBefore[s.fl.Key] = s.proxy.snapshot()
	}

	list, err := c.CoreV1().Pods(rolloutNS).List(ctx, metav1.ListOptions{LabelSelector: "app=" + rolloutName})
	if err != nil {
		return err
	}
	w, err := c.CoreV1().Pods(rolloutNS).Watch(ctx, metav1.ListOptions{LabelSelector: "app=" + rolloutName, ResourceVersion: list.ResourceVersion})
	if err != nil {
		return err
	}
	defer w.Stop()
	state := map[string]string{} // pod name → its address when ready, "" when not
	for i := range list.Items {
		state[list.Items[i].Name] = readyIP(&list.Items[i])
	}
	type pending struct{ cancel context.CancelFunc }
	var (
		mu       sync.Mutex
		wg       sync.WaitGroup
		inFlight = map[string]*pending{}
		counted  int
	)
	track := func(name, ip string, t0 time.Time) {
		mu.Lock()
		if p := inFlight[name]; p != nil {
			p.cancel()
		}
		pctx, cancel := context.WithCancel(ctx)
		inFlight[name] = &pending{cancel}
		mu.Unlock()
		q := rolloutQuestion(name)
		// A change counts when every server was timed on it: the
		// percentiles then compare the same changes (one superseded for
		// a single server would shift that server's ranks).
		timed, left := map[string]float64{}, len(servers)
		for _, s := range servers {
			wg.Go(func() {
				at, err := waitName(pctx, s.addr, q, ip, t0.Add(2*time.Minute))
				mu.Lock()
				defer mu.Unlock()
				left--
				switch {
				case err != nil && pctx.Err() == nil:
					r.Failed++
				case err == nil:
					timed[s.fl.Key] = at.Sub(t0).Seconds() * 1000
				}
				if left > 0 || len(timed) < len(servers) {
					return
				}
				for k, ms := range timed {
					r.Latency[k] = append(r.Latency[k], ms)
				}
				counted++
			})
		}
	}
	patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"scale.headless.test/rollout":%q}}}}}`, time.Now().Format(time.RFC3339Nano))
	start := time.Now()
	if _, err := c.AppsV1().StatefulSets(rolloutNS).Patch(ctx, rolloutName, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		return err
	}
	// The churn of ClusterIP endpoints beside it: the largest Deployment
	// of the first namespace rolls at the same time (what the stock
	// configuration watches and the swap-in does not).
	deployNS, deployName, deployPods := unitNamespace(0), "", 0
	for _, g := range cfg.unit {
		if !g.sts && g.pods > deployPods {
			deployName, deployPods = workloadName(g, 0), g.pods
		}
	}
	if _, err := c.AppsV1().Deployments(deployNS).Patch(ctx, deployName, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		return err
	}
	r.Deployment, r.DeploymentPods = deployNS+"/"+deployName, deployPods
	benchkit.Logf("rolling the StatefulSet's %d pods, and the %d pods of Deployment %s beside it", cfg.rolloutPods, deployPods, r.Deployment)
	deadline := time.After(time.Duration(cfg.rolloutPods)*10*time.Second + 5*time.Minute)
	check := time.NewTicker(2 * time.Second)
	defer check.Stop()
	lastLog := time.Now()
loop:
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			return fmt.Errorf("the rollout did not finish in time (%d transitions seen)", r.Transitions)
		case ev, ok := <-w.ResultChan():
			if !ok {
				return fmt.Errorf("the pod watch ended")
			}
			p, isPod := ev.Object.(*core.Pod)
			if !isPod {
				continue
			}
			now := time.Now()
			ip := readyIP(p)
			if ev.Type == watch.Deleted {
				ip = ""
			}
			if old, seen := state[p.Name]; seen && old == ip {
				continue
			}
			state[p.Name] = ip
			r.Transitions++
			track(p.Name, ip, now)
		case <-check.C:
			s, err := c.AppsV1().StatefulSets(rolloutNS).Get(ctx, rolloutName, metav1.GetOptions{})
			if err != nil {
				continue
			}
			st := s.Status
			if time.Since(lastLog) > 10*time.Second {
				benchkit.Logf("  rollout: %d of %d pods updated, %d ready; %d readiness changes", st.UpdatedReplicas, cfg.rolloutPods, st.ReadyReplicas, r.Transitions)
				lastLog = time.Now()
			}
			d, err := c.AppsV1().Deployments(deployNS).Get(ctx, deployName, metav1.GetOptions{})
			if err != nil {
				continue
			}
			ds := d.Status
			deployDone := d.Generation == ds.ObservedGeneration && ds.UpdatedReplicas == int32(deployPods) && ds.Replicas == int32(deployPods) && ds.AvailableReplicas == int32(deployPods)
			if st.UpdateRevision == st.CurrentRevision && st.UpdatedReplicas == int32(cfg.rolloutPods) && st.ReadyReplicas == int32(cfg.rolloutPods) && deployDone {
				break loop
			}
		}
	}
	r.Seconds = time.Since(start).Seconds()
	wg.Wait()
	for _, s := range servers {
		r.APIAfter[s.fl.Key] = s.proxy.snapshot()
	}
	benchkit.Logf("rollout done in %.0fs: %d readiness changes, %d timed by every server", r.Seconds, r.Transitions, counted)
	return nil
}

func readyIP(p *core.Pod) string {
	if p.DeletionTimestamp != nil || !benchkit.PodReady(p) {
		return ""
	}
	return p.Status.PodIP
}

func rolloutQuestion(pod string) string {
	return pod + "." + rolloutName + "." + rolloutNS + ".svc." + benchkit.Zone
}

// waitName asks name every millisecond until it answers ip (NXDOMAIN when
// ip is empty), and returns when that answer arrived.
func waitName(ctx context.Context, addr, name, ip string, deadline time.Time) (time.Time, error) {
	for {
		sent := time.Now()
		r, err := benchkit.Ask(addr, name, dns.TypeA, 50*time.Millisecond)
		now := time.Now()
		if err == nil {
			if ip == "" && r.Rcode == dns.RcodeNameError {
				return now, nil
			}
			if ip != "" && r.Rcode == dns.RcodeSuccess {
				var got []string
				for _, rr := range r.Answer {
					if a, ok := rr.(*dns.A); ok {
						got = append(got, a.A.String())
					}
				}
				if slices.Equal(got, []string{ip}) {
					return now, nil
				}
			}
		}
		if now.After(deadline) {
			return now, fmt.Errorf("%s: not %q in time", name, ip)
		}
		if err := ctx.Err(); err != nil {
			return now, err
		}
		if wait := time.Millisecond - now.Sub(sent); wait > 0 {
			time.Sleep(wait)
		}
	}
}
