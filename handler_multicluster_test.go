package headless

import (
	"strings"
	"testing"

	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"

	core "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	mcs "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"
)

func serviceImport(ns, name string, kind mcs.ServiceImportType) *mcs.ServiceImport {
	return &mcs.ServiceImport{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       mcs.ServiceImportSpec{Type: kind, Ports: []mcs.ServicePort{{Name: "pg", Port: 5432, Protocol: core.ProtocolTCP}}},
	}
}

// imported makes a slice as a Multi-Cluster Services implementation
// imports it: labelled with its ServiceImport and its source cluster.
func imported(ns, name, svc, cluster string, eps ...discovery.Endpoint) *discovery.EndpointSlice {
	s := slice(ns, name, svc, discovery.AddressTypeIPv4, ports(port("pg", 5432, core.ProtocolTCP)), eps...)
	s.Labels = map[string]string{importedServiceLabel: svc, managedByLabel: "mcs-controller.example.org"}
	if cluster != "" {
		s.Labels[sourceClusterLabel] = cluster
	}
	return s
}

// clustersetWorld is a database imported from two clusters, one of whose
// pods also backs the local headless service of the same name.
func clustersetWorld() []runtime.Object {
	return []runtime.Object{
		serviceImport("prod", "db", mcs.Headless),
		imported("prod", "db-a", "db", "cluster-a", endpoint("db-0", "10.1.0.1"), endpoint("db-1", "10.1.0.2"), notReady(endpoint("db-2", "10.1.0.3"))),
		imported("prod", "db-b", "db", "cluster-b", endpoint("db-0", "10.2.0.1"), endpoint("", "10.2.0.9")),
		imported("prod", "db-x", "db", "", endpoint("db-7", "10.3.0.1")), // names no cluster
		serviceImport("prod", "vip", mcs.ClusterSetIP),
		imported("prod", "vip-a", "vip", "cluster-a", endpoint("vip-0", "10.1.1.1")),
		headlessService("prod", "db", true),
		slice("prod", "db-local", "db", discovery.AddressTypeIPv4, ports(port("pg", 5432, core.ProtocolTCP)), endpoint("db-0", "10.1.0.1")),
	}
}

func TestMulticlusterHeadlessNames(t *testing.T) {
	h, _ := newTestPlugin(t, "headless cluster.local clusterset.local in-addr.arpa {\n multicluster clusterset.local\n}", clustersetWorld()...)
	const db = "db.prod.svc.clusterset.local."
	soa := []dns.RR{test.SOA("clusterset.local.	5	IN	SOA	ns.dns.clusterset.local. hostmaster.clusterset.local. 1 7200 1800 86400 5")}
	for _, tc := range []struct {
		name string
		tc   test.Case
	}{
		{"the service answers every ready endpoint of every cluster", test.Case{Qname: db, Qtype: dns.TypeA, Answer: []dns.RR{
			test.A(db + "	5	IN	A	10.1.0.1"), test.A(db + "	5	IN	A	10.1.0.2"),
			test.A(db + "	5	IN	A	10.2.0.1"), test.A(db + "	5	IN	A	10.2.0.9"),
		}}},
		{"hostname.clusterid names one cluster's endpoint", test.Case{Qname: "db-0.cluster-b." + db, Qtype: dns.TypeA, Answer: []dns.RR{
			test.A("db-0.cluster-b." + db + "	5	IN	A	10.2.0.1"),
		}}},
		{"an endpoint without hostname is named by its address", test.Case{Qname: "10-2-0-9.cluster-b." + db, Qtype: dns.TypeA, Answer: []dns.RR{
			test.A("10-2-0-9.cluster-b." + db + "	5	IN	A	10.2.0.9"),
		}}},
		{"clusterid.service has no records: no single cluster's backends (2.4.4)", test.Case{Qname: "cluster-a." + db, Qtype: dns.TypeA, Ns: soa}},
		{"SRV: every ready endpoint of every cluster, named hostname.clusterid", test.Case{Qname: "_pg._tcp." + db, Qtype: dns.TypeSRV, Answer: []dns.RR{
			test.SRV("_pg._tcp." + db + "	5	IN	SRV	0 25 5432 10-2-0-9.cluster-b." + db),
			test.SRV("_pg._tcp." + db + "	5	IN	SRV	0 25 5432 db-0.cluster-a." + db),
			test.SRV("_pg._tcp." + db + "	5	IN	SRV	0 25 5432 db-0.cluster-b." + db),
			test.SRV("_pg._tcp." + db + "	5	IN	SRV	0 25 5432 db-1.cluster-a." + db),
		}, Extra: []dns.RR{
			test.A("10-2-0-9.cluster-b." + db + "	5	IN	A	10.2.0.9"),
			test.A("db-0.cluster-a." + db + "	5	IN	A	10.1.0.1"),
			test.A("db-0.cluster-b." + db + "	5	IN	A	10.2.0.1"),
			test.A("db-1.cluster-a." + db + "	5	IN	A	10.1.0.2"),
		}}},
		{"not-ready endpoints have no name", test.Case{Qname: "db-2.cluster-a." + db, Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: soa}},
		{"a slice that names no cluster names nothing", test.Case{Qname: "db-7." + db, Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: soa}},
		{"ClusterSetIP imports are not headless", test.Case{Qname: "vip.prod.svc.clusterset.local.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: soa}},
		{"dns-version of the clusterset zone", test.Case{Qname: "dns-version.clusterset.local.", Qtype: dns.TypeTXT, Answer: []dns.RR{
			test.TXT(`dns-version.clusterset.local.	28800	IN	TXT	"1.0.0"`),
		}}},
		{"the cluster zone keeps the local service", test.Case{Qname: "db.prod.svc.cluster.local.", Qtype: dns.TypeA, Answer: []dns.RR{
			test.A("db.prod.svc.cluster.local.	5	IN	A	10.1.0.1"),
		}}},
		{"an address with a cluster-local PTR keeps it alone (2.4.3)", test.Case{Qname: "1.0.1.10.in-addr.arpa.", Qtype: dns.TypePTR, Answer: []dns.RR{
			test.PTR("1.0.1.10.in-addr.arpa.	5	IN	PTR	db-0.db.prod.svc.cluster.local."),
		}}},
		{"another cluster's address points at its clusterset name", test.Case{Qname: "1.0.2.10.in-addr.arpa.", Qtype: dns.TypePTR, Answer: []dns.RR{
			test.PTR("1.0.2.10.in-addr.arpa.	5	IN	PTR	db-0.cluster-b." + db),
		}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, _ := query(t, h, tc.tc.Qname, tc.tc.Qtype)
			if err := test.SortAndCheck(resp, tc.tc); err != nil {
				t.Fatalf("%v\n%v", err, resp)
			}
		})
	}
}

func TestMulticlusterZonesMustBeThePluginsOwn(t *testing.T) {
	for corefile, want := range map[string]string{
		"headless cluster.local {\n multicluster clusterset.local\n}":                     "not one of the plugin's forward zones",
		"headless clusterset.local {\n multicluster clusterset.local\n}":                  "leaves no forward zone",
		"headless cluster.local clusterset.local {\n multicluster\n}":                     "want the clusterset zones",
		"headless cluster.local clusterset.local {\n multicluster clusterset.local.\\\n}": "not a valid domain name",
	} {
		if _, err := parse(testController(corefile)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error saying %q", corefile, err, want)
		}
	}
}
