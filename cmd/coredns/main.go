// Command coredns is CoreDNS with every stock plugin plus headless, which
// sits in the plugin chain immediately before kubernetes. It behaves as
// stock CoreDNS does, flags and all.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	_ "github.com/coredns/coredns/core/plugin" // every stock plugin
	"github.com/coredns/coredns/coremain"

	_ "github.com/headlessdns/headless"
)

func init() {
	dnsserver.Directives = insertBefore(dnsserver.Directives, "kubernetes", "headless")
}

// insertBefore returns directives with name placed just before anchor
// (or appended when anchor is missing), never twice.
func insertBefore(directives []string, anchor, name string) []string {
	out := make([]string, 0, len(directives)+1)
	placed := false
	for _, d := range directives {
		if d == name {
			continue
		}
		if d == anchor && !placed {
			out = append(out, name)
			placed = true
		}
		out = append(out, d)
	}
	if !placed {
		out = append(out, name)
	}
	return out
}

func main() { coremain.Run() }
