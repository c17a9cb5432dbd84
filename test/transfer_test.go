package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// bindSecondary is ISC BIND's named, run by the test as a secondary of
// zones transferred from primary.
type bindSecondary struct {
	addr string
	cmd  *exec.Cmd
	log  *syncBuffer
}

// startBINDSecondary runs named (Debian package bind9) on loopback port
// as a secondary of zones from primary ("127.0.0.1:port"), in a directory
// of the test's. It accepts NOTIFY from the primary's address and lets
// anyone transfer its copy, so the test can read it back.
func startBINDSecondary(t *testing.T, port int, primary string, zones ...string) *bindSecondary {
	t.Helper()
	named, err := exec.LookPath("named")
	if err != nil {
		t.Fatal("named (Debian package bind9) is needed: .ci/run installs it")
	}
	dir := t.TempDir()
	host, primaryPort, _ := strings.Cut(primary, ":")
	var conf strings.Builder
	fmt.Fprintf(&conf, `options {
	directory %q;
	pid-file %q;
	listen-on port %d { 127.0.0.1; };
	listen-on-v6 { none; };
	recursion no;
	dnssec-validation no;
	notify no;
	allow-transfer { any; };
	allow-query { any; };
};
controls { };
logging { category default { default_stderr; }; category xfer-in { default_stderr; }; category notify { default_stderr; }; };
`, dir, filepath.Join(dir, "named.pid"), port)
	for _, z := range zones {
		fmt.Fprintf(&conf, "zone %q { type secondary; primaries { %s port %s; }; file %q; };\n",
			strings.TrimSuffix(z, "."), host, primaryPort, filepath.Join(dir, z+"db"))
	}
	path := filepath.Join(dir, "named.conf")
	if err := os.WriteFile(path, []byte(conf.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	s := &bindSecondary{addr: fmt.Sprintf("127.0.0.1:%d", port), log: &syncBuffer{}}
	// -g: in the foreground, logging to stderr; -n 1: one worker thread.
	s.cmd = exec.Command(named, "-g", "-n", "1", "-c", path)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		_ = s.cmd.Wait()
		if t.Failed() {
			t.Logf("named log:\n%s", s.log.String())
		}
	})
	return s
}

// axfr transfers zone from server and returns its records as text, one a
// line, sorted, the SOA once.
func axfr(server, zone string) ([]string, error) {
	rrs, err := transferZone(server, zone)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []string
	for _, rr := range rrs {
		// Names in lower case: BIND keeps the case it received, and so
		// does this plugin; the comparison is of data.
		text := strings.ToLower(strings.ReplaceAll(rr.String(), "\t", " "))
		if !seen[text] {
			seen[text] = true
			out = append(out, text)
		}
	}
	slices.Sort(out)
	return out, nil
}

// sameZone is nil when the secondary's copy of zone equals the primary's.
func sameZone(primary, secondary, zone string) error {
	want, err := axfr(primary, zone)
	if err != nil {
		return fmt.Errorf("AXFR of %s from the primary: %w", zone, err)
	}
	got, err := axfr(secondary, zone)
	if err != nil {
		return fmt.Errorf("AXFR of %s from the secondary: %w", zone, err)
	}
	if !slices.Equal(got, want) {
		return fmt.Errorf("%s differs:\nprimary:\n  %s\nsecondary:\n  %s", zone, strings.Join(want, "\n  "), strings.Join(got, "\n  "))
	}
	return nil
}

// TestBINDSecondaryFollowsThroughNOTIFY runs BIND's named as a secondary of
// cluster.local and in-addr.arpa, transferred from headless through the
// transfer plugin. Its copies must equal the plugin's, and after a change
// (a StatefulSet scaled up, through the real controllers) the plugin's
// NOTIFY must bring the secondary the new records: an exact copy again,
// with no refresh timer involved (the SOA asks for one every two hours).
func TestBINDSecondaryFollowsThroughNOTIFY(t *testing.T) {
	cp := env.cluster
	cp.requireCluster(t)
	ns := newNamespace(t, cp, "xfr")
	cp.applyYAML(t, ns, webManifest)
	cp.waitPodsReady(t, ns, "app=web", 3)

	// The primary's Corefile names the secondary's port (to send NOTIFY
	// there), and the secondary's config the primary's: the secondary's
	// port is chosen first, and it starts second.
	bindPort := freePort(t)
	s := startCorefile(t, cp, fmt.Sprintf(`.:{{.DNSPort}} {
    bind 127.0.0.1
    ready 127.0.0.1:{{.ReadyPort}}
    transfer {
        to 127.0.0.1:%d
    }
    headless cluster.local in-addr.arpa {
        kubeconfig {{.Kubeconfig}}
        namespaces %s
    }
}
`, bindPort, ns))
	primary := s.addr
	secondary := startBINDSecondary(t, bindPort, primary, "cluster.local.", "in-addr.arpa.")
	for _, zone := range []string{"cluster.local.", "in-addr.arpa."} {
		eventually(t, 30*time.Second, "the secondary's first copy of "+zone, func() error {
			return sameZone(primary, secondary.addr, zone)
		})
	}
	zone, _ := axfr(primary, "cluster.local.")
	if !slices.ContainsFunc(zone, func(rr string) bool { return strings.HasPrefix(rr, "web-2.web."+ns+".svc.cluster.local. ") }) {
		t.Fatalf("the transfer lacks the pods:\n%s", strings.Join(zone, "\n"))
	}
	// dig, as an operator would ask: the apex has NS, at the primary and
	// the secondary alike, and its target resolves.
	for _, server := range []string{primary, secondary.addr} {
		host, port, _ := strings.Cut(server, ":")
		for q, want := range map[string]string{"NS cluster.local": "ns.dns.cluster.local.", "A ns.dns.cluster.local": "127.0.0.1"} {
			out, err := exec.Command("dig", append([]string{"@" + host, "-p", port, "+short", "+time=2", "+tries=1"}, strings.Fields(q)...)...).Output()
			if err != nil || strings.TrimSpace(string(out)) != want {
				t.Errorf("dig %s at %s: %q (%v), want %s", q, server, out, err, want)
			}
		}
	}

	cp.kubectl(t, "scale", "-n", ns, "statefulset/web", "--replicas=4")
	pods := cp.waitPodsReady(t, ns, "app=web", 4)
	newPod := "web-3.web." + ns + ".svc.cluster.local."
	took := eventually(t, 30*time.Second, "the secondary to answer for the new pod", func() error {
		resp, err := exchange(secondary.addr, "udp", newPod, dns.TypeA, 0)
		if err != nil {
			return err
		}
		if got := values(resp.Answer); !slices.Equal(got, []string{pods[3].IP}) {
			return fmt.Errorf("%s: %v", newPod, got)
		}
		return nil
	})
	t.Logf("the secondary answered for the new pod %s after it was ready", took)
	for _, zone := range []string{"cluster.local.", "in-addr.arpa."} {
		eventually(t, 30*time.Second, "the secondary's copy of "+zone+" after the change", func() error {
			return sameZone(primary, secondary.addr, zone)
		})
	}
	if !bytes.Contains([]byte(secondary.log.String()), []byte("notify from 127.0.0.1")) {
		t.Errorf("named never logged a NOTIFY from the primary")
	}
}
