package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/resolver"
	grpcdns "google.golang.org/grpc/resolver/dns"
	core "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
)

// grpcServeEnv, when set to host:port, turns the test binary into one pod's
// gRPC server (see init). TestGRPCRoundRobin starts the binary that way
// inside a network namespace holding the pod's IP.
const grpcServeEnv = "HEADLESS_E2E_GRPC_SERVE"

// podMaxConnectionAge is how long the pods' servers keep a connection before
// sending GOAWAY. Every connection loss makes grpc-go's dns resolver
// re-resolve, so this is what lets a busy client notice a pod that turned
// not-ready while it still serves: the usual setting for gRPC behind a
// headless Service.
const podMaxConnectionAge = time.Second

func init() {
	// Runs before TestMain, so a pod's server neither builds the binaries
	// nor starts a control plane.
	if addr := os.Getenv(grpcServeEnv); addr != "" {
		os.Exit(servePod(addr))
	}
	// grpc-go re-resolves on a connection loss but no sooner than 30s after
	// the previous resolution; the dns package wants this set at start-up,
	// before any channel exists.
	grpcdns.SetMinResolutionInterval(200 * time.Millisecond)
}

// servePod runs a gRPC health server on addr until stdin closes (the test
// ended or died) or the process is killed (the pod stopped).
func servePod(addr string) int {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pod server:", err)
		return 1
	}
	srv := grpc.NewServer(grpc.KeepaliveParams(keepalive.ServerParameters{
		MaxConnectionAge:      podMaxConnectionAge,
		MaxConnectionAgeGrace: time.Second,
	}))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	fmt.Println("serving", lis.Addr())
	if err := srv.Serve(lis); err != nil {
		fmt.Fprintln(os.Stderr, "pod server:", err)
		return 1
	}
	return 0
}

// grpcPods are the article's pod IPs, one per network namespace.
var grpcPods = []string{"10.244.1.5", "10.244.2.8", "10.244.3.12"}

// TestGRPCRoundRobin points grpc-go's dns resolver with the round_robin
// policy at CoreDNS: calls spread over every ready pod of a headless
// Service, and a pod whose endpoint turns not-ready stops getting calls once
// the client re-resolves, whether its server still runs or has stopped.
func TestGRPCRoundRobin(t *testing.T) {
	c := env.cluster.client
	pods := make(map[string]*podServer)
	for i, netns := range podNetwork(t, grpcPods) {
		pods[grpcPods[i]] = startPodServer(t, netns, grpcPods[i])
	}

	ns := newNamespace(t, env.cluster, "grpc")
	const svc = "my-grpc-service"
	createService(t, c, ns, svc, true, core.ServicePort{Name: "grpc", Port: 50051})
	slice := newSlice(ns, svc+"-abc12", svc, discovery.AddressTypeIPv4,
		[]discovery.EndpointPort{port("grpc", 50051, core.ProtocolTCP)},
		withReady(endpoint("grpc-0", grpcPods[0]), true),
		withReady(endpoint("grpc-1", grpcPods[1]), true),
		withReady(endpoint("grpc-2", grpcPods[2]), true))
	createSlice(t, c, slice)
	setReady := func(i int, ready bool) {
		t.Helper()
		cur, err := c.DiscoveryV1().EndpointSlices(ns).Get(context.Background(), slice.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cur.Endpoints[i].Conditions.Ready = &ready
		updateSlice(t, c, cur)
	}

	// No cache sits between grpc-go (Go's resolver) and CoreDNS, so the
	// TTL does not delay re-resolution: the default block will do.
	s := startCoreDNS(t, env.cluster, defaultBlock)
	name := svc + "." + ns + ".svc.cluster.local"
	dnsLists := func(ips ...string) func() error {
		return func() error { return expectAnswer(s.addr, "udp", name+".", dns.TypeA, dns.RcodeSuccess, ips...) }
	}
	eventually(t, 10*time.Second, "A records of all three pods", dnsLists(grpcPods...))

	// The stock dns resolver, watched: grpc.WithResolvers puts it ahead of
	// the global one for this channel only, and it records what it hands
	// to the channel.
	watch := &watchedResolver{Builder: resolver.Get("dns")}
	target := "dns://" + s.addr + "/" + name + ":50051"
	conn, err := grpc.NewClient(target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
		grpc.WithResolvers(watch))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.Connect() // resolve now, not at the first call
	client := healthpb.NewHealthClient(conn)

	// calls makes n calls and counts them by the pod that answered.
	calls := func(n int) (map[string]int, error) {
		count := make(map[string]int)
		for range n {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			var p peer.Peer
			_, err := client.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p))
			cancel()
			if err != nil {
				return count, err
			}
			host, _, err := net.SplitHostPort(p.Addr.String())
			if err != nil {
				return count, err
			}
			count[host]++
		}
		return count, nil
	}
	// spread checks that n calls all succeed and reach exactly pods, each
	// at least least times.
	spread := func(n, least int, pods ...string) func() error {
		return func() error {
			count, err := calls(n)
			if err != nil {
				return fmt.Errorf("after %v: %w", count, err)
			}
			if len(count) != len(pods) {
				return fmt.Errorf("%d calls reached %v, want each of %v", n, count, pods)
			}
			for _, ip := range pods {
				if count[ip] < least {
					return fmt.Errorf("%d calls reached %v, want at least %d on each of %v", n, count, least, pods)
				}
			}
			return nil
		}
	}
	resolved := func(ips ...string) func() error {
		return func() error {
			want := make([]string, len(ips))
			for i, ip := range ips {
				want[i] = net.JoinHostPort(ip, "50051")
			}
			slices.Sort(want)
			if got := watch.latest(); !slices.Equal(got, want) {
				return fmt.Errorf("the dns resolver gave the channel %v, want %v", got, want)
			}
			return nil
		}
	}
	remaining := []string{grpcPods[0], grpcPods[2]}

	if !t.Run("spread over all pods", func(t *testing.T) {
		eventually(t, 20*time.Second, "the client resolving all three pods", resolved(grpcPods...))
		took := eventually(t, 20*time.Second, "60 calls spread over all three pods", spread(60, 10, grpcPods...))
		t.Logf("60 calls spread over %v after %s", grpcPods, took.Round(time.Millisecond))
	}) {
		return
	}

	// grpc-1 turns not-ready but its server goes on serving: only the
	// resolution (prompted by the servers' connection ages) can take it out.
	if !t.Run("not-ready pod still serving", func(t *testing.T) {
		setReady(1, false)
		eventually(t, 10*time.Second, "A records without grpc-1", dnsLists(remaining...))
		took := eventually(t, 20*time.Second, "the client dropping grpc-1", resolved(remaining...))
		eventually(t, 10*time.Second, "30 calls, none to grpc-1", spread(30, 5, remaining...))
		t.Logf("client resolved without %s %s after the update", grpcPods[1], took.Round(time.Millisecond))
		if err := pods[grpcPods[1]].check(); err != nil {
			t.Fatalf("grpc-1 should still serve when called directly: %v", err)
		}
	}) {
		return
	}

	if !t.Run("ready again", func(t *testing.T) {
		setReady(1, true)
		eventually(t, 10*time.Second, "A records of all three pods", dnsLists(grpcPods...))
		eventually(t, 20*time.Second, "the client resolving grpc-1 again", resolved(grpcPods...))
		eventually(t, 20*time.Second, "60 calls spread over all three pods", spread(60, 10, grpcPods...))
	}) {
		return
	}

	// grpc-1 stops, as a terminating pod does, and its endpoint turns
	// not-ready. The lost connection makes the client re-resolve at once
	// (the connection ages would too, a little later).
	t.Run("pod stopped and not-ready", func(t *testing.T) {
		pods[grpcPods[1]].stop()
		setReady(1, false)
		eventually(t, 10*time.Second, "A records without grpc-1", dnsLists(remaining...))
		took := eventually(t, 20*time.Second, "the client dropping grpc-1", resolved(remaining...))
		eventually(t, 10*time.Second, "30 calls, none to grpc-1", spread(30, 5, remaining...))
		t.Logf("client resolved without %s %s after the update", grpcPods[1], took.Round(time.Millisecond))
	})
}

// watchedResolver wraps a resolver builder and keeps the addresses its
// resolvers last gave their channel.
type watchedResolver struct {
	resolver.Builder
	mu    sync.Mutex
	addrs []string
}

func (w *watchedResolver) Build(target resolver.Target, cc resolver.ClientConn, opts resolver.BuildOptions) (resolver.Resolver, error) {
	return w.Builder.Build(target, &watchedClientConn{ClientConn: cc, w: w}, opts)
}

func (w *watchedResolver) latest() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.addrs)
}

type watchedClientConn struct {
	resolver.ClientConn
	w *watchedResolver
}

func (c *watchedClientConn) UpdateState(s resolver.State) error {
	var addrs []string
	for _, ep := range s.Endpoints {
		for _, a := range ep.Addresses {
			addrs = append(addrs, a.Addr)
		}
	}
	slices.Sort(addrs)
	c.w.mu.Lock()
	c.w.addrs = addrs
	c.w.mu.Unlock()
	return c.ClientConn.UpdateState(s)
}

// podNetwork gives each IP a network namespace of its own, joined to this
// host by a veth pair: the IP (/32) on the namespace's end, 10.244.N.1/32 on
// the host's end, and a /32 route each way. Nothing else on the host is
// touched, and t.Cleanup deletes the veths (their routes go with them) and
// the namespaces. It returns the namespaces, in the order of ips.
func podNetwork(t *testing.T, ips []string) []string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("TestGRPCRoundRobin needs root: it creates network namespaces with ip(8)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatal("TestGRPCRoundRobin needs ip(8) (Debian package iproute2)")
	}
	ipCmd := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	for _, ip := range ips {
		// A route this specific is a pod network, or what a killed run
		// left (ip netns list | grep headless-grpc): do not hijack it.
		out, err := exec.Command("ip", "-4", "route", "show", "to", "match", ip).Output()
		if err != nil {
			t.Fatalf("ip route show to match %s: %v", ip, err)
		}
		for line := range strings.Lines(string(out)) {
			dst, _, _ := strings.Cut(strings.TrimSpace(line), " ")
			if _, n, err := net.ParseCIDR(dst); err == nil {
				if ones, _ := n.Mask.Size(); ones >= 16 {
					t.Fatalf("this host already routes %s (%s); the test would hijack it (leftovers of a killed run: ip netns list | grep headless-grpc)", ip, strings.TrimSpace(line))
				}
			} else if dst != "default" && dst != "" {
				t.Fatalf("this host already routes %s (%s); the test would hijack it (leftovers of a killed run: ip netns list | grep headless-grpc)", ip, strings.TrimSpace(line))
			}
		}
	}
	suffix := rand.String(6)
	var names []string
	for i, ip := range ips {
		pod := net.ParseIP(ip).To4()
		if pod == nil {
			t.Fatalf("%s is not IPv4", ip)
		}
		gw := net.IPv4(pod[0], pod[1], pod[2], 1).String()
		netns := fmt.Sprintf("headless-grpc-%s-%d", suffix, i)
		host, inner := fmt.Sprintf("hg%sh%d", suffix, i), fmt.Sprintf("hg%sp%d", suffix, i)
		if out, err := exec.Command("ip", "netns", "add", netns).CombinedOutput(); err != nil {
			t.Fatalf("cannot create network namespace %s (ip netns add needs root with CAP_SYS_ADMIN and a writable /run/netns): %v: %s", netns, err, out)
		}
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "delete", netns).CombinedOutput(); err != nil {
				t.Errorf("ip netns delete %s: %v: %s", netns, err, out)
			}
		})
		ipCmd("link", "add", host, "type", "veth", "peer", "name", inner, "netns", netns)
		// The kernel destroys a deleted namespace (and so the veth and
		// route) in the background; deleting the veth here takes them
		// away at once, before the next test might look.
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "link", "delete", host).CombinedOutput(); err != nil {
				t.Errorf("ip link delete %s: %v: %s", host, err, out)
			}
		})
		ipCmd("addr", "add", gw+"/32", "dev", host)
		ipCmd("link", "set", host, "up")
		ipCmd("-n", netns, "link", "set", "lo", "up")
		ipCmd("-n", netns, "addr", "add", ip+"/32", "dev", inner)
		ipCmd("-n", netns, "link", "set", inner, "up")
		ipCmd("-n", netns, "route", "add", gw+"/32", "dev", inner)
		ipCmd("-n", netns, "route", "add", "default", "via", gw, "dev", inner)
		ipCmd("route", "add", ip+"/32", "dev", host, "src", gw)
		names = append(names, netns)
	}
	return names
}

// podServer is the test binary serving gRPC inside one pod's namespace.
type podServer struct {
	addr   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	exited chan struct{}
	log    *syncBuffer
	once   sync.Once
}

// startPodServer runs the test binary in netns (ip netns exec execs it, so
// the process is the server) and waits until it listens on ip:50051.
func startPodServer(t *testing.T, netns, ip string) *podServer {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := &podServer{addr: net.JoinHostPort(ip, "50051"), exited: make(chan struct{}), log: &syncBuffer{}}
	p.cmd = exec.Command("ip", "netns", "exec", netns, exe)
	p.cmd.Env = append(os.Environ(), grpcServeEnv+"="+p.addr)
	p.cmd.Stderr = p.log
	// Killed with us; closing stdin (or our death) ends it too.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Scan()
		line <- sc.Text()
		_, _ = io.Copy(io.Discard, stdout)
		_ = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("pod server %s log:\n%s", p.addr, p.log.String())
		}
	})
	select {
	case l := <-line:
		if !strings.HasPrefix(l, "serving") {
			<-p.exited
			t.Fatalf("pod server %s in %s did not start: %q\n%s", p.addr, netns, l, p.log.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("pod server %s in %s did not start in 30s:\n%s", p.addr, netns, p.log.String())
	}
	return p
}

// stop kills the server, as a pod's end does, and waits for it.
func (p *podServer) stop() {
	p.once.Do(func() {
		_ = p.cmd.Process.Kill()
		p.stdin.Close()
		<-p.exited
	})
}

// check calls the server directly, by its IP.
func (p *podServer) check() error {
	conn, err := grpc.NewClient("passthrough:///"+p.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}
