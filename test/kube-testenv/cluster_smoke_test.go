package main_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// children are the process IDs of pid's children, by their command name
// (kube-controller-manager, kube-scheduler, kwok).
func children(t *testing.T, pid int) map[string]int {
	t.Helper()
	out := map[string]int{}
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		data, err := os.ReadFile(task)
		if err != nil {
			continue // the thread ended
		}
		for _, field := range strings.Fields(string(data)) {
			child, _ := strconv.Atoi(field)
			cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", child))
			if err != nil {
				continue
			}
			args := strings.Split(string(cmdline), "\x00")
			name := filepath.Base(args[0])
			if strings.HasPrefix(name, "kwok") {
				name = "kwok"
			} else if len(args) > 1 {
				name = args[1] // kube-testenv's subcommand
			}
			out[name] = child
		}
	}
	return out
}

// gone reports whether a process has exited (it may stay a zombie when its
// new parent does not reap it).
func gone(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// pid (comm) state ...: the state follows the last ')'.
	s := string(stat)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(fields) > 0 && (fields[0] == "Z" || fields[0] == "X")
}

func waitFor(t *testing.T, timeout time.Duration, what string, check func() error) {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		err := check()
		if err == nil {
			t.Logf("%s: after %v", what, time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runningPod creates a bare pod and waits until the scheduler has placed
// it and kwok has run it; it returns the pod.
func runningPod(t *testing.T, cs kubernetes.Interface, name string) *corev1.Pod {
	t.Helper()
	ctx := context.Background()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"app": "smoke"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox:1.36"}}},
	}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "pod "+name+" running with an address", func() error {
		var err error
		if pod, err = cs.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{}); err != nil {
			return err
		}
		if pod.Status.Phase != corev1.PodRunning || pod.Status.PodIP == "" {
			return fmt.Errorf("phase %q, node %q, IP %q", pod.Status.Phase, pod.Spec.NodeName, pod.Status.PodIP)
		}
		return nil
	})
	return pod
}

// TestClusterSmoke starts kube-testenv -cluster and checks the nodes, their
// pod CIDRs and the pods' addresses; that a child which dies is started
// again; that the children die with kube-testenv even when it is killed;
// and that a restart on the same state keeps the pods and their addresses.
func TestClusterSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	paths := build(t, "kube-testenv", "kwok")
	bin, kwok := paths[0], paths[1]
	dir := t.TempDir()
	ctx := context.Background()

	env, took := startTestenv(t, bin, dir, "-cluster", "-kwok", kwok)
	t.Logf("cluster ready after %v", took)
	cs := kubernetes.NewForConfigOrDie(restConfig(t, env.kubeconfig))
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cidrs := map[string]string{}
	for _, n := range nodes.Items {
		cidrs[n.Name] = n.Spec.PodCIDR
	}
	want := map[string]string{"control-plane": "10.244.0.0/24", "kwok-node-1": "10.244.1.0/24", "kwok-node-2": "10.244.2.0/24", "kwok-node-3": "10.244.3.0/24"}
	if fmt.Sprint(cidrs) != fmt.Sprint(want) {
		t.Fatalf("nodes and pod CIDRs %v, want %v", cidrs, want)
	}

	inCIDR := func(p *corev1.Pod) {
		t.Helper()
		if !netip.MustParsePrefix(cidrs[p.Spec.NodeName]).Contains(netip.MustParseAddr(p.Status.PodIP)) {
			t.Errorf("pod %s on %s has %s, not from %s", p.Name, p.Spec.NodeName, p.Status.PodIP, cidrs[p.Spec.NodeName])
		}
		if p.Spec.NodeName == "control-plane" {
			t.Errorf("pod %s on the tainted control-plane node", p.Name)
		}
	}
	p1 := runningPod(t, cs, "p1")
	inCIDR(p1)

	kids := children(t, env.cmd.Process.Pid)
	if len(kids) != 3 || kids["kube-controller-manager"] == 0 || kids["kube-scheduler"] == 0 || kids["kwok"] == 0 {
		t.Fatalf("children %v, want kube-controller-manager, kube-scheduler and kwok", kids)
	}
	// A child that dies is started again.
	if err := syscall.Kill(kids["kube-scheduler"], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "a new kube-scheduler", func() error {
		now := children(t, env.cmd.Process.Pid)
		if now["kube-scheduler"] == 0 || now["kube-scheduler"] == kids["kube-scheduler"] {
			return fmt.Errorf("children %v", now)
		}
		return nil
	})
	p2 := runningPod(t, cs, "p2")
	inCIDR(p2)
	kids = children(t, env.cmd.Process.Pid)

	// Killed without a chance to stop them, kube-testenv takes its
	// children along (PR_SET_PDEATHSIG).
	if err := env.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the children gone with their parent", func() error {
		for name, pid := range kids {
			if !gone(pid) {
				return fmt.Errorf("%s (pid %d) is still there", name, pid)
			}
		}
		return nil
	})

	// Started again on the same state: the pods are still there, running
	// with the same addresses, and a new pod gets an address of its own.
	env2, took := startTestenv(t, bin, dir, "-cluster", "-kwok", kwok)
	t.Logf("restart: cluster ready after %v", took)
	cs = kubernetes.NewForConfigOrDie(restConfig(t, env2.kubeconfig))
	for _, before := range []*corev1.Pod{p1, p2} {
		after, err := cs.CoreV1().Pods("default").Get(ctx, before.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if after.UID != before.UID || after.Status.PodIP != before.Status.PodIP || after.Status.Phase != corev1.PodRunning {
			t.Errorf("pod %s after the restart: %s %s %s, before %s %s", before.Name, after.UID, after.Status.Phase, after.Status.PodIP, before.UID, before.Status.PodIP)
		}
	}
	p3 := runningPod(t, cs, "p3")
	inCIDR(p3)
	if p3.Status.PodIP == p1.Status.PodIP || p3.Status.PodIP == p2.Status.PodIP {
		t.Errorf("p3 has %s, an address already in use (p1 %s, p2 %s)", p3.Status.PodIP, p1.Status.PodIP, p2.Status.PodIP)
	}

	// Deleting a pod: kwok stops it and removes it, as a kubelet would.
	if err := cs.CoreV1().Pods("default").Delete(ctx, "p1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "p1 gone", func() error {
		if _, err := cs.CoreV1().Pods("default").Get(ctx, "p1", metav1.GetOptions{}); err == nil {
			return fmt.Errorf("still there")
		}
		return nil
	})

	// Closing stdin stops it, children first.
	kids = children(t, env2.cmd.Process.Pid)
	_ = env2.stdin.Close()
	t.Logf("stdin EOF: exited after %v", env2.waitExit(t, "stdin EOF"))
	for name, pid := range kids {
		if !gone(pid) {
			t.Errorf("%s (pid %d) outlived kube-testenv", name, pid)
		}
	}
}
