package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/headlessdns/headless/test/internal/benchkit"
)

// results is everything measured, saved as results.json.
type results struct {
	Config       map[string]any `json:"config"`
	Machine      string         `json:"machine"`
	Load         string         `json:"load_average_at_end"`
	LoadStart    string         `json:"load_average_at_start"`
	Sizes        []sizeResult   `json:"sizes"`
	QPS          *qpsResult     `json:"qps,omitempty"`
	Relist       *relistResult  `json:"relist,omitempty"`
	Rollout      *rolloutResult `json:"rollout,omitempty"`
	Phases       []phaseTime    `json:"phases"`
	Errors       []string       `json:"errors,omitempty"`
	TotalSeconds float64        `json:"total_seconds"`
}

type phaseTime struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
}

type sizeResult struct {
	Units     int                            `json:"namespaces"`
	Pods      int                            `json:"pods"`
	Endpoints endpointCounts                 `json:"endpoints"`
	Mem       map[string]memReading          `json:"memory"`
	Sync      map[string]float64             `json:"sync_seconds"` // process start to first right answer
	API       map[string]map[string]apiCount `json:"api_at_sync"`  // requests and bytes from start to the memory reading
}

type qpsResult struct {
	ClusterLines  int                 `json:"cluster_mix_lines"`
	HeadlessLines int                 `json:"headless_mix_lines"`
	Lookups       map[string]int      `json:"cluster_mix_lookup_weights"`
	Cluster       map[string]*mixRuns `json:"cluster_mix"`
	Headless      map[string]*mixRuns `json:"headless_mix"`
	Wrong         map[string]int      `json:"wrong_answers"`
	Checked       map[string]int      `json:"checked_answers"`
}

type mixRuns struct {
	QPS    []float64        `json:"qps"`
	P50ms  []float64        `json:"p50_ms"`
	P99ms  []float64        `json:"p99_ms"`
	Lost   int64            `json:"lost"`
	Rcodes map[string]int64 `json:"rcodes"`
}

type relistResult struct {
	Steady             map[string]int64   `json:"steady_rss_kib"`
	PeakHWM            map[string]int64   `json:"peak_vmhwm_kib"`
	PeakSampled        map[string]int64   `json:"peak_sampled_rss_kib"`
	Current            map[string]float64 `json:"current_after_seconds"`
	StopSeconds        float64            `json:"stop_seconds"`
	OutageSeconds      float64            `json:"outage_seconds"`
	ClusterBackSeconds float64            `json:"cluster_back_seconds"`
}

type rolloutResult struct {
	Pods           int                            `json:"pods"`
	Deployment     string                         `json:"deployment_rolled_beside"`
	DeploymentPods int                            `json:"deployment_pods"`
	Seconds        float64                        `json:"seconds"`
	Transitions    int                            `json:"readiness_changes"`
	Failed         int                            `json:"unanswered"`
	Latency        map[string][]float64           `json:"latency_ms"`
	APIBefore      map[string]map[string]apiCount `json:"api_before"`
	APIAfter       map[string]map[string]apiCount `json:"api_after"`
}

func (c config) summary() map[string]any {
	all, hl := unitPods(c.unit)
	return map[string]any{"quick": c.quick, "nodes": c.nodes, "sizes_namespaces": c.sizes, "namespace_pods": all,
		"namespace_headless_pods": hl, "rollout_pods": c.rolloutPods, "rounds": c.rounds, "duration_s": c.duration.Seconds(),
		"settle_s": c.settle.Seconds(), "queries": c.queries, "seed": c.seed, "latency_qps": c.latencyQPS}
}

func (h *harness) save() {
	b, err := json.MarshalIndent(h.res, "", "  ")
	if err == nil {
		err = os.WriteFile(filepath.Join(h.cfg.out, "results.json"), b, 0o644)
	}
	if err != nil {
		benchkit.Logf("saving results.json: %v", err)
	}
}

// slope is the marginal bytes per endpoint between the first and the last
// size.
func (r *results) slope(key string, value func(memReading) float64, eps func(endpointCounts) int) (float64, bool) {
	if len(r.Sizes) < 2 {
		return 0, false
	}
	a, b := r.Sizes[0], r.Sizes[len(r.Sizes)-1]
	ma, oka := a.Mem[key]
	mb, okb := b.Mem[key]
	d := eps(b.Endpoints) - eps(a.Endpoints)
	if !oka || !okb || d <= 0 {
		return 0, false
	}
	return (value(mb) - value(ma)) / float64(d), true
}

func (r *results) table(h *harness) string {
	var w strings.Builder
	cfg := h.cfg
	keys := []string{"swapin", "stock", "headless", "kubernetes"}
	fmt.Fprintf(&w, "\n## make scale: headless swapped in for kube-dns vs the stock kubernetes plugin\n\n")
	fmt.Fprintf(&w, "- machine: %s; load average %s at the start, %s at the end\n", r.Machine, r.LoadStart, r.Load)
	all, hl := unitPods(cfg.unit)
	fmt.Fprintf(&w, "- cluster: kube-testenv -cluster (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) with %d kwok nodes; namespaces of %d pods (%d of them StatefulSet pods behind headless Services, the rest Deployment pods behind ClusterIP Services; workloads of %s pods)\n",
		cfg.nodes, all, hl, unitShape(cfg.unit))
	for _, s := range r.Sizes {
		fmt.Fprintf(&w, "- size %d namespaces: %s pods, %s Services (%s headless), %s endpoints in %s slices, %s of them headless\n",
			s.Units, benchkit.Thousands(int64(s.Pods)), benchkit.Thousands(int64(s.Endpoints.Services)), benchkit.Thousands(int64(s.Endpoints.HLSvc)),
			benchkit.Thousands(int64(s.Endpoints.All)), benchkit.Thousands(int64(s.Endpoints.Slices)), benchkit.Thousands(int64(s.Endpoints.Headless)))
	}
	fmt.Fprintf(&w, "- every CoreDNS: the same binary (cmd/coredns), GOMAXPROCS=1; forward to a second CoreDNS on loopback (template plugin) standing in for the internet\n\n")
	fmt.Fprintln(&w, "| section | measure | swap-in (Corefile.example) | stock kubernetes (kubeadm) | headless alone | kubernetes alone | target | result |")
	fmt.Fprintln(&w, "|---|---|--:|--:|--:|--:|---|---|")
	row := func(cells ...string) { fmt.Fprintf(&w, "| %s |\n", strings.Join(cells, " | ")) }
	cells := func(f func(k string) string) []string {
		var out []string
		for _, k := range keys {
			out = append(out, f(k))
		}
		return out
	}
	line := func(section, measure string, f func(k string) string, target, result string) {
		row(append(append([]string{section, measure}, cells(f)...), target, result)...)
	}

	// Memory.
	for i, s := range r.Sizes {
		section := ""
		if i == 0 {
			section = "memory"
		}
		line(section, fmt.Sprintf("RSS %ds after the first right answer, %s endpoints", int(cfg.settle/time.Second), benchkit.Thousands(int64(s.Endpoints.All))), func(k string) string {
			if m, ok := s.Mem[k]; ok {
				return benchkit.MiB(m.RSSKiB)
			}
			return "n/a"
		}, "", "")
		line("", fmt.Sprintf("live heap after a forced GC, %s endpoints", benchkit.Thousands(int64(s.Endpoints.All))), func(k string) string {
			if m, ok := s.Mem[k]; ok {
				return benchkit.MiB(m.HeapAlloc / 1024)
			}
			return "n/a"
		}, "", "")
	}
	perEP := map[string]func(endpointCounts) int{
		"swapin": func(e endpointCounts) int { return e.All }, "stock": func(e endpointCounts) int { return e.All },
		"headless": func(e endpointCounts) int { return e.Headless }, "kubernetes": func(e endpointCounts) int { return e.All },
	}
	for _, m := range []struct {
		what   string
		value  func(memReading) float64
		target float64
		label  string
	}{
		{"RSS", func(m memReading) float64 { return float64(m.RSSKiB) * 1024 }, 1.0 / 3, "headless alone ≤ 1/3 of kubernetes alone"},
		{"live heap", func(m memReading) float64 { return float64(m.HeapAlloc) }, 1.0 / 2, "headless alone ≤ 1/2 of kubernetes alone"},
	} {
		slopes := map[string]float64{}
		ok := map[string]bool{}
		for _, k := range keys {
			slopes[k], ok[k] = r.slope(k, m.value, perEP[k])
		}
		verdict := "n/a"
		if ok["headless"] && ok["kubernetes"] && slopes["kubernetes"] > 0 {
			verdict = benchkit.Met(slopes["headless"] <= m.target*slopes["kubernetes"], fmt.Sprintf("%.2f×", slopes["headless"]/slopes["kubernetes"]))
		}
		line("", "marginal "+m.what+" per indexed endpoint, between the sizes (swap-in, stock, kubernetes: ÷ every endpoint; headless: ÷ headless endpoints)", func(k string) string {
			if !ok[k] {
				return "n/a"
			}
			return fmt.Sprintf("%.0f B", slopes[k])
		}, m.label, verdict)
	}
	if len(r.Sizes) > 0 {
		s := r.Sizes[len(r.Sizes)-1]
		line("", "sync: process start → first right answer (largest size)", func(k string) string {
			if v, ok := s.Sync[k]; ok {
				return fmt.Sprintf("%.2f s", v)
			}
			return "n/a"
		}, "", "")
	}

	// Relist.
	if rl := r.Relist; rl != nil {
		peak := func(k string) int64 { return max(rl.PeakHWM[k], rl.PeakSampled[k]) }
		ratio := func(k string) float64 { return float64(peak(k)) / float64(rl.Steady[k]) }
		line("API server restart", "steady RSS → peak (VmHWM, and RSS sampled every 50 ms) through a restart of the whole control plane (all four at once)", func(k string) string {
			if rl.Steady[k] == 0 {
				return "n/a"
			}
			return fmt.Sprintf("%s → %s (%.2f×)", benchkit.MiB(rl.Steady[k]), benchkit.MiB(peak(k)), ratio(k))
		}, "peak ≤ 1.2× steady (headless alone and swap-in)",
			benchkit.Met(rl.Steady["headless"] > 0 && ratio("headless") <= 1.2 && ratio("swapin") <= 1.2,
				fmt.Sprintf("%.2f× / %.2f×", ratio("headless"), ratio("swapin"))))
		line("", fmt.Sprintf("answers current again: first write the restarted API server took (%.1f s after the stop) → answered", rl.OutageSeconds), func(k string) string {
			if v, ok := rl.Current[k]; ok {
				return fmt.Sprintf("%.2f s", v)
			}
			return "n/a"
		}, "", "")
	}

	// Throughput.
	if q := r.QPS; q != nil {
		qps := func(m map[string]*mixRuns, k string) float64 {
			if m[k] == nil {
				return 0
			}
			return benchkit.Median(m[k].QPS)
		}
		cell := func(m map[string]*mixRuns) func(k string) string {
			return func(k string) string {
				if m[k] == nil {
					return ""
				}
				return fmt.Sprintf("%.0f QPS; %.2f / %.2f ms", benchkit.Median(m[k].QPS), benchkit.Median(m[k].P50ms), benchkit.Median(m[k].P99ms))
			}
		}
		sw, st := qps(q.Cluster, "swapin"), qps(q.Cluster, "stock")
		line("throughput", fmt.Sprintf("cluster mix (a pod's resolv.conf: search expansions, ClusterIP, headless, external, SRV, PTR; %s lines): QPS; p50 / p99 at %d QPS; medians of %d", benchkit.Thousands(int64(q.ClusterLines)), cfg.latencyQPS, cfg.rounds),
			cell(q.Cluster), "swap-in ≥ stock", benchkit.Met(st > 0 && sw >= st, fmt.Sprintf("%.2f×", sw/st)))
		hs, hk := qps(q.Headless, "swapin"), qps(q.Headless, "stock")
		line("", fmt.Sprintf("headless mix of make bench (service A, pod A, SRV, PTR of headless names; %s lines): QPS; p50 / p99 at %d QPS; medians of %d", benchkit.Thousands(int64(q.HeadlessLines)), cfg.latencyQPS, cfg.rounds),
			cell(q.Headless), "swap-in ≥ 2× stock", benchkit.Met(hk > 0 && hs >= 2*hk, fmt.Sprintf("%.2f×", hs/hk)))
		line("", "wrong answers (rcode of the cluster mix, full answers of the headless mix) / lost queries", func(k string) string {
			lost := int64(0)
			for _, m := range []map[string]*mixRuns{q.Cluster, q.Headless} {
				if m[k] != nil {
					lost += m[k].Lost
				}
			}
			return fmt.Sprintf("%d of %d / %d", q.Wrong[k], q.Checked[k], lost)
		}, "", "")
	}

	// Programming latency.
	if ro := r.Rollout; ro != nil {
		lat := func(k string) string {
			v := ro.Latency[k]
			if len(v) == 0 {
				return ""
			}
			return fmt.Sprintf("%.1f / %.1f ms (%d)", benchkit.Percentile(v, 50), benchkit.Percentile(v, 99), len(v))
		}
		sp, tp := benchkit.Percentile(ro.Latency["swapin"], 99), benchkit.Percentile(ro.Latency["stock"], 99)
		line("programming latency", fmt.Sprintf("rolling update of a %d-pod StatefulSet (%.0f s; both at once): a pod's readiness change seen by the harness's watch → its name answered accordingly (address or NXDOMAIN), p50 / p99 (answers timed)", ro.Pods, ro.Seconds),
			lat, "swap-in p99 ≤ stock p99",
			benchkit.Met(len(ro.Latency["swapin"]) > 0 && len(ro.Latency["stock"]) > 0 && sp <= tp, fmt.Sprintf("%.2f×", sp/tp)))
	}

	// API load.
	if len(r.Sizes) > 0 {
		s := r.Sizes[len(r.Sizes)-1]
		line("API server load", fmt.Sprintf("start-up at the largest size, until %ds after the first right answer: requests and bytes sent (counting proxy; client-go lists through WATCH with sendInitialEvents)", int(cfg.settle/time.Second)), func(k string) string {
			return apiCell(s.API[k], nil)
		}, "", "")
	}
	if ro := r.Rollout; ro != nil {
		line("", fmt.Sprintf("during the rolling update (and the %d-pod Deployment %s rolled beside it): new requests and bytes sent (watch events)", ro.DeploymentPods, ro.Deployment), func(k string) string {
			if ro.APIAfter[k] == nil {
				return ""
			}
			return apiCell(ro.APIAfter[k], ro.APIBefore[k])
		}, "", "")
	}
	fmt.Fprintln(&w)
	fmt.Fprintln(&w, "Swap-in and stock run their whole Corefile in every phase; both caches leave cluster.local alone (kubeadm's since 1.32), so every cluster name is answered by the plugins and external names and PTRs by the cache.")
	if q := r.QPS; q != nil && q.Cluster["swapin-cached"] != nil {
		c, hl := q.Cluster["swapin-cached"], q.Headless["swapin-cached"]
		fmt.Fprintf(&w, "Swap-in with a cache that keeps cluster.local too (plain `cache 30`, Corefile.example before 2026-11-29): cluster mix %.0f QPS, p50 / p99 %.2f / %.2f ms; headless mix %.0f QPS, p50 / p99 %.2f / %.2f ms.\n",
			benchkit.Median(c.QPS), benchkit.Median(c.P50ms), benchkit.Median(c.P99ms), benchkit.Median(hl.QPS), benchkit.Median(hl.P50ms), benchkit.Median(hl.P99ms))
	}
	fmt.Fprintln(&w, "Marginal cost: the difference of the two readings divided by the difference of the endpoints each configuration indexes, between the smallest and the largest size.")
	for _, e := range r.Errors {
		fmt.Fprintf(&w, "failed: %s\n", benchkit.OneLine(e))
	}
	var parts []string
	for _, p := range r.Phases {
		parts = append(parts, fmt.Sprintf("%s %.0fs", p.Name, p.Seconds))
	}
	fmt.Fprintf(&w, "Time: %s (%.0fs in all). Raw figures, logs and heap profiles: %s\n", strings.Join(parts, ", "), r.TotalSeconds, cfg.out)
	return w.String()
}

func unitShape(unit []group) string {
	var parts []string
	for _, g := range unit {
		kind := "Deployments"
		if g.sts {
			kind = "StatefulSets"
		}
		parts = append(parts, fmt.Sprintf("%d×%d (%s)", g.count, g.pods, kind))
	}
	return strings.Join(parts, ", ")
}

// apiCell sums the requests by verb and the bytes sent.
func apiCell(after, before map[string]apiCount) string {
	if after == nil {
		return "n/a"
	}
	verbs := map[string]int64{}
	var bytes int64
	for k, c := range after {
		b := before[k]
		verb, _, _ := strings.Cut(k, " ")
		verbs[verb] += c.Requests - b.Requests
		bytes += c.Bytes - b.Bytes
	}
	var parts []string
	for _, v := range slices.Sorted(maps.Keys(verbs)) {
		if verbs[v] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", verbs[v], v))
		}
	}
	if len(parts) == 0 {
		parts = []string{"0 requests"}
	}
	return strings.Join(parts, ", ") + "; " + kib(bytes)
}

func kib(b int64) string {
	if b >= 10<<20 {
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	}
	return fmt.Sprintf("%.0f KiB", float64(b)/1024)
}
