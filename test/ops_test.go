package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	core "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	rbac "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestCorefileExample runs Corefile.example (headless in front of
// kubernetes with noendpoints) with a kubeconfig added: headless names come
// from headless, ClusterIP services from kubernetes.
func TestCorefileExample(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(env.root, "Corefile.example"))
	if err != nil {
		t.Fatal(err)
	}
	corefile := string(data)
	for _, r := range []struct{ old, new string }{
		{".:53 {", ".:{{.DNSPort}} {\n    bind 127.0.0.1"},
		{"    health {", "    health 127.0.0.1:{{.HealthPort}} {"},
		{"    ready\n", "    ready 127.0.0.1:{{.ReadyPort}}\n"},
		{"prometheus :9153", "prometheus 127.0.0.1:{{.MetricsPort}}"},
		{"headless cluster.local in-addr.arpa ip6.arpa {", "headless cluster.local in-addr.arpa ip6.arpa {\n        kubeconfig {{.Kubeconfig}}"},
		{"kubernetes cluster.local in-addr.arpa ip6.arpa {", "kubernetes cluster.local in-addr.arpa ip6.arpa {\n        kubeconfig {{.Kubeconfig}}"},
	} {
		if !strings.Contains(corefile, r.old) {
			t.Fatalf("Corefile.example no longer has %q", r.old)
		}
		corefile = strings.Replace(corefile, r.old, r.new, 1)
	}
	// Nothing may leave this machine: no upstream forwarding, no loop probe through it.
	corefile = regexp.MustCompile(`(?s)\n\s*forward [^{]*\{.*?\}`).ReplaceAllString(corefile, "")
	corefile = regexp.MustCompile(`\n\s*loop\n`).ReplaceAllString(corefile, "\n")

	c := env.cluster.client
	ns := newNamespace(t, env.cluster, "example")
	createService(t, c, ns, "db", true)
	createSlice(t, c, newSlice(ns, "db-1", "db", discovery.AddressTypeIPv4, []discovery.EndpointPort{port("pg", 5432, core.ProtocolTCP)},
		endpoint("db-0", "10.5.0.1"), endpoint("db-1", "10.5.0.2")))
	_, err = c.CoreV1().Services(ns).Create(context.Background(), &core.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: ns},
		Spec:       core.ServiceSpec{Ports: []core.ServicePort{{Name: "http", Port: 80}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	api, err := c.CoreV1().Services(ns).Get(context.Background(), "api", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}

	s := startCorefile(t, env.cluster, corefile)
	zone := ns + ".svc.cluster.local."
	for _, err := range []error{
		expectAnswer(s.addr, "udp", "db."+zone, dns.TypeA, dns.RcodeSuccess, "10.5.0.1", "10.5.0.2"),
		expectAnswer(s.addr, "udp", "db-1.db."+zone, dns.TypeA, dns.RcodeSuccess, "10.5.0.2"),
		expectAnswer(s.addr, "tcp", "_pg._tcp.db."+zone, dns.TypeSRV, dns.RcodeSuccess, "5432 db-0.db."+zone, "5432 db-1.db."+zone),
		expectAnswer(s.addr, "udp", "api."+zone, dns.TypeA, dns.RcodeSuccess, api.Spec.ClusterIP), // from kubernetes
		expectAnswer(s.addr, "udp", "nosuch."+zone, dns.TypeA, dns.RcodeNameError),
	} {
		if err != nil {
			t.Error(err)
		}
	}
}

// TestNamespacedRoleSuffices runs the plugin as a user that may only list
// and watch Services and EndpointSlices in one namespace.
func TestNamespacedRoleSuffices(t *testing.T) {
	c := env.cluster.client
	ctx := context.Background()
	ns := newNamespace(t, env.cluster, "rbac")
	createService(t, c, ns, "db", false)
	createSlice(t, c, newSlice(ns, "db-1", "db", discovery.AddressTypeIPv4, nil, endpoint("", "10.6.0.1")))
	role := &rbac.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "headless-dns", Namespace: ns},
		Rules: []rbac.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"list", "watch"}},
			{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list", "watch"}},
		},
	}
	if _, err := c.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbac.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "headless-dns", Namespace: ns},
		RoleRef:    rbac.RoleRef{APIGroup: rbac.GroupName, Kind: "Role", Name: "headless-dns"},
		Subjects:   []rbac.Subject{{Kind: rbac.UserKind, APIGroup: rbac.GroupName, Name: "headless-reader"}},
	}
	if _, err := c.RbacV1().RoleBindings(ns).Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	reader := filepath.Join(env.cluster.dir, "reader.kubeconfig")
	s := startCoreDNS(t, env.cluster, `headless cluster.local {
        kubeconfig `+reader+`
        namespaces `+ns+`
    }`)
	if err := expectAnswer(s.addr, "udp", "db."+ns+".svc.cluster.local.", dns.TypeA, dns.RcodeSuccess, "10.6.0.1"); err != nil {
		t.Fatal(err)
	}
}

// TestMetrics scrapes the plugin's metrics after changes to a service with
// and one without a selector.
func TestMetrics(t *testing.T) {
	c := env.cluster.client
	ns := newNamespace(t, env.cluster, "metrics")
	createService(t, c, ns, "with", true)
	createService(t, c, ns, "without", false)
	// A ClusterIP service's slice, as the endpointslice controller labels it
	// (the service has no selector, so the real controller leaves it be):
	// the plugin must never hold it.
	_, err := c.CoreV1().Services(ns).Create(context.Background(), &core.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "regular", Namespace: ns},
		Spec:       core.ServiceSpec{Ports: []core.ServicePort{{Name: "http", Port: 80}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	regular := newSlice(ns, "regular-1", "regular", discovery.AddressTypeIPv4, nil, endpoint("", "10.7.1.1"))
	delete(regular.Labels, "service.kubernetes.io/headless")
	regular.Labels[discovery.LabelManagedBy] = controllerManaged
	createSlice(t, c, regular)
	// The endpointslice controller gives "with", which selects no pod, an
	// empty slice of its own; once it is there, it is part of the initial
	// list and no change the plugin measures.
	eventually(t, 30*time.Second, "the controller's slice of with", func() error {
		list, err := c.DiscoveryV1().EndpointSlices(ns).List(context.Background(), metav1.ListOptions{
			LabelSelector: discovery.LabelServiceName + "=with," + discovery.LabelManagedBy + "=" + controllerManaged})
		if err != nil {
			return err
		}
		if len(list.Items) != 1 {
			return fmt.Errorf("%d slices", len(list.Items))
		}
		return nil
	})
	s := startCoreDNS(t, env.cluster, namespacedBlock(ns, ""))
	for _, name := range []string{"with", "without"} {
		slice := newSlice(ns, name+"-1", name, discovery.AddressTypeIPv4, nil, endpoint("", "10.7.0.1"), endpoint("", "10.7.0.2"))
		slice.Annotations = map[string]string{"endpoints.kubernetes.io/last-change-trigger-time": time.Now().UTC().Format(time.RFC3339Nano)}
		createSlice(t, c, slice)
	}
	eventually(t, 10*time.Second, "metrics", func() error {
		resp, err := http.Get("http://" + s.metrics + "/metrics")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		text := string(body)
		for _, want := range []string{
			`coredns_headless_dns_programming_duration_seconds_count{service_kind="headless_with_selector"} 1`,
			`coredns_headless_dns_programming_duration_seconds_count{service_kind="headless_without_selector"} 1`,
			"coredns_headless_services 2",
			"coredns_headless_endpoints 4",
			"coredns_headless_synced 1",
			"coredns_headless_endpointslices 3", // the two, and the controller's empty one; not the ClusterIP service's
		} {
			if !strings.Contains(text, want+"\n") {
				return &missingMetric{want}
			}
		}
		return nil
	})
}

type missingMetric struct{ line string }

func (m *missingMetric) Error() string { return "no line " + m.line }
