package main

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
)

// TestMain lets a test run this program's main, as the coredns binary,
// with the arguments in COREDNS_ARGS.
func TestMain(m *testing.M) {
	if args, ok := os.LookupEnv("COREDNS_ARGS"); ok {
		os.Args = append([]string{"coredns"}, strings.Fields(args)...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runCoreDNS(t *testing.T, args string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "COREDNS_ARGS="+args)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("coredns %s: %v", args, err)
	}
	return string(out)
}

func TestHeadlessRunsJustBeforeKubernetes(t *testing.T) {
	h := slices.Index(dnsserver.Directives, "headless")
	k := slices.Index(dnsserver.Directives, "kubernetes")
	if h < 0 || k < 0 || h != k-1 {
		t.Fatalf("headless at %d, kubernetes at %d: want headless immediately before kubernetes", h, k)
	}
	if n := strings.Count(strings.Join(dnsserver.Directives, " ")+" ", " headless "); n != 1 {
		t.Fatalf("headless appears %d times in the directives", n)
	}
}

func TestInsertBefore(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want []string
	}{
		{"placed before the anchor", []string{"a", "kubernetes", "b"}, []string{"a", "headless", "kubernetes", "b"}},
		{"appended without the anchor", []string{"a", "b"}, []string{"a", "b", "headless"}},
		{"never twice", []string{"headless", "a", "kubernetes"}, []string{"a", "headless", "kubernetes"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := insertBefore(tc.in, "kubernetes", "headless"); !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// coredns -plugins prints what stock CoreDNS prints: the registered
// plugins, one a line, without their server type; headless among them.
func TestPluginsFlagListsHeadlessAsStockCoreDNSDoes(t *testing.T) {
	out := runCoreDNS(t, "-plugins")
	if want := caddy.DescribePlugins() + "\n"; out != want {
		t.Errorf("coredns -plugins printed\n%s\nwant what CoreDNS prints:\n%s", out, want)
	}
	lines := strings.Split(out, "\n")
	for _, name := range []string{"headless", "kubernetes", "forward"} {
		if !slices.Contains(lines, name) {
			t.Errorf("coredns -plugins does not list %s:\n%s", name, out)
		}
	}
}
