package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/miekg/dns"
	apps "k8s.io/api/apps/v1"
	core "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/headlessdns/headless/test/internal/benchkit"
)

// flipResult is the readiness-flip phase: DNS programming latency as
// Kubernetes defines it, from a pod's readiness change through the real
// endpointslice controller to the first DNS answer that reflects it.
type flipResult struct {
	pods     int
	headless []time.Duration // status patch start → first right answer
	k8s      []time.Duration
	patch    []time.Duration // the status patch alone
}

// flipServers are the two CoreDNS processes of the phase, both running at
// once on the same cluster.
var flipServers = []struct{ key, block string }{
	{"headless", "    headless cluster.local in-addr.arpa ip6.arpa {\n        kubeconfig %s\n    }\n"},
	{"kubernetes", "    kubernetes cluster.local in-addr.arpa ip6.arpa {\n        kubeconfig %s\n    }\n"},
}

// clusterFlips starts a -cluster control plane of its own (kube-testenv
// with the real controller-manager and scheduler, and kwok nodes), creates
// a headless Service and a StatefulSet of cfg.flipPods pods, starts a
// CoreDNS with headless and one with kubernetes (same binary, both running
// at once), and makes cfg.flips readiness changes, each a status patch of
// one pod as its kubelet would send, timed from just before the patch to
// the first answer of each server (asked every millisecond) with the
// service's new address set.
func (s *suite) clusterFlips(ctx context.Context, res *results, testenv, kwok string) error {
	cfg := s.cfg
	dir := filepath.Join(s.work, "cluster")
	benchkit.Logf("readiness flips: starting kube-testenv -cluster (controller-manager, scheduler, 3 kwok nodes)")
	cp, err := benchkit.StartTestenv(ctx, testenv, dir, filepath.Join(s.work, "kube-testenv-cluster.stderr"), 4*time.Minute,
		"-cluster", "-kwok", kwok, "-nodes", "3")
	if err != nil {
		return err
	}
	defer cp.Stop()
	client := cp.Client
	const ns, name = "flips", "web"
	if _, err := client.CoreV1().Namespaces().Create(ctx, &core.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	labels := map[string]string{"app": name}
	svc := &core.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: core.ServiceSpec{ClusterIP: core.ClusterIPNone, Selector: labels,
			Ports: []core.ServicePort{{Name: "http", Port: 80}}},
	}
	if _, err := client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return err
	}
	replicas := int32(cfg.flipPods)
	sts := &apps.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: apps.StatefulSetSpec{
			ServiceName: name, Replicas: &replicas, PodManagementPolicy: apps.ParallelPodManagement,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: core.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: core.PodSpec{Containers: []core.Container{{Name: "web", Image: "nginx:1.27",
					Ports: []core.ContainerPort{{Name: "http", ContainerPort: 80}}}}},
			},
		},
	}
	if _, err := client.AppsV1().StatefulSets(ns).Create(ctx, sts, metav1.CreateOptions{}); err != nil {
		return err
	}
	pods, err := benchkit.WaitPodsReady(ctx, client, ns, "app="+name, cfg.flipPods, 3*time.Minute, func(n int) {
		benchkit.Logf("readiness flips: %d of %d pods ready", n, cfg.flipPods)
	})
	if err != nil {
		return err
	}
	ready := map[string]bool{}
	for _, p := range pods {
		ready[p.Name] = true
	}
	serviceA := func() benchkit.Question {
		q := benchkit.Question{Name: name + "." + ns + ".svc." + benchkit.Zone, Qtype: dns.TypeA}
		for _, p := range pods {
			if ready[p.Name] {
				q.Want = append(q.Want, p.Status.PodIP)
			}
		}
		slices.Sort(q.Want)
		return q
	}

	addrs := make([]string, len(flipServers))
	for i, f := range flipServers {
		port, err := benchkit.FreePort()
		if err != nil {
			return err
		}
		addrs[i] = "127.0.0.1:" + strconv.Itoa(port)
		corefile := filepath.Join(s.work, "flips-"+f.key+".Corefile")
		text := fmt.Sprintf(".:%d {\n    bind 127.0.0.1\n%s}\n", port, fmt.Sprintf(f.block, cp.Kubeconfig))
		if err := os.WriteFile(corefile, []byte(text), 0o644); err != nil {
			return err
		}
		p, err := benchkit.StartProc("CoreDNS flips-"+f.key, filepath.Join(s.work, "flips-"+f.key+".log"),
			[]string{"GOMAXPROCS=1"}, s.coredns, "-conf", corefile)
		if err != nil {
			return err
		}
		defer p.Stop()
	}
	for i, f := range flipServers {
		if _, err := benchkit.WaitCorrect(ctx, addrs[i], serviceA(), false, 5*time.Millisecond, time.Now().Add(time.Minute)); err != nil {
			return fmt.Errorf("CoreDNS with %s: %w\n%s", f.key, err, benchkit.Tail(filepath.Join(s.work, "flips-"+f.key+".log"), 10))
		}
	}
	benchkit.Logf("readiness flips: %d pods ready, both servers answering; %d flips", len(pods), cfg.flips)

	r := &flipResult{pods: len(pods)}
	res.flips = r
	for i := range cfg.flips {
		// Pairs: a pod goes not ready, then ready again; a prime stride
		// spreads them over the pods.
		p := &pods[(i/2*7)%len(pods)]
		to := i%2 == 1
		ready[p.Name] = to
		q := serviceA()
		type seen struct {
			at  time.Time
			err error
		}
		answers := make([]chan seen, len(addrs))
		fctx, cancel := context.WithCancel(ctx)
		t0 := time.Now()
		for k, addr := range addrs {
			answers[k] = make(chan seen, 1)
			go func() {
				at, err := benchkit.WaitCorrect(fctx, addr, q, false, time.Millisecond, t0.Add(30*time.Second))
				answers[k] <- seen{at, err}
			}()
		}
		err := benchkit.SetPodReady(ctx, client, p, to)
		patched := time.Since(t0)
		if err != nil {
			cancel()
		}
		var took [2]time.Duration
		for k := range addrs {
			a := <-answers[k]
			if a.err != nil && err == nil {
				err = fmt.Errorf("CoreDNS with %s, flip %d (%s ready=%v): %w", flipServers[k].key, i+1, p.Name, to, a.err)
			}
			took[k] = a.at.Sub(t0)
		}
		cancel()
		if err != nil {
			return err
		}
		r.patch = append(r.patch, patched)
		r.headless = append(r.headless, took[0])
		r.k8s = append(r.k8s, took[1])
		if (i+1)%50 == 0 || i+1 == cfg.flips {
			benchkit.Logf("readiness flips: %d of %d; p50 headless %.1f ms, kubernetes %.1f ms", i+1, cfg.flips,
				benchkit.Ms(benchkit.Percentile(r.headless, 50)), benchkit.Ms(benchkit.Percentile(r.k8s, 50)))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}
