package e2e

// The system resolvers of a pod, each reading the resolv.conf kubelet
// writes for a pod of namespace default (search list and ndots:5), inside a
// network namespace whose nameserver is CoreDNS with the plugin: glibc
// (Python's socket.getaddrinfo, as the article runs it, and getent),
// busybox's nslookup, Go's own resolver, and grpc-go's dns resolver with
// round_robin. Short names (cassandra, cassandra-0.cassandra) only resolve
// through the search list, so they prove the resolv.conf is read as a
// pod's is.

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
)

// resolverProbeEnv, when set to a JSON probeRequest, turns the test binary
// into a client that resolves with Go's resolver and grpc-go (see init),
// run with ip netns exec inside the pod's network namespace so that it
// reads the pod's resolv.conf.
const resolverProbeEnv = "HEADLESS_E2E_RESOLVER_PROBE"

// The pod network of TestSystemResolversOfAPod: CoreDNS listens on
// podDNSAddr port 53 on the host's end of a veth pair, as the cluster DNS
// Service address kubelet writes into resolv.conf; the pod's end has
// podClientAddr. Both differ from make demo's (10.96.0.10, 10.244.0.200)
// and TestGRPCRoundRobin's (10.244.N.1 and its pods), so either may run
// beside this test; 10.244.0.0/24 is the control-plane node's pod range,
// where no pod runs.
const (
	podDNSAddr    = "10.96.53.10"
	podClientAddr = "10.244.0.253"
)

func init() {
	if req := os.Getenv(resolverProbeEnv); req != "" {
		os.Exit(runResolverProbe(req))
	}
}

// probeRequest is what the probe is asked to resolve.
type probeRequest struct {
	Hosts []string    // net.Resolver.LookupHost
	SRV   [][3]string // LookupSRV(service, proto, name)
	Addrs []string    // LookupAddr
	GRPC  []string    // grpc-go targets: call each until every one of Peers pods answered, then Calls more
	Peers int
	Calls int
}

// probeResult is what it found: sorted values, or "error: ..." alone.
type probeResult struct {
	Hosts map[string][]string
	SRV   map[string][]string // by name, "port target"
	Addrs map[string][]string
	GRPC  map[string]map[string]int // by target, the calls each pod address answered
}

// runResolverProbe resolves with Go's own resolver (PreferGo: it reads
// /etc/resolv.conf itself, never calling glibc) and grpc-go, and prints a
// probeResult as JSON.
func runResolverProbe(spec string) int {
	var req probeRequest
	if err := json.Unmarshal([]byte(spec), &req); err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		return 2
	}
	r := &net.Resolver{PreferGo: true}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res := probeResult{Hosts: map[string][]string{}, SRV: map[string][]string{}, Addrs: map[string][]string{}, GRPC: map[string]map[string]int{}}
	orError := func(vals []string, err error) []string {
		if err != nil {
			return []string{"error: " + err.Error()}
		}
		slices.Sort(vals)
		return vals
	}
	for _, name := range req.Hosts {
		res.Hosts[name] = orError(r.LookupHost(ctx, name))
	}
	for _, q := range req.SRV {
		_, srvs, err := r.LookupSRV(ctx, q[0], q[1], q[2])
		var vals []string
		for _, s := range srvs {
			vals = append(vals, fmt.Sprintf("%d %s", s.Port, s.Target))
		}
		res.SRV[q[2]] = orError(vals, err)
	}
	for _, ip := range req.Addrs {
		res.Addrs[ip] = orError(r.LookupAddr(ctx, ip))
	}
	for _, target := range req.GRPC {
		count, err := roundRobin(ctx, target, req.Peers, req.Calls)
		if err != nil {
			count = map[string]int{"error: " + err.Error(): 0}
		}
		res.GRPC[target] = count
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		return 2
	}
	return 0
}

// roundRobin dials target with grpc-go's dns resolver and the round_robin
// policy, calls until peers different pods have answered (the policy only
// picks connections that are ready, and they become ready one by one), then
// makes calls more calls and counts them by the pod that answered.
func roundRobin(ctx context.Context, target string, peers, calls int) (map[string]int, error) {
	conn, err := grpc.NewClient(target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	client := healthpb.NewHealthClient(conn)
	call := func() (string, error) {
		var p peer.Peer
		callCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if _, err := client.Check(callCtx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p)); err != nil {
			return "", err
		}
		host, _, err := net.SplitHostPort(p.Addr.String())
		return host, err
	}
	seen := map[string]bool{}
	for len(seen) < peers {
		host, err := call()
		if err != nil {
			return nil, err
		}
		seen[host] = true
		if ctx.Err() != nil {
			return nil, fmt.Errorf("only %d of %d pods answered", len(seen), peers)
		}
	}
	count := map[string]int{}
	for range calls {
		host, err := call()
		if err != nil {
			return count, err
		}
		count[host]++
	}
	return count, nil
}

// podNetns is a network namespace set up as a pod of namespace default
// sees the cluster: kubelet's resolv.conf (/etc/netns/NAME/resolv.conf,
// which ip netns exec mounts over /etc/resolv.conf) naming dnsAddr, and a
// veth pair to the host, which holds dnsAddr.
type podNetns struct {
	name string
}

// newPodNetns creates the namespace, the veth pair, the addresses, the
// routes and the resolv.conf; t.Cleanup removes all of them, also when the
// test fails half-way.
func newPodNetns(t *testing.T, dnsAddr, clientAddr string) *podNetns {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root: it creates a network namespace with ip(8)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatal("this test needs ip(8) (Debian package iproute2)")
	}
	for _, addr := range []string{dnsAddr, clientAddr} {
		// A host route (or address) this specific is someone else's, or a
		// killed run's (ip netns list | grep headless-res): do not take it.
		out, err := exec.Command("ip", "-4", "route", "show", "table", "all", "to", "match", addr).Output()
		if err != nil {
			t.Fatalf("ip route show to match %s: %v", addr, err)
		}
		for line := range strings.Lines(string(out)) {
			fields := strings.Fields(line)
			if len(fields) == 0 {
				continue
			}
			dst := fields[0]
			if dst == "local" || dst == "broadcast" {
				dst = fields[1]
			}
			if _, n, err := net.ParseCIDR(dst); err == nil {
				if ones, _ := n.Mask.Size(); ones < 16 {
					continue
				}
			} else if dst == "default" {
				continue
			}
			t.Fatalf("this host already routes %s (%s); the test would take it over (leftovers of a killed run: ip netns list | grep headless-res)", addr, strings.TrimSpace(line))
		}
	}
	suffix := rand.String(6)
	n := &podNetns{name: "headless-res-" + suffix}
	host, inner := "hr"+suffix+"h", "hr"+suffix+"p"
	ipCmd := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	etc := filepath.Join("/etc/netns", n.name)
	// Registered first, so it runs last, after the pod servers in the
	// namespace (started later) are stopped.
	t.Cleanup(func() {
		for _, args := range [][]string{{"link", "delete", host}, {"netns", "delete", n.name}} {
			if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil && !strings.Contains(string(out), "Cannot find device") {
				t.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
			}
		}
		if err := os.RemoveAll(etc); err != nil {
			t.Error(err)
		}
	})
	if out, err := exec.Command("ip", "netns", "add", n.name).CombinedOutput(); err != nil {
		t.Fatalf("cannot create network namespace %s (ip netns add needs root with CAP_SYS_ADMIN and a writable /run/netns): %v: %s", n.name, err, out)
	}
	ipCmd("link", "add", host, "type", "veth", "peer", "name", inner, "netns", n.name)
	ipCmd("addr", "add", dnsAddr+"/32", "dev", host)
	ipCmd("link", "set", host, "up")
	ipCmd("route", "add", clientAddr+"/32", "dev", host, "src", dnsAddr)
	n.ip(t, "link", "set", "lo", "up")
	n.ip(t, "addr", "add", clientAddr+"/32", "dev", inner)
	n.ip(t, "link", "set", inner, "up")
	n.ip(t, "route", "add", dnsAddr+"/32", "dev", inner, "src", clientAddr)
	// What kubelet writes for a pod of namespace default with dnsPolicy
	// ClusterFirst, the cluster DNS Service's address as nameserver.
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	resolvConf := "search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver " + dnsAddr + "\noptions ndots:5\n"
	if err := os.WriteFile(filepath.Join(etc, "resolv.conf"), []byte(resolvConf), 0o644); err != nil {
		t.Fatal(err)
	}
	return n
}

// ip runs ip(8) in the namespace.
func (n *podNetns) ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", append([]string{"-n", n.name}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("ip -n %s %s: %v: %s", n.name, strings.Join(args, " "), err, out)
	}
}

// run runs a command inside the namespace and returns its standard
// output, or an error with what it wrote to standard error.
func (n *podNetns) run(env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.name, name}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %v: %s%s", name, strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out), nil
}

// ipv4s are the distinct IPv4 addresses in text, sorted.
func ipv4s(text string) []string {
	var out []string
	for _, ip := range regexp.MustCompile(`\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b`).FindAllString(text, -1) {
		if !slices.Contains(out, ip) {
			out = append(out, ip)
		}
	}
	slices.Sort(out)
	return out
}

// ensureArticleCassandra applies examples/cassandra.yaml to namespace
// default, as the article does, and waits for its three pods. What it
// created it deletes when the test ends, waiting for the pods to go, so
// that TestSeedWalkthrough finds default as it would without this test; a
// cassandra already there (TestSeedWalkthrough ran first) is left alone.
func ensureArticleCassandra(t *testing.T) []podInfo {
	t.Helper()
	cp := env.cluster
	ctx := context.Background()
	_, err := cp.client.AppsV1().StatefulSets("default").Get(ctx, "cassandra", metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		t.Cleanup(func() {
			cp.kubectl(t, "delete", "-n", "default", "--wait=true", "-f", filepath.Join(env.root, "examples", "cassandra.yaml"))
			eventually(t, podsReadyWithin, "the cassandra pods gone from default", func() error {
				if pods := cp.pods(t, "default", "app=cassandra"); len(pods) > 0 {
					return fmt.Errorf("%d left", len(pods))
				}
				return nil
			})
		})
	} else if err != nil {
		t.Fatal(err)
	}
	return applyArticleStatefulSet(t, cp, "default")
}

// TestSystemResolversOfAPod resolves the article's names from inside a
// network namespace set up as a pod of namespace default: kubelet's
// resolv.conf, and CoreDNS with the plugin on port 53 of the address it
// names. Every client a pod might use must find the pods, by full name and
// by the short names the search list completes (ndots:5 makes even
// cassandra-0.cassandra go through it first): glibc through Python's
// socket.getaddrinfo (the article's line) and getent, busybox nslookup,
// Go's own resolver, and grpc-go's dns resolver, whose round_robin policy
// must reach every pod.
func TestSystemResolversOfAPod(t *testing.T) {
	for _, tool := range []string{"python3", "getent", "busybox"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (Debian packages python3, libc-bin, busybox; .ci/run installs them)", tool)
		}
	}
	pods := ensureArticleCassandra(t)
	var ips []string
	for _, p := range pods {
		ips = append(ips, p.IP)
	}
	slices.Sort(ips)
	pod0 := podsByName(pods)["cassandra-0"]
	const full = "cassandra.default.svc.cluster.local"
	fqdn := func(pod string) string { return pod + ".cassandra.default.svc.cluster.local." }

	netns := newPodNetns(t, podDNSAddr, podClientAddr)
	// The pods' server: headless for the cluster's zones and, for every
	// other name, NXDOMAIN, standing in for the upstream a cluster DNS
	// forwards to (the search list makes clients ask for such names, as
	// cassandra.cluster.local).
	startCorefile(t, env.cluster, `.:{{.DNSPort}} {
    bind 127.0.0.1
    ready 127.0.0.1:{{.ReadyPort}}
    headless cluster.local in-addr.arpa ip6.arpa {
        kubeconfig {{.Kubeconfig}}
        namespaces default
    }
}
cluster.local:53 in-addr.arpa:53 ip6.arpa:53 {
    bind `+podDNSAddr+`
    headless {
        kubeconfig {{.Kubeconfig}}
        namespaces default
    }
}
.:53 {
    bind `+podDNSAddr+`
    template ANY ANY {
        rcode NXDOMAIN
    }
}
`)
	// ready speaks for the first server block; the pods' one syncs on its
	// own, at about the same time.
	dnsServer := net.JoinHostPort(podDNSAddr, "53")
	eventually(t, 10*time.Second, "CoreDNS answering on "+dnsServer, func() error {
		return expectAnswer(dnsServer, "udp", full+".", dns.TypeA, dns.RcodeSuccess, ips...)
	})

	// Each check is a name, the addresses it must resolve to, and for
	// each client the command line (in the namespace) and how to read its
	// output.
	names := []struct {
		name string
		want []string
	}{
		{full, ips},
		{"cassandra", ips},
		{"cassandra-0.cassandra", []string{pod0.IP}},
		{"cassandra-2.cassandra.default.svc.cluster.local", []string{podsByName(pods)["cassandra-2"].IP}},
	}

	t.Run("glibc getaddrinfo (Python)", func(t *testing.T) {
		for _, n := range names {
			// The article's line, with the name in it.
			script := fmt.Sprintf(`import socket; print(socket.getaddrinfo(%q, 9042))`, n.name)
			out, err := netns.run(nil, "python3", "-c", script)
			if err != nil {
				t.Errorf("%v", err)
				continue
			}
			if got := ipv4s(out); !slices.Equal(got, n.want) {
				t.Errorf("getaddrinfo(%q, 9042) = %s, want the addresses %v", n.name, strings.TrimSpace(out), n.want)
			}
		}
	})

	t.Run("glibc getent", func(t *testing.T) {
		for _, n := range names {
			out, err := netns.run(nil, "getent", "ahostsv4", n.name)
			if err != nil {
				t.Errorf("%v", err)
				continue
			}
			if got := ipv4s(out); !slices.Equal(got, n.want) {
				t.Errorf("getent ahostsv4 %s:\n%s\nwant the addresses %v", n.name, out, n.want)
			}
		}
		// getnameinfo: the address back to the pod's stable name.
		out, err := netns.run(nil, "getent", "hosts", pod0.IP)
		if want := pod0.IP + " " + strings.TrimSuffix(fqdn("cassandra-0"), "."); err != nil || strings.Join(strings.Fields(out), " ") != want {
			t.Errorf("getent hosts %s: %q (%v), want %q", pod0.IP, out, err, want)
		}
	})

	t.Run("busybox nslookup", func(t *testing.T) {
		// busybox's nslookup (1.35, Debian's and Alpine's) completes only
		// names without a dot, asks every name of the search list at once,
		// prints each answer and each NXDOMAIN, and exits 1 when any name
		// was not found; cassandra-0.cassandra it asks as it is (and the
		// world has no such name). Its answers are checked name by name.
		answered := regexp.MustCompile(`Name:\s+(\S+)\s+Address:\s+(\S+)`)
		for _, q := range []struct {
			name, fqdn string
			want       []string
		}{
			{full, full, ips},
			{"cassandra", full, ips},
			{"cassandra-2.cassandra.default.svc.cluster.local", "cassandra-2.cassandra.default.svc.cluster.local", names[3].want},
		} {
			out, err := netns.run(nil, "busybox", "nslookup", "-type=a", q.name)
			if err != nil && q.name == q.fqdn {
				t.Errorf("%v", err)
				continue
			}
			if !strings.Contains(out, "Server:\t\t"+podDNSAddr) {
				t.Errorf("busybox nslookup %s: no answer from %s:\n%s", q.name, podDNSAddr, out)
				continue
			}
			got := map[string][]string{}
			for _, m := range answered.FindAllStringSubmatch(out, -1) {
				got[m[1]] = append(got[m[1]], m[2])
			}
			slices.Sort(got[q.fqdn])
			if len(got) != 1 || !slices.Equal(got[q.fqdn], q.want) {
				t.Errorf("busybox nslookup %s:\n%s\nwant only %s with %v", q.name, out, q.fqdn, q.want)
			}
		}
		out, err := netns.run(nil, "busybox", "nslookup", "-type=srv", "_cql._tcp."+full)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pods {
			if !strings.Contains(out, "9042 "+strings.TrimSuffix(fqdn(p.Name), ".")) {
				t.Errorf("busybox nslookup -type=srv _cql._tcp.%s lacks %s:\n%s", full, p.Name, out)
			}
		}
		// An address, as the article's nslookup shows each pod's name.
		out, err = netns.run(nil, "busybox", "nslookup", pod0.IP)
		if want := "name = " + strings.TrimSuffix(fqdn("cassandra-0"), "."); err != nil || !strings.Contains(out, want) {
			t.Errorf("busybox nslookup %s: %v\n%s\nwant %q", pod0.IP, err, out, want)
		}
	})

	// The pods' gRPC servers: the pods' addresses on the namespace's
	// loopback, each with the test binary serving on it, so that the
	// client in the namespace reaches them without routing through the
	// host.
	for _, ip := range ips {
		netns.ip(t, "addr", "add", ip+"/32", "dev", "lo")
		startPodServer(t, netns.name, ip)
	}
	req := probeRequest{
		Hosts: []string{full, "cassandra", "cassandra-0.cassandra"},
		SRV:   [][3]string{{"cql", "tcp", "cassandra"}, {"cql", "tcp", full + "."}},
		Addrs: []string{pod0.IP},
		GRPC:  []string{"dns:///cassandra:50051", "dns:///" + full + ":50051"},
		Peers: len(ips),
		Calls: 10 * len(ips),
	}
	spec, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	out, err := netns.run([]string{resolverProbeEnv + "=" + string(spec)}, exe)
	if err != nil {
		t.Fatalf("the probe: %v", err)
	}
	var res probeResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("the probe printed %q: %v", out, err)
	}

	t.Run("Go resolver", func(t *testing.T) {
		for name, want := range map[string][]string{full: ips, "cassandra": ips, "cassandra-0.cassandra": {pod0.IP}} {
			if got := res.Hosts[name]; !slices.Equal(got, want) {
				t.Errorf("LookupHost(%q) = %v, want %v", name, got, want)
			}
		}
		var targets []string
		for _, p := range pods {
			targets = append(targets, "9042 "+fqdn(p.Name))
		}
		slices.Sort(targets)
		for name, got := range res.SRV {
			if !slices.Equal(got, targets) {
				t.Errorf("LookupSRV(cql, tcp, %q) = %v, want %v", name, got, targets)
			}
		}
		if got := res.Addrs[pod0.IP]; !slices.Equal(got, []string{fqdn("cassandra-0")}) {
			t.Errorf("LookupAddr(%s) = %v, want %s", pod0.IP, got, fqdn("cassandra-0"))
		}
	})

	t.Run("grpc-go round_robin", func(t *testing.T) {
		for _, target := range req.GRPC {
			count := res.GRPC[target]
			var reached []string
			for ip, n := range count {
				if n < 5 {
					t.Errorf("%s: %d calls reached %v, want about a third each on %v", target, req.Calls, count, ips)
				}
				reached = append(reached, ip)
			}
			slices.Sort(reached)
			if !slices.Equal(reached, ips) {
				t.Errorf("%s: calls reached %v, want every pod %v", target, count, ips)
			}
			t.Logf("%s: %d calls spread %v", target, req.Calls, count)
		}
	})
}
