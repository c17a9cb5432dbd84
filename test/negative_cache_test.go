package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// A StatefulSet's pods look each other up while they start: pod N asks
// for pod N+1 before it exists, gets NXDOMAIN, and a cache in front (the
// cache plugin of every kube-dns Corefile, or the pod's own) keeps that
// denial as long as the zone's SOA says (RFC 2308). With the kubernetes
// plugin at ttl 30 that is 30 s, the delay RabbitMQ's operator waits out
// (kubernetes/kubernetes#92559); headless's `ttl negative` is 5 s by
// default, so a new pod's name reaches cached clients within 5 s.
//
// TestNegativeAnswersExpireAtTheNegativeTTL proves it through the cache
// plugin (cache 30 over cluster.local, as kube-dns Corefiles before kubeadm
// 1.32 and node-local caches have it): both plugins are asked for
// a pod that does not exist yet, the StatefulSet is scaled up, and each
// cached answer is timed from the moment the uncached plugin answers for
// the pod until the cached one does.
func TestNegativeAnswersExpireAtTheNegativeTTL(t *testing.T) {
	cp := env.cluster
	cp.requireCluster(t)
	ns := newNamespace(t, cp, "negcache")
	cp.applyYAML(t, ns, webManifest)
	cp.waitPodsReady(t, ns, "app=web", 3)

	cached := func(block string) *corednsServer {
		return startCoreDNS(t, cp, "cache 30\n    "+block)
	}
	headless := cached(`headless cluster.local {
        kubeconfig {{.Kubeconfig}}
        namespaces ` + ns + `
    }`)
	kubernetes := cached(`kubernetes cluster.local {
        kubeconfig {{.Kubeconfig}}
        namespaces ` + ns + `
        ttl 30
    }`)
	uncached := startCoreDNS(t, cp, `headless cluster.local {
        kubeconfig {{.Kubeconfig}}
        namespaces `+ns+`
    }`)

	newPod := "web-3.web." + ns + ".svc.cluster.local."
	for _, s := range []*corednsServer{headless, kubernetes} {
		if err := expectAnswer(s.addr, "udp", newPod, dns.TypeA, dns.RcodeNameError); err != nil {
			t.Fatal(err)
		}
	}
	denied := map[*corednsServer]uint32{}
	for _, s := range []*corednsServer{headless, kubernetes} {
		resp := ask(t, s.addr, "udp", newPod, dns.TypeA, 0)
		if len(resp.Ns) == 1 {
			denied[s] = resp.Ns[0].(*dns.SOA).Minttl
		}
	}
	if denied[headless] != 5 || denied[kubernetes] != 30 {
		t.Fatalf("SOA minimum of the denials: headless %d, kubernetes %d; want 5 and 30", denied[headless], denied[kubernetes])
	}

	cp.kubectl(t, "scale", "-n", ns, "statefulset/web", "--replicas=4")
	eventually(t, podsReadyWithin, "the new pod's name, uncached", func() error {
		return expectRcode(uncached.addr, newPod, dns.RcodeSuccess)
	})
	appeared := time.Now()
	ready := map[*corednsServer]time.Duration{}
	eventually(t, 40*time.Second, "both cached servers to answer for the new pod", func() error {
		for _, s := range []*corednsServer{headless, kubernetes} {
			if _, done := ready[s]; !done && expectRcode(s.addr, newPod, dns.RcodeSuccess) == nil {
				ready[s] = time.Since(appeared)
			}
		}
		if len(ready) < 2 {
			return fmt.Errorf("answered so far: %v", ready)
		}
		return nil
	})
	t.Logf("the new pod's name through cache 30: headless (ttl negative 5) after %s, kubernetes (ttl 30) after %s",
		ready[headless].Round(100*time.Millisecond), ready[kubernetes].Round(100*time.Millisecond))
	if ready[headless] > 5*time.Second+500*time.Millisecond {
		t.Errorf("headless: the cached denial outlived ttl negative: %s", ready[headless])
	}
	if ready[kubernetes] < 10*time.Second {
		t.Errorf("kubernetes with ttl 30 answered after %s: the comparison proves nothing", ready[kubernetes])
	}
}

// expectRcode is nil when qname A gets rcode from server.
func expectRcode(server, qname string, rcode int) error {
	resp, err := exchange(server, "udp", qname, dns.TypeA, 0)
	if err != nil {
		return err
	}
	if resp.Rcode != rcode {
		return fmt.Errorf("%s: %s", qname, dns.RcodeToString[resp.Rcode])
	}
	return nil
}
