package e2e

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// bigServiceManifest is a headless Service in front of a Deployment of 250
// pods: more than the endpointslice controller puts in one slice (100 by
// default), and more addresses than a 512-byte UDP reply holds.
const bigServiceManifest = `apiVersion: v1
kind: Service
metadata:
  name: big
spec:
  clusterIP: None
  selector:
    app: big
  ports:
  - name: http
    port: 80
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: big
spec:
  replicas: 250
  selector:
    matchLabels:
      app: big
  template:
    metadata:
      labels:
        app: big
    spec:
      terminationGracePeriodSeconds: 0
      containers:
      - name: web
        image: nginx:1.27
        ports:
        - containerPort: 80
          name: http
`

// TestHeadlessServiceOf250Pods: the endpointslice controller cuts a
// Service of 250 pods into several slices, and DNS joins them again: over
// TCP the Service's A records are all 250 addresses and its SRV records
// all 250 pods with their glue; over UDP without EDNS0 the reply is cut to
// 512 bytes with TC set, so that the client retries over TCP; a pod turning
// not ready in one slice leaves the union, and comes back.
func TestHeadlessServiceOf250Pods(t *testing.T) {
	const n = 250
	cp := env.cluster
	cp.requireCluster(t)
	ctx := context.Background()
	ns := newNamespace(t, cp, "big")
	// The namespace controller would delete the pods after the test, while
	// the next tests run; delete them here and wait, so that 250 pods going
	// away load the cluster on this test's time, not another's.
	t.Cleanup(func() {
		if err := cp.client.AppsV1().Deployments(ns).Delete(ctx, "big", metav1.DeleteOptions{}); err != nil {
			t.Errorf("deleting the Deployment: %v", err)
			return
		}
		took := eventually(t, 2*time.Minute, "the 250 pods gone", func() error {
			if pods := cp.pods(t, ns, "app=big"); len(pods) > 0 {
				return fmt.Errorf("%d pods left", len(pods))
			}
			return nil
		})
		t.Logf("250 pods deleted in %s", took.Round(time.Millisecond))
	})
	start := time.Now()
	cp.applyYAML(t, ns, bigServiceManifest)
	var pods []podInfo
	eventually(t, 3*time.Minute, "250 ready pods", func() error {
		pods = cp.pods(t, ns, "app=big")
		ready := 0
		for _, p := range pods {
			if p.Ready && p.IP != "" && !p.Terminating {
				ready++
			}
		}
		if len(pods) != n || ready != n {
			return fmt.Errorf("%d pods, %d ready", len(pods), ready)
		}
		return nil
	})
	t.Logf("250 pods ready %s after kubectl apply", time.Since(start).Round(time.Millisecond))
	var ips []string
	for _, p := range pods {
		ips = append(ips, p.IP)
	}
	slices.Sort(ips)

	eventually(t, 30*time.Second, "the controller's slices holding all 250 ready endpoints", func() error {
		slices := cp.controllerSlices(t, ns, "big")
		ready := 0
		for _, s := range slices {
			for _, ep := range s.Endpoints {
				if ep.Conditions.Ready != nil && *ep.Conditions.Ready {
					ready++
				}
			}
		}
		if len(slices) < 3 || ready != n {
			return fmt.Errorf("%d slices, %d ready endpoints", len(slices), ready)
		}
		return nil
	})
	var sizes []int
	for _, s := range cp.controllerSlices(t, ns, "big") {
		sizes = append(sizes, len(s.Endpoints))
	}
	t.Logf("the endpointslice controller's slices hold %v endpoints", sizes)

	s := startCoreDNS(t, cp, namespacedBlock(ns, ""))
	svc := "big." + ns + ".svc.cluster.local."
	srv := "_http._tcp." + svc
	// overTCP waits until the Service's A records over TCP are exactly want.
	overTCP := func(what string, want []string) {
		t.Helper()
		eventually(t, lifecycleWithin, what, func() error {
			resp, err := exchange(s.addr, "tcp", svc, dns.TypeA, 0)
			if err != nil {
				return err
			}
			if got := values(resp.Answer); resp.Truncated || !slices.Equal(got, want) {
				return fmt.Errorf("TC %v, %d addresses, want %d", resp.Truncated, len(got), len(want))
			}
			return nil
		})
	}
	overTCP("all 250 addresses over TCP", ips)

	t.Run("SRV over TCP", func(t *testing.T) {
		resp := ask(t, s.addr, "tcp", srv, dns.TypeSRV, 0)
		if resp.Truncated || len(resp.Answer) != n {
			t.Fatalf("TC %v, %d SRV records, want %d", resp.Truncated, len(resp.Answer), n)
		}
		if got := values(resp.Extra); !slices.Equal(got, ips) {
			t.Errorf("glue: %d addresses, want the %d pods'", len(got), n)
		}
	})
	t.Run("UDP without EDNS0 is truncated", func(t *testing.T) {
		for _, q := range []struct {
			name  string
			qtype uint16
		}{{svc, dns.TypeA}, {srv, dns.TypeSRV}} {
			size, resp := rawUDP(t, s.addr, q.name, q.qtype, 0)
			if !resp.Truncated || size > 512 || len(resp.Answer) == 0 || len(resp.Answer) >= n {
				t.Errorf("%s %s: TC %v, %d bytes, %d records; want TC, at most 512 bytes, some records", q.name, dns.TypeToString[q.qtype], resp.Truncated, size, len(resp.Answer))
			}
			for _, v := range values(resp.Answer) {
				if q.qtype == dns.TypeA && !slices.Contains(ips, v) {
					t.Errorf("%s A: %s is no pod's", q.name, v)
				}
			}
			t.Logf("%s %s over UDP without EDNS0: %d of %d records in %d bytes, TC set", q.name, dns.TypeToString[q.qtype], len(resp.Answer), n, size)
		}
		// A client offering a bigger buffer gets as much as it holds.
		size, resp := rawUDP(t, s.addr, svc, dns.TypeA, 1232)
		if size > 1232 || !resp.Truncated || len(resp.Answer) == 0 {
			t.Errorf("EDNS0 1232: TC %v, %d bytes, %d records", resp.Truncated, size, len(resp.Answer))
		}
	})

	t.Run("a pod of one slice not ready", func(t *testing.T) {
		// The last pod by address sits in whichever slice the controller
		// chose; the union must lose it and get it back.
		var last podInfo
		for _, p := range pods {
			if p.IP == ips[n-1] {
				last = p
			}
		}
		cp.setPodReady(t, ns, last.Name, false)
		overTCP("249 addresses after "+last.Name+" turned not ready", ips[:n-1])
		cp.setPodReady(t, ns, last.Name, true)
		overTCP("250 addresses after "+last.Name+" is ready again", ips)
	})
}
