package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	core "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/component-base/cli"
	kcm "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
)

// The cluster's address plan, as kind lays it out: pods in 10.244.0.0/16,
// one /24 per node, node i having 10.244.i.0/24 (the control-plane node is
// node 0, so kwok-node-1 has 10.244.1.0/24), Services in 10.96.0.0/16 (the
// apiserver's range).
const (
	clusterCIDR     = "10.244.0.0/16"
	nodeCIDRMask    = "24"
	serviceCIDR     = "10.96.0.0/16"
	controlPlane    = "control-plane"
	workerPrefix    = "kwok-node-"
	nodeIPBase      = "172.18.0." // node i's InternalIP is .(i+2), the control plane's .2
	kwokNodeKey     = "kwok.x-k8s.io/node"
	kwokNodeValue   = "fake"
	nodeIPKey       = "kube-testenv.headless.test/internal-ip"
	controlPlaneKey = "node-role.kubernetes.io/control-plane"
)

// components are the subcommands that turn this binary into one of the
// cluster's children.
var components = map[string]func() *cobra.Command{
	"kube-controller-manager": kcm.NewControllerManagerCommand,
	"kube-scheduler":          func() *cobra.Command { return scheduler.NewSchedulerCommand() },
}

// runComponent runs a Kubernetes component with its own command line, as
// its own binary would. It ends when its stdin (a pipe from the parent
// kube-testenv) reaches EOF, or on SIGTERM.
func runComponent(newCommand func() *cobra.Command, args []string) int {
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	cmd := newCommand()
	cmd.SetArgs(args)
	return cli.Run(cmd)
}

type clusterConfig struct {
	dir        string
	ports      ports
	kubeconfig string // admin
	kwok       string // the kwok binary
	nodes      int
	verbosity  int

	controllerManagerArgs, schedulerArgs, kwokArgs stringList
}

// cluster is the children of a -cluster kube-testenv, each kept running by
// its own supervisor goroutine.
type cluster struct {
	cfg    clusterConfig
	nodes  []string // control-plane, kwok-node-1, ...
	client kubernetes.Interface
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	spawn  *spawner
}

// child is one supervised process.
type child struct {
	name   string
	path   string
	args   []string
	env    []string
	stdin  bool                            // give it a pipe on stdin that closes when we go
	before func(ctx context.Context) error // run before each start
}

func startCluster(cfg clusterConfig) (*cluster, error) {
	ctx, cancel := context.WithCancel(context.Background())
	c := &cluster{cfg: cfg, ctx: ctx, cancel: cancel, spawn: newSpawner(), nodes: []string{controlPlane}}
	for i := 1; i <= cfg.nodes; i++ {
		c.nodes = append(c.nodes, workerPrefix+strconv.Itoa(i))
	}
	rc, err := clientcmd.BuildConfigFromFlags("", cfg.kubeconfig)
	if err != nil {
		return nil, err
	}
	rc.QPS, rc.Burst = 100, 200
	if c.client, err = kubernetes.NewForConfig(rc); err != nil {
		return nil, err
	}
	if err := writeKwokConfig(filepath.Join(cfg.dir, kwokConfigFile)); err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		self = "/proc/self/exe"
	}
	kwokHome := filepath.Join(cfg.dir, "kwok")
	for _, ch := range []child{
		{name: "kube-controller-manager", path: self, args: append(append([]string{"kube-controller-manager"}, c.controllerManagerArgs()...), cfg.controllerManagerArgs...), stdin: true},
		{name: "kube-scheduler", path: self, args: append(append([]string{"kube-scheduler"}, c.schedulerArgs()...), cfg.schedulerArgs...), stdin: true},
		// kwok reads ~/.kwok/kwok.yaml when there is one: give it a home of
		// its own, so that only our configuration counts.
		{name: "kwok", path: cfg.kwok, args: append(c.kwokArgs(), cfg.kwokArgs...), env: []string{"HOME=" + kwokHome}, before: c.forgetLeases},
	} {
		c.wg.Go(func() { c.supervise(ch) })
	}
	return c, nil
}

// forgetLeases deletes the nodes' Leases, which hold a previous kwok's
// identity (a random one per process): a new kwok manages a node only once
// it holds its Lease, so it would otherwise wait for the old ones to
// expire, doing nothing for the nodes' pods meanwhile.
func (c *cluster) forgetLeases(ctx context.Context) error {
	for _, name := range c.nodes {
		err := c.client.CoordinationV1().Leases(core.NamespaceNodeLease).Delete(ctx, name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting the lease of node %s: %w", name, err)
		}
	}
	return nil
}

// stop ends every child and waits for them.
func (c *cluster) stop() {
	c.cancel()
	c.wg.Wait()
}

func (c *cluster) controllerManagerArgs() []string {
	cfg := c.cfg
	return []string{
		"--kubeconfig=" + cfg.kubeconfig,
		"--authentication-kubeconfig=" + cfg.kubeconfig,
		"--authorization-kubeconfig=" + cfg.kubeconfig,
		// Client certificates and front proxies are not used here: do not
		// look for their CA in kube-system (the apiserver publishes none).
		"--authentication-skip-lookup=true",
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(cfg.ports.ControllerManager),
		"--cert-dir=" + filepath.Join(cfg.dir, certDir, "kube-controller-manager"),
		"--leader-elect=false",
		// What a cluster of StatefulSets, Deployments and headless Services
		// needs, and what keeps its nodes and namespaces in order.
		"--controllers=" +
			"statefulset-controller,replicaset-controller,deployment-controller,daemonset-controller," +
			"job-controller,cronjob-controller,disruption-controller," +
			"endpointslice-controller,endpointslice-mirroring-controller,endpoints-controller," +
			"node-ipam-controller,node-lifecycle-controller,taint-eviction-controller,pod-garbage-collector-controller," +
			"namespace-controller,garbage-collector-controller," +
			"serviceaccount-controller,serviceaccount-token-controller,root-ca-certificate-publisher-controller," +
			"clusterrole-aggregation-controller",
		"--allocate-node-cidrs=true",
		"--cluster-cidr=" + clusterCIDR,
		"--node-cidr-mask-size=" + nodeCIDRMask,
		"--service-cluster-ip-range=" + serviceCIDR,
		"--service-account-private-key-file=" + filepath.Join(cfg.dir, saKeyFile),
		"--root-ca-file=" + filepath.Join(cfg.dir, certDir, servingCertFile),
		// A pod's readiness reaches its EndpointSlice at once: no batching
		// (the default, said out loud), and enough workers.
		"--endpointslice-updates-batch-period=0s",
		"--mirroring-endpointslice-updates-batch-period=0s",
		"--endpoint-updates-batch-period=0s",
		"--concurrent-service-endpoint-syncs=10",
		"--concurrent-endpoint-syncs=10",
		"--concurrent-statefulset-syncs=10",
		"--concurrent-namespace-syncs=10",
		"--concurrent-gc-syncs=20",
		// kwok renews each node's Lease every few seconds; a busy machine
		// may delay that, so a node is only declared gone after a minute.
		// The controller looks every second, so a new node loses its
		// not-ready taint as soon as kwok reports it Ready.
		"--node-monitor-period=1s",
		"--node-monitor-grace-period=60s",
		"--node-startup-grace-period=60s",
		// Tests create and delete namespaces and services by the hundred.
		"--kube-api-qps=200",
		"--kube-api-burst=400",
		"--v=" + strconv.Itoa(cfg.verbosity),
	}
}

func (c *cluster) schedulerArgs() []string {
	cfg := c.cfg
	return []string{
		"--kubeconfig=" + cfg.kubeconfig,
		"--authentication-kubeconfig=" + cfg.kubeconfig,
		"--authorization-kubeconfig=" + cfg.kubeconfig,
		// Client certificates and front proxies are not used here: do not
		// look for their CA in kube-system (the apiserver publishes none).
		"--authentication-skip-lookup=true",
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(cfg.ports.Scheduler),
		"--cert-dir=" + filepath.Join(cfg.dir, certDir, "kube-scheduler"),
		"--leader-elect=false",
		"--kube-api-qps=200",
		"--kube-api-burst=400",
		"--v=" + strconv.Itoa(cfg.verbosity),
	}
}

func (c *cluster) kwokArgs() []string {
	cfg := c.cfg
	return []string{
		"--kubeconfig=" + cfg.kubeconfig,
		"--config=" + filepath.Join(cfg.dir, kwokConfigFile),
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector=" + kwokNodeKey + "=" + kwokNodeValue,
		// Heartbeats as a kubelet sends them, through the node's Lease.
		"--node-lease-duration-seconds=40",
		// Only for pods on a node without a pod CIDR, which never happens
		// here: every node gets one from the node-ipam controller.
		"--cidr=10.244.255.0/24",
		"--node-ip=" + nodeIPBase + "1",
	}
}

// supervise runs ch until the cluster stops, starting it again (after a
// growing pause) whenever it exits.
func (c *cluster) supervise(ch child) {
	pause := time.Second
	logPath := filepath.Join(c.cfg.dir, ch.name+".log")
	for {
		started := time.Now()
		err := c.runOnce(ch, logPath)
		if c.ctx.Err() != nil {
			return
		}
		if time.Since(started) > time.Minute {
			pause = time.Second
		}
		logf("%s exited (%v); starting it again in %v (log: %s)", ch.name, err, pause, logPath)
		select {
		case <-c.ctx.Done():
			return
		case <-time.After(pause):
		}
		pause = min(2*pause, 30*time.Second)
	}
}

// runOnce runs ch until it exits or the cluster stops; then it asks it to
// stop (SIGTERM), and kills it if it is still there after two seconds.
func (c *cluster) runOnce(ch child, logPath string) error {
	if err := os.MkdirAll(filepath.Dir(logPath), 0o700); err != nil {
		return err
	}
	log, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer log.Close()
	fmt.Fprintf(log, "\n==== %s started by kube-testenv %s ====\n", ch.name, time.Now().Format(time.RFC3339))
	cmd := exec.Command(ch.path, ch.args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), ch.env...)
	// Its own process group, so that a Ctrl-C in a terminal reaches only
	// kube-testenv, which then stops its children in order; and SIGKILL
	// from the kernel if kube-testenv dies without doing so.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if ch.before != nil {
		if err := ch.before(c.ctx); err != nil {
			return err
		}
	}
	var stdin io.WriteCloser
	if ch.stdin {
		if stdin, err = cmd.StdinPipe(); err != nil {
			return err
		}
		defer stdin.Close()
	}
	if err := c.spawn.start(cmd); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		return err
	case <-c.ctx.Done():
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		return err
	case <-time.After(2 * time.Second):
		_ = cmd.Process.Kill()
		return <-exited
	}
}

// spawner starts processes from one OS thread that lives as long as the
// process. PR_SET_PDEATHSIG fires when the thread that forked a child ends,
// not the process; Go may end threads, but never this locked one.
type spawner struct{ reqs chan spawnRequest }

type spawnRequest struct {
	cmd  *exec.Cmd
	done chan error
}

func newSpawner() *spawner {
	s := &spawner{reqs: make(chan spawnRequest)}
	go func() {
		runtime.LockOSThread() // never unlocked, and this goroutine never returns
		for r := range s.reqs {
			r.done <- r.cmd.Start()
		}
	}()
	return s
}

func (s *spawner) start(cmd *exec.Cmd) error {
	done := make(chan error, 1)
	s.reqs <- spawnRequest{cmd, done}
	return <-done
}

// waitReady makes the nodes (once: a restart finds them), then waits until
// the cluster can run pods: every node Ready and untainted but for the
// control plane's own taint, its Lease held by this kwok, the default
// ServiceAccount there, the controller-manager healthy and the scheduler
// ready.
func (c *cluster) waitReady(ctx context.Context, stopCh <-chan struct{}, apiErr <-chan error) error {
	cfg, client := c.cfg, c.client
	// poll calls check every 50ms until it says done.
	poll := func(what string, check func() (bool, error)) error {
		var last error
		for {
			done, err := check()
			if done {
				return nil
			}
			if err != nil {
				last = err
			}
			select {
			case <-ctx.Done():
				if last != nil {
					return fmt.Errorf("%s: %v (last error: %v)", what, ctx.Err(), last)
				}
				return fmt.Errorf("%s: %v", what, ctx.Err())
			case err := <-apiErr:
				return fmt.Errorf("kube-apiserver exited: %v", err)
			case <-stopCh:
				return errStopped
			case <-time.After(50 * time.Millisecond):
			}
		}
	}

	names := c.nodes
	for i, name := range names {
		err := poll("node "+name, func() (bool, error) {
			_, err := client.CoreV1().Nodes().Create(ctx, newNode(name, i), metav1.CreateOptions{})
			return err == nil || apierrors.IsAlreadyExists(err), err
		})
		if err != nil {
			return err
		}
	}
	for _, name := range names {
		err := poll("node "+name+" Ready", func() (bool, error) {
			n, err := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			return nodeUsable(n), nil
		})
		if err != nil {
			return err
		}
		// A Lease exists only once this kwok took the node on (the
		// previous ones were deleted before it started).
		err = poll("kwok holding the lease of node "+name, func() (bool, error) {
			_, err := client.CoordinationV1().Leases(core.NamespaceNodeLease).Get(ctx, name, metav1.GetOptions{})
			return err == nil, err
		})
		if err != nil {
			return err
		}
	}
	err := poll("the default ServiceAccount", func() (bool, error) {
		_, err := client.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, err
	})
	if err != nil {
		return err
	}
	insecure := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		// Their serving certificates are self-signed; this only asks
		// whether they are up.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
	}}
	defer insecure.CloseIdleConnections()
	for _, h := range []struct {
		what string
		url  string
	}{
		{"kube-controller-manager healthy", fmt.Sprintf("https://127.0.0.1:%d/healthz", cfg.ports.ControllerManager)},
		{"kube-scheduler ready", fmt.Sprintf("https://127.0.0.1:%d/readyz", cfg.ports.Scheduler)},
	} {
		err := poll(h.what, func() (bool, error) { return get(ctx, insecure, h.url, "") })
		if err != nil {
			return err
		}
	}
	return nil
}

// nodeUsable reports whether a node is Ready and carries no taint but the
// control plane's.
func nodeUsable(n *core.Node) bool {
	ready := false
	for _, cond := range n.Status.Conditions {
		if cond.Type == core.NodeReady && cond.Status == core.ConditionTrue {
			ready = true
		}
	}
	for _, t := range n.Spec.Taints {
		if t.Key != controlPlaneKey {
			return false
		}
	}
	return ready
}

// newNode is node i (0 the control plane) as a kubelet would register it,
// marked for kwok, which fills in its status.
//
// Its pod CIDR, 10.244.i.0/24, is set here rather than left to the
// node-ipam controller, which only records it (it hands out ranges to the
// nodes others add). Left to itself the controller gives ranges in the
// order it happens to process nodes, and skips one whenever a node changes
// (the node-lifecycle controller's taints, kwok's status) before the
// controller sees its own update: kwok-node-2 would now and then get
// 10.244.3.0/24.
func newNode(name string, i int) *core.Node {
	cidr := fmt.Sprintf("10.244.%d.0/24", i)
	n := &core.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: name,
			Labels: map[string]string{
				"kubernetes.io/hostname": name,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     runtime.GOARCH,
				"type":                   "kwok",
			},
			Annotations: map[string]string{
				kwokNodeKey:                    kwokNodeValue,
				nodeIPKey:                      nodeIPBase + strconv.Itoa(i+2),
				"node.alpha.kubernetes.io/ttl": "0",
			},
		},
		Spec: core.NodeSpec{PodCIDR: cidr, PodCIDRs: []string{cidr}},
	}
	if name == controlPlane {
		n.Labels[controlPlaneKey] = ""
		n.Spec.Taints = []core.Taint{{Key: controlPlaneKey, Effect: core.TaintEffectNoSchedule}}
	}
	return n
}
