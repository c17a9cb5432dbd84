// Command coredns is CoreDNS with every stock plugin plus headless, which
// sits in the plugin chain immediately before kubernetes.
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/coredns/caddy"
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

func main() {
	for _, arg := range os.Args[1:] {
		if arg == "-plugins" || arg == "--plugins" {
			fmt.Print(describePlugins())
			return
		}
	}
	coremain.Run()
}

// describePlugins lists what this build holds with each plugin under its
// server type, as dns.headless, the way CoreDNS used to print -plugins.
func describePlugins() string {
	var sb strings.Builder
	for _, section := range []struct{ title, key string }{
		{"Server types", "server_types"},
		{"Caddyfile loaders", "caddyfile_loaders"},
		{"Other plugins", "others"},
	} {
		names := caddy.ListPlugins()[section.key]
		if len(names) == 0 {
			continue
		}
		if sb.Len() > 0 {
			sb.WriteString("\n")
		}
		sb.WriteString(section.title + ":\n")
		for _, name := range names {
			sb.WriteString("  " + name + "\n")
		}
	}
	return sb.String()
}
