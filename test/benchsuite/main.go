// Command benchsuite is `make bench`: it measures the headless plugin against
// the stock kubernetes plugin and against whoami (CoreDNS's own per-query
// floor, no lookup at all), in one run, on the same data from the same real
// API server (test/kube-testenv), with the same custom CoreDNS binary
// (cmd/coredns), and prints one Markdown table on stdout. Progress goes to
// stderr.
//
// What it does:
//
//  1. builds CoreDNS and populate, starts kube-testenv on a state directory
//     cached per dataset size (~/.cache/headless/bench-…) and fills it once
//     with HEADLESS headless Services and CLUSTERIP ClusterIP Services of
//     PODS endpoints each;
//  2. reads the headless Services' slices back and draws a seeded query mix
//     (service A, pod A, SRV, PTR) with the answer each question must get;
//  3. runs ROUNDS rounds; each round starts, one at a time, a CoreDNS with
//     whoami, with headless, with kubernetes and with the kube-dns
//     replacement of Corefile.example (headless + kubernetes with
//     noendpoints), each pinned to CPU 0 with GOMAXPROCS=1, and for each
//     measures start-up (process start to first right answer), RSS after
//     sync and a settle pause, checks every answer of the mix, runs dnsperf
//     (pinned to CPU 1) for DURATION, and for headless and kubernetes
//     updates endpoint addresses through the API and times each until the
//     first DNS answer that reflects it;
//  4. stops that control plane and starts a -cluster one of its own (the
//     real controller-manager and scheduler, kwok nodes: the apiserver-only
//     dataset's hand-written slices would be deleted by a real controller),
//     with a headless Service and a StatefulSet of FLIP_PODS pods, a CoreDNS
//     with headless and one with kubernetes running at once, and times
//     FLIPS pod readiness changes (a kubelet's status patch) through the
//     endpointslice controller to each server's first answer with the
//     service's new address set: DNS programming latency as Kubernetes
//     defines it;
//  5. runs the in-process Go benchmarks of the root package;
//  6. prints the table, with a target column.
//
// Every process it starts is stopped on exit, Ctrl-C included; every query
// goes to 127.0.0.1. Environment variables (defaults in brackets):
//
//	BENCH_QUICK=1               a short run: 100 + 1000 services, 3 rounds of 3s, fewer changes and flips
//	BENCH_HEADLESS_SERVICES     headless Services [1000]
//	BENCH_CLUSTERIP_SERVICES    ClusterIP Services [10000]
//	BENCH_PODS                  endpoints per Service [10]
//	BENCH_NAMESPACES            namespaces [20]
//	BENCH_ROUNDS                interleaved rounds [5]
//	BENCH_DURATION              dnsperf seconds per plugin per round [10]
//	BENCH_SETTLE                seconds from first right answer to reading RSS [5]
//	BENCH_CHANGES               endpoint changes per plugin, at least [100]
//	BENCH_QUERIES               lines of the dnsperf data file [40000]
//	BENCH_FLIPS                 pod readiness flips on the -cluster control plane [100]
//	BENCH_FLIP_PODS             pods of that StatefulSet [20]
//	BENCH_SEED                  seed of the query mix [1]
//	BENCH_GO_COUNT              -count of the Go benchmarks [3]
//	BENCH_GO_BENCHTIME          -benchtime of the Go benchmarks [1s]
//	BENCH_SKIP_GO=1             no Go benchmarks
//	BENCH_NO_CACHE=1            a fresh control plane in a temporary directory
//	BENCH_KEEP=1                keep the work directory (logs, data file)
//
// Run from the repository root: `make bench`, or `cd test && go run ./benchsuite`.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/headlessdns/headless/test/internal/benchkit"

	"golang.org/x/sys/unix"
	"k8s.io/client-go/kubernetes"
)

type config struct {
	headless, clusterIP, pods, namespaces int
	rounds, changes, queries              int
	flips, flipPods                       int
	duration, settle                      time.Duration
	seed                                  uint64
	goCount                               int
	goBenchtime                           string
	skipGo, noCache, keep, quick          bool
}

func loadConfig() (config, error) {
	c := config{headless: 1000, clusterIP: 10000, pods: 10, namespaces: 20, rounds: 5, changes: 100,
		queries: 40000, flips: 100, flipPods: 20, duration: 10 * time.Second, settle: 5 * time.Second, seed: 1, goCount: 3, goBenchtime: "1s"}
	c.quick = os.Getenv("BENCH_QUICK") == "1"
	if c.quick {
		c.headless, c.clusterIP, c.rounds, c.changes, c.flips = 100, 1000, 3, 30, 20
		c.duration, c.settle, c.goCount, c.goBenchtime = 3*time.Second, 2*time.Second, 1, "200ms"
	}
	var env benchkit.Env
	env.Int("BENCH_HEADLESS_SERVICES", &c.headless, 1)
	env.Int("BENCH_CLUSTERIP_SERVICES", &c.clusterIP, 0)
	env.Int("BENCH_PODS", &c.pods, 1)
	env.Int("BENCH_NAMESPACES", &c.namespaces, 1)
	env.Int("BENCH_ROUNDS", &c.rounds, 1)
	env.Int("BENCH_CHANGES", &c.changes, 2)
	env.Int("BENCH_QUERIES", &c.queries, 4)
	env.Int("BENCH_FLIPS", &c.flips, 2)
	env.Int("BENCH_FLIP_PODS", &c.flipPods, 2)
	env.Int("BENCH_GO_COUNT", &c.goCount, 1)
	env.Seconds("BENCH_DURATION", &c.duration)
	env.Seconds("BENCH_SETTLE", &c.settle)
	env.Seed("BENCH_SEED", &c.seed)
	if s := os.Getenv("BENCH_GO_BENCHTIME"); s != "" {
		c.goBenchtime = s
	}
	c.skipGo = os.Getenv("BENCH_SKIP_GO") == "1"
	c.noCache = os.Getenv("BENCH_NO_CACHE") == "1"
	c.keep = os.Getenv("BENCH_KEEP") == "1"
	if c.flipPods > 25 {
		env.Fail(errors.New("BENCH_FLIP_PODS: at most 25 (the service's A answer must fit 512 bytes)"))
	}
	if c.pods > 1000 {
		env.Fail(errors.New("BENCH_PODS: at most 1000"))
	}
	return c, env.Err()
}

func (c config) datasetName() string {
	return fmt.Sprintf("bench-h%d-c%d-p%d-n%d", c.headless, c.clusterIP, c.pods, c.namespaces)
}

var started = time.Now()

func main() {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	err := run(ctx)
	interrupted := ctx.Err() != nil // before cancel, which ends ctx in any case
	cancel()
	benchkit.StopAll()
	if err != nil {
		if interrupted {
			fmt.Fprintln(os.Stderr, "benchsuite: interrupted")
			os.Exit(130)
		}
		fmt.Fprintf(os.Stderr, "benchsuite: %v\n", err)
		os.Exit(1)
	}
}

// suite holds what the phases share.
type suite struct {
	cfg        config
	root, test string // repository root and its test module
	work       string // temporary work directory
	coredns    string // the CoreDNS binary
	kubeconfig string
	client     kubernetes.Interface
	cpuServer  string // taskset CPU list for CoreDNS
	cpuLoad    string // and for dnsperf
	phases     []phase
}

type phase struct {
	name string
	took time.Duration
}

func (s *suite) timed(name string, f func() error) error {
	t := time.Now()
	err := f()
	s.phases = append(s.phases, phase{name, time.Since(t)})
	return err
}

func run(ctx context.Context) error {
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	s := &suite{cfg: cfg}
	if s.root, s.test, err = benchkit.Locate(); err != nil {
		return err
	}
	if s.cpuServer, s.cpuLoad, err = benchkit.Tools(); err != nil {
		return err
	}
	s.work, err = os.MkdirTemp("", "headless-benchsuite.")
	if err != nil {
		return err
	}
	if cfg.keep {
		benchkit.Logf("work directory (kept): %s", s.work)
	} else {
		defer os.RemoveAll(s.work)
	}

	var testenv, kwok, populate string
	if err := s.timed("build", func() error {
		benchkit.Logf("building CoreDNS (cmd/coredns), populate, kube-testenv and kwok")
		s.coredns = filepath.Join(s.work, "coredns")
		populate = filepath.Join(s.work, "populate")
		if err := benchkit.GoCmd(ctx, s.root, "build", "-o", s.coredns, "./cmd/coredns"); err != nil {
			return err
		}
		if err := benchkit.GoCmd(ctx, s.test, "build", "-o", populate, "./populate"); err != nil {
			return err
		}
		paths, err := benchkit.TestenvBinaries(ctx, s.test, "kube-testenv", "kwok")
		if err == nil {
			testenv, kwok = paths[0], paths[1]
		}
		return err
	}); err != nil {
		return fmt.Errorf("build: %w", err)
	}

	res := &results{cfg: cfg}
	cp, err := s.controlPlane(ctx, testenv, populate)
	if err != nil {
		return err
	}
	if err := s.live(ctx, res); err != nil {
		return err
	}
	cp.Stop()
	if err := s.timed("cluster flips", func() error { return s.clusterFlips(ctx, res, testenv, kwok) }); err != nil {
		return fmt.Errorf("readiness flips on a -cluster control plane: %w", err)
	}
	if cfg.skipGo {
		res.goErr = errors.New("skipped (BENCH_SKIP_GO=1)")
	} else if err := s.timed("Go benchmarks", func() error { return s.goBench(ctx, res) }); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		res.goErr = err
		benchkit.Logf("Go benchmarks failed: %v", err)
	}
	res.phases = s.phases
	res.print(os.Stdout, s)
	benchkit.Logf("done")
	return nil
}

// datasetMarker records what a cached control-plane directory holds.
type datasetMarker struct {
	Testenv string `json:"testenv"`
	Dataset string `json:"dataset"`
}

// controlPlane starts kube-testenv and makes sure it holds the dataset.
func (s *suite) controlPlane(ctx context.Context, testenv, populate string) (*benchkit.Testenv, error) {
	cfg := s.cfg
	dir := filepath.Join(s.work, "controlplane")
	want := datasetMarker{Testenv: filepath.Base(testenv), Dataset: cfg.datasetName()}
	cached := false
	if !cfg.noCache {
		cacheRoot := os.Getenv("XDG_CACHE_HOME")
		if cacheRoot == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return nil, err
			}
			cacheRoot = filepath.Join(home, ".cache")
		}
		d := filepath.Join(cacheRoot, "headless", cfg.datasetName())
		if err := os.MkdirAll(filepath.Dir(d), 0o755); err != nil {
			return nil, err
		}
		// One run at a time per cached directory; a second run uses a
		// temporary one. The lock goes when this process exits.
		lock, err := os.OpenFile(d+".lock", os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			return nil, err
		}
		if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			benchkit.Logf("%s is in use by another run: using a temporary control plane", d)
			lock.Close()
		} else {
			dir = d
			var have datasetMarker
			if b, err := os.ReadFile(filepath.Join(d, "bench-dataset.json")); err == nil && json.Unmarshal(b, &have) == nil && have == want {
				cached = true
			} else if err := os.RemoveAll(d); err != nil {
				return nil, err
			}
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}

	var cp *benchkit.Testenv
	err := s.timed("control plane start", func() error {
		benchkit.Logf("starting kube-testenv in %s", dir)
		var err error
		cp, err = benchkit.StartTestenv(ctx, testenv, dir, filepath.Join(s.work, "kube-testenv.stderr"), 4*time.Minute)
		if err != nil {
			return err
		}
		s.kubeconfig, s.client = cp.Kubeconfig, cp.Client
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("control plane: %w", err)
	}
	if cached {
		benchkit.Logf("reusing the cached dataset %s", cfg.datasetName())
		return cp, nil
	}
	err = s.timed("populate", func() error {
		benchkit.Logf("creating %d headless and %d ClusterIP services of %d endpoints each in %d namespaces",
			cfg.headless, cfg.clusterIP, cfg.pods, cfg.namespaces)
		cmd := exec.CommandContext(ctx, populate, "-kubeconfig", s.kubeconfig, "-services", strconv.Itoa(cfg.headless),
			"-clusterip-services", strconv.Itoa(cfg.clusterIP), "-pods", strconv.Itoa(cfg.pods),
			"-namespaces", strconv.Itoa(cfg.namespaces), "-workers", "32", "-prefix", "bench")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("populate: %w", err)
		}
		if dir == filepath.Join(s.work, "controlplane") {
			return nil
		}
		b, _ := json.Marshal(want)
		return os.WriteFile(filepath.Join(dir, "bench-dataset.json"), b, 0o644)
	})
	return cp, err
}

// goBench runs the root package's benchmarks and keeps the median of each.
func (s *suite) goBench(ctx context.Context, res *results) error {
	benchkit.Logf("running the Go benchmarks (go test -bench, -count %d, -benchtime %s)", s.cfg.goCount, s.cfg.goBenchtime)
	args := []string{"test", "-run", "^$", "-bench", "^(BenchmarkServeDNS|BenchmarkSideBySide|BenchmarkSliceUpdate)$",
		"-benchmem", "-count", strconv.Itoa(s.cfg.goCount), "-benchtime", s.cfg.goBenchtime, "."}
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = a
		if strings.ContainsAny(a, "^$|()") {
			quoted[i] = "'" + a + "'"
		}
	}
	res.goCommand = "go " + strings.Join(quoted, " ")
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = s.root
	out, err := cmd.CombinedOutput()
	_ = os.WriteFile(filepath.Join(s.work, "gobench.txt"), out, 0o644)
	if err != nil {
		return fmt.Errorf("%v\n%s", err, benchkit.LastLines(string(out), 15))
	}
	res.goBench = parseGoBench(string(out))
	if len(res.goBench) == 0 {
		return errors.New("no benchmark results in the output of go test")
	}
	return nil
}

// cpuCount is for the report.
func cpuCount() int { return runtime.NumCPU() }
