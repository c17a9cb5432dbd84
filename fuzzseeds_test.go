package headless

import (
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// The seed corpora of the fuzz targets are checked in under
// testdata/fuzz/<target>/, one file per seed, named after what it tries.
// They are written from the seeds below:
//
//	go test -run TestFuzzCorpus -update-fuzz-corpus .
var updateFuzzCorpus = flag.Bool("update-fuzz-corpus", false, "rewrite testdata/fuzz from the seeds in fuzzseeds_test.go")

type wireSeed struct {
	name string
	wire []byte
	tcp  bool
}

func question(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.Id = 0x1234
	return m
}

func withEDNS(m *dns.Msg, size uint16, do bool, options ...dns.EDNS0) *dns.Msg {
	m.SetEdns0(size, do)
	o := m.IsEdns0()
	o.Option = append(o.Option, options...)
	return m
}

func packed(m *dns.Msg) []byte {
	wire, err := m.Pack()
	if err != nil {
		panic(fmt.Sprintf("packing seed %v: %v", m.Question, err))
	}
	return wire
}

// header is a DNS header: id, flags and the four section counts.
func header(flags uint16, counts ...uint16) []byte {
	b := binary.BigEndian.AppendUint16(nil, 0x1234)
	b = binary.BigEndian.AppendUint16(b, flags)
	for i := range 4 {
		var n uint16
		if i < len(counts) {
			n = counts[i]
		}
		b = binary.BigEndian.AppendUint16(b, n)
	}
	return b
}

// wireName is the uncompressed wire form of a name given as labels.
func wireName(labels ...string) []byte {
	var b []byte
	for _, l := range labels {
		b = append(b, byte(len(l)))
		b = append(b, l...)
	}
	return append(b, 0)
}

func serveDNSSeeds() []wireSeed {
	const zone = "cluster.local."
	big := "_http._tcp.big.default.svc." + zone
	l63 := strings.Repeat("a", 63)
	// 63+63+63+47 bytes of labels and cluster.local: 255 bytes in all.
	name255 := l63 + "." + l63 + "." + l63 + "." + strings.Repeat("b", 47) + "." + zone
	qtail := binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, dns.TypeA), dns.ClassINET)

	notify := question("cassandra.default.svc."+zone, dns.TypeSOA)
	notify.Opcode = dns.OpcodeNotify
	update := question(zone, dns.TypeSOA)
	update.Opcode = dns.OpcodeUpdate
	response := question("cassandra.default.svc."+zone, dns.TypeA)
	response.Response, response.Truncated, response.Rcode = true, true, dns.RcodeServerFailure
	noRD := question("cassandra.default.svc."+zone, dns.TypeA)
	noRD.RecursionDesired = false
	noRD.CheckingDisabled, noRD.AuthenticatedData = true, true
	two := question("cassandra.default.svc."+zone, dns.TypeA)
	two.Question = append(two.Question, dns.Question{Name: "external-db.default.svc." + zone, Qtype: dns.TypeA, Qclass: dns.ClassINET})
	zero := question(zone, dns.TypeA)
	zero.Question = nil
	withAnswer := question("cassandra-0.cassandra.default.svc."+zone, dns.TypeA)
	withAnswer.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: "cassandra-0.cassandra.default.svc." + zone, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: []byte{6, 6, 6, 6}}}
	withAnswer.Compress = true
	classes := func(class uint16) *dns.Msg {
		m := question("cassandra.default.svc."+zone, dns.TypeA)
		m.Question[0].Qclass = class
		return m
	}
	ednsV1 := withEDNS(question("cassandra.default.svc."+zone, dns.TypeA), 1232, false)
	ednsV1.IsEdns0().SetVersion(1)
	twoOPT := withEDNS(question("cassandra.default.svc."+zone, dns.TypeA), 4096, false)
	twoOPT.Extra = append(twoOPT.Extra, &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT, Class: 512}})
	oddOPT := withEDNS(question(big, dns.TypeSRV), 1232, true)
	oddOPT.IsEdns0().Hdr.Name = "cluster.local."
	oddOPT.IsEdns0().Hdr.Ttl |= 0x7fff // every Z flag

	seeds := []wireSeed{
		{"service-a-edns-do", packed(withEDNS(question("cassandra.default.svc."+zone, dns.TypeA), 1232, true)), false},
		{"pod-a-plain", packed(question("cassandra-0.cassandra.default.svc."+zone, dns.TypeA)), false},
		{"pod-aaaa-dual-stack", packed(question("web-0.web.shop.svc."+zone, dns.TypeAAAA)), false},
		{"ipv6-id", packed(question("2001-0db8-0000-0000-0000-0000-0000-0005.web.shop.svc."+zone, dns.TypeAAAA)), true},
		{"srv-glue", packed(question("_cql._tcp.cassandra.default.svc."+zone, dns.TypeSRV)), false},
		{"srv-upper-case", packed(question("_CQL._TCP.CaSsAnDrA.DEFAULT.SVC.CLUSTER.LOCAL.", dns.TypeSRV)), false},
		{"srv-big-udp-512", packed(question(big, dns.TypeSRV)), false},
		{"srv-big-tcp", packed(question(big, dns.TypeSRV)), true},
		{"srv-big-edns-65535", packed(withEDNS(question(big, dns.TypeSRV), 65535, false)), false},
		{"srv-big-edns-0", packed(withEDNS(question(big, dns.TypeSRV), 0, false)), false},
		{"srv-big-edns-100", packed(withEDNS(question(big, dns.TypeSRV), 100, false)), false},
		{"srv-big-edns-1232-tcp", packed(withEDNS(question(big, dns.TypeSRV), 1232, true)), true},
		{"a-big-edns-600", packed(withEDNS(question("big.default.svc."+zone, dns.TypeA), 600, false)), false},
		{"ptr-v4", packed(question("5.1.244.10.in-addr.arpa.", dns.TypePTR)), false},
		{"ptr-v6", packed(question("5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.", dns.TypePTR)), false},
		{"ptr-reverse-ent", packed(question("244.10.in-addr.arpa.", dns.TypePTR)), false},
		{"ptr-in-forward-zone", packed(question("cassandra.default.svc."+zone, dns.TypePTR)), false},
		{"apex-soa-mixed-case", packed(question("ClUsTeR.LoCaL.", dns.TypeSOA)), false},
		{"apex-ns", packed(question(zone, dns.TypeNS)), false},
		{"reverse-apex-soa", packed(question("in-addr.arpa.", dns.TypeSOA)), true},
		{"namespace-ent", packed(question("default.svc."+zone, dns.TypeA)), false},
		{"nxdomain", packed(question("nosuch.default.svc."+zone, dns.TypeA)), false},
		{"wildcard", packed(question("*.default.svc."+zone, dns.TypeA)), false},
		{"type-any", packed(question("cassandra.default.svc."+zone, dns.TypeANY)), false},
		{"type-0", packed(question("cassandra.default.svc."+zone, dns.TypeNone)), false},
		{"type-unknown-65280", packed(question("cassandra.default.svc."+zone, 65280)), false},
		{"type-axfr", packed(question(zone, dns.TypeAXFR)), true},
		{"type-ixfr", packed(question(zone, dns.TypeIXFR)), false},
		{"class-chaos", packed(classes(dns.ClassCHAOS)), false},
		{"class-any", packed(classes(dns.ClassANY)), false},
		{"class-none", packed(classes(dns.ClassNONE)), false},
		{"class-unknown", packed(classes(4242)), false},
		{"outside-zones", packed(question("example.org.", dns.TypeA)), false},
		{"root-ns", packed(question(".", dns.TypeNS)), false},
		{"escaped-bytes", packed(question("\\000.\\255x.svc."+zone, dns.TypeANY)), false},
		{"escaped-dot", packed(question("cassandra\\.default.svc."+zone, dns.TypeA)), false},
		{"escaped-dot-zone", packed(question("a.cluster\\.local.", dns.TypeA)), false},
		{"label-63", packed(question(l63+".default.svc."+zone, dns.TypeA)), false},
		{"name-255", packed(question(name255, dns.TypeA)), false},
		{"opcode-notify", packed(notify), false},
		{"opcode-update", packed(update), false},
		{"qr-tc-rcode-set", packed(response), false},
		{"no-rd-cd-ad", packed(noRD), false},
		{"two-questions", packed(two), false},
		{"zero-questions", packed(zero), false},
		{"answer-in-query-compressed", packed(withAnswer), false},
		{"edns-version-1", packed(ednsV1), false},
		{"edns-two-opt", packed(twoOPT), false},
		{"edns-opt-odd-owner-and-flags", packed(oddOPT), false},
		{"edns-options", packed(withEDNS(question("cassandra.default.svc."+zone, dns.TypeA), 1232, true,
			&dns.EDNS0_NSID{Code: dns.EDNS0NSID},
			&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"},
			&dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: []byte{10, 244, 1, 0}},
			&dns.EDNS0_PADDING{Padding: make([]byte, 64)},
			&dns.EDNS0_TCP_KEEPALIVE{Code: dns.EDNS0TCPKEEPALIVE},
		)), true},
		{"edns-bogus-options", packed(withEDNS(question("_cql._tcp.cassandra.default.svc."+zone, dns.TypeSRV), 512, false,
			&dns.EDNS0_LOCAL{Code: 65001, Data: []byte("\xff\x00junk")},
			&dns.EDNS0_LOCAL{Code: 0, Data: nil},
			&dns.EDNS0_LOCAL{Code: dns.EDNS0COOKIE, Data: []byte{1}}, // a cookie too short
		)), false},
		// Hand-made wire: what miekg/dns would not write.
		{"compression-pointer-loop", append(append(header(0x0100, 1), 0xc0, 12), qtail...), false},
		{"compression-pointer-forward", append(append(header(0x0100, 1), 0xc0, 20), qtail...), false},
		{"question-name-by-pointer", append(append(append(append(header(0x0100, 2), wireName("cluster", "local")...), qtail...), 0xc0, 12), qtail...), false},
		{"name-256", append(append(header(0x0100, 1), wireName(l63, l63, l63, strings.Repeat("c", 48), "cluster", "local")...), qtail...), false},
		{"label-64", append(append(header(0x0100, 1), wireName(l63+"a", "cluster", "local")...), qtail...), false},
		{"counts-lie", append(append(header(0x0100, 65535, 65535, 65535, 65535), wireName("cluster", "local")...), qtail...), false},
		{"header-only", header(0x0100), false},
		{"empty", nil, true},
	}
	return seeds
}

type textSeed struct{ name, rest string } // rest follows "headless"

func parseSeeds() []textSeed {
	return []textSeed{
		{"bare", ""},
		{"zones", " cluster.local in-addr.arpa ip6.arpa"},
		{"cidr-zones", " cluster.local 10.244.0.0/16 fd00::/64 10.0.0.0/7"},
		{"every-option", ` cluster.local in-addr.arpa {
    endpoint https://10.0.0.1:6443
    namespaces databases queues
    labels app=db,tier in (a,b)
    endpoint_pod_names
    ttl 30
    ttl pod 60
    ttl negative 0
    startup_timeout 1m30s
    fallthrough in-addr.arpa
}`},
		{"quoted-args", " \"cluster.local\" {\n labels \"app in (a, b)\" \"!canary\"\n ttl \"5\"\n}"},
		{"no-forward-zone", " in-addr.arpa 10.0.0.0/8"},
		{"ttl-out-of-range", " cluster.local {\n ttl 9999\n}"},
		{"ttl-kind-without-value", " {\n ttl pod\n}"},
		{"ttl-negative-number", " {\n ttl service -1\n}"},
		{"ttl-twice", " {\n ttl 5\n ttl 6\n}"},
		{"unknown-option", " {\n bogus on\n}"},
		{"bad-namespace", " {\n namespaces Not_A_Label\n}"},
		{"namespace-twice", " {\n namespaces a a\n}"},
		{"bad-selector", " {\n labels app==\n}"},
		{"negative-timeout", " {\n startup_timeout -1s\n}"},
		{"bad-endpoint", " {\n endpoint ftp://api\n}"},
		{"missing-kubeconfig", " {\n kubeconfig testdata/no-such-kubeconfig\n}"},
		{"bad-fallthrough-zone", " {\n fallthrough ..\n}"},
		{"bad-zone", " cluster..local"},
		{"host-port-zone", " [::1]:53 cluster.local"},
		{"zone-trailing-backslash", ` \0\`}, // once accepted as the zone \0\.
		{"fallthrough-trailing-backslash", " cluster.local {\n fallthrough a\\\n}"},
		{"unclosed-block", " cluster.local {\n ttl 5"},
		{"extra-brace", " {\n}\n}"},
		{"nested-block", " {\n ttl {\n 5\n }\n}"},
		{"twice", " cluster.local\nheadless cluster.local"},
		{"env-placeholder", " {$NO_SUCH_VARIABLE} {\n namespaces {$NO_SUCH_VARIABLE}\n}"},
		{"comment-and-unicode", " cluster.local # zone\n {\n namespaces café\n}"},
		{"import-snippet", " cluster.local {\n import nothing\n}"},
	}
}

// writeCorpus renders seeds in the fuzzing engine's corpus file format.
func corpusFile(values ...any) []byte {
	var b bytes.Buffer
	b.WriteString("go test fuzz v1\n")
	for _, v := range values {
		switch v := v.(type) {
		case []byte:
			fmt.Fprintf(&b, "[]byte(%s)\n", strconv.Quote(string(v)))
		case string:
			fmt.Fprintf(&b, "string(%s)\n", strconv.Quote(v))
		case bool:
			fmt.Fprintf(&b, "bool(%v)\n", v)
		}
	}
	return b.Bytes()
}

// TestFuzzCorpus keeps testdata/fuzz in step with the seeds above.
func TestFuzzCorpus(t *testing.T) {
	want := map[string][]byte{}
	for _, s := range serveDNSSeeds() {
		want[filepath.Join("FuzzServeDNS", s.name)] = corpusFile(s.wire, s.tcp)
	}
	for _, s := range parseSeeds() {
		want[filepath.Join("FuzzParse", s.name)] = corpusFile(s.rest)
	}
	dir := filepath.Join("testdata", "fuzz")
	for name, content := range want {
		path := filepath.Join(dir, name)
		if *updateFuzzCorpus {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, content, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, content) {
			t.Errorf("%s is missing or stale: go test -run TestFuzzCorpus -update-fuzz-corpus .", path)
		}
	}
}
