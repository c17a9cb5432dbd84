package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/coredns/coredns/core/dnsserver"
)

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

func TestPluginsListingNamesHeadless(t *testing.T) {
	out := describePlugins()
	for _, want := range []string{"dns.headless", "dns.kubernetes", "dns.forward"} {
		if !strings.Contains(out, "  "+want+"\n") {
			t.Errorf("-plugins output lacks %s:\n%s", want, out)
		}
	}
}
