// Command kube-testenv runs a real, small Kubernetes cluster for tests and
// demos of the headless CoreDNS plugin. It has two modes:
//
//   - apiserver-only (the default): an embedded etcd and the real
//     kube-apiserver in this one process. Nothing else runs: no controller
//     writes EndpointSlices, namespaces never finish terminating, and no pod
//     is ever scheduled. Tests that hand-write every object, and the
//     benchmarks, use this mode.
//   - -cluster: the same, plus the real kube-controller-manager and
//     kube-scheduler (this binary again, run as child processes with the
//     subcommands kube-controller-manager and kube-scheduler, so that each
//     has its own flags, feature gates and metrics registries) and kwok
//     (-kwok, a separate binary) simulating the kubelets of a tainted
//     control-plane node and -nodes worker nodes, kwok-node-1 to
//     kwok-node-N. Node i has the pod CIDR 10.244.i.0/24 (set when
//     kube-testenv registers it; the node-ipam controller records it and
//     gives ranges to nodes added later) and kwok gives pods addresses
//     from their node's range, so pods look like the ones of a kind
//     cluster: 10.244.1.1 on kwok-node-1, and so on.
//
// When the cluster is ready it prints exactly one line on stdout: the
// absolute path of an admin kubeconfig. Everything else (including the
// apiserver and etcd logs) goes to a log file in the state directory, or to
// stderr with -log-file=-; the child processes log to their own files there
// (kube-controller-manager.log, kube-scheduler.log, kwok.log).
//
// All state lives in one directory (-dir). Restarting with the same directory
// reuses the etcd data, the serving certificate, the tokens and the ports, so
// clients see the API server go away and come back at the same URL with all
// objects intact.
//
// kube-testenv stops (children first, then the apiserver and etcd) on
// SIGTERM, SIGINT or when its stdin reaches EOF. Its children die with it
// even when it is killed: they get SIGKILL from the kernel when it goes
// (PR_SET_PDEATHSIG), and the controller-manager and scheduler also exit
// when their stdin, a pipe from kube-testenv, reaches EOF. A child that
// exits on its own (say it could not reach the apiserver) is started again.
//
// It must be built with the component-base version variables set, e.g.
//
//	go build -ldflags "-X k8s.io/component-base/version.gitVersion=v1.37.2 \
//	  -X k8s.io/component-base/version.gitMajor=1 \
//	  -X k8s.io/component-base/version.gitMinor=37" ./kube-testenv
//
// (see ../testenv.sh), otherwise clients cannot parse the server version.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	mathrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"golang.org/x/sys/unix"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

// State directory layout.
const (
	stateFile        = "ports.json"
	etcdDir          = "etcd"
	certDir          = "pki"
	servingCertFile  = "apiserver.crt" // written by kube-apiserver into certDir
	tokenCSVFile     = "tokens.csv"
	adminTokenFile   = "admin.token"
	readerTokenFile  = "reader.token"
	saKeyFile        = "sa.key"
	adminKubeconfig  = "admin.kubeconfig"
	readerKubeconfig = "reader.kubeconfig"
	defaultLogFile   = "kube-testenv.log"

	readerUser = "headless-reader"
	adminUser  = "admin"

	forceExitAfter = 10 * time.Second
)

// ports is persisted in stateFile so that a restart reuses the same URLs.
type ports struct {
	APIServer  int `json:"apiserver"`
	EtcdClient int `json:"etcdClient"`
	EtcdPeer   int `json:"etcdPeer"`
	// Secure ports of the -cluster children (healthz, readyz, metrics).
	ControllerManager int `json:"controllerManager,omitempty"`
	Scheduler         int `json:"scheduler,omitempty"`
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, " ") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// msg is where kube-testenv's own messages go: the original stderr, even when
// the process-wide stderr has been redirected to the log file.
var msg io.Writer = os.Stderr

func logf(format string, args ...any) {
	fmt.Fprintf(msg, "kube-testenv: "+format+"\n", args...)
}

func main() {
	// The cluster's children are this binary again, with a subcommand.
	if len(os.Args) > 1 {
		if c, ok := components[os.Args[1]]; ok {
			os.Exit(runComponent(c, os.Args[2:]))
		}
	}
	os.Exit(run())
}

func run() int {
	var (
		dir          = flag.String("dir", "", "state directory (default: a new temporary directory, removed on exit)")
		port         = flag.Int("port", 0, "kube-apiserver secure port on 127.0.0.1 (default: the port recorded in -dir, else a free one)")
		watchStdin   = flag.Bool("watch-stdin", true, "shut down when stdin reaches EOF")
		logFile      = flag.String("log-file", "", "file receiving the apiserver and etcd logs, appended to (default: DIR/"+defaultLogFile+"; \"-\" keeps them on stderr)")
		verbosity    = flag.Int("v", 0, "kube-apiserver klog verbosity")
		readyTimeout = flag.Duration("ready-timeout", 3*time.Minute, "give up if the cluster is not ready within this time")
		clusterMode  = flag.Bool("cluster", false, "also run kube-controller-manager, kube-scheduler and kwok nodes (default: etcd and kube-apiserver only)")
		kwokPath     = flag.String("kwok", "", "the kwok binary (required with -cluster)")
		nodes        = flag.Int("nodes", 3, "with -cluster: the number of kwok worker nodes, kwok-node-1 to kwok-node-N (at most 250)")
		extraArgs    stringList
		cc           clusterConfig
	)
	flag.Var(&extraArgs, "apiserver-arg", "extra kube-apiserver flag, e.g. -apiserver-arg=--feature-gates=Foo=true (repeatable; overrides the defaults)")
	flag.Var(&cc.controllerManagerArgs, "controller-manager-arg", "with -cluster: extra kube-controller-manager flag (repeatable; overrides the defaults)")
	flag.Var(&cc.schedulerArgs, "scheduler-arg", "with -cluster: extra kube-scheduler flag (repeatable; overrides the defaults)")
	flag.Var(&cc.kwokArgs, "kwok-arg", "with -cluster: extra kwok flag (repeatable; overrides the defaults)")
	flag.Parse()
	if flag.NArg() != 0 {
		logf("unexpected arguments: %q", flag.Args())
		return 2
	}
	if *clusterMode {
		if *kwokPath == "" {
			logf("-cluster needs -kwok, the path of the kwok binary")
			return 2
		}
		if *nodes < 1 || *nodes > 250 {
			logf("-nodes must be between 1 and 250")
			return 2
		}
		var err error
		if cc.kwok, err = filepath.Abs(*kwokPath); err != nil {
			logf("%v", err)
			return 2
		}
		cc.nodes = *nodes
	}

	// Shutdown requests: SIGTERM/SIGINT, or stdin EOF (turned into a SIGTERM
	// to ourselves, so that the apiserver's own signal handler sees it too).
	sigCh := make(chan os.Signal, 4)
	signal.Notify(sigCh, syscall.SIGTERM, syscall.SIGINT)
	stopCh := make(chan struct{})
	var stopOnce sync.Once
	go func() {
		for sig := range sigCh {
			stopOnce.Do(func() {
				logf("received %v, shutting down", sig)
				close(stopCh)
				time.AfterFunc(forceExitAfter, func() {
					logf("clean shutdown took more than %v, exiting anyway", forceExitAfter)
					os.Exit(3)
				})
			})
		}
	}()
	if *watchStdin {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			logf("stdin closed")
			_ = syscall.Kill(os.Getpid(), syscall.SIGTERM)
		}()
	}

	removeDir := false
	if *dir == "" {
		d, err := os.MkdirTemp("", "kube-testenv-")
		if err != nil {
			logf("%v", err)
			return 1
		}
		*dir, removeDir = d, true
	}
	stateDir, err := filepath.Abs(*dir)
	if err != nil {
		logf("%v", err)
		return 1
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		logf("%v", err)
		return 1
	}

	// Keep stdout for the single result line and the original stderr for our
	// own messages; point the process-wide fds 1 and 2 at the log file so that
	// nothing else (klog, zap, grpc, panics) can pollute them.
	stdout := os.Stdout
	logPath := ""
	if *logFile != "-" {
		logPath = *logFile
		if logPath == "" {
			logPath = filepath.Join(stateDir, defaultLogFile)
		}
		var err error
		if stdout, err = redirectOutput(logPath); err != nil {
			logf("redirecting logs to %s: %v", logPath, err)
			return 1
		}
	}
	fail := func(format string, args ...any) int {
		logf(format, args...)
		if logPath != "" {
			logf("last lines of %s:\n%s", logPath, tail(logPath, 40))
		}
		return 1
	}

	p, err := loadPorts(stateDir, *port, *clusterMode)
	if err != nil {
		return fail("%v", err)
	}
	adminToken, readerToken, err := ensureTokens(stateDir)
	if err != nil {
		return fail("%v", err)
	}
	if err := ensureSAKey(filepath.Join(stateDir, saKeyFile)); err != nil {
		return fail("%v", err)
	}

	start := time.Now()
	etcd, err := startEtcd(stateDir, p, stopCh)
	if err != nil {
		return fail("starting etcd: %v", err)
	}
	if etcd == nil { // stopped while starting
		return 0
	}
	var closeOnce sync.Once
	closeEtcd := func() {
		closeOnce.Do(func() {
			etcd.Close()
			if removeDir {
				_ = os.RemoveAll(stateDir)
			}
		})
	}
	// A stop request while the apiserver is still starting makes its post-start
	// hooks fail with klog.Fatal; that is a clean stop, not a failure.
	klog.OsExit = func(code int) {
		select {
		case <-stopCh:
			closeEtcd()
			logf("stopped while starting")
			os.Exit(0)
		default:
			fail("kube-apiserver failed fatally (exit code %d)", code)
			os.Exit(code)
		}
	}

	cmd := app.NewAPIServerCommand() // installs the apiserver's signal handler
	select {
	case <-stopCh:
		closeEtcd()
		return 0
	default:
	}
	cmd.SetArgs(append(apiserverArgs(stateDir, p, *verbosity, *clusterMode), extraArgs...))
	cmd.SetOut(os.Stderr)
	cmd.SetErr(os.Stderr)
	apiErr := make(chan error, 1)
	go func() { apiErr <- cmd.Execute() }()

	ctx, cancel := context.WithTimeout(context.Background(), *readyTimeout)
	err = waitReady(ctx, stateDir, p.APIServer, adminToken, apiErr, stopCh)
	cancel()
	switch {
	case errors.Is(err, errStopped):
		<-apiErr
		closeEtcd()
		logf("stopped")
		return 0
	case err != nil:
		etcd.Close()
		return fail("kube-apiserver did not become ready: %v", err)
	}

	caData, err := os.ReadFile(filepath.Join(stateDir, certDir, servingCertFile))
	if err != nil {
		etcd.Close()
		return fail("%v", err)
	}
	server := fmt.Sprintf("https://127.0.0.1:%d", p.APIServer)
	adminPath := filepath.Join(stateDir, adminKubeconfig)
	if err := writeKubeconfig(adminPath, server, caData, adminUser, adminToken); err != nil {
		etcd.Close()
		return fail("%v", err)
	}
	if err := writeKubeconfig(filepath.Join(stateDir, readerKubeconfig), server, caData, readerUser, readerToken); err != nil {
		etcd.Close()
		return fail("%v", err)
	}
	apiReady := time.Since(start)

	var cl *cluster
	if *clusterMode {
		cc.dir, cc.ports, cc.kubeconfig, cc.verbosity = stateDir, p, adminPath, *verbosity
		if cl, err = startCluster(cc); err != nil {
			etcd.Close()
			return fail("starting the cluster: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), *readyTimeout-apiReady)
		err := cl.waitReady(ctx, stopCh, apiErr)
		cancel()
		switch {
		case errors.Is(err, errStopped):
			cl.stop()
			<-apiErr
			closeEtcd()
			logf("stopped")
			return 0
		case err != nil:
			cl.stop()
			etcd.Close()
			return fail("the cluster did not become ready: %v", err)
		}
		logf("apiserver ready in %v, cluster (controller-manager, scheduler, %d kwok nodes) in %v: %s (state in %s)",
			apiReady.Round(time.Millisecond), cc.nodes, time.Since(start).Round(time.Millisecond), server, stateDir)
	} else {
		logf("ready in %v: %s (state in %s)", apiReady.Round(time.Millisecond), server, stateDir)
	}
	fmt.Fprintln(stdout, adminPath)

	select {
	case err := <-apiErr:
		if cl != nil {
			cl.stop()
		}
		etcd.Close()
		return fail("kube-apiserver exited unexpectedly: %v", err)
	case <-stopCh:
	}
	// The children go first, so that they do not log the apiserver's end.
	if cl != nil {
		cl.stop()
	}
	if err := <-apiErr; err != nil {
		logf("kube-apiserver: %v", err)
	}
	closeEtcd()
	logf("stopped")
	return 0
}

// redirectOutput points fds 1 and 2 at the file path (appending) and returns
// a handle on the original stdout. The original stderr becomes msg.
func redirectOutput(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	origOut, err := unix.Dup(1)
	if err != nil {
		return nil, err
	}
	origErr, err := unix.Dup(2)
	if err != nil {
		return nil, err
	}
	unix.CloseOnExec(origOut)
	unix.CloseOnExec(origErr)
	if err := unix.Dup2(int(f.Fd()), 1); err != nil {
		return nil, err
	}
	if err := unix.Dup2(int(f.Fd()), 2); err != nil {
		return nil, err
	}
	msg = os.NewFile(uintptr(origErr), "stderr")
	fmt.Fprintf(os.Stderr, "\n==== kube-testenv started %s (pid %d) ====\n", time.Now().Format(time.RFC3339), os.Getpid())
	return os.NewFile(uintptr(origOut), "stdout"), nil
}

func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// loadPorts returns the recorded ports, filling in free ones where missing
// (the children's only in cluster mode), and records the result.
func loadPorts(dir string, apiPort int, clusterMode bool) (ports, error) {
	var p ports
	path := filepath.Join(dir, stateFile)
	if b, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(b, &p); err != nil {
			return p, fmt.Errorf("%s: %v", path, err)
		}
	} else if !os.IsNotExist(err) {
		return p, err
	}
	if apiPort != 0 {
		p.APIServer = apiPort
	}
	needed := []*int{&p.APIServer, &p.EtcdClient, &p.EtcdPeer}
	if clusterMode {
		needed = append(needed, &p.ControllerManager, &p.Scheduler)
	}
	for _, pp := range needed {
		if *pp != 0 {
			continue
		}
		free, err := freePort()
		if err != nil {
			return p, err
		}
		*pp = free
	}
	b, _ := json.MarshalIndent(p, "", "  ")
	return p, writeFileAtomic(path, append(b, '\n'), 0o600)
}

// freePort returns a port free on 127.0.0.1, taken below the kernel's
// ephemeral range when it can: a restart must be able to listen on the
// recorded ports again, and a port of the ephemeral range may meanwhile be
// the local end of some connection (to the API server, say).
func freePort() (int, error) {
	low := 32768 // the usual start of net.ipv4.ip_local_port_range
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				low = n
			}
		}
	}
	if low > 11000 {
		for range 100 {
			port := 10000 + mathrand.IntN(low-11000) // 10000 up to 1000 below the range
			if l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
				l.Close()
				return port, nil
			}
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, perm); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// readOrCreateToken returns the token stored in path, creating it if needed.
func readOrCreateToken(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		if t := strings.TrimSpace(string(b)); t != "" {
			return t, nil
		}
	} else if !os.IsNotExist(err) {
		return "", err
	}
	buf := make([]byte, 24)
	if _, err := rand.Read(buf); err != nil {
		return "", err
	}
	t := hex.EncodeToString(buf)
	return t, writeFileAtomic(path, []byte(t+"\n"), 0o600)
}

// ensureTokens writes the static token file: an admin in system:masters and a
// reader with no privileged group (it only gets what tests grant it).
func ensureTokens(dir string) (admin, reader string, err error) {
	if admin, err = readOrCreateToken(filepath.Join(dir, adminTokenFile)); err != nil {
		return
	}
	if reader, err = readOrCreateToken(filepath.Join(dir, readerTokenFile)); err != nil {
		return
	}
	csv := fmt.Sprintf("%s,%s,%s,\"system:masters\"\n%s,%s,%s\n",
		admin, adminUser, adminUser, reader, readerUser, readerUser)
	err = writeFileAtomic(filepath.Join(dir, tokenCSVFile), []byte(csv), 0o600)
	return
}

// ensureSAKey creates the service-account signing key once.
func ensureSAKey(path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	der := x509.MarshalPKCS1PrivateKey(key)
	return writeFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: der}), 0o600)
}

func loopbackURL(port int) url.URL {
	return url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
}

// startEtcd starts a single-member etcd and waits until it serves. It returns
// nil, nil if stopCh is closed first.
func startEtcd(dir string, p ports, stopCh <-chan struct{}) (*embed.Etcd, error) {
	cfg := embed.NewConfig()
	cfg.Name = "kube-testenv"
	cfg.Dir = filepath.Join(dir, etcdDir)
	cfg.UnsafeNoFsync = true
	cfg.TickMs = 10
	cfg.ElectionMs = 100
	cfg.EnableGRPCGateway = false
	cfg.Logger = "zap"
	cfg.LogLevel = "error"
	cfg.LogOutputs = []string{"stderr"}
	client, peer := loopbackURL(p.EtcdClient), loopbackURL(p.EtcdPeer)
	cfg.ListenClientUrls = []url.URL{client}
	cfg.AdvertiseClientUrls = []url.URL{client}
	cfg.ListenPeerUrls = []url.URL{peer}
	cfg.AdvertisePeerUrls = []url.URL{peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, err
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case err := <-e.Err():
		e.Close()
		return nil, err
	case <-time.After(time.Minute):
		e.Close()
		return nil, errors.New("etcd not ready after 1m")
	case <-stopCh:
		e.Close()
		return nil, nil
	}
}

func apiserverArgs(dir string, p ports, verbosity int, clusterMode bool) []string {
	saKey := filepath.Join(dir, saKeyFile)
	etcdURL := loopbackURL(p.EtcdClient)
	// With a controller-manager, deletions go through the garbage collector
	// (foreground and orphan deletions wait for it, owned objects follow
	// their owner) and pods get their ServiceAccount and its token volume,
	// the default one being made by the serviceaccount controller. Without
	// one, the GC finalizers would never be removed and no pod could be
	// admitted for want of a ServiceAccount.
	modeArgs := []string{"--enable-garbage-collector=false", "--disable-admission-plugins=ServiceAccount"}
	if clusterMode {
		modeArgs = []string{"--enable-garbage-collector=true"}
	}
	return append(modeArgs,
		"--etcd-servers="+(&etcdURL).String(),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1", // also puts 127.0.0.1 into the self-signed cert
		"--secure-port="+strconv.Itoa(p.APIServer),
		"--cert-dir="+filepath.Join(dir, certDir),
		"--token-auth-file="+filepath.Join(dir, tokenCSVFile),
		"--anonymous-auth=false",
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+saKey,
		"--service-account-signing-key-file="+saKey,
		"--service-cluster-ip-range=10.96.0.0/16",
		// The apiserver's own Endpoints for the kubernetes Service would
		// name 127.0.0.1, which the API refuses for an endpoint.
		"--endpoint-reconciler-type=none",
		// Lighter and faster to start.
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		// Shut down in about a second: no delay, and end open watches
		// (otherwise the HTTP server waits for them up to --request-timeout).
		"--shutdown-delay-duration=0s",
		"--shutdown-watch-termination-grace-period=1s",
		"--v="+strconv.Itoa(verbosity),
	)
}

var errStopped = errors.New("stopped")

// waitReady polls /readyz with the admin token, verifying the serving
// certificate against the self-signed CA the apiserver wrote, then waits for
// the default namespace.
func waitReady(ctx context.Context, dir string, port int, token string, apiErr <-chan error, stopCh <-chan struct{}) error {
	caPath := filepath.Join(dir, certDir, servingCertFile)
	base := fmt.Sprintf("https://127.0.0.1:%d", port)
	var client *http.Client
	lastErr := errors.New("no attempt yet")
	for _, path := range []string{"/readyz", "/api/v1/namespaces/default"} {
		for {
			if client == nil {
				if pemData, err := os.ReadFile(caPath); err == nil {
					pool := x509.NewCertPool()
					if !pool.AppendCertsFromPEM(pemData) {
						return fmt.Errorf("%s: no certificates", caPath)
					}
					client = &http.Client{
						Timeout:   5 * time.Second,
						Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
					}
				} else {
					lastErr = err
				}
			}
			if client != nil {
				ok, err := get(ctx, client, base+path, token)
				if ok {
					break
				}
				lastErr = err
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%v (last error: %v)", ctx.Err(), lastErr)
			case err := <-apiErr:
				return fmt.Errorf("kube-apiserver exited: %v", err)
			case <-stopCh:
				return errStopped
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	if client != nil {
		client.CloseIdleConnections()
	}
	return nil
}

func get(ctx context.Context, client *http.Client, u, token string) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return false, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("GET %s: %s: %s", u, resp.Status, strings.TrimSpace(string(body)))
	}
	return true, nil
}

func writeKubeconfig(path, server string, caData []byte, user, token string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["kube-testenv"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caData}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["kube-testenv"] = &clientcmdapi.Context{Cluster: "kube-testenv", AuthInfo: user, Namespace: "default"}
	cfg.CurrentContext = "kube-testenv"
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return err
	}
	return writeFileAtomic(path, data, 0o600)
}
