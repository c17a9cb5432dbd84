package e2e

// Helpers for tests that run workloads on the shared cluster (fullCluster):
// kubectl, pods and their addresses, and pod readiness as a kubelet reports
// it. kwok plays the kubelets: a scheduled pod becomes Running and Ready at
// once, with an address from its node's pod CIDR (10.244.N.0/24 on
// kwok-node-N); a deleted pod stops being ready, then goes.

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/headlessdns/headless/test/internal/benchkit"

	core "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// podsReadyWithin is how long pods may take to be scheduled, run and be
// ready; a StatefulSet starts its pods one after the other.
const podsReadyWithin = time.Minute

// requireCluster fails the test unless cp runs controllers, scheduler and
// nodes.
func (cp *controlPlane) requireCluster(t *testing.T) {
	t.Helper()
	if cp.mode != fullCluster {
		t.Fatal("this needs a fullCluster control plane (controllers, scheduler, kwok nodes)")
	}
}

// kubectlCmd is the cluster's kubectl with args, against cp, for callers
// that want to set its input or read its error themselves.
func (cp *controlPlane) kubectlCmd(args ...string) *exec.Cmd {
	cmd := exec.Command(env.kubectl, append([]string{"--kubeconfig", cp.kubeconfig}, args...)...)
	cmd.Env = append(os.Environ(), "KUBECTL_KUBERC=false") // no ~/.kube/kuberc aliases or defaults
	return cmd
}

// kubectl runs kubectl with args against cp and returns its standard
// output; the test fails if kubectl fails.
func (cp *controlPlane) kubectl(t *testing.T, args ...string) string {
	t.Helper()
	cmd := cp.kubectlCmd(args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// apply applies YAML files with server-side apply, as kubectl apply
// --server-side does, and returns what kubectl printed.
func (cp *controlPlane) apply(t *testing.T, paths ...string) string {
	t.Helper()
	args := []string{"apply", "--server-side", "--force-conflicts"}
	for _, p := range paths {
		args = append(args, "-f", p)
	}
	return cp.kubectl(t, args...)
}

// applyYAML writes manifest to a file of the test and applies it to
// namespace ns.
func (cp *controlPlane) applyYAML(t *testing.T, ns, manifest string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "manifest.yaml")
	if err := os.WriteFile(path, []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	cp.kubectl(t, "apply", "--server-side", "-n", ns, "-f", path)
}

// workerNodes are the names of the nodes pods can run on (kwok-node-1 ...),
// sorted.
func (cp *controlPlane) workerNodes(t *testing.T) []string {
	t.Helper()
	cp.requireCluster(t)
	nodes, err := cp.client.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{
		LabelSelector: "!node-role.kubernetes.io/control-plane"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range nodes.Items {
		names = append(names, n.Name)
	}
	slices.Sort(names)
	return names
}

// podInfo is what a test usually wants of a pod.
type podInfo struct {
	Name, IP, Node string
	UID            types.UID
	Ready          bool // the Ready condition is True
	Terminating    bool // being deleted
}

func infoOf(p *core.Pod) podInfo {
	info := podInfo{Name: p.Name, IP: p.Status.PodIP, Node: p.Spec.NodeName, UID: p.UID, Terminating: p.DeletionTimestamp != nil}
	for _, c := range p.Status.Conditions {
		if c.Type == core.PodReady {
			info.Ready = c.Status == core.ConditionTrue
		}
	}
	return info
}

// pods lists the pods of namespace ns that match the label selector,
// sorted by name.
func (cp *controlPlane) pods(t *testing.T, ns, selector string) []podInfo {
	t.Helper()
	list, err := cp.client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	var out []podInfo
	for i := range list.Items {
		out = append(out, infoOf(&list.Items[i]))
	}
	slices.SortFunc(out, func(a, b podInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// waitPodsReady waits until exactly n pods of ns match the selector, every
// one Ready, with an address and not being deleted, and returns them
// sorted by name.
func (cp *controlPlane) waitPodsReady(t *testing.T, ns, selector string, n int) []podInfo {
	t.Helper()
	cp.requireCluster(t)
	var pods []podInfo
	eventually(t, podsReadyWithin, fmt.Sprintf("%d ready pods %s in %s", n, selector, ns), func() error {
		pods = cp.pods(t, ns, selector)
		if len(pods) != n {
			return fmt.Errorf("%d pods: %+v", len(pods), pods)
		}
		for _, p := range pods {
			if !p.Ready || p.IP == "" || p.Terminating {
				return fmt.Errorf("not ready: %+v", p)
			}
		}
		return nil
	})
	return pods
}

// setPodReady sets a pod's readiness as its kubelet would after a readiness
// probe failed or passed again (benchkit.SetPodReady: the status patch a
// kubelet sends).
func (cp *controlPlane) setPodReady(t *testing.T, ns, name string, ready bool) {
	t.Helper()
	cp.requireCluster(t)
	ctx := context.Background()
	pod, err := cp.client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := benchkit.SetPodReady(ctx, cp.client, pod, ready); err != nil {
		t.Fatalf("setting pod %s/%s ready=%v: %v", ns, name, ready, err)
	}
}

// controllerSlices are the endpointslice controller's slices of a service.
func (cp *controlPlane) controllerSlices(t *testing.T, ns, svc string) []discovery.EndpointSlice {
	t.Helper()
	list, err := cp.client.DiscoveryV1().EndpointSlices(ns).List(context.Background(), metav1.ListOptions{
		LabelSelector: discovery.LabelServiceName + "=" + svc + "," + discovery.LabelManagedBy + "=" + controllerManaged})
	if err != nil {
		t.Fatal(err)
	}
	return list.Items
}

// sliceReadiness is, by pod name, whether the controller's slices of a
// service say its endpoint is ready.
func (cp *controlPlane) sliceReadiness(t *testing.T, ns, svc string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, s := range cp.controllerSlices(t, ns, svc) {
		for _, ep := range s.Endpoints {
			if ep.TargetRef != nil {
				out[ep.TargetRef.Name] = ep.Conditions.Ready != nil && *ep.Conditions.Ready
			}
		}
	}
	return out
}

// webManifest is a headless Service and its StatefulSet, like the
// article's cassandra.
const webManifest = `apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  clusterIP: None
  selector:
    app: web
  ports:
  - name: http
    port: 80
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: web
  replicas: 3
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: nginx:1.27
        ports:
        - containerPort: 80
          name: http
`

// TestLocalCluster checks the shared cluster itself, through the helpers
// above: a StatefulSet's pods are scheduled on the kwok nodes with
// addresses from their nodes' pod CIDRs, the endpointslice controller
// writes their slice, a readiness change reaches the slice and DNS within a
// second, scaling and deleting pods work, and a namespace can be deleted.
func TestLocalCluster(t *testing.T) {
	cp := env.cluster
	cp.requireCluster(t)
	ctx := context.Background()
	workers := cp.workerNodes(t)
	if len(workers) < 3 {
		t.Fatalf("worker nodes %v, want at least three", workers)
	}
	cidrs := map[string]netip.Prefix{}
	for _, name := range workers {
		n, err := cp.client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		prefix, err := netip.ParsePrefix(n.Spec.PodCIDR)
		if err != nil || !netip.MustParsePrefix("10.244.0.0/16").Contains(prefix.Addr()) || prefix.Bits() != 24 {
			t.Fatalf("node %s: pod CIDR %q, want a /24 of 10.244.0.0/16", name, n.Spec.PodCIDR)
		}
		cidrs[name] = prefix
	}
	t.Logf("nodes and their pod CIDRs: %v", cidrs)

	ns := newNamespace(t, cp, "cluster")
	start := time.Now()
	cp.applyYAML(t, ns, webManifest)
	pods := cp.waitPodsReady(t, ns, "app=web", 3)
	t.Logf("three StatefulSet pods ready %s after kubectl apply: %+v", time.Since(start).Round(time.Millisecond), pods)
	for i, p := range pods {
		if p.Name != fmt.Sprintf("web-%d", i) {
			t.Errorf("pod %d is %s", i, p.Name)
		}
		if cidr, ok := cidrs[p.Node]; !ok || !cidr.Contains(netip.MustParseAddr(p.IP)) {
			t.Errorf("pod %s on node %q has %s, not from the node's pod CIDR %v", p.Name, p.Node, p.IP, cidr)
		}
	}
	eventually(t, 10*time.Second, "the controller's slice of three ready endpoints", func() error {
		got := cp.controllerSlices(t, ns, "web")
		if len(got) != 1 {
			return fmt.Errorf("%d slices", len(got))
		}
		if _, ok := got[0].Labels["service.kubernetes.io/headless"]; !ok {
			return fmt.Errorf("no headless label: %v", got[0].Labels)
		}
		if got := cp.sliceReadiness(t, ns, "web"); fmt.Sprint(got) != "map[web-0:true web-1:true web-2:true]" {
			return fmt.Errorf("endpoints %v", got)
		}
		return nil
	})

	s := startCoreDNS(t, cp, namespacedBlock(ns, ""))
	zone := "." + ns + ".svc.cluster.local."
	ips := func(pods []podInfo) []string {
		var out []string
		for _, p := range pods {
			out = append(out, p.IP)
		}
		return out
	}
	eventually(t, 5*time.Second, "the pods in DNS", func() error {
		return expectAnswer(s.addr, "udp", "web"+zone, dns.TypeA, dns.RcodeSuccess, ips(pods)...)
	})

	// Readiness, as a kubelet reports it, reaches the slice and DNS.
	for _, ready := range []bool{false, true} {
		changed := time.Now()
		cp.setPodReady(t, ns, "web-1", ready)
		want := ips(pods)
		if !ready {
			want = []string{pods[0].IP, pods[2].IP}
		}
		took := eventually(t, 5*time.Second, fmt.Sprintf("web-1 ready=%v in DNS", ready), func() error {
			return expectAnswer(s.addr, "udp", "web"+zone, dns.TypeA, dns.RcodeSuccess, want...)
		})
		if got := cp.sliceReadiness(t, ns, "web")["web-1"]; got != ready {
			t.Errorf("slice says web-1 ready=%v, want %v", got, ready)
		}
		if p := cp.pods(t, ns, "app=web")[1]; p.Ready != ready {
			t.Errorf("pod web-1 ready=%v, want %v: something overwrote the status", p.Ready, ready)
		}
		t.Logf("web-1 ready=%v: in the slice and in DNS %s after the status patch", ready, took.Round(time.Millisecond))
		if time.Since(changed) > visibleWithin {
			t.Errorf("web-1 ready=%v took %s to reach DNS, want within %s", ready, time.Since(changed).Round(time.Millisecond), visibleWithin)
		}
	}

	// Scaling up: two more pods, in DNS.
	cp.kubectl(t, "-n", ns, "scale", "statefulset", "web", "--replicas=5")
	pods = cp.waitPodsReady(t, ns, "app=web", 5)
	eventually(t, 5*time.Second, "five pods in DNS", func() error {
		return expectAnswer(s.addr, "udp", "web-4.web"+zone, dns.TypeA, dns.RcodeSuccess, pods[4].IP)
	})

	// Deleting a pod: it goes (kwok plays the kubelet's graceful stop), and
	// the StatefulSet makes it anew.
	old := pods[1]
	cp.kubectl(t, "-n", ns, "delete", "pod", "web-1", "--wait=false")
	eventually(t, podsReadyWithin, "web-1 made anew and ready", func() error {
		for _, p := range cp.pods(t, ns, "app=web") {
			if p.Name == "web-1" && p.UID != old.UID && p.Ready && p.IP != "" {
				return nil
			}
		}
		return fmt.Errorf("not yet: %+v", cp.pods(t, ns, "app=web"))
	})
	pods = cp.waitPodsReady(t, ns, "app=web", 5)
	eventually(t, 5*time.Second, "the new web-1 in DNS", func() error {
		return expectAnswer(s.addr, "udp", "web-1.web"+zone, dns.TypeA, dns.RcodeSuccess, pods[1].IP)
	})

	// Namespaces are deleted for good: the namespace controller empties it
	// and the garbage collector takes what the StatefulSet owned.
	if err := cp.client.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	took := eventually(t, time.Minute, "the namespace gone", func() error {
		_, err := cp.client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there (%v)", err)
	})
	t.Logf("namespace with a StatefulSet of five pods deleted in %s", took.Round(time.Millisecond))
	eventually(t, 5*time.Second, "the service gone from DNS", func() error {
		return expectAnswer(s.addr, "udp", "web"+zone, dns.TypeA, dns.RcodeNameError)
	})
}
