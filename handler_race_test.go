package headless

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	core "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// churnState is state k of slice part ("a" or "b"): k+1 ready pods
// part-0..part-k with IPs 10.<10|20>.k.<j+1>, and one pod that is never
// ready. Every state has its own IPs, so an answer mixing two states of one
// slice shows.
func churnState(part string, k int) *discovery.EndpointSlice {
	octet := map[string]int{"a": 10, "b": 20}[part]
	var eps []discovery.Endpoint
	for j := 0; j <= k; j++ {
		eps = append(eps, endpoint(fmt.Sprintf("%s-%d", part, j), fmt.Sprintf("10.%d.%d.%d", octet, k, j+1)))
	}
	eps = append(eps, notReady(endpoint(part+"-down", fmt.Sprintf("10.%d.%d.100", octet, k))))
	return slice("default", "churn-"+part, "churn", discovery.AddressTypeIPv4, ports(port("http", 80, core.ProtocolTCP)), eps...)
}

const churnStates = 4

// TestAnswersStayConsistentUnderChurn changes two slices of one service
// about 100 times a second through the fake API server and the informers,
// while several goroutines query. Every answer must be one published state:
// the service's IPs one state of each slice, SRV targets and their glue from
// the same states, pod names and PTRs as some state had them. Run with
// -race, it also checks the index's locking.
func TestAnswersStayConsistentUnderChurn(t *testing.T) {
	h, client := newTestPlugin(t, "headless cluster.local in-addr.arpa",
		headlessService("default", "churn", true), churnState("a", 0), churnState("b", 0))
	const zone = ".churn.default.svc.cluster.local."

	// What may be seen: per slice state, its IPs and its pod names.
	type state struct {
		ips   []string
		hosts map[string]string // pod name → IP
	}
	states := map[string][]state{}
	podIPs := map[string][]string{} // every IP a pod name ever had
	ptrs := map[string][]string{}   // reverse name → the pod name its IP always has
	for _, part := range []string{"a", "b"} {
		for k := range churnStates {
			s := state{hosts: map[string]string{}}
			for _, ep := range churnState(part, k).Endpoints {
				if ep.Conditions.Ready != nil {
					continue
				}
				ip := ep.Addresses[0]
				s.ips = append(s.ips, ip)
				s.hosts[*ep.Hostname] = ip
				podIPs[*ep.Hostname] = append(podIPs[*ep.Hostname], ip)
				rev, _ := dns.ReverseAddr(ip)
				ptrs[rev] = []string{*ep.Hostname + zone}
			}
			states[part] = append(states[part], s)
		}
	}
	// The service's answer: one state of a and one of b.
	allowedA := map[string]bool{}
	allowedSRV := map[string]map[string]string{} // sorted targets → target → glue IP
	for _, sa := range states["a"] {
		for _, sb := range states["b"] {
			ips := slices.Concat(sa.ips, sb.ips)
			slices.Sort(ips)
			allowedA[strings.Join(ips, " ")] = true
			glue := map[string]string{}
			var targets []string
			for host, ip := range sa.hosts {
				glue[host+zone] = ip
				targets = append(targets, host+zone)
			}
			for host, ip := range sb.hosts {
				glue[host+zone] = ip
				targets = append(targets, host+zone)
			}
			slices.Sort(targets)
			allowedSRV[strings.Join(targets, " ")] = glue
		}
	}

	// Queries run until the writer is done: 2 s, and at least 200 updates
	// (a loaded machine can run the writer slower than 100 a second).
	ctx, stop := context.WithTimeout(context.Background(), 30*time.Second)
	defer stop()
	var (
		wg      sync.WaitGroup
		queries atomic.Int64
		errs    = make(chan string, 100)
	)
	report := func(format string, args ...any) {
		select {
		case errs <- fmt.Sprintf(format, args...):
		default:
		}
	}
	ask := func(qname string, qtype uint16) *dns.Msg {
		m := new(dns.Msg)
		m.SetQuestion(qname, qtype)
		m.SetEdns0(4096, false)
		resp, _ := exchange(t, h, m, false)
		queries.Add(1)
		return resp
	}
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; ctx.Err() == nil; i++ {
				// Leave the writer (and the informers) some of the CPU: the
				// race detector makes every fake API call slow.
				time.Sleep(100 * time.Microsecond)
				switch i % 4 {
				case 0:
					resp := ask("churn.default.svc.cluster.local.", dns.TypeA)
					if got := strings.Join(rdata(resp.Answer), " "); resp.Rcode != dns.RcodeSuccess || !allowedA[got] {
						report("service A: %s %q is no published state", dns.RcodeToString[resp.Rcode], got)
					}
				case 1:
					resp := ask("_http._tcp.churn.default.svc.cluster.local.", dns.TypeSRV)
					var targets []string
					for _, rr := range resp.Answer {
						targets = append(targets, rr.(*dns.SRV).Target)
					}
					slices.Sort(targets)
					glue, ok := allowedSRV[strings.Join(targets, " ")]
					if !ok || resp.Truncated {
						report("SRV targets %v are no published state", targets)
						break
					}
					if len(resp.Extra) != len(targets)+1 { // and the OPT
						report("SRV: %d glue records for %d targets", len(resp.Extra)-1, len(targets))
					}
					for _, rr := range resp.Extra {
						if a, ok := rr.(*dns.A); ok && glue[a.Hdr.Name] != a.A.String() {
							report("SRV glue %s %s, its target's address in that state is %q", a.Hdr.Name, a.A, glue[a.Hdr.Name])
						}
					}
				case 2:
					pod := []string{"a-0", "a-3", "b-1", "a-down"}[i/4%4]
					resp := ask(pod+zone, dns.TypeA)
					got := rdata(resp.Answer)
					switch {
					case resp.Rcode == dns.RcodeNameError && pod != "a-0":
					case resp.Rcode == dns.RcodeSuccess && len(got) == 1 && slices.Contains(podIPs[pod], got[0]):
					default:
						report("%s A: %s %v", pod, dns.RcodeToString[resp.Rcode], got)
					}
				case 3:
					rev, _ := dns.ReverseAddr([]string{"10.10.0.1", "10.20.3.4", "10.10.2.100", "10.20.1.2"}[i/4%4])
					resp := ask(rev, dns.TypePTR)
					got := rdata(resp.Answer)
					want, known := ptrs[rev]
					if !(resp.Rcode == dns.RcodeNameError && len(got) == 0) && !(known && slices.Equal(got, want)) {
						report("PTR %s: %s %v", rev, dns.RcodeToString[resp.Rcode], got)
					}
				}
			}
		}()
	}

	// The writer: about 100 updates a second, alternating slices.
	endpointSlices := client.DiscoveryV1().EndpointSlices("default")
	updates := 0
	last := map[string]int{}
	tick := time.NewTicker(10 * time.Millisecond)
	began := time.Now()
	for ctx.Err() == nil && (updates < 200 || time.Since(began) < 2*time.Second) {
		<-tick.C
		part := []string{"a", "b"}[updates%2]
		k := (updates/2 + updates%3) % churnStates
		if _, err := endpointSlices.Update(context.Background(), churnState(part, k), metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		last[part] = k
		updates++
	}
	tick.Stop()
	stop()
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	// In the end the index holds the last state written.
	final := slices.Concat(states["a"][last["a"]].ips, states["b"][last["b"]].ips)
	slices.Sort(final)
	waitFor(t, "the last state", func() bool {
		resp, _ := query(t, h, "churn.default.svc.cluster.local.", dns.TypeA)
		return slices.Equal(rdata(resp.Answer), final)
	})
	t.Logf("%d updates, %d queries", updates, queries.Load())
	if updates < 200 || queries.Load() < 1000 {
		t.Errorf("too little happened: %d updates, %d queries", updates, queries.Load())
	}
}
