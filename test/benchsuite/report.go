package main

import (
	"fmt"
	"io"
	"math"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/headlessdns/headless/test/internal/benchkit"
)

// results is everything the table is made of.
type results struct {
	cfg                                               config
	headlessServices, headlessEndpoints, allEndpoints int
	queries, distinct                                 int
	flavours                                          map[string]*flavourResult
	goBench                                           map[string][]benchSample
	goCommand                                         string
	goErr                                             error
	phases                                            []phase
	flips                                             *flipResult
}

type benchSample struct{ ns, allocs float64 }

var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+([\d.]+) ns/op(?:\s+[\d.]+ B/op)?(?:\s+([\d.]+) allocs/op)?`)

func parseGoBench(out string) map[string][]benchSample {
	m := map[string][]benchSample{}
	for _, line := range strings.Split(out, "\n") {
		g := benchLine.FindStringSubmatch(strings.TrimSpace(line))
		if g == nil {
			continue
		}
		ns, _ := strconv.ParseFloat(g[2], 64)
		allocs := math.NaN()
		if g[3] != "" {
			allocs, _ = strconv.ParseFloat(g[3], 64)
		}
		m[g[1]] = append(m[g[1]], benchSample{ns, allocs})
	}
	return m
}

// bench is the median ns/op and allocs/op of one benchmark (ok false when
// it did not run).
func (r *results) bench(name string) (ns, allocs float64, ok bool) {
	samples := r.goBench[name]
	if len(samples) == 0 {
		return 0, 0, false
	}
	var nss, as []float64
	for _, s := range samples {
		nss, as = append(nss, s.ns), append(as, s.allocs)
	}
	return benchkit.Median(nss), benchkit.Median(as), true
}

func (r *results) print(w io.Writer, s *suite) {
	cfg := r.cfg
	fl := r.flavours
	wh, hl, k8s, rep := fl["whoami"], fl["headless"], fl["kubernetes"], fl["replacement"]
	goVersion, _ := exec.Command("go", "env", "GOVERSION").Output()

	fmt.Fprintf(w, "\n## make bench: headless vs kubernetes vs whoami\n\n")
	fmt.Fprintf(w, "- machine: %d CPUs, %s; CoreDNS on CPU %s with GOMAXPROCS=1, dnsperf on CPU %s\n",
		cpuCount(), strings.TrimSpace(string(goVersion)), s.cpuServer, s.cpuLoad)
	fmt.Fprintf(w, "- data: kube-testenv (etcd + kube-apiserver) holding %s headless Services and %s ClusterIP Services of %d endpoints each (%s endpoints in all, %s of them headless), %d namespaces\n",
		benchkit.Thousands(int64(cfg.headless)), benchkit.Thousands(int64(cfg.clusterIP)), cfg.pods, benchkit.Thousands(int64(r.allEndpoints)),
		benchkit.Thousands(int64(r.headlessEndpoints)), cfg.namespaces)
	fmt.Fprintf(w, "- runs: %d interleaved rounds (whoami, headless, kubernetes, kube-dns replacement; each a fresh CoreDNS process, one at a time); medians\n", cfg.rounds)
	fmt.Fprintf(w, "- load: `dnsperf -q 100 -l %d` over %s queries (service A, pod A, SRV, PTR in equal parts, seed %d, %s distinct) per plugin per round\n\n",
		int(cfg.duration/time.Second), benchkit.Thousands(int64(r.queries)), cfg.seed, benchkit.Thousands(int64(r.distinct)))

	fmt.Fprintln(w, "| section | measure | headless | kubernetes | whoami / other | target | result |")
	fmt.Fprintln(w, "|---|---|--:|--:|--:|---|---|")
	row := func(cells ...string) { fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | ")) }

	// 1. Throughput.
	wq, hq, kq := benchkit.Median(wh.qps), benchkit.Median(hl.qps), benchkit.Median(k8s.qps)
	ratio := func(v float64) string {
		if wq == 0 {
			return "n/a"
		}
		return fmt.Sprintf("%.2f×", v/wq)
	}
	row("throughput", fmt.Sprintf("QPS, median of %d", len(hl.qps)), fmt.Sprintf("%.0f", hq), fmt.Sprintf("%.0f", kq),
		fmt.Sprintf("%.0f", wq), "headless ≥ 0.85× whoami", benchkit.Met(wq > 0 && hq >= 0.85*wq, ratio(hq)))
	row("", "QPS ratio to whoami", ratio(hq), ratio(kq), "1.00×", "", "")
	bad := func(f *flavourResult) int64 {
		var n int64
		for code, c := range f.rcodes {
			if code != "NOERROR" {
				n += c
			}
		}
		return n
	}
	badCell := func(f *flavourResult) string {
		return fmt.Sprintf("%s / %s", benchkit.Thousands(bad(f)), benchkit.Thousands(f.lost))
	}
	// Lost queries (no reply within dnsperf's 2s timeout) are shown but
	// are not wrong answers: on a shared machine they come from CoreDNS
	// going without CPU for a while.
	row("", "non-NOERROR answers / lost queries, timed runs", badCell(hl), badCell(k8s), badCell(wh), "headless 0 non-NOERROR",
		benchkit.Met(bad(hl) == 0 && len(hl.qps) > 0, ""))
	checkCell := func(f *flavourResult) string {
		return fmt.Sprintf("%s of %s", benchkit.Thousands(int64(f.wrong)), benchkit.Thousands(int64(f.checked)))
	}
	row("", "wrong answers, checked before the timed runs", checkCell(hl), checkCell(k8s),
		checkCell(wh)+" (rcode only)", "headless 0", benchkit.Met(hl.wrong == 0 && hl.checked > 0, ""))

	// 2. In-process.
	kinds := []struct{ bench, title string }{
		{"service_A", "service A"}, {"pod_A", "pod A"}, {"SRV", "SRV"}, {"PTR", "PTR"}, {"NXDOMAIN", "NXDOMAIN"},
	}
	for i, kd := range kinds {
		section := ""
		if i == 0 {
			section = "in-process"
		}
		if r.goErr != nil {
			if i == 0 {
				row(section, "ServeDNS ns/op, allocs/op", "n/a", "n/a", "", "headless ≤ 3 allocs/query", "n/a: "+benchkit.OneLine(r.goErr.Error()))
			}
			break
		}
		hns, hal, hok := r.bench("BenchmarkServeDNS/" + kd.bench)
		kns, kal, kok := r.bench("BenchmarkSideBySide/" + kd.bench + "/kubernetes")
		cell := func(ns, allocs float64, ok bool) string {
			if !ok {
				return "n/a"
			}
			return fmt.Sprintf("%.0f ns, %.0f allocs", ns, allocs)
		}
		verdict := "n/a"
		if hok {
			verdict = benchkit.Met(hal <= 3, fmt.Sprintf("%.0f allocs", hal))
		}
		row(section, "ServeDNS "+kd.title+": ns/op, allocs/op", cell(hns, hal, hok), cell(kns, kal, kok), "",
			"headless ≤ 3 allocs/query", verdict)
	}

	// 3. Memory.
	wr, hr, kr, rr := benchkit.Median(wh.rss), benchkit.Median(hl.rss), benchkit.Median(k8s.rss), benchkit.Median(rep.rss)
	mib := func(kib int64) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }
	row("memory", fmt.Sprintf("RSS after sync + %ds, median", int(cfg.settle/time.Second)), mib(hr), mib(kr), mib(wr)+" (whoami)", "", "")
	perEP := func(rss int64, eps int) float64 { return float64(rss-wr) * 1024 / float64(eps) }
	hpe, kpe := perEP(hr, r.headlessEndpoints), perEP(kr, r.allEndpoints)
	row("", "RSS above whoami per indexed endpoint",
		fmt.Sprintf("%.0f B (÷ %s)", hpe, benchkit.Thousands(int64(r.headlessEndpoints))),
		fmt.Sprintf("%.0f B (÷ %s)", kpe, benchkit.Thousands(int64(r.allEndpoints))), "",
		"headless ≤ 1/3 of kubernetes", benchkit.Met(kpe > 0 && hpe <= kpe/3, fmt.Sprintf("%.2f×", hpe/kpe)))
	repRatio := float64(rr-wr) / float64(kr-wr)
	row("", "kube-dns replacement (Corefile.example) vs kubernetes alone: RSS above whoami",
		"replacement "+mib(rr-wr), "alone "+mib(kr-wr), fmt.Sprintf("replacement total %s", mib(rr)),
		"≤ 1/2 of kubernetes", benchkit.Met(kr > wr && repRatio <= 0.5, fmt.Sprintf("%.2f×", repRatio)))

	// 4. Update cost.
	if r.goErr == nil {
		var us []string
		var first, last float64
		ok := true
		for i, n := range []string{"1000", "10000", "100000"} {
			ns, _, found := r.bench("BenchmarkSliceUpdate/endpoints=" + n)
			if !found {
				ok = false
				us = append(us, "n/a")
				continue
			}
			us = append(us, fmt.Sprintf("%.1f", ns/1000))
			if i == 0 {
				first = ns
			}
			last = ns
		}
		verdict := "n/a"
		if ok {
			verdict = benchkit.Met(last <= 2*first, fmt.Sprintf("%.2f×", last/first))
		}
		row("update cost", "one slice change applied to the index at 1k / 10k / 100k endpoints, µs",
			strings.Join(us, " / "), "", "", "100k ≤ 2× 1k", verdict)
	} else {
		row("update cost", "one slice change applied to the index, µs", "n/a", "", "", "100k ≤ 2× 1k", "n/a")
	}
	lat := func(v []time.Duration) string {
		return fmt.Sprintf("%.1f / %.1f ms", benchkit.Ms(benchkit.Percentile(v, 50)), benchkit.Ms(benchkit.Percentile(v, 99)))
	}
	hp99, kp99 := benchkit.Percentile(hl.program, 99), benchkit.Percentile(k8s.program, 99)
	row("", fmt.Sprintf("slice write → first DNS answer reflecting it, p50 / p99 (hand-written slices, apiserver-only; %d / %d changes)",
		len(hl.program), len(k8s.program)), lat(hl.program), lat(k8s.program), "",
		"headless p99 ≤ kubernetes p99", benchkit.Met(len(hl.program) > 0 && hp99 <= kp99, fmt.Sprintf("%.2f×", float64(hp99)/float64(kp99))))
	row("", "the API write alone, p50 / p99", lat(hl.apiWrite), lat(k8s.apiWrite), "", "", "")
	if f := r.flips; f != nil && len(f.headless) > 0 {
		hp, kp := benchkit.Percentile(f.headless, 99), benchkit.Percentile(f.k8s, 99)
		row("", fmt.Sprintf("DNS programming latency p50 / p99, as Kubernetes defines it: pod readiness (status patch) → endpointslice controller → first DNS answer with the service's new A set (%d flips over %d StatefulSet pods; both servers at once on a -cluster control plane)",
			len(f.headless), f.pods), lat(f.headless), lat(f.k8s), "", "headless p99 ≤ kubernetes p99",
			benchkit.Met(hp <= kp, fmt.Sprintf("%.2f×", float64(hp)/float64(kp))))
		row("", "the status patch alone, p50 / p99", lat(f.patch), "", "", "", "")
	}

	// 5. Start-up.
	hs, ks := benchkit.Median(hl.startup), benchkit.Median(k8s.startup)
	row("start-up", "process start → first right answer, median", fmt.Sprintf("%.0f ms", benchkit.Ms(hs)), fmt.Sprintf("%.0f ms", benchkit.Ms(ks)),
		fmt.Sprintf("%.0f ms (whoami), %.0f ms (replacement)", benchkit.Ms(benchkit.Median(wh.startup)), benchkit.Ms(benchkit.Median(rep.startup))),
		"headless ≤ kubernetes", benchkit.Met(hs <= ks, fmt.Sprintf("%.2f×", float64(hs)/float64(ks))))

	fmt.Fprintln(w)
	if r.goCommand != "" {
		fmt.Fprintf(w, "In-process: `%s` in the repository root (1000 headless services of 3 pods; headless = BenchmarkServeDNS, kubernetes = its query path in BenchmarkSideBySide over the same objects).\n", r.goCommand)
	}
	fmt.Fprintln(w, "RSS: VmRSS of /proc/PID/status. Per endpoint: headless divides by the headless endpoints it indexes, kubernetes by every endpoint.")
	for _, f := range []*flavourResult{hl, k8s} {
		for _, e := range f.examples {
			fmt.Fprintf(w, "\nwrong answer: %s", e)
		}
	}
	if len(hl.examples)+len(k8s.examples) > 0 {
		fmt.Fprintln(w)
	}
	var parts []string
	for _, p := range r.phases {
		parts = append(parts, fmt.Sprintf("%s %.0fs", p.name, p.took.Seconds()))
	}
	fmt.Fprintf(w, "Time: %s (%.0fs in all).\n", strings.Join(parts, ", "), time.Since(started).Seconds())
}
