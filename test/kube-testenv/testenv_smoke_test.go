package main_test

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// testenv is one running kube-testenv process.
type testenv struct {
	cmd        *exec.Cmd
	stdin      io.WriteCloser
	kubeconfig string
	done       chan error
}

func buildTestenv(t *testing.T) string {
	t.Helper()
	return build(t, "kube-testenv")[0]
}

// build runs testenv.sh for the binaries named and returns their paths.
func build(t *testing.T, names ...string) []string {
	t.Helper()
	cmd := exec.Command("../testenv.sh", names...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("testenv.sh: %v", err)
	}
	paths := strings.Fields(string(out))
	if len(paths) != len(names) {
		t.Fatalf("testenv.sh %v printed %q", names, out)
	}
	return paths
}

func startTestenv(t *testing.T, bin, dir string, args ...string) (*testenv, time.Duration) {
	t.Helper()
	start := time.Now()
	cmd := exec.Command(bin, append([]string{"-dir", dir}, args...)...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	env := &testenv{cmd: cmd, stdin: stdin, done: make(chan error, 1)}
	t.Cleanup(func() { _ = stdin.Close(); _ = cmd.Process.Kill() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("reading kubeconfig path: %v", err)
	}
	elapsed := time.Since(start)
	go func() {
		_, _ = io.Copy(io.Discard, stdout)
		env.done <- cmd.Wait()
	}()
	env.kubeconfig = strings.TrimSpace(line)
	if !filepath.IsAbs(env.kubeconfig) {
		t.Fatalf("kubeconfig path %q is not absolute", env.kubeconfig)
	}
	return env, elapsed
}

func (e *testenv) waitExit(t *testing.T, what string) time.Duration {
	t.Helper()
	start := time.Now()
	select {
	case err := <-e.done:
		if err != nil {
			t.Fatalf("%s: kube-testenv exited with %v", what, err)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("%s: kube-testenv did not exit", what)
	}
	return time.Since(start)
}

func restConfig(t *testing.T, path string) *rest.Config {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Insecure || len(cfg.CAData) == 0 {
		t.Fatalf("kubeconfig %s: want CA-verified TLS", path)
	}
	return cfg
}

// TestSmoke starts kube-testenv, writes objects, restarts it with the same
// state directory and checks that the objects, URL and CA survive, then
// checks that closing stdin stops it.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	bin := buildTestenv(t)
	dir := t.TempDir()
	ctx := context.Background()

	env, took := startTestenv(t, bin, dir)
	t.Logf("first start: ready after %v", took)
	cfg := restConfig(t, env.kubeconfig)
	cs := kubernetes.NewForConfigOrDie(cfg)
	v, err := cs.Discovery().ServerVersion()
	if err != nil {
		t.Fatalf("server version: %v", err)
	}
	t.Logf("server %s, version %s", cfg.Host, v.GitVersion)

	const ns = "smoke"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: corev1.ServiceSpec{
			ClusterIP: corev1.ClusterIPNone,
			Ports:     []corev1.ServicePort{{Name: "http", Port: 80}},
		},
	}
	if _, err := cs.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ready := true
	port, proto := int32(80), corev1.ProtocolTCP
	portName := "http"
	eps := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: "web-1", Namespace: ns,
			Labels: map[string]string{discoveryv1.LabelServiceName: "web"},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  []string{"10.1.0.1"},
			Hostname:   ptr("web-0"),
			Conditions: discoveryv1.EndpointConditions{Ready: &ready},
		}},
		Ports: []discoveryv1.EndpointPort{{Name: &portName, Port: &port, Protocol: &proto}},
	}
	if _, err := cs.DiscoveryV1().EndpointSlices(ns).Create(ctx, eps, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// The reader has no rights until it is granted a namespaced Role.
	readerCS := kubernetes.NewForConfigOrDie(restConfig(t, filepath.Join(dir, "reader.kubeconfig")))
	if _, err := readerCS.CoreV1().Services(ns).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("reader listing services before grant: got %v, want Forbidden", err)
	}
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "reader", Namespace: ns},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"get", "list", "watch"}},
		},
	}
	if _, err := cs.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "reader", Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "reader"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: "headless-reader"}},
	}
	if _, err := cs.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := readerCS.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("reader listing services after grant: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := readerCS.CoreV1().Services("default").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("reader listing services in default: got %v, want Forbidden", err)
	}

	// Stop with SIGTERM and start again on the same state.
	if err := env.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	t.Logf("SIGTERM: exited after %v", env.waitExit(t, "SIGTERM"))

	env2, took := startTestenv(t, bin, dir)
	t.Logf("restart: ready after %v", took)
	if env2.kubeconfig != env.kubeconfig {
		t.Errorf("kubeconfig path changed: %s -> %s", env.kubeconfig, env2.kubeconfig)
	}
	if cfg2 := restConfig(t, env2.kubeconfig); cfg2.Host != cfg.Host {
		t.Errorf("server URL changed: %s -> %s", cfg.Host, cfg2.Host)
	}
	// The client built before the restart (old URL, old CA) still works.
	list, err := cs.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 || list.Items[0].Endpoints[0].Addresses[0] != "10.1.0.1" {
		t.Fatalf("EndpointSlices after restart: %+v", list.Items)
	}
	got, err := readerCS.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Fatalf("service after restart: clusterIP %q", got.Spec.ClusterIP)
	}

	// Closing stdin stops it.
	_ = env2.stdin.Close()
	t.Logf("stdin EOF: exited after %v", env2.waitExit(t, "stdin EOF"))
}

func ptr[T any](v T) *T { return &v }
