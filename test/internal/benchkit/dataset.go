package benchkit

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

const Zone = "cluster.local."

// HeadlessService is one headless Service of the dataset as the API server
// holds it: what the expected answers are computed from.
type HeadlessService struct {
	Namespace, Name, Slice string
	Port                   string // the slice's first port: name
	PortNumber             int32  // and number
	Pods                   []Pod  // ready endpoints with a hostname
}

type Pod struct {
	Hostname string
	IP       netip.Addr
}

func (s *HeadlessService) FQDN() string { return s.Name + "." + s.Namespace + ".svc." + Zone }

// LoadDataset lists the headless Services' EndpointSlices in the namespaces
// whose names start with prefix and returns their Services, each with the
// ready endpoints of all its IPv4 slices that have a hostname, sorted by
// namespace and name, and the number of those endpoints. A Service's port
// and Slice are those of its first slice (by name).
func LoadDataset(ctx context.Context, client kubernetes.Interface, prefix string) ([]*HeadlessService, int, error) {
	var items []discovery.EndpointSlice
	for cont := ""; ; {
		list, err := client.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{LabelSelector: core.IsHeadlessService, Limit: 2000, Continue: cont})
		if err != nil {
			return nil, 0, fmt.Errorf("listing headless EndpointSlices: %w", err)
		}
		items = append(items, list.Items...)
		if cont = list.Continue; cont == "" {
			break
		}
	}
	slices.SortFunc(items, func(a, b discovery.EndpointSlice) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	byName := map[string]*HeadlessService{}
	var out []*HeadlessService
	endpoints := 0
	for i := range items {
		s := &items[i]
		if !strings.HasPrefix(s.Namespace, prefix) || s.AddressType != discovery.AddressTypeIPv4 || len(s.Ports) == 0 {
			continue
		}
		p := s.Ports[0]
		if p.Name == nil || p.Port == nil {
			continue
		}
		key := s.Namespace + "/" + s.Labels[discovery.LabelServiceName]
		hs := byName[key]
		if hs == nil {
			hs = &HeadlessService{Namespace: s.Namespace, Name: s.Labels[discovery.LabelServiceName], Slice: s.Name,
				Port: *p.Name, PortNumber: *p.Port}
			byName[key] = hs
			out = append(out, hs)
		}
		for _, ep := range s.Endpoints {
			if ep.Hostname == nil || len(ep.Addresses) != 1 || (ep.Conditions.Ready != nil && !*ep.Conditions.Ready) {
				continue
			}
			ip, err := netip.ParseAddr(ep.Addresses[0])
			if err != nil {
				return nil, 0, fmt.Errorf("slice %s/%s: %v", s.Namespace, s.Name, err)
			}
			hs.Pods = append(hs.Pods, Pod{Hostname: *ep.Hostname, IP: ip})
			endpoints++
		}
	}
	out = slices.DeleteFunc(out, func(s *HeadlessService) bool { return len(s.Pods) == 0 })
	slices.SortFunc(out, func(a, b *HeadlessService) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return out, endpoints, nil
}

// Question is one query of the mix and the answer it must get: the sorted
// data of the answer RRset of qtype (A: addresses; SRV: "port target";
// PTR: targets), owner names and TTLs aside.
type Question struct {
	Name  string
	Qtype uint16
	Want  []string
}

func PodName(s *HeadlessService, p Pod) string { return p.Hostname + "." + s.FQDN() }

func ServiceA(s *HeadlessService) Question {
	q := Question{Name: s.FQDN(), Qtype: dns.TypeA}
	for _, p := range s.Pods {
		q.Want = append(q.Want, p.IP.String())
	}
	slices.Sort(q.Want)
	return q
}

func PodA(s *HeadlessService, p Pod) Question {
	return Question{Name: PodName(s, p), Qtype: dns.TypeA, Want: []string{p.IP.String()}}
}

func ServiceSRV(s *HeadlessService) Question {
	q := Question{Name: "_" + s.Port + "._tcp." + s.FQDN(), Qtype: dns.TypeSRV}
	for _, p := range s.Pods {
		q.Want = append(q.Want, fmt.Sprintf("%d %s", s.PortNumber, PodName(s, p)))
	}
	slices.Sort(q.Want)
	return q
}

func PodPTR(s *HeadlessService, p Pod) Question {
	name, _ := dns.ReverseAddr(p.IP.String())
	return Question{Name: name, Qtype: dns.TypePTR, Want: []string{PodName(s, p)}}
}

// Mix draws n questions from the dataset, deterministically from seed: a
// quarter each of service A, pod A, SRV and PTR, interleaved, each on a
// service (and pod) drawn at random. It returns the questions in order and
// the distinct ones.
func Mix(data []*HeadlessService, n int, seed uint64) (all, distinct []Question) {
	r := rand.New(rand.NewPCG(seed, 0x6865616466756c))
	seen := map[string]bool{}
	for i := range n {
		s := data[r.IntN(len(data))]
		p := s.Pods[r.IntN(len(s.Pods))]
		var q Question
		switch i % 4 {
		case 0:
			q = ServiceA(s)
		case 1:
			q = PodA(s, p)
		case 2:
			q = ServiceSRV(s)
		default:
			q = PodPTR(s, p)
		}
		all = append(all, q)
		if key := q.Name + "/" + dns.TypeToString[q.Qtype]; !seen[key] {
			seen[key] = true
			distinct = append(distinct, q)
		}
	}
	return all, distinct
}

// WriteDnsperfFile writes the questions in dnsperf's "name TYPE" format.
func WriteDnsperfFile(path string, qs []Question) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for _, q := range qs {
		fmt.Fprintf(w, "%s %s\n", q.Name, dns.TypeToString[q.Qtype])
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Ask sends one question over UDP without EDNS0, as dnsperf does, and again
// over TCP if the reply is truncated.
func Ask(addr string, name string, qtype uint16, timeout time.Duration) (*dns.Msg, error) {
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

// Verdict is "" when the reply is the expected answer, else what is wrong.
func Verdict(q Question, r *dns.Msg) string {
	if r.Rcode != dns.RcodeSuccess {
		return "rcode " + dns.RcodeToString[r.Rcode]
	}
	var got []string
	for _, rr := range r.Answer {
		if rr.Header().Rrtype != q.Qtype || !strings.EqualFold(rr.Header().Name, q.Name) {
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
	if !slices.Equal(got, q.Want) {
		return fmt.Sprintf("answer %v, want %v", got, q.Want)
	}
	return ""
}

// CheckResult is the outcome of asking every question once.
type CheckResult struct {
	Asked, Wrong int
	Examples     []string
}

// Check asks every question of addr (8 at a time) and counts the wrong
// answers. With rcodeOnly, any NOERROR reply is right (whoami).
func Check(ctx context.Context, addr string, qs []Question, rcodeOnly bool) CheckResult {
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
				r, err := Ask(addr, q.Name, q.Qtype, 2*time.Second)
				problem := ""
				switch {
				case err != nil:
					problem = err.Error()
				case rcodeOnly:
					if r.Rcode != dns.RcodeSuccess {
						problem = "rcode " + dns.RcodeToString[r.Rcode]
					}
				default:
					problem = Verdict(q, r)
				}
				if problem != "" {
					wrong.Add(1)
					mu.Lock()
					if len(examples) < 5 {
						examples = append(examples, fmt.Sprintf("%s %s: %s", q.Name, dns.TypeToString[q.Qtype], problem))
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return CheckResult{Asked: len(qs), Wrong: int(wrong.Load()), Examples: examples}
}

// WaitCorrect asks q of addr every interval until the answer is right (any
// NOERROR reply with rcodeOnly) and returns when that answer arrived. It
// gives up at the deadline.
func WaitCorrect(ctx context.Context, addr string, q Question, rcodeOnly bool, interval time.Duration, deadline time.Time) (time.Time, error) {
	last := "no reply"
	for {
		sent := time.Now()
		r, err := Ask(addr, q.Name, q.Qtype, 50*time.Millisecond)
		now := time.Now()
		switch {
		case err != nil:
			last = err.Error()
		case rcodeOnly && r.Rcode == dns.RcodeSuccess:
			return now, nil
		case !rcodeOnly:
			if last = Verdict(q, r); last == "" {
				return now, nil
			}
		}
		if now.After(deadline) {
			return now, fmt.Errorf("%s %s: no right answer in time (last: %s)", q.Name, dns.TypeToString[q.Qtype], last)
		}
		if err := ctx.Err(); err != nil {
			return now, err
		}
		if wait := interval - now.Sub(sent); wait > 0 {
			time.Sleep(wait)
		}
	}
}
