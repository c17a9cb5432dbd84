package e2e

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// zoneLabel is the node label the endpointslice controller copies into
// each endpoint's zone.
const zoneLabel = "topology.kubernetes.io/zone"

// labelNodeZones gives every worker node a topology zone, zone-1 for
// kwok-node-1 and so on (a label no other test reads), and returns them by
// node.
func labelNodeZones(t *testing.T, cp *controlPlane) map[string]string {
	t.Helper()
	zones := map[string]string{}
	for i, node := range cp.workerNodes(t) {
		zone := fmt.Sprintf("zone-%d", i+1)
		cp.kubectl(t, "label", "node", node, "--overwrite", zoneLabel+"="+zone)
		zones[node] = zone
	}
	return zones
}

// dbManifest is a headless Service with two ports and its
// StatefulSet: what zonal names, SRV at every name and PTRs are asked of.
const dbManifest = `apiVersion: v1
kind: Service
metadata:
  name: db
spec:
  clusterIP: None
  selector:
    app: db
  ports:
  - name: pg
    port: 5432
  - name: metrics
    port: 9187
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
spec:
  serviceName: db
  replicas: 3
  podManagementPolicy: Parallel
  selector:
    matchLabels:
      app: db
  template:
    metadata:
      labels:
        app: db
    spec:
      containers:
      - name: db
        image: postgres:17
        ports:
        - containerPort: 5432
          name: pg
        - containerPort: 9187
`

// answerView is what two servers are compared on: the rcode and every
// record of each section, TTLs included, the SOA serial left out (each
// plugin counts its own).
func answerView(m *dns.Msg) string {
	serial := regexp.MustCompile(`(SOA\t\S+ \S+ )\d+`)
	var lines []string
	for name, section := range map[string][]dns.RR{"answer": m.Answer, "authority": m.Ns, "additional": m.Extra} {
		for _, rr := range section {
			if rr.Header().Rrtype == dns.TypeOPT {
				continue
			}
			lines = append(lines, name+": "+serial.ReplaceAllString(rr.String(), "${1}SERIAL"))
		}
	}
	slices.Sort(lines)
	return dns.RcodeToString[m.Rcode] + "\n" + strings.Join(lines, "\n")
}

// TestSameAnswersAsTheKubernetesPlugin asks the same questions of
// headless and of the kubernetes plugin (same binary, same cluster, same
// StatefulSet through the real controllers) and requires the same
// answers, except where this project answers differently on purpose; each
// of those is listed with the reason, and README's "Where it differs from
// kubernetes" says more.
func TestSameAnswersAsTheKubernetesPlugin(t *testing.T) {
	cp := env.cluster
	cp.requireCluster(t)
	zones := labelNodeZones(t, cp)
	ns := newNamespace(t, cp, "parity")
	cp.applyYAML(t, ns, dbManifest)
	pods := cp.waitPodsReady(t, ns, "app=db", 3)
	eventually(t, 30*time.Second, "the controller's slice to hold every pod with its zone", func() error {
		n := 0
		for _, s := range cp.controllerSlices(t, ns, "db") {
			for _, ep := range s.Endpoints {
				if ep.Zone != nil && ep.Conditions.Ready != nil && *ep.Conditions.Ready {
					n++
				}
			}
		}
		if n != 3 {
			return fmt.Errorf("%d ready endpoints with a zone", n)
		}
		return nil
	})

	headless := startCoreDNS(t, cp, `headless cluster.local in-addr.arpa {
        kubeconfig {{.Kubeconfig}}
        namespaces `+ns+`
        zonal
    }`)
	kubernetes := startCoreDNS(t, cp, `kubernetes cluster.local in-addr.arpa {
        kubeconfig {{.Kubeconfig}}
        namespaces `+ns+`
        zonal
    }`)

	svc := "db." + ns + ".svc.cluster.local."
	type question struct {
		qname string
		qtype uint16
	}
	questions := []question{
		{svc, dns.TypeA}, {svc, dns.TypeAAAA}, {svc, dns.TypeSRV}, {svc, dns.TypeTXT},
		{"_pg._tcp." + svc, dns.TypeSRV}, {"_tcp." + svc, dns.TypeSRV}, {"_metrics._tcp." + svc, dns.TypeSRV}, {"_pg._udp." + svc, dns.TypeSRV},
		{"db-9." + svc, dns.TypeA}, {"nosuch." + ns + ".svc.cluster.local.", dns.TypeA},
		{"zone-9.pin._zone." + svc, dns.TypeA}, {"zone-9.prefer._zone." + svc, dns.TypeA},
		{"zone-1.near._zone." + svc, dns.TypeA},
		{"cluster.local.", dns.TypeSOA}, {"cluster.local.", dns.TypeNS}, {"ns.dns.cluster.local.", dns.TypeA},
		{"dns.cluster.local.", dns.TypeA}, {"dns-version.cluster.local.", dns.TypeTXT}, {"in-addr.arpa.", dns.TypeNS},
	}
	for _, p := range pods {
		reverse, _ := dns.ReverseAddr(p.IP)
		questions = append(questions, question{p.Name + "." + svc, dns.TypeA}, question{p.Name + "." + svc, dns.TypeSRV},
			question{reverse, dns.TypePTR})
	}
	for _, zone := range zones {
		for _, directive := range []string{"pin", "prefer"} {
			for _, qtype := range []uint16{dns.TypeA, dns.TypeSRV} {
				questions = append(questions, question{zone + "." + directive + "._zone." + svc, qtype})
			}
		}
	}
	// Where this project answers differently on purpose.
	differs := map[question]string{
		{"_tcp." + svc, dns.TypeSRV}:         "an empty non-terminal is NODATA, not NXDOMAIN (RFC 8020): _pg._tcp below it exists",
		{"dns.cluster.local.", dns.TypeA}:    "an empty non-terminal is NODATA, not NXDOMAIN (RFC 8020): ns.dns below it exists",
		{"cluster.local.", dns.TypeNS}:       "the apex has NS (RFC 1034 4.2.1) even when the server binds loopback alone; kubernetes leaves loopback out and then has none",
		{"in-addr.arpa.", dns.TypeNS}:        "the same, in a reverse zone",
		{"ns.dns.cluster.local.", dns.TypeA}: "the NS target resolves to the address the server answers on",
	}

	for _, q := range questions {
		name := q.qname + " " + dns.TypeToString[q.qtype]
		ours, theirs := ask(t, headless.addr, "tcp", q.qname, q.qtype, 0), ask(t, kubernetes.addr, "tcp", q.qname, q.qtype, 0)
		if a, b := answerView(ours), answerView(theirs); a != b {
			if why, ok := differs[q]; ok {
				t.Logf("%s differs on purpose (%s):\nheadless:   %s\nkubernetes: %s", name, why, a, b)
				continue
			}
			t.Errorf("%s:\nheadless:\n%s\nkubernetes:\n%s", name, a, b)
		}
	}
}
