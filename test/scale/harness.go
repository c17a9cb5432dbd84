package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/headlessdns/headless/test/internal/benchkit"
)

// harness holds what the phases share.
type harness struct {
	cfg                config
	res                *results
	root, test         string
	cpuServer, cpuLoad string
	coredns, testenv   string
	kwok               string
	cp                 *benchkit.Testenv
	upstream           string // host:port of the stand-in for the internet
	units              int    // unit namespaces created so far
	cat                *catalog
	serial             int // names the CoreDNS processes
}

// timed runs one phase and records how long it took.
func (h *harness) timed(name string, f func() error) error {
	benchkit.Logf("== %s", name)
	t := time.Now()
	err := f()
	h.res.Phases = append(h.res.Phases, phaseTime{Name: name, Seconds: time.Since(t).Seconds()})
	if err != nil {
		benchkit.Logf("%s failed after %.0fs: %v", name, time.Since(t).Seconds(), err)
	} else {
		benchkit.Logf("%s done in %.0fs", name, time.Since(t).Seconds())
	}
	return err
}

// soft runs a measuring phase whose failure leaves its rows empty rather
// than ending the run (the cluster and the other phases are still good).
func (h *harness) soft(ctx context.Context, name string, f func() error) error {
	err := h.timed(name, f)
	if err != nil && ctx.Err() == nil {
		h.res.Errors = append(h.res.Errors, name+": "+err.Error())
		return nil
	}
	return err
}

func (h *harness) all(ctx context.Context) error {
	cfg := h.cfg
	if err := h.timed("build", func() error { return h.build(ctx) }); err != nil {
		return err
	}
	if err := h.timed("cluster start", func() error { return h.startCluster(ctx) }); err != nil {
		return err
	}
	if err := h.timed("upstream and probe", func() error {
		if err := h.startUpstream(); err != nil {
			return err
		}
		return h.createProbe(ctx)
	}); err != nil {
		return err
	}
	for i, units := range cfg.sizes {
		if err := h.timed(fmt.Sprintf("grow to %d namespaces", units), func() error { return h.grow(ctx, units) }); err != nil {
			return err
		}
		last := i == len(cfg.sizes)-1
		if err := h.soft(ctx, fmt.Sprintf("memory and API load at %d namespaces", units), func() error {
			return h.memory(ctx, units, last)
		}); err != nil {
			return err
		}
	}
	if err := h.soft(ctx, "query throughput", func() error { return h.throughput(ctx) }); err != nil {
		return err
	}
	if err := h.soft(ctx, "API server restart", func() error { return h.relist(ctx) }); err != nil {
		return err
	}
	if err := h.soft(ctx, "rolling update", func() error { return h.rollout(ctx) }); err != nil {
		return err
	}
	h.res.Load = loadAverage()
	h.res.TotalSeconds = time.Since(benchkit.Started).Seconds()
	table := h.res.table(h)
	fmt.Print(table)
	if err := os.WriteFile(filepath.Join(cfg.out, "table.md"), []byte(table), 0o644); err != nil {
		return err
	}
	benchkit.Logf("done: %s", cfg.out)
	return nil
}

func (h *harness) build(ctx context.Context) error {
	benchkit.Logf("building CoreDNS (cmd/coredns); kube-testenv and kwok (test/testenv.sh, cached)")
	h.coredns = filepath.Join(h.cfg.out, "coredns")
	if err := benchkit.GoCmd(ctx, h.root, "build", "-o", h.coredns, "./cmd/coredns"); err != nil {
		return err
	}
	paths, err := benchkit.TestenvBinaries(ctx, h.test, "kube-testenv", "kwok")
	if err != nil {
		return err
	}
	h.testenv, h.kwok = paths[0], paths[1]
	return nil
}

// kwokOptions raises kwok's parallelism: by default it plays four pod
// Stages at a time, which leaves thousands of pods waiting for an address.
const kwokOptions = `apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokConfiguration
options:
  podPlayStageParallelism: 32
  nodePlayStageParallelism: 16
  nodeLeaseParallelism: 16
  podsOnNodeSyncParallelism: 4
`

// clusterArgs are kube-testenv's flags: a -cluster of cfg.nodes kwok
// nodes, with the controllers, the scheduler and kwok allowed the request
// rates that thousands of pods need.
func (h *harness) clusterArgs() []string {
	return []string{"-cluster", "-kwok", h.kwok, "-nodes", strconv.Itoa(h.cfg.nodes), "-ready-timeout", "15m",
		"-apiserver-arg=--max-requests-inflight=800", "-apiserver-arg=--max-mutating-requests-inflight=400",
		"-controller-manager-arg=--kube-api-qps=1000", "-controller-manager-arg=--kube-api-burst=2000",
		"-controller-manager-arg=--concurrent-deployment-syncs=20", "-controller-manager-arg=--concurrent-replicaset-syncs=20",
		"-controller-manager-arg=--concurrent-statefulset-syncs=20", "-controller-manager-arg=--concurrent-service-endpoint-syncs=20",
		"-scheduler-arg=--kube-api-qps=1000", "-scheduler-arg=--kube-api-burst=2000",
		"-kwok-arg=--config=" + filepath.Join(h.cfg.out, "kwok-options.yaml"),
	}
}

func (h *harness) startCluster(ctx context.Context) error {
	if err := os.WriteFile(filepath.Join(h.cfg.out, "kwok-options.yaml"), []byte(kwokOptions), 0o644); err != nil {
		return err
	}
	dir := filepath.Join(h.cfg.out, "cluster")
	benchkit.Logf("starting kube-testenv -cluster with %d kwok nodes in %s", h.cfg.nodes, dir)
	var err error
	h.cp, err = benchkit.StartTestenv(ctx, h.testenv, dir, filepath.Join(h.cfg.out, "kube-testenv.stderr"), 16*time.Minute, h.clusterArgs()...)
	return err
}

// upstreamCorefile is the stand-in for the internet: every A and AAAA
// question gets an address from the documentation ranges, anything else
// NXDOMAIN.
const upstreamCorefile = `.:%d {
    bind 127.0.0.1
    template IN A {
        answer "{{ .Name }} 300 IN A 192.0.2.1"
    }
    template IN AAAA {
        answer "{{ .Name }} 300 IN AAAA 2001:db8::1"
    }
    template ANY ANY {
        rcode NXDOMAIN
    }
}
`

func (h *harness) startUpstream() error {
	port, err := benchkit.FreePort()
	if err != nil {
		return err
	}
	path := filepath.Join(h.cfg.out, "upstream.Corefile")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(upstreamCorefile, port)), 0o644); err != nil {
		return err
	}
	if _, err := benchkit.StartProc("upstream CoreDNS", filepath.Join(h.cfg.out, "upstream.log"), []string{"GOMAXPROCS=1"},
		"taskset", "-c", h.cpuLoad, h.coredns, "-conf", path); err != nil {
		return err
	}
	h.upstream = "127.0.0.1:" + strconv.Itoa(port)
	_, err = benchkit.WaitCorrect(context.Background(), h.upstream, benchkit.Question{Name: "www.example.com.", Qtype: dns.TypeA, Want: []string{"192.0.2.1"}},
		false, 20*time.Millisecond, time.Now().Add(30*time.Second))
	return err
}

// flavour is one CoreDNS configuration.
type flavour struct {
	Key, Title string
	// corefile is the server block's text with the placeholders of
	// localize.
	corefile func(h *harness) (string, error)
	headless bool // it has the headless plugin (answers headless names from it)
	k8s      bool // it has the kubernetes plugin
	forward  bool // it forwards the rest to the upstream
}

// kubeadmCorefile is the Corefile kubeadm 1.37 installs for CoreDNS
// (cmd/kubeadm/app/phases/addons/dns/manifests.go): since 1.32 its cache
// leaves the cluster domain alone (kubernetes/kubernetes#128359).
const kubeadmCorefile = `.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf {
       max_concurrent 1000
    }
    cache 30 {
       disable success cluster.local
       disable denial cluster.local
    }
    loop
    reload
    loadbalance
}
`

var (
	stock = flavour{Key: "stock", Title: "stock kubernetes (kubeadm Corefile)", k8s: true, forward: true,
		corefile: func(*harness) (string, error) { return kubeadmCorefile, nil }}
	swapin = flavour{Key: "swapin", Title: "swap-in (Corefile.example)", headless: true, k8s: true, forward: true,
		corefile: func(h *harness) (string, error) {
			b, err := os.ReadFile(filepath.Join(h.root, "Corefile.example"))
			return string(b), err
		}}
	headlessAlone = flavour{Key: "headless", Title: "headless alone", headless: true,
		corefile: func(*harness) (string, error) {
			return ".:53 {\n    errors\n    ready\n    headless cluster.local in-addr.arpa ip6.arpa {\n    }\n    prometheus :9153\n}\n", nil
		}}
	kubernetesAlone = flavour{Key: "kubernetes", Title: "kubernetes alone", k8s: true,
		corefile: func(*harness) (string, error) {
			return ".:53 {\n    errors\n    ready\n    kubernetes cluster.local in-addr.arpa ip6.arpa {\n       pods insecure\n       fallthrough in-addr.arpa ip6.arpa\n       ttl 30\n    }\n    prometheus :9153\n}\n", nil
		}}
	flavours = []flavour{swapin, stock, headlessAlone, kubernetesAlone}

	// swapinCached is Corefile.example with a cache that keeps the cluster
	// domain too (as Corefile.example did before 2026-11-29): measured for
	// throughput only, to show what caching cluster names buys in front of
	// headless.
	swapinCached = flavour{Key: "swapin-cached", Title: "swap-in, cluster.local cached", headless: true, k8s: true, forward: true,
		corefile: func(h *harness) (string, error) {
			text, err := swapin.corefile(h)
			if err != nil {
				return "", err
			}
			if !reCacheBlock.MatchString(text) {
				return "", fmt.Errorf("no cache block to widen in Corefile.example\n%s", text)
			}
			return reCacheBlock.ReplaceAllString(text, "${1}cache 30\n"), nil
		}}
)

var (
	reHealth     = regexp.MustCompile(`(?m)^(\s*)health\b`)
	reReady      = regexp.MustCompile(`(?m)^(\s*)ready\s*$`)
	rePrometheus = regexp.MustCompile(`(?m)^(\s*)prometheus :9153\s*$`)
	reForward    = regexp.MustCompile(`(?m)^(\s*)forward \. /etc/resolv\.conf`)
	reCacheBlock = regexp.MustCompile(`(?m)^(\s*)cache 30 \{\n(?:[^}\n]*\n)*?\s*\}\n`)
	rePlugin     = regexp.MustCompile(`(?m)^(\s*)(headless|kubernetes) ([^{\n]*)\{\s*$`)
)

// ports of one CoreDNS process.
type ports struct{ dns, health, ready, metrics, pprof int }

// localize turns a cluster Corefile into one for this machine: the server
// on 127.0.0.1 and a free port, health, ready and prometheus on loopback
// ports, pprof beside prometheus, forward to the upstream, and the
// plugins' kubeconfig.
func localize(text string, p ports, kubeconfig, upstream string) (string, error) {
	if !strings.Contains(text, ".:53 {") {
		return "", fmt.Errorf("no .:53 server block in\n%s", text)
	}
	text = strings.Replace(text, ".:53 {", fmt.Sprintf(".:%d {\n    bind 127.0.0.1", p.dns), 1)
	text = reHealth.ReplaceAllString(text, fmt.Sprintf("${1}health 127.0.0.1:%d", p.health))
	text = reReady.ReplaceAllString(text, fmt.Sprintf("${1}ready 127.0.0.1:%d", p.ready))
	if !rePrometheus.MatchString(text) {
		return "", fmt.Errorf("no prometheus :9153 in\n%s", text)
	}
	text = rePrometheus.ReplaceAllString(text, fmt.Sprintf("${1}prometheus 127.0.0.1:%d\n${1}pprof 127.0.0.1:%d", p.metrics, p.pprof))
	text = reForward.ReplaceAllString(text, "${1}forward . "+upstream)
	text = rePlugin.ReplaceAllString(text, "${1}${2} ${3}{\n${1}    kubeconfig "+kubeconfig)
	return text, nil
}

// server is one running CoreDNS.
type server struct {
	fl      flavour
	name    string
	proc    *benchkit.Proc
	ports   ports
	addr    string
	log     string
	started time.Time
	proxy   *countingProxy
	synced  time.Duration // process start to first right answer
}

// serverOptions say how a CoreDNS is run.
type serverOptions struct {
	proxy bool // reach the API server through a counting proxy of its own
	pin   bool // pinned to the server CPU
	env   []string
}

func (h *harness) startServer(ctx context.Context, fl flavour, tag string, o serverOptions) (*server, error) {
	h.serial++
	name := fmt.Sprintf("%02d-%s-%s", h.serial, fl.Key, tag)
	var p ports
	for _, pp := range []*int{&p.dns, &p.health, &p.ready, &p.metrics, &p.pprof} {
		port, err := benchkit.FreePort()
		if err != nil {
			return nil, err
		}
		*pp = port
	}
	s := &server{fl: fl, name: name, ports: p, addr: "127.0.0.1:" + strconv.Itoa(p.dns),
		log: filepath.Join(h.cfg.out, "coredns-"+name+".log")}
	kubeconfig := h.cp.Kubeconfig
	if o.proxy {
		var err error
		if s.proxy, err = newCountingProxy(h.cp.Config); err != nil {
			return nil, err
		}
		kubeconfig = filepath.Join(h.cfg.out, "proxy-"+name+".kubeconfig")
		if err := writePlainKubeconfig(kubeconfig, "http://"+s.proxy.addr); err != nil {
			s.proxy.close()
			return nil, err
		}
	}
	text, err := fl.corefile(h)
	if err == nil {
		text, err = localize(text, p, kubeconfig, h.upstream)
	}
	if err != nil {
		return nil, err
	}
	corefile := filepath.Join(h.cfg.out, "coredns-"+name+".Corefile")
	if err := os.WriteFile(corefile, []byte(text), 0o644); err != nil {
		return nil, err
	}
	args := []string{h.coredns, "-conf", corefile}
	if o.pin {
		args = append([]string{"taskset", "-c", h.cpuServer}, args...)
	}
	s.started = time.Now()
	if s.proc, err = benchkit.StartProc("CoreDNS "+name, s.log, append([]string{"GOMAXPROCS=1"}, o.env...), args...); err != nil {
		return nil, err
	}
	// The DNS port must answer and the data be complete: the last pod of
	// the last headless service, and with kubernetes the last ClusterIP
	// service.
	probes := []benchkit.Question{h.cat.lastHeadlessPod()}
	if fl.k8s {
		probes = append(probes, h.cat.lastClusterIP())
	}
	for _, q := range probes {
		if _, err := benchkit.WaitCorrect(ctx, s.addr, q, false, 5*time.Millisecond, time.Now().Add(5*time.Minute)); err != nil {
			s.stop()
			return nil, fmt.Errorf("CoreDNS %s: %w\n%s", name, err, benchkit.Tail(s.log, 10))
		}
	}
	s.synced = time.Since(s.started)
	return s, nil
}

func (s *server) stop() {
	s.proc.Stop()
	if s.proxy != nil {
		s.proxy.close()
	}
}

// writePlainKubeconfig writes a kubeconfig for the counting proxy: plain
// HTTP on loopback, no credentials (the proxy adds them).
func writePlainKubeconfig(path, server string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["proxy"] = &clientcmdapi.Cluster{Server: server}
	cfg.AuthInfos["proxy"] = &clientcmdapi.AuthInfo{}
	cfg.Contexts["proxy"] = &clientcmdapi.Context{Cluster: "proxy", AuthInfo: "proxy"}
	cfg.CurrentContext = "proxy"
	return clientcmd.WriteToFile(*cfg, path)
}

// memReading is one configuration's memory at one moment.
type memReading struct {
	RSSKiB    int64 `json:"rss_kib"`     // VmRSS, before the forced GC
	HeapAlloc int64 `json:"heap_live_b"` // go_memstats_alloc_bytes after a forced GC: live heap
	HeapInuse int64 `json:"heap_inuse_b"`
	GoSys     int64 `json:"go_sys_b"` // go_memstats_sys_bytes
}

// readMemory reads RSS, then forces a GC through pprof (keeping the heap
// profile in profile, when not empty) and reads the Go memory statistics.
func (s *server) readMemory(profile string) (memReading, error) {
	var m memReading
	var err error
	if m.RSSKiB, err = benchkit.RSSKiB(s.proc.PID()); err != nil {
		return m, err
	}
	body, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/heap?gc=1", s.ports.pprof))
	if err != nil {
		return m, err
	}
	if profile != "" {
		if err := os.WriteFile(profile, body, 0o644); err != nil {
			return m, err
		}
	}
	metrics, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d/metrics", s.ports.metrics))
	if err != nil {
		return m, err
	}
	v := promValues(string(metrics))
	m.HeapAlloc, m.HeapInuse, m.GoSys = int64(v["go_memstats_alloc_bytes"]), int64(v["go_memstats_heap_inuse_bytes"]), int64(v["go_memstats_sys_bytes"])
	if m.HeapAlloc == 0 {
		return m, fmt.Errorf("no go_memstats_alloc_bytes in the metrics of %s", s.name)
	}
	return m, nil
}

func httpGet(u string) ([]byte, error) {
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return b, err
}

// promValues reads the unlabelled samples of a Prometheus text exposition.
func promValues(text string) map[string]float64 {
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || strings.Contains(line, "{") {
			continue
		}
		f := strings.Fields(line)
		if len(f) == 2 {
			if v, err := strconv.ParseFloat(f[1], 64); err == nil {
				out[f[0]] = v
			}
		}
	}
	return out
}

// countingProxy stands between one CoreDNS and the API server and counts
// the requests it makes and the bytes it is sent, by verb and resource:
// the API server's own metrics have no label that tells its clients apart.
type countingProxy struct {
	addr   string
	srv    *http.Server
	mu     sync.Mutex
	counts map[string]*apiCount
}

type apiCount struct {
	Requests int64 `json:"requests"`
	Bytes    int64 `json:"bytes"`
}

func newCountingProxy(rc *rest.Config) (*countingProxy, error) {
	target, err := url.Parse(rc.Host)
	if err != nil {
		return nil, err
	}
	rt, err := rest.TransportFor(rc) // TLS and the admin's token
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &countingProxy{addr: l.Addr().String(), counts: map[string]*apiCount{}}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = target.Host
		},
		Transport:     rt,
		FlushInterval: -1,
		ErrorLog:      nil,
	}
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := p.count(classify(r))
		cw := &countingWriter{ResponseWriter: w, c: c, mu: &p.mu}
		rp.ServeHTTP(cw, r)
	})}
	go func() { _ = p.srv.Serve(l) }()
	return p, nil
}

func (p *countingProxy) count(key string) *apiCount {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.counts[key]
	if c == nil {
		c = &apiCount{}
		p.counts[key] = c
	}
	c.Requests++
	return c
}

// snapshot copies the counts.
func (p *countingProxy) snapshot() map[string]apiCount {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]apiCount{}
	for k, c := range p.counts {
		out[k] = *c
	}
	return out
}

func (p *countingProxy) close() { _ = p.srv.Close() }

// classify names a request "VERB resource": LIST, WATCH, GET or the HTTP
// method, and the resource of its path.
func classify(r *http.Request) string {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	// /api/v1/[namespaces/NS/]RESOURCE[/NAME] or /apis/GROUP/VERSION/...
	rest := parts
	switch {
	case len(parts) >= 2 && parts[0] == "api":
		rest = parts[2:]
	case len(parts) >= 3 && parts[0] == "apis":
		rest = parts[3:]
	default:
		return r.Method + " " + r.URL.Path
	}
	if len(rest) >= 3 && rest[0] == "namespaces" {
		rest = rest[2:]
	}
	if len(rest) == 0 {
		return r.Method + " discovery"
	}
	verb := r.Method
	if r.Method == http.MethodGet {
		switch w := r.URL.Query().Get("watch"); {
		case w == "true" || w == "1":
			verb = "WATCH"
		case len(rest) == 1:
			verb = "LIST"
		}
	}
	return verb + " " + rest[0]
}

type countingWriter struct {
	http.ResponseWriter
	c  *apiCount
	mu *sync.Mutex
}

func (w *countingWriter) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	w.mu.Lock()
	w.c.Bytes += int64(n)
	w.mu.Unlock()
	return n, err
}

func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// machine describes this machine for the report.
func machine() string {
	out, _ := exec.Command("go", "env", "GOVERSION").Output()
	var mem string
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		mem, _, _ = strings.Cut(string(b), "\n")
		mem = strings.Join(strings.Fields(mem)[1:], " ")
	}
	return fmt.Sprintf("%d CPUs, MemTotal %s, %s", runtime.NumCPU(), mem, strings.TrimSpace(string(out)))
}

// loadAverage is /proc/loadavg's first three figures.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
