package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	discovery "k8s.io/api/discovery/v1"
)

// applyExamples applies examples/ (the article's cassandra and external-db)
// to the default namespace of the shared cluster, as the article does
// (kubectl apply -f examples/), and waits for the three cassandra pods.
// It returns the pods' names in DNS by address.
func applyExamples(t *testing.T) map[string]string {
	t.Helper()
	cp := env.cluster
	cp.kubectl(t, "apply", "-f", filepath.Join(env.root, "examples"))
	pods := make(map[string]string)
	for _, p := range cp.waitPodsReady(t, "default", "app=cassandra", 3) {
		pods[p.IP] = p.Name + ".cassandra.default.svc.cluster.local."
	}
	return pods
}

// TestSeedWalkthrough makes every example of the article true, read by
// miekg/dns, dig and Go's resolver: the article's manifests applied with
// kubectl, pods run by the cluster (with addresses of their own, not the
// article's), EndpointSlices written by the controllers.
func TestSeedWalkthrough(t *testing.T) {
	seedPods := applyExamples(t)
	var podIPs []string
	for ip := range seedPods {
		podIPs = append(podIPs, ip)
	}
	slices.SortFunc(podIPs, func(a, b string) int { return netip.MustParseAddr(a).Compare(netip.MustParseAddr(b)) })
	t.Logf("cassandra pods: %v", seedPods)

	// Each Service's EndpointSlice is written by its controller: the
	// endpointslice controller from the pods, the mirroring controller
	// from external-db's Endpoints.
	for svc, want := range map[string]string{"cassandra": controllerManaged, "external-db": "endpointslicemirroring-controller.k8s.io"} {
		eventually(t, 10*time.Second, svc+"'s EndpointSlice", func() error {
			out := env.cluster.kubectl(t, "get", "endpointslices", "-l", discovery.LabelServiceName+"="+svc,
				"-o", `jsonpath={range .items[*]}{.metadata.labels.endpointslice\.kubernetes\.io/managed-by}{"\n"}{end}`)
			if strings.TrimSpace(out) != want {
				return fmt.Errorf("managed by %q, want %q", out, want)
			}
			return nil
		})
	}
	// Other tests put pods with the article's IPs in their own namespaces.
	s := startCoreDNS(t, env.cluster, namespacedBlock("default", ""))

	t.Run("miekg/dns", func(t *testing.T) {
		for _, network := range []string{"udp", "tcp"} {
			checks := []error{
				expectAnswer(s.addr, network, "cassandra.default.svc.cluster.local.", dns.TypeA, dns.RcodeSuccess, podIPs...),
				expectAnswer(s.addr, network, "_cql._tcp.cassandra.default.svc.cluster.local.", dns.TypeSRV, dns.RcodeSuccess,
					"9042 cassandra-0.cassandra.default.svc.cluster.local.", "9042 cassandra-1.cassandra.default.svc.cluster.local.", "9042 cassandra-2.cassandra.default.svc.cluster.local."),
				expectAnswer(s.addr, network, "external-db.default.svc.cluster.local.", dns.TypeA, dns.RcodeSuccess, "10.0.0.50", "10.0.0.51"),
			}
			for ip, name := range seedPods {
				checks = append(checks,
					expectAnswer(s.addr, network, name, dns.TypeA, dns.RcodeSuccess, ip),
					expectAnswer(s.addr, network, mustReverse(t, ip), dns.TypePTR, dns.RcodeSuccess, name))
			}
			for _, err := range checks {
				if err != nil {
					t.Errorf("%s: %v", network, err)
				}
			}
		}
	})

	t.Run("dig", func(t *testing.T) {
		if _, err := exec.LookPath("dig"); err != nil {
			t.Fatal("dig is not installed (Debian package dnsutils); .ci/run installs it")
		}
		host, port, _ := net.SplitHostPort(s.addr)
		dig := func(args ...string) []string {
			out, err := exec.Command("dig", append([]string{"@" + host, "-p", port, "+short", "+time=2", "+tries=1"}, args...)...).Output()
			if err != nil {
				t.Fatalf("dig %v: %v", args, err)
			}
			lines := strings.Fields(strings.TrimSpace(string(out)))
			slices.Sort(lines)
			return lines
		}
		for _, transport := range []string{"+notcp", "+tcp"} {
			if got := dig(transport, "cassandra.default.svc.cluster.local", "A"); strings.Join(got, " ") != strings.Join(sorted(podIPs), " ") {
				t.Errorf("dig %s A: %v", transport, got)
			}
			for ip, name := range seedPods {
				if got := dig(transport, strings.TrimSuffix(name, "."), "A"); strings.Join(got, " ") != ip {
					t.Errorf("dig %s %s: %v", transport, name, got)
				}
				if got := dig(transport, "-x", ip); strings.Join(got, " ") != name {
					t.Errorf("dig %s -x %s: %v", transport, ip, got)
				}
			}
			srv := strings.Join(dig(transport, "_cql._tcp.cassandra.default.svc.cluster.local", "SRV"), " ")
			for _, name := range seedPods {
				if !strings.Contains(srv, name) {
					t.Errorf("dig %s SRV lacks %s: %s", transport, name, srv)
				}
			}
		}
	})

	t.Run("Go resolver", func(t *testing.T) {
		r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, network, s.addr)
		}}
		ctx := context.Background()
		hosts, err := r.LookupHost(ctx, "cassandra.default.svc.cluster.local")
		slices.Sort(hosts)
		if err != nil || strings.Join(hosts, " ") != strings.Join(sorted(podIPs), " ") {
			t.Errorf("LookupHost: %v %v", hosts, err)
		}
		cname, srvs, err := r.LookupSRV(ctx, "cql", "tcp", "cassandra.default.svc.cluster.local")
		if err != nil || len(srvs) != 3 || cname != "_cql._tcp.cassandra.default.svc.cluster.local." {
			t.Errorf("LookupSRV: %q %v %v", cname, srvs, err)
		}
		for _, srv := range srvs {
			if srv.Port != 9042 || !slices.Contains(slices.Collect(mapValues(seedPods)), srv.Target) {
				t.Errorf("SRV target %+v", srv)
			}
		}
		for ip, name := range seedPods {
			names, err := r.LookupAddr(ctx, ip)
			if err != nil || len(names) != 1 || names[0] != name {
				t.Errorf("LookupAddr(%s): %v %v", ip, names, err)
			}
		}
		hosts, err = r.LookupHost(ctx, "external-db.default.svc.cluster.local")
		slices.Sort(hosts)
		if err != nil || strings.Join(hosts, " ") != "10.0.0.50 10.0.0.51" {
			t.Errorf("LookupHost external-db: %v %v", hosts, err)
		}
	})
}

// sorted is a sorted copy, as text (the order dig and Go's resolver lists
// are sorted in).
func sorted(in []string) []string {
	out := slices.Clone(in)
	slices.Sort(out)
	return out
}

func mustReverse(t *testing.T, ip string) string {
	t.Helper()
	name, err := dns.ReverseAddr(ip)
	if err != nil {
		t.Fatal(err)
	}
	return name
}

func mapValues(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for _, v := range m {
			if !yield(v) {
				return
			}
		}
	}
}
