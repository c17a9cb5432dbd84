package headless

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	_ "github.com/coredns/coredns/plugin/kubernetes" // registers the kubernetes setup
	clog "github.com/coredns/coredns/plugin/pkg/log"
	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// brokenWatchAPIServer answers like an API server with nothing in it, except
// that every watch of Services, once its initial events are sent, ends with
// an error: the reflector then logs "Warning: watch ended with error", a
// message that only reaches the plugin through its logger.
func brokenWatchAPIServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kind, apiVersion := "EndpointSlice", "discovery.k8s.io/v1"
		if strings.HasPrefix(r.URL.Path, "/api/v1/") {
			kind, apiVersion = "Service", "v1"
		}
		w.Header().Set("Content-Type", "application/json")
		q := r.URL.Query()
		if q.Get("watch") != "true" {
			fmt.Fprintf(w, `{"kind":%q,"apiVersion":%q,"metadata":{"resourceVersion":"1"},"items":[]}`, kind+"List", apiVersion)
			return
		}
		if q.Get("sendInitialEvents") == "true" {
			fmt.Fprintf(w, `{"type":"BOOKMARK","object":{"kind":%q,"apiVersion":%q,"metadata":{"resourceVersion":"1","annotations":{"k8s.io/initial-events-end":"true"}}}}`+"\n", kind, apiVersion)
		}
		w.(http.Flusher).Flush()
		if kind == "Service" {
			fmt.Fprint(w, `{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","status":"Failure","message":"injected by the test","reason":"BadRequest","code":400}}`+"\n")
			return
		}
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	return srv
}

// setupPlugin runs the named plugin's setup on one Corefile stanza, as
// CoreDNS does when it reads a server block.
func setupPlugin(t *testing.T, name, stanza string) *caddy.Controller {
	t.Helper()
	setupFunc, err := caddy.DirectiveAction("dns", name)
	if err != nil {
		t.Fatal(err)
	}
	c := caddy.NewTestController("dns", stanza)
	c.ServerBlockKeys = []string{"."}
	if err := setupFunc(c); err != nil {
		t.Fatalf("%s setup: %v", name, err)
	}
	return c
}

// syncBuffer is a log output that tests read while the plugin writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// The kubernetes plugin sets client-go's process-wide logger in its setup,
// which runs after ours in the recommended Corefile. Our informers carry
// their own logger in their context, so a reflector's message still reaches
// this plugin's outage handling, logged as this plugin's.
func TestReflectorMessagesReachThisPluginAfterTheKubernetesSetup(t *testing.T) {
	if os.Getenv("HEADLESS_ALONE") != t.Name() {
		// The kubernetes setup writes klog's process-wide logger, which
		// races with client-go goroutines that earlier tests left winding
		// down: the test runs in a process of its own.
		cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), "HEADLESS_ALONE="+t.Name())
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v:\n%s", err, out)
		}
		return
	}
	apiServer := brokenWatchAPIServer(t)
	logs := &syncBuffer{}
	clog.SetOutput(logs)
	t.Cleanup(func() { clog.SetOutput(os.Stderr) })

	c := setupPlugin(t, "headless", "headless cluster.local {\n endpoint "+apiServer.URL+"\n}")
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "`+apiServer.URL+`"}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
users: [{name: u, user: {}}]
current-context: c
`), 0o600); err != nil {
		t.Fatal(err)
	}
	setupPlugin(t, "kubernetes", "kubernetes cluster.local {\n kubeconfig "+kubeconfig+"\n}")

	h := dnsserver.GetConfig(c).Plugin[0](test.NextHandler(dns.RcodeSuccess, nil)).(*Headless)
	before := testutil.ToFloat64(watchErrors.WithLabelValues("services"))
	if err := h.start(); err != nil {
		t.Fatal(err)
	}
	defer h.stop()
	if !h.Ready() {
		t.Fatal("not synced with the test's API server")
	}
	waitFor(t, "the ended watch to be counted by this plugin", func() bool {
		return testutil.ToFloat64(watchErrors.WithLabelValues("services")) > before
	})
	waitFor(t, "the ended watch to be logged", func() bool {
		return strings.Contains(logs.String(), "[WARNING] plugin/headless: watching services: injected by the test")
	})
	if strings.Contains(logs.String(), "plugin/kubernetes") {
		t.Fatalf("a reflector message of this plugin was logged by the kubernetes plugin:\n%s", logs)
	}
}
