package headless

import (
	"context"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/plugin/transfer"
	"github.com/coredns/coredns/request"
	"github.com/miekg/dns"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// collect reads a transfer of zone to its end, as text, one record a line.
func collect(t *testing.T, tr transfer.Transferer, zone string, serial uint32) []string {
	t.Helper()
	ch, err := tr.Transfer(zone, serial)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for rrs := range ch {
		for _, rr := range rrs {
			out = append(out, strings.ReplaceAll(rr.String(), "\t", " "))
		}
	}
	return out
}

func TestAXFRHoldsEveryRecordOnceBetweenTwoSOAs(t *testing.T) {
	h, _ := newTestPlugin(t, "headless cluster.local in-addr.arpa", seedObjects()...)
	h.serverAddrs = serverAddresses([]string{"192.0.2.53"})
	got := collect(t, h, "cluster.local.", 0)
	if len(got) < 2 || !strings.Contains(got[0], " SOA ") || got[0] != got[len(got)-1] {
		t.Fatalf("a transfer starts and ends with the SOA:\n%s", strings.Join(got, "\n"))
	}
	for _, want := range []string{
		"cluster.local. 5 IN NS ns.dns.cluster.local.",
		"ns.dns.cluster.local. 5 IN A 192.0.2.53",
		`dns-version.cluster.local. 28800 IN TXT "1.1.0"`,
		"cassandra.default.svc.cluster.local. 5 IN A 10.244.2.8",
		"cassandra-1.cassandra.default.svc.cluster.local. 5 IN A 10.244.2.8",
		"_cql._tcp.cassandra.default.svc.cluster.local. 5 IN SRV 0 33 9042 cassandra-1.cassandra.default.svc.cluster.local.",
		"cassandra.default.svc.cluster.local. 5 IN SRV 0 33 9042 cassandra-1.cassandra.default.svc.cluster.local.",
		"cassandra-1.cassandra.default.svc.cluster.local. 5 IN SRV 0 100 9042 cassandra-1.cassandra.default.svc.cluster.local.",
		"10-0-0-51.external-db.default.svc.cluster.local. 5 IN A 10.0.0.51",
	} {
		if n := slices.Index(got, want); n < 0 {
			t.Errorf("missing %s", want)
		}
	}
	body := got[1 : len(got)-1]
	sorted := slices.Clone(body)
	slices.Sort(sorted)
	if len(slices.Compact(sorted)) != len(body) {
		t.Errorf("a record appears twice:\n%s", strings.Join(body, "\n"))
	}

	reverse := collect(t, h, "in-addr.arpa.", 0)
	for _, want := range []string{
		"in-addr.arpa. 5 IN NS ns.dns.in-addr.arpa.",
		"5.1.244.10.in-addr.arpa. 5 IN PTR cassandra-0.cassandra.default.svc.cluster.local.",
		"50.0.0.10.in-addr.arpa. 5 IN PTR 10-0-0-50.external-db.default.svc.cluster.local.",
	} {
		if !slices.Contains(reverse, want) {
			t.Errorf("reverse zone transfer lacks %s:\n%s", want, strings.Join(reverse, "\n"))
		}
	}
}

func TestIXFR(t *testing.T) {
	h, client := newTestPlugin(t, "headless cluster.local", seedObjects()...)
	serial := h.serial("cluster.local.")
	if got := collect(t, h, "cluster.local.", serial); len(got) != 1 {
		t.Errorf("IXFR from the current serial: want the SOA alone, got %d records", len(got))
	}
	if got := collect(t, h, "cluster.local.", serial+1); len(got) != 1 {
		t.Errorf("IXFR from a newer serial: want the SOA alone, got %d records", len(got))
	}
	if err := client.CoreV1().Services("default").Delete(context.Background(), "external-db", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the serial to move", func() bool { return h.serial("cluster.local.") != serial })
	if got := collect(t, h, "cluster.local.", serial); len(got) < 5 {
		t.Errorf("IXFR from an older serial falls back to the whole zone, got %d records", len(got))
	}
}

func TestTransferOfAZoneNotServedIsNotAuthoritative(t *testing.T) {
	h, _ := newTestPlugin(t, "headless cluster.local", seedObjects()...)
	if _, err := h.Transfer("example.org.", 0); err != transfer.ErrNotAuthoritative {
		t.Fatalf("got %v, want ErrNotAuthoritative", err)
	}
}

// fakePeer is a plugin behind this one that transfers the zone too, as the
// kubernetes plugin does: its own apex, a ClusterIP service, and (without
// noendpoints) a headless service this plugin answers for.
type fakePeer struct{ serial uint32 }

func (p *fakePeer) Serial(request.Request) uint32 { return p.serial }
func (p *fakePeer) Name() string                  { return "kubernetes" }
func (p *fakePeer) ServeDNS(context.Context, dns.ResponseWriter, *dns.Msg) (int, error) {
	return dns.RcodeServerFailure, nil
}

func (p *fakePeer) Transfer(zone string, _ uint32) (<-chan []dns.RR, error) {
	if zone != "cluster.local." {
		return nil, transfer.ErrNotAuthoritative
	}
	ch := make(chan []dns.RR, 2)
	soa, _ := dns.NewRR("cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5")
	var rrs []dns.RR
	for _, text := range []string{
		"cluster.local. 5 IN NS kube-dns.kube-system.svc.cluster.local.",
		"kube-dns.kube-system.svc.cluster.local. 5 IN A 10.96.0.10",
		"web.default.svc.cluster.local. 5 IN A 10.96.0.20",
		"cassandra.default.svc.cluster.local. 5 IN A 10.244.1.5",
	} {
		rr, _ := dns.NewRR(text)
		rrs = append(rrs, rr)
	}
	ch <- append([]dns.RR{soa}, rrs...)
	ch <- []dns.RR{soa}
	close(ch)
	return ch, nil
}

func TestATransferHoldsThePluginBehindsRecordsToo(t *testing.T) {
	h, _ := newTestPlugin(t, "headless cluster.local", seedObjects()...)
	peer := &fakePeer{serial: 1000}
	h.peers = transferPeers([]plugin.Handler{h, peer}, h)
	got := collect(t, h, "cluster.local.", 0)
	if !slices.Contains(got, "web.default.svc.cluster.local. 5 IN A 10.96.0.20") || !slices.Contains(got, "kube-dns.kube-system.svc.cluster.local. 5 IN A 10.96.0.10") {
		t.Errorf("the peer's own names are missing:\n%s", strings.Join(got, "\n"))
	}
	soas, nss := 0, 0
	for _, rr := range got {
		soas += strings.Count(rr, " SOA ")
		nss += strings.Count(rr, " NS ")
	}
	if soas != 2 || nss != 1 {
		t.Errorf("%d SOA and %d NS records: the apex is this plugin's alone", soas, nss)
	}
	cassandra := 0
	for _, rr := range got {
		if strings.HasPrefix(rr, "cassandra.default.svc.cluster.local. 5 IN A ") {
			cassandra++
		}
	}
	if cassandra != 3 {
		t.Errorf("the headless service's addresses come from this plugin alone: %d records", cassandra)
	}
	before := h.serial("cluster.local.")
	peer.serial++
	if after := h.serial("cluster.local."); after != before+1 {
		t.Errorf("a change behind moves the serial by its own step: %d -> %d", before, after)
	}
}

// A change is announced to the secondaries the transfer plugin lists,
// once for a burst.
func TestChangesAreNotified(t *testing.T) {
	notifies := make(chan string, 16)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	server := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		if r.Opcode == dns.OpcodeNotify {
			notifies <- r.Question[0].Name
		}
		m := new(dns.Msg)
		m.SetReply(r)
		_ = w.WriteMsg(m)
	})}
	go func() { _ = server.ActivateAndServe() }()
	t.Cleanup(func() { _ = server.Shutdown() })

	xfr, err := transferFor(t, "transfer cluster.local {\n to "+pc.LocalAddr().String()+"\n}")
	if err != nil {
		t.Fatal(err)
	}
	h, client := newTestPlugin(t, "headless cluster.local", seedObjects()...)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go h.notifyChanges(ctx, xfr, 10*time.Millisecond)
	time.Sleep(50 * time.Millisecond) // nothing changed: nothing is sent
	select {
	case z := <-notifies:
		t.Fatalf("NOTIFY for %s without a change", z)
	default:
	}
	for _, name := range []string{"external-db", "cassandra"} {
		if err := client.CoreV1().Services("default").Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case z := <-notifies:
		if z != "cluster.local." {
			t.Fatalf("NOTIFY for %s", z)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no NOTIFY after a change")
	}
}

// transferFor sets up a transfer plugin from a Corefile stanza.
func transferFor(t *testing.T, stanza string) (*transfer.Transfer, error) {
	t.Helper()
	setupFunc, err := caddy.DirectiveAction("dns", "transfer")
	if err != nil {
		return nil, err
	}
	c := caddy.NewTestController("dns", stanza)
	c.ServerBlockKeys = []string{"cluster.local."}
	if err := setupFunc(c); err != nil {
		return nil, err
	}
	return dnsserverPlugin(c).(*transfer.Transfer), nil
}

// dnsserverPlugin returns the handler a setup added to its server block.
func dnsserverPlugin(c *caddy.Controller) plugin.Handler {
	return dnsserver.GetConfig(c).Plugin[0](nil)
}

func TestTransferOfAClustersetZone(t *testing.T) {
	h, _ := newTestPlugin(t, "headless cluster.local clusterset.local in-addr.arpa {\n multicluster clusterset.local\n}", clustersetWorld()...)
	got := collect(t, h, "clusterset.local.", 0)
	for _, want := range []string{
		"db-0.cluster-b.db.prod.svc.clusterset.local. 5 IN A 10.2.0.1",
		"_pg._tcp.db.prod.svc.clusterset.local. 5 IN SRV 0 25 5432 db-0.cluster-a.db.prod.svc.clusterset.local.",
		`dns-version.clusterset.local. 28800 IN TXT "1.0.0"`,
	} {
		if !slices.Contains(got, want) {
			t.Errorf("missing %s:\n%s", want, strings.Join(got, "\n"))
		}
	}
	reverse := collect(t, h, "in-addr.arpa.", 0)
	for _, want := range []string{
		"1.0.1.10.in-addr.arpa. 5 IN PTR db-0.db.prod.svc.cluster.local.",
		"1.0.2.10.in-addr.arpa. 5 IN PTR db-0.cluster-b.db.prod.svc.clusterset.local.",
	} {
		if !slices.Contains(reverse, want) {
			t.Errorf("missing %s:\n%s", want, strings.Join(reverse, "\n"))
		}
	}
	for _, rr := range reverse {
		if strings.HasPrefix(rr, "1.0.1.10.in-addr.arpa.") && strings.Contains(rr, "clusterset") {
			t.Errorf("an address with a cluster-local PTR has a clusterset one too: %s", rr)
		}
	}
}
