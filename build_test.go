package headless

import (
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	core "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
)

func TestIPLabels(t *testing.T) {
	for _, tc := range []struct{ ip, want string }{
		{"10.244.1.5", "10-244-1-5"},
		{"::1", "0000-0000-0000-0000-0000-0000-0000-0001"},
		{"2001:db8::", "2001-0db8-0000-0000-0000-0000-0000-0000"},
		{"fd00:abcd::ff:1", "fd00-abcd-0000-0000-0000-0000-00ff-0001"},
	} {
		got := ipLabel(netip.MustParseAddr(tc.ip))
		if got != tc.want || !isLabel(got) {
			t.Errorf("ipLabel(%s) = %s, want %s (a valid label)", tc.ip, got, tc.want)
		}
	}
}

// describe lists what an answer set publishes, one line a name, for
// comparing with what a test expects.
func describe(sd *serviceData) []string {
	if sd == nil {
		return nil
	}
	ips := func(s addrSet) string {
		var out []string
		for ip := range s.all {
			out = append(out, ip.String())
		}
		slices.Sort(out) // as the records are compared: a set
		return strings.Join(out, " ")
	}
	lines := []string{sd.rel + " " + ips(sd.addrs)}
	for i := range sd.pods {
		lines = append(lines, sd.podRel(int32(i))+" "+ips(sd.podAddrSet(int32(i))))
	}
	for _, s := range sd.srv {
		line := s.rel
		for _, t := range s.targets {
			line += fmt.Sprintf(" %s:%d", sd.fqdn(t.pod, 0), t.port)
		}
		lines = append(lines, line)
	}
	return lines
}

func TestBuildTurnsSlicesIntoOneAnswerSet(t *testing.T) {
	svc := &service{namespace: "ns", name: "web", hasSelector: true}
	zones := buildOptions{zones: []string{"cluster.local.", "example.org."}}
	web := ports(port("http", 80, core.ProtocolTCP), port("", 81, core.ProtocolTCP), port("DNS", 53, core.ProtocolUDP))
	for _, tc := range []struct {
		name   string
		opts   buildOptions
		slices []*discovery.EndpointSlice
		want   []string
	}{{
		name: "hostnames name pods; ports with a name get SRV, in lower case",
		opts: zones,
		slices: []*discovery.EndpointSlice{slice("ns", "a", "web", discovery.AddressTypeIPv4, web,
			endpoint("web-1", "10.0.0.2"), endpoint("web-0", "10.0.0.1"))},
		want: []string{
			"web.ns.svc 10.0.0.1 10.0.0.2",
			"web-0.web.ns.svc 10.0.0.1",
			"web-1.web.ns.svc 10.0.0.2",
			"_dns._udp.web.ns.svc web-0.web.ns.svc.cluster.local.:53 web-1.web.ns.svc.cluster.local.:53",
			"_http._tcp.web.ns.svc web-0.web.ns.svc.cluster.local.:80 web-1.web.ns.svc.cluster.local.:80",
		},
	}, {
		name: "not-ready endpoints publish nothing; no ready endpoint, no answer set",
		opts: zones,
		slices: []*discovery.EndpointSlice{slice("ns", "a", "web", discovery.AddressTypeIPv4, web,
			notReady(endpoint("web-0", "10.0.0.1")))},
		want: nil,
	}, {
		name: "without a hostname an endpoint is named by its address; bad hostnames too",
		opts: zones,
		slices: []*discovery.EndpointSlice{
			slice("ns", "a", "web", discovery.AddressTypeIPv4, nil, endpoint("", "10.0.0.1"), endpoint("Not_A_Label", "10.0.0.2")),
			slice("ns", "b", "web", discovery.AddressTypeIPv6, nil, endpoint("", "fd00::1")),
		},
		want: []string{
			"web.ns.svc 10.0.0.1 10.0.0.2 fd00::1",
			"10-0-0-1.web.ns.svc 10.0.0.1",
			"10-0-0-2.web.ns.svc 10.0.0.2",
			"fd00-0000-0000-0000-0000-0000-0000-0001.web.ns.svc fd00::1",
		},
	}, {
		name: "endpoint_pod_names names endpoints without a hostname by their pod",
		opts: buildOptions{zones: zones.zones, podNames: true},
		slices: []*discovery.EndpointSlice{slice("ns", "a", "web", discovery.AddressTypeIPv4, nil,
			podRef(endpoint("", "10.0.0.1"), "web-7d9f-abcde"), podRef(endpoint("web-0", "10.0.0.2"), "ignored"))},
		want: []string{
			"web.ns.svc 10.0.0.1 10.0.0.2",
			"web-0.web.ns.svc 10.0.0.2",
			"web-7d9f-abcde.web.ns.svc 10.0.0.1",
		},
	}, {
		name: "one address in two slices, and two addresses under one name, are each published once",
		opts: zones,
		slices: []*discovery.EndpointSlice{
			slice("ns", "a", "web", discovery.AddressTypeIPv4, nil, endpoint("web-0", "10.0.0.1", "10.0.0.3")),
			slice("ns", "b", "web", discovery.AddressTypeIPv4, nil, endpoint("web-0", "10.0.0.1")),
		},
		want: []string{"web.ns.svc 10.0.0.1 10.0.0.3", "web-0.web.ns.svc 10.0.0.1 10.0.0.3"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			if got := describe(build(svc, slim(tc.opts, tc.slices...), tc.opts)); !slices.Equal(got, tc.want) {
				t.Errorf("got\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}

func TestBuildIsPure(t *testing.T) {
	svc := &service{namespace: "ns", name: "web"}
	opts := buildOptions{zones: []string{"cluster.local."}}
	in := []*discovery.EndpointSlice{slice("ns", "a", "web", discovery.AddressTypeIPv4, ports(port("http", 80, core.ProtocolTCP)),
		endpoint("web-1", "10.0.0.2"), endpoint("web-0", "10.0.0.1"), notReady(endpoint("web-2", "10.0.0.3")))}
	before := in[0].DeepCopy()
	first, second := describe(build(svc, slim(opts, in...), opts)), describe(build(svc, slim(opts, in...), opts))
	if !slices.Equal(first, second) {
		t.Errorf("two builds of the same input differ:\n%v\n%v", first, second)
	}
	if !reflect.DeepEqual(before, in[0]) {
		t.Errorf("build changed its input slice")
	}
}
