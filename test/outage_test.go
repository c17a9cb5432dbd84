package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	core "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
)

// apiProxy stands between CoreDNS and the API server, so that a test can
// take the API server away from the plugin alone: cut closes every
// connection and refuses new ones, restore accepts them again on the same
// address. The test's own client talks to the API server directly.
type apiProxy struct {
	addr   string
	target string
	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]struct{}
}

func newAPIProxy(t *testing.T, target string) *apiProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &apiProxy{addr: ln.Addr().String(), target: target, conns: map[net.Conn]struct{}{}}
	p.serve(ln)
	t.Cleanup(p.cut)
	return p
}

func (p *apiProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.pipe(c)
		}
	}()
}

func (p *apiProxy) pipe(client net.Conn) {
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		client.Close()
		return
	}
	if !p.track(client, server) {
		return
	}
	done := make(chan struct{}, 2)
	copyHalf := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		done <- struct{}{}
	}
	go copyHalf(server, client)
	go copyHalf(client, server)
	<-done
	p.untrack(client, server)
}

// track records a proxied pair, or closes it if the proxy was cut meanwhile.
func (p *apiProxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		for _, c := range conns {
			c.Close()
		}
		return false
	}
	for _, c := range conns {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *apiProxy) untrack(conns ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range conns {
		c.Close()
		delete(p.conns, c)
	}
}

// cut drops every connection through the proxy and refuses new ones.
func (p *apiProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

// restore accepts connections again, on the same address.
func (p *apiProxy) restore(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		t.Fatalf("proxy: listening again on %s: %v", p.addr, err)
	}
	p.serve(ln)
}

// kubeconfig writes a copy of cp's kubeconfig whose server is the proxy.
func (p *apiProxy) kubeconfig(t *testing.T, cp *controlPlane) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(cp.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, cluster := range cfg.Clusters {
		cluster.Server = "https://" + p.addr
	}
	path := filepath.Join(t.TempDir(), "proxied.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// apiAddr is the host:port of cp's API server.
func apiAddr(t *testing.T, cp *controlPlane) string {
	t.Helper()
	host := strings.TrimPrefix(cp.config.Host, "https://")
	if _, _, err := net.SplitHostPort(host); err != nil {
		t.Fatalf("API server address %q: %v", cp.config.Host, err)
	}
	return host
}

// expectation is one question and the answer it must get.
type expectation struct {
	qname  string
	qtype  uint16
	rcode  int
	values []string
}

func (e expectation) check(server string) error {
	return expectAnswer(server, "udp", e.qname, e.qtype, e.rcode, e.values...)
}

// queryLoad keeps several clients asking known names as fast as they get
// answers, and counts what went wrong: SERVFAIL, timeouts, other answers.
type queryLoad struct {
	queries, servfails, timeouts, wrong atomic.Int64
	firstWrong                          atomic.Value
	stop                                chan struct{}
	wg                                  sync.WaitGroup
}

func startQueryLoad(server string, workers int, names []expectation) *queryLoad {
	l := &queryLoad{stop: make(chan struct{})}
	for w := range workers {
		l.wg.Go(func() {
			c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
			for i := w; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				e := names[i%len(names)]
				m := new(dns.Msg)
				m.SetQuestion(e.qname, e.qtype)
				resp, _, err := c.Exchange(m, server)
				l.queries.Add(1)
				var netErr net.Error
				switch {
				case errors.As(err, &netErr) && netErr.Timeout():
					l.timeouts.Add(1)
				case err != nil:
					l.wrong.Add(1)
					l.firstWrong.CompareAndSwap(nil, err.Error())
				case resp.Rcode == dns.RcodeServerFailure:
					l.servfails.Add(1)
				default:
					want := strings.Join(e.values, ",")
					if got := strings.Join(values(resp.Answer), ","); resp.Rcode != e.rcode || got != want {
						l.wrong.Add(1)
						l.firstWrong.CompareAndSwap(nil, fmt.Sprintf("%s: %s %s, want %s %s", e.qname,
							dns.RcodeToString[resp.Rcode], got, dns.RcodeToString[e.rcode], want))
					}
				}
			}
		})
	}
	return l
}

// finish stops the load and fails the test if any query went wrong.
func (l *queryLoad) finish(t *testing.T, what string) {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	t.Logf("%s: %d queries, %d SERVFAIL, %d timeouts, %d other wrong answers",
		what, l.queries.Load(), l.servfails.Load(), l.timeouts.Load(), l.wrong.Load())
	if l.servfails.Load()+l.timeouts.Load()+l.wrong.Load() > 0 {
		t.Errorf("%s: queries failed; first wrong answer: %v", what, l.firstWrong.Load())
	}
	if l.queries.Load() == 0 {
		t.Errorf("%s: no queries made", what)
	}
}

// TestAPIServerOutage takes the API server away from the plugin for 30 s
// under steady query load, changes objects meanwhile, and gives it back:
// every known name answers throughout, ready stays ready, the outage is
// logged once, and every change shows within a second of the return.
func TestAPIServerOutage(t *testing.T) {
	c := env.cluster.client
	ctx := context.Background()
	ns := newNamespace(t, env.cluster, "outage")
	zone := ns + ".svc.cluster.local."
	ports := []discovery.EndpointPort{port("cql", 9042, core.ProtocolTCP)}
	createService(t, c, ns, "cassandra", true)
	createSlice(t, c, newSlice(ns, "cassandra-1", "cassandra", discovery.AddressTypeIPv4, ports,
		endpoint("cassandra-0", "10.30.1.1"), endpoint("cassandra-1", "10.30.1.2")))
	createService(t, c, ns, "leaving", false)
	createSlice(t, c, newSlice(ns, "leaving-1", "leaving", discovery.AddressTypeIPv4, nil, endpoint("", "10.30.2.1")))
	createService(t, c, ns, "moving", false)
	moving := newSlice(ns, "moving-1", "moving", discovery.AddressTypeIPv4, nil, endpoint("", "10.30.3.1"))
	createSlice(t, c, moving)

	proxy := newAPIProxy(t, apiAddr(t, env.cluster))
	s := startCoreDNS(t, env.cluster, `headless cluster.local in-addr.arpa {
        kubeconfig `+proxy.kubeconfig(t, env.cluster)+`
        namespaces `+ns+`
    }`)
	known := []expectation{
		{"cassandra." + zone, dns.TypeA, dns.RcodeSuccess, []string{"10.30.1.1", "10.30.1.2"}},
		{"cassandra-1.cassandra." + zone, dns.TypeA, dns.RcodeSuccess, []string{"10.30.1.2"}},
		{"_cql._tcp.cassandra." + zone, dns.TypeSRV, dns.RcodeSuccess, []string{"9042 cassandra-0.cassandra." + zone, "9042 cassandra-1.cassandra." + zone}},
		{"1.1.30.10.in-addr.arpa.", dns.TypePTR, dns.RcodeSuccess, []string{"cassandra-0.cassandra." + zone}},
		{"leaving." + zone, dns.TypeA, dns.RcodeSuccess, []string{"10.30.2.1"}},
		{"moving." + zone, dns.TypeA, dns.RcodeSuccess, []string{"10.30.3.1"}},
		{"nosuch." + zone, dns.TypeA, dns.RcodeNameError, nil},
	}
	for _, e := range known {
		if err := e.check(s.addr); err != nil {
			t.Fatal(err)
		}
	}

	load := startQueryLoad(s.addr, 4, known)
	proxy.cut()
	cutAt := time.Now()
	// While the plugin cannot see it, the cluster changes: a service goes,
	// a slice moves, a new service comes.
	if err := c.CoreV1().Services(ns).Delete(ctx, "leaving", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.DiscoveryV1().EndpointSlices(ns).Delete(ctx, "leaving-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	moving.Endpoints = []discovery.Endpoint{endpoint("", "10.30.3.2")}
	updateSlice(t, c, moving)
	createService(t, c, ns, "arriving", false)
	createSlice(t, c, newSlice(ns, "arriving-1", "arriving", discovery.AddressTypeIPv4, nil, endpoint("", "10.30.4.1")))
	for time.Since(cutAt) < 30*time.Second {
		if !s.isReady() {
			t.Fatalf("not ready %s into the outage", time.Since(cutAt).Round(time.Millisecond))
		}
		time.Sleep(time.Second)
	}
	load.finish(t, "30 s without the API server")

	proxy.restore(t)
	after := []expectation{
		{"leaving." + zone, dns.TypeA, dns.RcodeNameError, nil},
		{"moving." + zone, dns.TypeA, dns.RcodeSuccess, []string{"10.30.3.2"}},
		{"arriving." + zone, dns.TypeA, dns.RcodeSuccess, []string{"10.30.4.1"}},
		{"1.2.30.10.in-addr.arpa.", dns.TypePTR, dns.RcodeNameError, nil},
		{"1.3.30.10.in-addr.arpa.", dns.TypePTR, dns.RcodeNameError, nil},
		{"cassandra." + zone, dns.TypeA, dns.RcodeSuccess, []string{"10.30.1.1", "10.30.1.2"}},
	}
	took := eventually(t, time.Minute, "every change made during the outage", func() error {
		for _, e := range after {
			if err := e.check(s.addr); err != nil {
				return err
			}
		}
		return nil
	})
	t.Logf("all changes answered %s after the API server came back", took.Round(time.Millisecond))
	if took > time.Second {
		t.Errorf("changes took %s after the API server came back, want within 1s", took.Round(time.Millisecond))
	}

	log := s.log.String()
	if n := strings.Count(log, "API server unreachable"); n != 1 {
		t.Errorf("outage logged %d times, want once:\n%s", n, log)
	}
	if n := strings.Count(log, "API server reachable again"); n != 1 {
		t.Errorf("return logged %d times, want once:\n%s", n, log)
	}
}

// TestStartWithoutAPIServer starts CoreDNS while the API server cannot be
// reached: owned names get SERVFAIL and ready says not ready, CoreDNS
// serves once startup_timeout has passed, and all is well soon after the
// API server appears.
func TestStartWithoutAPIServer(t *testing.T) {
	c := env.cluster.client
	ns := newNamespace(t, env.cluster, "nostart")
	zone := ns + ".svc.cluster.local."
	createService(t, c, ns, "db", false)
	createSlice(t, c, newSlice(ns, "db-1", "db", discovery.AddressTypeIPv4, nil, endpoint("", "10.31.0.1")))

	proxy := newAPIProxy(t, apiAddr(t, env.cluster))
	proxy.cut()
	launched := time.Now()
	s := launchCoreDNS(t, `headless cluster.local {
        kubeconfig `+proxy.kubeconfig(t, env.cluster)+`
        namespaces `+ns+`
        startup_timeout 2s
    }`)
	// CoreDNS opens its listeners once every plugin has started, which for
	// this one is when startup_timeout runs out.
	var first *dns.Msg
	eventually(t, 20*time.Second, "an answer with the API server away", func() error {
		var err error
		first, err = exchange(s.addr, "udp", "db."+zone, dns.TypeA, 0)
		return err
	})
	if waited := time.Since(launched); waited < 2*time.Second {
		t.Errorf("answering %s after launch, before startup_timeout 2s", waited.Round(time.Millisecond))
	}
	if first.Rcode != dns.RcodeServerFailure {
		t.Fatalf("before the first sync: %s, want SERVFAIL", dns.RcodeToString[first.Rcode])
	}
	if s.isReady() {
		t.Fatal("ready before the first sync")
	}

	proxy.restore(t)
	restored := time.Now()
	eventually(t, 10*time.Second, "the first sync once the API server is there", func() error {
		if !s.isReady() {
			return errors.New("not ready")
		}
		return expectAnswer(s.addr, "udp", "db."+zone, dns.TypeA, dns.RcodeSuccess, "10.31.0.1")
	})
	t.Logf("ready and answering %s after the API server appeared", time.Since(restored).Round(time.Millisecond))
}

// launchCoreDNS runs CoreDNS with one server block, like startCoreDNS, but
// does not wait for it to be ready.
func launchCoreDNS(t *testing.T, block string) *corednsServer {
	t.Helper()
	return launchCorefile(t, env.cluster, `.:{{.DNSPort}} {
    bind 127.0.0.1
    ready 127.0.0.1:{{.ReadyPort}}
    prometheus 127.0.0.1:{{.MetricsPort}}
    `+block+`
}
`)
}

// TestWatchExpiry makes the plugin's watches expire while it is cut off:
// this control plane serves watches straight from etcd (no watch cache)
// and compacts etcd every second, so the watch resumed after the cut asks
// for a resource version that is gone ("too old resource version"). The
// plugin must list again and end with exactly the cluster's state.
func TestWatchExpiry(t *testing.T) {
	// Its own API server, without a watch cache; the test writes every
	// object itself, so the API server alone will do.
	cp, err := startControlPlane(filepath.Join(t.TempDir(), "control-plane"), apiserverOnly,
		"-apiserver-arg=--watch-cache=false", "-apiserver-arg=--etcd-compaction-interval=1s")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cp.stop)
	c := cp.client
	ns := newNamespace(t, cp, "expiry")
	zone := ns + ".svc.cluster.local."
	createService(t, c, ns, "kept", false)
	createSlice(t, c, newSlice(ns, "kept-1", "kept", discovery.AddressTypeIPv4, nil, endpoint("", "10.32.0.1")))
	createService(t, c, ns, "dropped", false)
	createSlice(t, c, newSlice(ns, "dropped-1", "dropped", discovery.AddressTypeIPv4, nil, endpoint("", "10.32.1.1")))
	createService(t, c, ns, "changed", false)
	changed := newSlice(ns, "changed-1", "changed", discovery.AddressTypeIPv4, nil, endpoint("", "10.32.2.1"))
	createSlice(t, c, changed)

	proxy := newAPIProxy(t, apiAddr(t, cp))
	// debug shows the plugin's note that a watch expired.
	s := launchCorefile(t, cp, `.:{{.DNSPort}} {
    bind 127.0.0.1
    debug
    ready 127.0.0.1:{{.ReadyPort}}
    headless cluster.local {
        kubeconfig `+proxy.kubeconfig(t, cp)+`
        namespaces `+ns+`
    }
}
`)
	s.waitReady(t, 30*time.Second)
	if err := expectAnswer(s.addr, "udp", "dropped."+zone, dns.TypeA, dns.RcodeSuccess, "10.32.1.1"); err != nil {
		t.Fatal(err)
	}

	// Let the watches settle, so that the cut ends established ones.
	time.Sleep(2 * time.Second)
	proxy.cut()
	ctx := context.Background()
	if err := c.CoreV1().Services(ns).Delete(ctx, "dropped", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	changed.Endpoints = []discovery.Endpoint{endpoint("", "10.32.2.2")}
	updateSlice(t, c, changed)
	createService(t, c, ns, "added", false)
	createSlice(t, c, newSlice(ns, "added-1", "added", discovery.AddressTypeIPv4, nil, endpoint("", "10.32.3.1")))
	// Let etcd compact past every revision the plugin has seen.
	time.Sleep(4 * time.Second)
	proxy.restore(t)

	took := eventually(t, 30*time.Second, "the state after the expired watch", func() error {
		for _, e := range []expectation{
			{"kept." + zone, dns.TypeA, dns.RcodeSuccess, []string{"10.32.0.1"}},
			{"dropped." + zone, dns.TypeA, dns.RcodeNameError, nil},
			{"changed." + zone, dns.TypeA, dns.RcodeSuccess, []string{"10.32.2.2"}},
			{"added." + zone, dns.TypeA, dns.RcodeSuccess, []string{"10.32.3.1"}},
		} {
			if err := e.check(s.addr); err != nil {
				return err
			}
		}
		return nil
	})
	t.Logf("caught up %s after the API server came back", took.Round(time.Millisecond))
	if log := s.log.String(); !strings.Contains(log, "listing again") {
		t.Errorf("no watch expired, so this test proved nothing; CoreDNS log:\n%s", log)
	}
	if !s.isReady() {
		t.Error("not ready after catching up")
	}
}
