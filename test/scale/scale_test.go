package main

import (
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/headlessdns/headless/test/internal/benchkit"
)

// Corefile.example and kubeadm's Corefile become local ones: loopback
// ports, the kubeconfig in each plugin, forward to the upstream, pprof.
func TestLocalize(t *testing.T) {
	example, err := os.ReadFile("../../Corefile.example")
	if err != nil {
		t.Fatal(err)
	}
	p := ports{dns: 1053, health: 1054, ready: 1055, metrics: 1056, pprof: 1057}
	for name, text := range map[string]string{"Corefile.example": string(example), "kubeadm": kubeadmCorefile} {
		got, err := localize(text, p, "/k.conf", "127.0.0.1:2053")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, want := range []string{".:1053 {\n    bind 127.0.0.1", "health 127.0.0.1:1054", "ready 127.0.0.1:1055",
			"prometheus 127.0.0.1:1056", "pprof 127.0.0.1:1057", "forward . 127.0.0.1:2053", "kubernetes cluster.local in-addr.arpa ip6.arpa {\n        kubeconfig /k.conf"} {
			if !strings.Contains(got, want) {
				t.Errorf("%s: no %q in\n%s", name, want, got)
			}
		}
		if strings.Contains(got, "/etc/resolv.conf") || strings.Contains(got, ":9153") {
			t.Errorf("%s: not localized:\n%s", name, got)
		}
		if !strings.Contains(got, "cache 30 {\n") || !strings.Contains(got, "disable denial cluster.local") {
			t.Errorf("%s: the cache does not leave cluster.local alone:\n%s", name, got)
		}
	}
	var h harness
	h.root = "../.."
	cached, err := swapinCached.corefile(&h)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(cached, "    cache 30\n    loop") || strings.Contains(cached, "disable") {
		t.Errorf("swap-in with cluster.local cached:\n%s", cached)
	}
	got, _ := localize(string(example), p, "/k.conf", "127.0.0.1:2053")
	if !strings.Contains(got, "headless cluster.local in-addr.arpa ip6.arpa {\n        kubeconfig /k.conf") {
		t.Errorf("headless has no kubeconfig:\n%s", got)
	}
}

func TestClassify(t *testing.T) {
	for path, want := range map[string]string{
		"/apis/discovery.k8s.io/v1/endpointslices?labelSelector=x&limit=500":          "LIST endpointslices",
		"/apis/discovery.k8s.io/v1/endpointslices?watch=true&sendInitialEvents=true":  "WATCH endpointslices",
		"/api/v1/services?fieldSelector=spec.clusterIP%3DNone&watch=1":                "WATCH services",
		"/api/v1/namespaces/ns/services/web":                                          "GET services",
		"/api/v1/namespaces/ns/pods":                                                  "LIST pods",
		"/apis/multicluster.x-k8s.io/v1alpha1/namespaces/a/serviceimports?watch=true": "WATCH serviceimports",
		"/version":                  "GET /version",
		"/apis/discovery.k8s.io/v1": "GET discovery",
	} {
		if got := classify(httptest.NewRequest("GET", path, nil)); got != want {
			t.Errorf("%s: %q, want %q", path, got, want)
		}
	}
}

// A lookup is expanded as glibc does with ndots:5: each search domain,
// then the name as given, A and AAAA each time, until one answers.
func TestClusterMixExpansion(t *testing.T) {
	hs := &benchkit.HeadlessService{Namespace: "scale-u00", Name: "s5-00", Port: "http", PortNumber: 8080,
		Pods: []benchkit.Pod{{Hostname: "s5-00-0", IP: netip.MustParseAddr("10.244.1.2")}}}
	c := &catalog{namespaces: []string{"scale-u00"},
		clusterIP: map[string][]clusterIPService{"scale-u00": {{"d5-00", "10.96.0.10"}}},
		headless:  map[string][]*benchkit.HeadlessService{"scale-u00": {hs}}, hlAll: []*benchkit.HeadlessService{hs},
		podIPs: []netip.Addr{netip.MustParseAddr("10.244.1.2")}}
	qs := c.clusterMix(5000, 1)
	if len(qs) != 5000 {
		t.Fatalf("%d queries", len(qs))
	}
	kinds := map[string]int{}
	for i, q := range qs {
		switch {
		case strings.HasPrefix(q.name, "api") && strings.HasSuffix(q.name, ".example.com."):
			kinds["external answered"]++
			if q.rcode != dns.RcodeSuccess {
				t.Errorf("%s: rcode %d", q.name, q.rcode)
			}
		case strings.HasPrefix(q.name, "api"):
			kinds["external miss"]++
			if q.rcode != dns.RcodeNameError {
				t.Errorf("%s: rcode %d", q.name, q.rcode)
			}
		case q.name == "d5-00.scale-u00.svc.cluster.local.":
			kinds["clusterip"]++
		case q.qtype == dns.TypePTR:
			kinds["ptr"]++
		}
		if q.qtype == dns.TypeA && i+1 < len(qs) {
			if next := qs[i+1]; next.name == q.name && next.qtype != dns.TypeAAAA {
				t.Errorf("%s: A not followed by AAAA", q.name)
			}
		}
	}
	// Each external lookup is three misses (A and AAAA each) then the
	// answer (A and AAAA); the last lookup may be cut short.
	if m, a := kinds["external miss"], kinds["external answered"]; a == 0 || m < 3*a-6 || m > 3*a+6 {
		t.Errorf("external: %d misses for %d answers", m, a)
	}
	if kinds["clusterip"] == 0 || kinds["ptr"] == 0 {
		t.Errorf("kinds %v", kinds)
	}
}

// The cluster's processes are found below kube-testenv: a child and its
// child here.
func TestDescendants(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 30 & wait")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := descendants(os.Getpid())
		if len(got) >= 3 && got[0] == os.Getpid() && slices.Contains(got, cmd.Process.Pid) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("descendants of this test: %v, want it, sh (%d) and sleep", got, cmd.Process.Pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
