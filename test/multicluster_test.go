package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	core "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/mcs-api/config/crd"
	mcs "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"
)

var installServiceImports sync.Once

// serviceImportsServed installs the Multi-Cluster Services API's
// ServiceImport CRD (sigs.k8s.io/mcs-api's own manifest) in the shared
// cluster, once, and waits until the API server serves it.
func serviceImportsServed(t *testing.T, cp *controlPlane) mcsclient.Interface {
	t.Helper()
	installServiceImports.Do(func() {
		path := filepath.Join(env.tmp, "serviceimports.yaml")
		if err := os.WriteFile(path, crd.ServiceImportCRD, 0o644); err != nil {
			t.Fatal(err)
		}
		cp.apply(t, path)
		cp.kubectl(t, "wait", "--for=condition=Established", "--timeout=60s", "crd/"+mcs.ServiceImportFullName)
	})
	client, err := mcsclient.NewForConfig(cp.config)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "ServiceImports to be served", func() error {
		_, err := client.MulticlusterV1alpha1().ServiceImports("default").List(context.Background(), metav1.ListOptions{})
		return err
	})
	return client
}

// importedSlice is an EndpointSlice as an MCS implementation imports it
// from cluster: labelled with its ServiceImport and source cluster, managed
// by the implementation, not by the endpointslice controller.
func importedSlice(ns, name, svc, cluster string, eps ...discovery.Endpoint) *discovery.EndpointSlice {
	return &discovery.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{
			mcs.LabelServiceName:     svc,
			mcs.LabelSourceCluster:   cluster,
			discovery.LabelManagedBy: "mcs-controller.e2e.test",
		}},
		AddressType: discovery.AddressTypeIPv4,
		Ports:       []discovery.EndpointPort{port("pg", 5432, core.ProtocolTCP)},
		Endpoints:   eps,
	}
}

// TestMulticlusterHeadlessServiceImport imports a headless service from two
// "clusters" (their slices, as an MCS implementation writes them) and asks
// headless and the kubernetes plugin (same binary, same objects) for the
// records of the MCS DNS specification, 2.4: they must agree, except where
// this project follows the specification more closely. Then one cluster's
// endpoints go, and its names with them.
func TestMulticlusterHeadlessServiceImport(t *testing.T) {
	cp := env.cluster
	imports := serviceImportsServed(t, cp)
	ns := newNamespace(t, cp, "mcs")
	ctx := context.Background()
	_, err := imports.MulticlusterV1alpha1().ServiceImports(ns).Create(ctx, &mcs.ServiceImport{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: ns},
		Spec: mcs.ServiceImportSpec{Type: mcs.Headless, Ports: []mcs.ServicePort{
			{Name: "pg", Port: 5432, Protocol: core.ProtocolTCP}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := cp.client
	createSlice(t, c, importedSlice(ns, "db-cluster-a", "db", "cluster-a",
		endpoint("db-0", "10.201.0.1"), endpoint("db-1", "10.201.0.2"), withReady(endpoint("db-2", "10.201.0.3"), false)))
	createSlice(t, c, importedSlice(ns, "db-cluster-b", "db", "cluster-b",
		endpoint("db-0", "10.202.0.1"), endpoint("", "10.202.0.9")))

	block := func(plugin string) string {
		return plugin + ` cluster.local clusterset.local in-addr.arpa {
        kubeconfig {{.Kubeconfig}}
        namespaces ` + ns + `
        multicluster clusterset.local
    }`
	}
	headless, kubernetes := startCoreDNS(t, cp, block("headless")), startCoreDNS(t, cp, block("kubernetes"))

	svc := "db." + ns + ".svc.clusterset.local."
	type question struct {
		qname string
		qtype uint16
	}
	questions := []question{
		{svc, dns.TypeA}, {svc, dns.TypeSRV}, {"_pg._tcp." + svc, dns.TypeSRV},
		{"db-0.cluster-a." + svc, dns.TypeA}, {"db-0.cluster-b." + svc, dns.TypeA}, {"10-202-0-9.cluster-b." + svc, dns.TypeA},
		{"db-2.cluster-a." + svc, dns.TypeA}, {"db-0.cluster-c." + svc, dns.TypeA},
		{"cluster-a." + svc, dns.TypeA}, {"nosuch." + ns + ".svc.clusterset.local.", dns.TypeA},
		{"1.0.202.10.in-addr.arpa.", dns.TypePTR}, {"dns-version.clusterset.local.", dns.TypeTXT},
	}
	differs := map[question]string{
		{"cluster-a." + svc, dns.TypeA}:                "<clusterid>.<svc> has no records (MCS DNS 2.4.4), but exists: names below it do (RFC 8020)",
		{"1.0.202.10.in-addr.arpa.", dns.TypePTR}:      "PTR for an endpoint with no cluster-local PTR (MCS DNS 2.4.3); kubernetes does not answer at all",
		{"dns-version.clusterset.local.", dns.TypeTXT}: `the clusterset zone follows schema 1.0.0 of the MCS DNS specification (2.2), not the cluster's 1.1.0`,
	}
	for _, q := range questions {
		name := q.qname + " " + dns.TypeToString[q.qtype]
		ours := ask(t, headless.addr, "tcp", q.qname, q.qtype, 0)
		b := "no answer"
		if theirs, err := exchange(kubernetes.addr, "tcp", q.qname, q.qtype, 0); err == nil {
			b = answerView(theirs)
		}
		if a := answerView(ours); a != b {
			if why, ok := differs[q]; ok {
				t.Logf("%s differs on purpose (%s):\nheadless:   %s\nkubernetes: %s", name, why, a, b)
				continue
			}
			t.Errorf("%s:\nheadless:\n%s\nkubernetes:\n%s", name, a, b)
		}
	}
	// What the specification asks, checked on its own.
	for _, tc := range []struct {
		qname string
		qtype uint16
		rcode int
		want  []string
	}{
		{svc, dns.TypeA, dns.RcodeSuccess, []string{"10.201.0.1", "10.201.0.2", "10.202.0.1", "10.202.0.9"}},
		{"db-0.cluster-b." + svc, dns.TypeA, dns.RcodeSuccess, []string{"10.202.0.1"}},
		{"_pg._tcp." + svc, dns.TypeSRV, dns.RcodeSuccess, []string{
			"5432 10-202-0-9.cluster-b." + svc, "5432 db-0.cluster-a." + svc, "5432 db-0.cluster-b." + svc, "5432 db-1.cluster-a." + svc}},
		{"cluster-a." + svc, dns.TypeA, dns.RcodeSuccess, nil},
		{"1.0.202.10.in-addr.arpa.", dns.TypePTR, dns.RcodeSuccess, []string{"db-0.cluster-b." + svc}},
	} {
		if err := expectAnswer(headless.addr, "udp", tc.qname, tc.qtype, tc.rcode, tc.want...); err != nil {
			t.Error(err)
		}
	}

	// cluster-b's endpoints go: so do its names, in both plugins.
	if err := c.DiscoveryV1().EndpointSlices(ns).Delete(ctx, "db-cluster-b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*corednsServer{headless, kubernetes} {
		eventually(t, 10*time.Second, "cluster-b's names to go", func() error {
			if err := expectAnswer(s.addr, "udp", "db-0.cluster-b."+svc, dns.TypeA, dns.RcodeNameError); err != nil {
				return err
			}
			return expectAnswer(s.addr, "udp", svc, dns.TypeA, dns.RcodeSuccess, "10.201.0.1", "10.201.0.2")
		})
	}
	if err := expectAnswer(headless.addr, "udp", "1.0.202.10.in-addr.arpa.", dns.TypePTR, dns.RcodeNameError); err != nil {
		t.Error(fmt.Errorf("the PTR of a gone endpoint: %w", err))
	}
}
