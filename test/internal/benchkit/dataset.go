package main

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	core "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

const zone = "cluster.local."

// headlessService is one headless Service of the dataset as the API server
// holds it: what the expected answers are computed from.
type headlessService struct {
	namespace, name, slice string
	port                   string // the slice's first port: name
	portNumber             int32  // and number
	pods                   []pod  // ready endpoints with a hostname
}

type pod struct {
	hostname string
	ip       netip.Addr
}

func (s *headlessService) fqdn() string { return s.name + "." + s.namespace + ".svc." + zone }

// loadDataset lists the headless Services' EndpointSlices in the benchmark's
// namespaces (prefix "bench-"), sorted by namespace and name.
func loadDataset(ctx context.Context, client kubernetes.Interface) ([]*headlessService, int, error) {
	list, err := client.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{LabelSelector: core.IsHeadlessService})
	if err != nil {
		return nil, 0, fmt.Errorf("listing headless EndpointSlices: %w", err)
	}
	var out []*headlessService
	endpoints := 0
	for i := range list.Items {
		s := &list.Items[i]
		if !strings.HasPrefix(s.Namespace, "bench-") || s.AddressType != discovery.AddressTypeIPv4 || len(s.Ports) == 0 {
			continue
		}
		p := s.Ports[0]
		if p.Name == nil || p.Port == nil {
			continue
		}
		hs := &headlessService{namespace: s.Namespace, name: s.Labels[discovery.LabelServiceName], slice: s.Name,
			port: *p.Name, portNumber: *p.Port}
		for _, ep := range s.Endpoints {
			if ep.Hostname == nil || len(ep.Addresses) != 1 || (ep.Conditions.Ready != nil && !*ep.Conditions.Ready) {
				continue
			}
			ip, err := netip.ParseAddr(ep.Addresses[0])
			if err != nil {
				return nil, 0, fmt.Errorf("slice %s/%s: %v", s.Namespace, s.Name, err)
			}
			hs.pods = append(hs.pods, pod{hostname: *ep.Hostname, ip: ip})
			endpoints++
		}
		if len(hs.pods) > 0 {
			out = append(out, hs)
		}
	}
	slices.SortFunc(out, func(a, b *headlessService) int {
		return cmp.Or(cmp.Compare(a.namespace, b.namespace), cmp.Compare(a.name, b.name))
	})
	return out, endpoints, nil
}

// question is one query of the mix and the answer it must get: the sorted
// data of the answer RRset of qtype (A: addresses; SRV: "port target";
// PTR: targets), owner names and TTLs aside.
type question struct {
	name  string
	qtype uint16
	want  []string
}

func podName(s *headlessService, p pod) string { return p.hostname + "." + s.fqdn() }

func serviceA(s *headlessService) question {
	q := question{name: s.fqdn(), qtype: dns.TypeA}
	for _, p := range s.pods {
		q.want = append(q.want, p.ip.String())
	}
	slices.Sort(q.want)
	return q
}

func podA(s *headlessService, p pod) question {
	return question{name: podName(s, p), qtype: dns.TypeA, want: []string{p.ip.String()}}
}

func serviceSRV(s *headlessService) question {
	q := question{name: "_" + s.port + "._tcp." + s.fqdn(), qtype: dns.TypeSRV}
	for _, p := range s.pods {
		q.want = append(q.want, fmt.Sprintf("%d %s", s.portNumber, podName(s, p)))
	}
	slices.Sort(q.want)
	return q
}

func podPTR(s *headlessService, p pod) question {
	name, _ := dns.ReverseAddr(p.ip.String())
	return question{name: name, qtype: dns.TypePTR, want: []string{podName(s, p)}}
}

// mix draws n questions from the dataset, deterministically from seed: a
// quarter each of service A, pod A, SRV and PTR, interleaved, each on a
// service (and pod) drawn at random. It returns the questions in order and
// the distinct ones.
func mix(data []*headlessService, n int, seed uint64) (all, distinct []question) {
	r := rand.New(rand.NewPCG(seed, 0x6865616466756c))
	seen := map[string]bool{}
	for i := range n {
		s := data[r.IntN(len(data))]
		p := s.pods[r.IntN(len(s.pods))]
		var q question
		switch i % 4 {
		case 0:
			q = serviceA(s)
		case 1:
			q = podA(s, p)
		case 2:
			q = serviceSRV(s)
		default:
			q = podPTR(s, p)
		}
		all = append(all, q)
		if key := q.name + "/" + dns.TypeToString[q.qtype]; !seen[key] {
			seen[key] = true
			distinct = append(distinct, q)
		}
	}
	return all, distinct
}

// writeDnsperfFile writes the questions in dnsperf's "name TYPE" format.
func writeDnsperfFile(path string, qs []question) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for _, q := range qs {
		fmt.Fprintf(w, "%s %s\n", q.name, dns.TypeToString[q.qtype])
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ask sends one question over UDP without EDNS0, as dnsperf does, and again
// over TCP if the reply is truncated.
func ask(addr string, name string, qtype uint16, timeout time.Duration) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	c := &dns.Client{Net: "udp", Timeout: timeout}
	r, _, err := c.Exchange(m, addr)
	if err == nil && r.Truncated {
		c.Net = "tcp"
		r, _, err = c.Exchange(m, addr)
	}
	return r, err
}

// verdict is "" when the reply is the expected answer, else what is wrong.
func verdict(q question, r *dns.Msg) string {
	if r.Rcode != dns.RcodeSuccess {
		return "rcode " + dns.RcodeToString[r.Rcode]
	}
	var got []string
	for _, rr := range r.Answer {
		if rr.Header().Rrtype != q.qtype || !strings.EqualFold(rr.Header().Name, q.name) {
			continue
		}
		switch rr := rr.(type) {
		case *dns.A:
			got = append(got, rr.A.String())
		case *dns.SRV:
			got = append(got, fmt.Sprintf("%d %s", rr.Port, strings.ToLower(rr.Target)))
		case *dns.PTR:
			got = append(got, strings.ToLower(rr.Ptr))
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, q.want) {
		return fmt.Sprintf("answer %v, want %v", got, q.want)
	}
	return ""
}

// checkResult is the outcome of asking every question once.
type checkResult struct {
	asked, wrong int
	examples     []string
}

// check asks every question of addr (8 at a time) and counts the wrong
// answers. With rcodeOnly, any NOERROR reply is right (whoami).
func check(ctx context.Context, addr string, qs []question, rcodeOnly bool) checkResult {
	var (
		next, wrong atomic.Int64
		mu          sync.Mutex
		examples    []string
		wg          sync.WaitGroup
	)
	for range 8 {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= len(qs) {
					return
				}
				q := qs[i]
				r, err := ask(addr, q.name, q.qtype, 2*time.Second)
				problem := ""
				switch {
				case err != nil:
					problem = err.Error()
				case rcodeOnly:
					if r.Rcode != dns.RcodeSuccess {
						problem = "rcode " + dns.RcodeToString[r.Rcode]
					}
				default:
					problem = verdict(q, r)
				}
				if problem != "" {
					wrong.Add(1)
					mu.Lock()
					if len(examples) < 5 {
						examples = append(examples, fmt.Sprintf("%s %s: %s", q.name, dns.TypeToString[q.qtype], problem))
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return checkResult{asked: len(qs), wrong: int(wrong.Load()), examples: examples}
}

// waitCorrect asks q of addr every interval until the answer is right (any
// NOERROR reply with rcodeOnly) and returns when that answer arrived. It
// gives up at the deadline.
func waitCorrect(ctx context.Context, addr string, q question, rcodeOnly bool, interval time.Duration, deadline time.Time) (time.Time, error) {
	last := "no reply"
	for {
		sent := time.Now()
		r, err := ask(addr, q.name, q.qtype, 50*time.Millisecond)
		now := time.Now()
		switch {
		case err != nil:
			last = err.Error()
		case rcodeOnly && r.Rcode == dns.RcodeSuccess:
			return now, nil
		case !rcodeOnly:
			if last = verdict(q, r); last == "" {
				return now, nil
			}
		}
		if now.After(deadline) {
			return now, fmt.Errorf("%s %s: no right answer in time (last: %s)", q.name, dns.TypeToString[q.qtype], last)
		}
		if err := ctx.Err(); err != nil {
			return now, err
		}
		if wait := interval - now.Sub(sent); wait > 0 {
			time.Sleep(wait)
		}
	}
}
