package e2e

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	core "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestOddAPIDataRejected records what the real API server refuses in an
// EndpointSlice, so the plugin's handling of it (unit tests) only matters
// for data from elsewhere: older servers, or objects written before.
func TestOddAPIDataRejected(t *testing.T) {
	c := env.cluster.client
	ns := newNamespace(t, env.cluster, "odd-rejected")
	ports80 := []discovery.EndpointPort{port("http", 80, core.ProtocolTCP)}
	var thousandAndOne []discovery.Endpoint
	for i := range 1001 {
		thousandAndOne = append(thousandAndOne, endpoint("", fmt.Sprintf("10.50.%d.%d", i/250, i%250+1)))
	}
	for _, tc := range []struct {
		name   string
		family discovery.AddressType
		eps    []discovery.Endpoint
	}{
		{"hostname-upper-case", discovery.AddressTypeIPv4, []discovery.Endpoint{endpoint("Web-0", "10.50.0.1")}},
		{"hostname-dot", discovery.AddressTypeIPv4, []discovery.Endpoint{endpoint("web.0", "10.50.0.1")}},
		{"hostname-underscore", discovery.AddressTypeIPv4, []discovery.Endpoint{endpoint("web_0", "10.50.0.1")}},
		{"hostname-64-bytes", discovery.AddressTypeIPv4, []discovery.Endpoint{endpoint(strings.Repeat("a", 64), "10.50.0.1")}},
		{"ip-text", discovery.AddressTypeIPv4, []discovery.Endpoint{endpoint("", "not-an-ip")}},
		{"ip-octet-256", discovery.AddressTypeIPv4, []discovery.Endpoint{endpoint("", "10.50.0.256")}},
		{"ip-leading-zero", discovery.AddressTypeIPv4, []discovery.Endpoint{endpoint("", "010.50.0.1")}},
		{"ipv4-mapped-in-ipv6-slice", discovery.AddressTypeIPv6, []discovery.Endpoint{endpoint("", "::ffff:10.50.0.1")}},
		{"ipv4-mapped-in-ipv4-slice", discovery.AddressTypeIPv4, []discovery.Endpoint{endpoint("", "::ffff:10.50.0.1")}},
		{"ipv6-in-ipv4-slice", discovery.AddressTypeIPv4, []discovery.Endpoint{endpoint("", "fd00::1")}},
		{"ipv4-in-ipv6-slice", discovery.AddressTypeIPv6, []discovery.Endpoint{endpoint("", "10.50.0.1")}},
		{"ipv6-zone", discovery.AddressTypeIPv6, []discovery.Endpoint{endpoint("", "fd00::1%eth0")}},
		{"ipv6-not-canonical", discovery.AddressTypeIPv6, []discovery.Endpoint{endpoint("", "FD00:0::1")}},
		{"loopback", discovery.AddressTypeIPv4, []discovery.Endpoint{endpoint("", "127.0.0.1")}},
		{"link-local", discovery.AddressTypeIPv4, []discovery.Endpoint{endpoint("", "169.254.1.1")}},
		{"unspecified", discovery.AddressTypeIPv6, []discovery.Endpoint{endpoint("", "::")}},
		{"no-address", discovery.AddressTypeIPv4, []discovery.Endpoint{{}}},
		{"1001-endpoints", discovery.AddressTypeIPv4, thousandAndOne},
		{"address-type-unknown", discovery.AddressType("IPv5"), []discovery.Endpoint{endpoint("", "10.50.0.1")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSlice(ns, tc.name, "web", tc.family, ports80, tc.eps...)
			_, err := c.DiscoveryV1().EndpointSlices(ns).Create(context.Background(), s, metav1.CreateOptions{})
			if !apierrors.IsInvalid(err) {
				t.Fatalf("want the API server to refuse it as invalid, got %v", err)
			}
		})
	}
	// A port name the API refuses; an SRV owner could not hold it anyway.
	badPort := newSlice(ns, "bad-port", "web", discovery.AddressTypeIPv4,
		[]discovery.EndpointPort{port("HTTP_PORT", 80, core.ProtocolTCP)}, endpoint("", "10.50.0.1"))
	if _, err := c.DiscoveryV1().EndpointSlices(ns).Create(context.Background(), badPort, metav1.CreateOptions{}); !apierrors.IsInvalid(err) {
		t.Errorf("port name HTTP_PORT: want invalid, got %v", err)
	}
}

// bigSlices makes n ready endpoints of service svc, in slices of at most
// 1000 (the API's limit).
func bigSlices(ns, svc string, n int) []*discovery.EndpointSlice {
	var out []*discovery.EndpointSlice
	for first := 0; first < n; first += 1000 {
		var eps []discovery.Endpoint
		for i := first; i < min(n, first+1000); i++ {
			eps = append(eps, endpoint(fmt.Sprintf("pod-%04d", i), fmt.Sprintf("10.60.%d.%d", i/250, i%250+1)))
		}
		out = append(out, newSlice(ns, fmt.Sprintf("%s-%d", svc, first/1000), svc, discovery.AddressTypeIPv4,
			[]discovery.EndpointPort{port("http", 80, core.ProtocolTCP)}, eps...))
	}
	return out
}

// TestOddAPIData is the odd data the API server accepts, against the real
// binary.
func TestOddAPIData(t *testing.T) {
	c := env.cluster.client
	ctx := context.Background()
	ns := newNamespace(t, env.cluster, "odd")
	ports80 := []discovery.EndpointPort{port("http", 80, core.ProtocolTCP)}
	zone := "." + ns + ".svc.cluster.local."

	// Duplicates across slices.
	createService(t, c, ns, "dup", true)
	createSlice(t, c, newSlice(ns, "dup-a", "dup", discovery.AddressTypeIPv4, ports80, endpoint("web-0", "10.61.0.1"), endpoint("", "10.61.0.9")))
	createSlice(t, c, newSlice(ns, "dup-b", "dup", discovery.AddressTypeIPv4, ports80, endpoint("web-0", "10.61.0.1"), endpoint("web-1", "10.61.0.2")))
	createSlice(t, c, newSlice(ns, "dup-c", "dup", discovery.AddressTypeIPv4, ports80, endpoint("web-1", "10.61.0.3"), endpoint("alias", "10.61.0.9")))
	// A slice without the service-name label, and one naming a missing service.
	loose := newSlice(ns, "loose", "", discovery.AddressTypeIPv4, ports80, endpoint("l-0", "10.61.1.1"))
	loose.Labels = nil
	createSlice(t, c, loose)
	createSlice(t, c, newSlice(ns, "ghost-1", "ghost", discovery.AddressTypeIPv4, ports80, endpoint("g-0", "10.61.2.1")))
	// FQDN slices.
	createService(t, c, ns, "ext", false)
	createSlice(t, c, newSlice(ns, "ext-1", "ext", discovery.AddressTypeFQDN, ports80, endpoint("db", "db.example.org")))
	// More than 1000 endpoints.
	const pods = 2500
	createService(t, c, ns, "huge", true)
	for _, s := range bigSlices(ns, "huge", pods) {
		createSlice(t, c, s)
	}
	// A service to turn into a ClusterIP one.
	createService(t, c, ns, "flip", true)
	createSlice(t, c, newSlice(ns, "flip-1", "flip", discovery.AddressTypeIPv4, ports80, endpoint("f-0", "10.61.3.1")))

	s := startCoreDNS(t, env.cluster, namespacedBlock(ns, ""))
	check := func(qname string, qtype uint16, rcode int, want ...string) {
		t.Helper()
		eventually(t, 5*time.Second, qname, func() error { return expectAnswer(s.addr, "tcp", qname, qtype, rcode, want...) })
	}
	t.Run("duplicates", func(t *testing.T) {
		check("dup"+zone, dns.TypeA, dns.RcodeSuccess, "10.61.0.1", "10.61.0.2", "10.61.0.3", "10.61.0.9")
		check("web-0.dup"+zone, dns.TypeA, dns.RcodeSuccess, "10.61.0.1")
		check("web-1.dup"+zone, dns.TypeA, dns.RcodeSuccess, "10.61.0.2", "10.61.0.3")
		check("_http._tcp.dup"+zone, dns.TypeSRV, dns.RcodeSuccess,
			"80 10-61-0-9.dup"+zone, "80 alias.dup"+zone, "80 web-0.dup"+zone, "80 web-1.dup"+zone)
		check("9.0.61.10.in-addr.arpa.", dns.TypePTR, dns.RcodeSuccess, "10-61-0-9.dup"+zone, "alias.dup"+zone)
		check("1.0.61.10.in-addr.arpa.", dns.TypePTR, dns.RcodeSuccess, "web-0.dup"+zone)
	})
	t.Run("slices without a service", func(t *testing.T) {
		check("1.1.61.10.in-addr.arpa.", dns.TypePTR, dns.RcodeNameError)
		check("ghost"+zone, dns.TypeA, dns.RcodeNameError)
		check("1.2.61.10.in-addr.arpa.", dns.TypePTR, dns.RcodeNameError)
		createService(t, c, ns, "ghost", true)
		check("g-0.ghost"+zone, dns.TypeA, dns.RcodeSuccess, "10.61.2.1")
		if err := c.CoreV1().Services(ns).Delete(ctx, "ghost", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		check("g-0.ghost"+zone, dns.TypeA, dns.RcodeNameError)
		check("1.2.61.10.in-addr.arpa.", dns.TypePTR, dns.RcodeNameError)
	})
	t.Run("FQDN slices", func(t *testing.T) {
		check("ext"+zone, dns.TypeA, dns.RcodeNameError)
		check("db.ext"+zone, dns.TypeA, dns.RcodeNameError)
	})
	t.Run("more than 1000 endpoints", func(t *testing.T) {
		tcp := ask(t, s.addr, "tcp", "huge"+zone, dns.TypeA, 0)
		if tcp.Truncated || len(tcp.Answer) != pods {
			t.Errorf("TCP: TC %v with %d of %d answers", tcp.Truncated, len(tcp.Answer), pods)
		}
		for _, bufsize := range []uint16{0, 100, 1232, 4096, 65535} {
			limit := min(max(int(bufsize), 512), 4096)
			n, udp := rawUDP(t, s.addr, "huge"+zone, dns.TypeA, bufsize)
			if !udp.Truncated || n > limit || n < limit-100 || len(udp.Answer) == 0 {
				t.Errorf("UDP A, buffer %d: TC %v, %d answers in %d bytes", bufsize, udp.Truncated, len(udp.Answer), n)
			}
			n, udp = rawUDP(t, s.addr, "_http._tcp.huge"+zone, dns.TypeSRV, bufsize)
			if !udp.Truncated || n > limit || len(udp.Answer) == 0 {
				t.Errorf("UDP SRV, buffer %d: TC %v, %d answers in %d bytes", bufsize, udp.Truncated, len(udp.Answer), n)
			}
		}
	})
	t.Run("headless to ClusterIP and back", func(t *testing.T) {
		services := c.CoreV1().Services(ns)
		check("f-0.flip"+zone, dns.TypeA, dns.RcodeSuccess, "10.61.3.1")
		// clusterIP is immutable: a service changes kind by being made anew.
		if err := services.Delete(ctx, "flip", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		regular := &core.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "flip", Namespace: ns},
			Spec:       core.ServiceSpec{Selector: map[string]string{"app": "flip"}, Ports: []core.ServicePort{{Name: "http", Port: 80}}},
		}
		if _, err := services.Create(ctx, regular, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		check("flip"+zone, dns.TypeA, dns.RcodeNameError)
		check("f-0.flip"+zone, dns.TypeA, dns.RcodeNameError)
		check("1.3.61.10.in-addr.arpa.", dns.TypePTR, dns.RcodeNameError)
		if err := services.Delete(ctx, "flip", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		createService(t, c, ns, "flip", true)
		check("f-0.flip"+zone, dns.TypeA, dns.RcodeSuccess, "10.61.3.1")
		check("1.3.61.10.in-addr.arpa.", dns.TypePTR, dns.RcodeSuccess, "f-0.flip"+zone)
	})
	t.Run("a slice labelled later joins its service", func(t *testing.T) {
		got, err := c.DiscoveryV1().EndpointSlices(ns).Get(ctx, "loose", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got.Labels = map[string]string{discovery.LabelServiceName: "dup"}
		updateSlice(t, c, got)
		check("l-0.dup"+zone, dns.TypeA, dns.RcodeSuccess, "10.61.1.1")
	})
}

// rawUDP sends one question over a plain UDP socket and returns the size of
// the datagram that came back, and the reply.
func rawUDP(t *testing.T, server, qname string, qtype, bufsize uint16) (int, *dns.Msg) {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(qname, qtype)
	if bufsize > 0 {
		m.SetEdns0(bufsize, false)
	}
	query, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("udp", server)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write(query); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65536)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("%s over UDP with buffer %d: %v", qname, bufsize, err)
	}
	resp := new(dns.Msg)
	if err := resp.Unpack(buf[:n]); err != nil {
		t.Fatalf("reply of %d bytes does not unpack: %v", n, err)
	}
	if resp.Id != m.Id {
		t.Fatalf("reply ID %d, query %d", resp.Id, m.Id)
	}
	return n, resp
}

// TestIsolationOverTheWire: with namespaces set, nothing of another
// namespace shows, not even that a name or an address exists there.
func TestIsolationOverTheWire(t *testing.T) {
	c := env.cluster.client
	mine := newNamespace(t, env.cluster, "iso-mine")
	theirs := newNamespace(t, env.cluster, "iso-theirs")
	ports80 := []discovery.EndpointPort{port("http", 80, core.ProtocolTCP)}
	createService(t, c, mine, "web", true)
	createSlice(t, c, newSlice(mine, "web-1", "web", discovery.AddressTypeIPv4, ports80,
		endpoint("web-0", "10.62.0.1"), endpoint("", "10.62.9.9"))) // 10.62.9.9 is theirs too
	createService(t, c, theirs, "web", true)
	createSlice(t, c, newSlice(theirs, "web-1", "web", discovery.AddressTypeIPv4, ports80,
		endpoint("web-0", "10.62.1.1"), endpoint("secret", "10.62.9.9"), endpoint("", "10.62.1.2")))
	createSlice(t, c, newSlice(theirs, "web-6", "web", discovery.AddressTypeIPv6, ports80, endpoint("secret", "fd00:62::1")))
	// Their slice naming my service's name stays theirs.
	createSlice(t, c, newSlice(theirs, "web-2", "web", discovery.AddressTypeIPv4, ports80, endpoint("intruder", "10.62.1.3")))

	s := startCoreDNS(t, env.cluster, namespacedBlock(mine, ""))
	myZone := ".web." + mine + ".svc.cluster.local."
	rev6, _ := dns.ReverseAddr("fd00:62::1")
	for _, tc := range []struct {
		qname string
		qtype uint16
		rcode int
		want  []string
	}{
		{"web" + myZone[4:], dns.TypeA, dns.RcodeSuccess, []string{"10.62.0.1", "10.62.9.9"}},
		{"_http._tcp" + myZone, dns.TypeSRV, dns.RcodeSuccess, []string{"80 10-62-9-9" + myZone, "80 web-0" + myZone}},
		{"9.9.62.10.in-addr.arpa.", dns.TypePTR, dns.RcodeSuccess, []string{"10-62-9-9" + myZone}},
		{"1.1.62.10.in-addr.arpa.", dns.TypePTR, dns.RcodeNameError, nil},
		{"2.1.62.10.in-addr.arpa.", dns.TypePTR, dns.RcodeNameError, nil},
		{"3.1.62.10.in-addr.arpa.", dns.TypePTR, dns.RcodeNameError, nil},
		{"1.62.10.in-addr.arpa.", dns.TypePTR, dns.RcodeNameError, nil}, // their empty non-terminal
		{rev6, dns.TypePTR, dns.RcodeNameError, nil},
		{"web." + theirs + ".svc.cluster.local.", dns.TypeA, dns.RcodeNameError, nil},
		{"secret.web." + theirs + ".svc.cluster.local.", dns.TypeA, dns.RcodeNameError, nil},
		{"_http._tcp.web." + theirs + ".svc.cluster.local.", dns.TypeSRV, dns.RcodeNameError, nil},
		{theirs + ".svc.cluster.local.", dns.TypeA, dns.RcodeNameError, nil},
		{"secret" + myZone, dns.TypeA, dns.RcodeNameError, nil},
		{"intruder" + myZone, dns.TypeA, dns.RcodeNameError, nil},
		{"*.svc.cluster.local.", dns.TypeA, dns.RcodeNameError, nil},
		{"*." + theirs + ".svc.cluster.local.", dns.TypeA, dns.RcodeNameError, nil},
		{"*.web." + theirs + ".svc.cluster.local.", dns.TypeA, dns.RcodeNameError, nil},
		{"*" + myZone, dns.TypeA, dns.RcodeNameError, nil},
		{"web.*.svc.cluster.local.", dns.TypeA, dns.RcodeNameError, nil},
	} {
		for _, network := range []string{"udp", "tcp"} {
			resp := ask(t, s.addr, network, tc.qname, tc.qtype, 1232)
			if got, want := strings.Join(values(resp.Answer), ","), strings.Join(tc.want, ","); resp.Rcode != tc.rcode || got != want {
				t.Errorf("%s %s over %s: %s %s, want %s %s", tc.qname, dns.TypeToString[tc.qtype], network,
					dns.RcodeToString[resp.Rcode], got, dns.RcodeToString[tc.rcode], want)
			}
			for _, rr := range append(append(resp.Answer, resp.Ns...), resp.Extra...) {
				text := strings.ToLower(rr.String())
				if strings.Contains(text, theirs) || strings.Contains(text, "10.62.1.") || strings.Contains(text, "fd00:62") {
					t.Errorf("%s %s: %s shows the other namespace", tc.qname, dns.TypeToString[tc.qtype], rr)
				}
			}
		}
	}
}
