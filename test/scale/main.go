// Command scale is `make scale`: the headless plugin and the stock
// kubernetes plugin side by side on a local cluster shaped like the one of
// Kubernetes' 5,000-node "load" scalability test, scaled to one machine.
// See README.md beside this file for what it measures and how.
//
// Progress goes to stderr; the table goes to stdout and, with the raw
// figures (results.json), the heap profiles and every log, to the output
// directory it names at the start.
//
// Environment variables (defaults in brackets; SCALE_QUICK=1 changes the
// defaults to a run of a few minutes):
//
//	SCALE_QUICK=1        a short run: 20 nodes, small namespaces, sizes 1,2, 20-pod rollout, 3s dnsperf runs
//	SCALE_NODES          kwok worker nodes [250] (at most 250)
//	SCALE_SIZES          namespaces of 1,000 pods at each measured size, ascending [10,25]
//	SCALE_ROLLOUT_PODS   pods of the StatefulSet rolled for programming latency [100]
//	SCALE_ROUNDS         interleaved dnsperf rounds [3]
//	SCALE_DURATION       dnsperf seconds per run [10]
//	SCALE_LATENCY_QPS    the fixed rate of the latency runs [5000]
//	SCALE_SETTLE         seconds from the first right answer to the memory readings [10]
//	SCALE_QUERIES        lines of each dnsperf data file [100000]
//	SCALE_SEED           seed of the query mixes [1]
//	SCALE_OUT            output directory [/tmp/headless-scale-DATE]
//	SCALE_KEEP_CLUSTER=1 keep the cluster's state directory (etcd data) in the output directory
//
// Run from the repository root: `make scale`, or `cd test && go run ./scale`.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/headlessdns/headless/test/internal/benchkit"
)

type config struct {
	quick       bool
	nodes       int
	sizes       []int // units at each measured size
	unit        []group
	rolloutPods int
	rounds      int
	latencyQPS  int
	duration    time.Duration
	settle      time.Duration
	queries     int
	seed        uint64
	out         string
	keepCluster bool
}

func loadConfig() (config, error) {
	c := config{nodes: 250, sizes: []int{10, 25}, unit: fullUnit, rolloutPods: 100, rounds: 3, latencyQPS: 5000,
		duration: 10 * time.Second, settle: 10 * time.Second, queries: 100000, seed: 1}
	c.quick = os.Getenv("SCALE_QUICK") == "1"
	if c.quick {
		c.nodes, c.sizes, c.unit, c.rolloutPods, c.rounds = 20, []int{1, 2}, quickUnit, 20, 1
		c.duration, c.settle, c.queries, c.latencyQPS = 3*time.Second, 3*time.Second, 20000, 2000
	}
	var env benchkit.Env
	env.Int("SCALE_NODES", &c.nodes, 1)
	env.Int("SCALE_ROLLOUT_PODS", &c.rolloutPods, 2)
	env.Int("SCALE_ROUNDS", &c.rounds, 1)
	env.Int("SCALE_LATENCY_QPS", &c.latencyQPS, 100)
	env.Int("SCALE_QUERIES", &c.queries, 100)
	env.Seconds("SCALE_DURATION", &c.duration)
	env.Seconds("SCALE_SETTLE", &c.settle)
	env.Seed("SCALE_SEED", &c.seed)
	if s := os.Getenv("SCALE_SIZES"); s != "" {
		c.sizes = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 || (len(c.sizes) > 0 && n <= c.sizes[len(c.sizes)-1]) {
				env.Fail(fmt.Errorf("SCALE_SIZES=%q: want ascending positive integers, comma-separated", s))
				break
			}
			c.sizes = append(c.sizes, n)
		}
	}
	if len(c.sizes) < 2 {
		env.Fail(errors.New("SCALE_SIZES: at least two sizes, for the marginal cost"))
	}
	if c.nodes > 250 {
		env.Fail(errors.New("SCALE_NODES: at most 250 (one /24 of 10.244.0.0/16 per node)"))
	}
	c.out = os.Getenv("SCALE_OUT")
	if c.out == "" {
		c.out = filepath.Join(os.TempDir(), "headless-scale-"+time.Now().Format("20060102-150405"))
	}
	c.keepCluster = os.Getenv("SCALE_KEEP_CLUSTER") == "1"
	return c, env.Err()
}

func main() {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	err := run(ctx)
	interrupted := ctx.Err() != nil
	cancel()
	benchkit.StopAll()
	if err != nil {
		if interrupted {
			fmt.Fprintln(os.Stderr, "scale: interrupted")
			os.Exit(130)
		}
		fmt.Fprintf(os.Stderr, "scale: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	h := &harness{cfg: cfg, res: &results{Config: cfg.summary()}}
	if h.root, h.test, err = benchkit.Locate(); err != nil {
		return err
	}
	if h.cpuServer, h.cpuLoad, err = benchkit.Tools(); err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.out, 0o755); err != nil {
		return err
	}
	benchkit.Logf("output directory: %s", cfg.out)
	h.res.Machine = machine()
	h.res.LoadStart = loadAverage()
	defer h.save()
	if !cfg.keepCluster {
		// The cluster's state (etcd) goes on any exit, once every process
		// has stopped.
		defer func() {
			benchkit.StopAll()
			_ = os.RemoveAll(filepath.Join(cfg.out, "cluster"))
		}()
	}
	return h.all(ctx)
}
