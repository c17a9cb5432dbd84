// Package e2e proves the headless plugin end to end: a small real cluster
// (kube-testenv -cluster: etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler and kwok nodes), the custom CoreDNS binary run as its own
// process, objects created through client-go and kubectl, and real DNS
// clients reading the answers.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/miekg/dns"

	core "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

var env struct {
	root    string // the repository
	tmp     string
	coredns string        // the custom CoreDNS binary
	testenv string        // the kube-testenv binary
	kwok    string        // the kwok binary
	kubectl string        // the kubectl binary, of the cluster's Kubernetes version
	cluster *controlPlane // shared by the tests, in fullCluster mode
}

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	var err error
	if env.root, err = filepath.Abs(".."); err != nil {
		return fail(err)
	}
	if env.tmp, err = os.MkdirTemp("", "headless-e2e-"); err != nil {
		return fail(err)
	}
	defer os.RemoveAll(env.tmp)

	testenvSh := exec.Command("bash", filepath.Join(env.root, "test", "testenv.sh"), "kube-testenv", "kwok", "kubectl")
	testenvSh.Stderr = os.Stderr // progress of cold builds
	out, err := testenvSh.Output()
	if err != nil {
		return fail(fmt.Errorf("building kube-testenv, kwok and kubectl: %w", err))
	}
	paths := strings.Fields(string(out))
	if len(paths) != 3 {
		return fail(fmt.Errorf("testenv.sh printed %q, want three paths", out))
	}
	env.testenv, env.kwok, env.kubectl = paths[0], paths[1], paths[2]
	env.coredns = filepath.Join(env.tmp, "coredns")
	build := exec.Command("go", "build", "-o", env.coredns, "./cmd/coredns")
	build.Dir, build.Stdout, build.Stderr = env.root, os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fail(fmt.Errorf("building cmd/coredns: %w", err))
	}
	if env.cluster, err = startControlPlane(filepath.Join(env.tmp, "cluster"), fullCluster); err != nil {
		return fail(err)
	}
	defer env.cluster.stop()
	return m.Run()
}

func fail(err error) int {
	fmt.Fprintln(os.Stderr, "e2e:", err)
	return 1
}

// mode is what a kube-testenv runs.
type mode int

const (
	// apiserverOnly is etcd and kube-apiserver: the cluster holds what the
	// test writes and nothing else (no EndpointSlice is written for a
	// Service, no pod runs, namespaces never finish deleting).
	apiserverOnly mode = iota
	// fullCluster adds kube-controller-manager, kube-scheduler and kwok's
	// simulated nodes (see kube-testenv): pods are scheduled, run and get
	// addresses, and the controllers write EndpointSlices and Endpoints.
	fullCluster
)

// controlPlane is one kube-testenv process.
type controlPlane struct {
	dir        string
	mode       mode
	args       []string // extra kube-testenv flags
	kubeconfig string
	config     *rest.Config
	client     kubernetes.Interface
	cmd        *exec.Cmd
	stdin      io.WriteCloser
}

// startControlPlane starts kube-testenv on dir (reusing its state, port and
// certificates when dir was used before) and waits until it is ready.
// Extra kube-testenv flags, such as -apiserver-arg=..., go in args.
func startControlPlane(dir string, m mode, args ...string) (*controlPlane, error) {
	cp := &controlPlane{dir: dir, mode: m, args: args}
	return cp, cp.start()
}

func (cp *controlPlane) start() error {
	args := []string{"-dir", cp.dir}
	if cp.mode == fullCluster {
		args = append(args, "-cluster", "-kwok", env.kwok)
	}
	cmd := exec.Command(env.testenv, append(args, cp.args...)...)
	stdin, err := cmd.StdinPipe() // closing it (or our death) stops kube-testenv
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	line := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(stdout)
		s.Scan()
		line <- s.Text()
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case cp.kubeconfig = <-line:
	case <-time.After(3 * time.Minute):
		_ = cmd.Process.Kill()
		return errors.New("kube-testenv did not become ready in 3 minutes")
	}
	if cp.kubeconfig == "" {
		_ = cmd.Wait()
		return errors.New("kube-testenv exited before it was ready")
	}
	cp.cmd, cp.stdin = cmd, stdin
	if cp.config, err = clientcmd.BuildConfigFromFlags("", cp.kubeconfig); err != nil {
		return err
	}
	cp.client, err = kubernetes.NewForConfig(cp.config)
	return err
}

// stop ends kube-testenv (and with it its children) and waits for it.
func (cp *controlPlane) stop() {
	if cp.cmd == nil {
		return
	}
	_ = cp.cmd.Process.Signal(syscall.SIGTERM)
	_ = cp.cmd.Wait()
	cp.stdin.Close()
	cp.cmd = nil
}

// newNamespace creates a namespace of its own for one test, with a random
// suffix. In a fullCluster it is deleted when the test ends (the namespace
// controller then deletes what it holds, which takes a moment: a name is
// never reused). An apiserverOnly control plane has no namespace
// controller, so there namespaces are left as they are.
func newNamespace(t *testing.T, cp *controlPlane, prefix string) string {
	t.Helper()
	name := prefix + "-" + rand.String(5)
	_, err := cp.client.CoreV1().Namespaces().Create(context.Background(),
		&core.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
	if cp.mode == fullCluster {
		t.Cleanup(func() {
			if cp.cmd == nil {
				return // stopped by the test
			}
			err := cp.client.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
			if err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("deleting namespace %s: %v", name, err)
			}
		})
	}
	return name
}

// corednsServer is the custom CoreDNS binary running with a Corefile.
type corednsServer struct {
	addr    string // DNS over UDP and TCP
	metrics string // prometheus
	ready   string // ready plugin
	cmd     *exec.Cmd
	exited  chan struct{} // closed when the process has exited
	log     *syncBuffer
}

type corefileData struct {
	DNSPort, ReadyPort, MetricsPort, HealthPort int
	Kubeconfig                                  string
}

// defaultBlock is the plugin alone, answering for cluster.local and both
// reverse zones.
const defaultBlock = `headless cluster.local in-addr.arpa ip6.arpa {
        kubeconfig {{.Kubeconfig}}
    }`

// startCoreDNS runs CoreDNS with one server block on a free loopback port
// holding block (a template over corefileData), plus ready and prometheus,
// and waits until ready reports the plugin synced.
func startCoreDNS(t *testing.T, cp *controlPlane, block string) *corednsServer {
	t.Helper()
	corefile := `.:{{.DNSPort}} {
    bind 127.0.0.1
    ready 127.0.0.1:{{.ReadyPort}}
    prometheus 127.0.0.1:{{.MetricsPort}}
    ` + block + `
}
`
	return startCorefile(t, cp, corefile)
}

// startCorefile runs CoreDNS with a whole Corefile template and waits until
// it is ready and answering.
func startCorefile(t *testing.T, cp *controlPlane, corefile string) *corednsServer {
	t.Helper()
	s := launchCorefile(t, cp, corefile)
	s.waitReady(t, 30*time.Second)
	return s
}

// launchCorefile runs CoreDNS with a whole Corefile template and returns at
// once, ready or not; the process is stopped when the test ends.
func launchCorefile(t *testing.T, cp *controlPlane, corefile string) *corednsServer {
	t.Helper()
	data := corefileData{DNSPort: freePort(t), ReadyPort: freePort(t), MetricsPort: freePort(t), HealthPort: freePort(t), Kubeconfig: cp.kubeconfig}
	var buf bytes.Buffer
	if err := template.Must(template.New("Corefile").Parse(corefile)).Execute(&buf, data); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "Corefile")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	s := &corednsServer{
		addr:    fmt.Sprintf("127.0.0.1:%d", data.DNSPort),
		metrics: fmt.Sprintf("127.0.0.1:%d", data.MetricsPort),
		ready:   fmt.Sprintf("127.0.0.1:%d", data.ReadyPort),
		log:     &syncBuffer{},
	}
	s.cmd = exec.Command(env.coredns, "-conf", path)
	s.cmd.Dir = dir
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.exited = make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(s.exited) }()
	t.Cleanup(func() {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
		if t.Failed() || os.Getenv("E2E_COREDNS_LOG") != "" {
			t.Logf("CoreDNS log:\n%s", s.log.String())
		}
	})
	return s
}

// isReady reports whether the ready plugin says 200.
func (s *corednsServer) isReady() bool {
	resp, err := http.Get("http://" + s.ready + "/ready")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// waitReady waits until ready reports every plugin synced and the server
// answers, failing the test after timeout or if CoreDNS exits.
func (s *corednsServer) waitReady(t *testing.T, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-s.exited:
			t.Fatalf("CoreDNS exited:\n%s", s.log.String())
		default:
		}
		// Ready says the plugins synced; the DNS listeners open only after
		// every plugin's start-up, so wait for an answer too.
		if s.isReady() {
			if _, err := exchange(s.addr, "udp", "cluster.local.", dns.TypeSOA, 0); err == nil {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("CoreDNS not ready after %s:\n%s", timeout, s.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freePort returns a loopback port that is free for both TCP and UDP now.
func freePort(t *testing.T) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// eventually polls check until it returns nil, failing after timeout with its last error.
func eventually(t *testing.T, timeout time.Duration, what string, check func() error) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		err := check()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// allOf is a check that holds when every one of checks holds; it reports
// the first that does not.
func allOf(checks ...func() error) func() error {
	return func() error {
		for _, check := range checks {
			if err := check(); err != nil {
				return err
			}
		}
		return nil
	}
}
