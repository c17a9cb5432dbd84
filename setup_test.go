package headless

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const testKubeconfig = `apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:6443
users:
- name: admin
  user:
    token: secret
contexts:
- name: local
  context: {cluster: local, user: admin}
current-context: local
`

func writeKubeconfig(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, []byte(testKubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestParseOptions(t *testing.T) {
	kubeconfig := writeKubeconfig(t)
	tests := []struct {
		name     string
		corefile string
		check    func(t *testing.T, cfg *config)
	}{
		{"defaults", `headless`, func(t *testing.T, cfg *config) {
			if want := (ttls{5, 5, 5, 5, 5}); cfg.ttl != want {
				t.Errorf("ttl %+v, want %+v", cfg.ttl, want)
			}
			if cfg.startupTimeout != 5*time.Second {
				t.Errorf("startup_timeout %s", cfg.startupTimeout)
			}
			if len(cfg.forwardZones) != 1 || cfg.forwardZones[0] != "." {
				t.Errorf("zones default to the server block's: %v", cfg.forwardZones)
			}
		}},
		{"zones split into forward and reverse", `headless Cluster.Local in-addr.arpa 10.244.0.0/16 ip6.arpa`, func(t *testing.T, cfg *config) {
			if strings.Join(cfg.forwardZones, " ") != "cluster.local." {
				t.Errorf("forward %v", cfg.forwardZones)
			}
			if strings.Join(cfg.reverseZones, " ") != "in-addr.arpa. 244.10.in-addr.arpa. ip6.arpa." {
				t.Errorf("reverse %v", cfg.reverseZones)
			}
		}},
		{"every option", `headless cluster.local {
			kubeconfig ` + kubeconfig + ` local
			endpoint https://10.0.0.1:6443
			namespaces default shop
			labels app in (a, b), tier!=cache
			endpoint_pod_names
			zonal
			ptr_hostname_only
			ttl 30
			ttl pod 10
			ttl negative 0
			startup_timeout 2s
			fallthrough in-addr.arpa
		}`, func(t *testing.T, cfg *config) {
			if cfg.kubeconfig != kubeconfig || cfg.context != "local" || cfg.endpoint != "https://10.0.0.1:6443" {
				t.Errorf("connection %q %q %q", cfg.kubeconfig, cfg.context, cfg.endpoint)
			}
			if strings.Join(cfg.namespaces, ",") != "default,shop" {
				t.Errorf("namespaces %v", cfg.namespaces)
			}
			if cfg.labels != "app in (a,b),tier!=cache" {
				t.Errorf("labels %q", cfg.labels)
			}
			if !cfg.podNames || !cfg.zonal || !cfg.ptrHostnameOnly {
				t.Errorf("endpoint_pod_names %v, zonal %v, ptr_hostname_only %v: want all set", cfg.podNames, cfg.zonal, cfg.ptrHostnameOnly)
			}
			if want := (ttls{service: 30, pod: 10, srv: 30, ptr: 30, negative: 0}); cfg.ttl != want {
				t.Errorf("ttl %+v, want %+v", cfg.ttl, want)
			}
			if cfg.startupTimeout != 2*time.Second {
				t.Errorf("startup_timeout %s", cfg.startupTimeout)
			}
			if !cfg.fall.Through("1.in-addr.arpa.") || cfg.fall.Through("x.cluster.local.") {
				t.Errorf("fallthrough zones %v", cfg.fall.Zones)
			}
		}},
		{"a kind's own ttl wins over a later bare ttl", `headless cluster.local {
			ttl pod 30
			ttl 10
		}`, func(t *testing.T, cfg *config) {
			if want := (ttls{service: 10, pod: 30, srv: 10, ptr: 10, negative: 10}); cfg.ttl != want {
				t.Errorf("ttl %+v, want %+v", cfg.ttl, want)
			}
		}},
		{"kubeconfig wins over endpoint", `headless cluster.local {
			endpoint https://10.0.0.1:6443
			kubeconfig ` + kubeconfig + `
		}`, func(t *testing.T, cfg *config) {
			rc, err := cfg.restConfig()
			if err != nil {
				t.Fatal(err)
			}
			if rc.Host != "https://127.0.0.1:6443" {
				t.Errorf("host %s, want the kubeconfig's", rc.Host)
			}
		}},
		{"endpoint alone", `headless cluster.local {
			endpoint http://127.0.0.1:8080
		}`, func(t *testing.T, cfg *config) {
			rc, err := cfg.restConfig()
			if err != nil || rc.Host != "http://127.0.0.1:8080" {
				t.Errorf("host %v, err %v", rc, err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parse(testController(tt.corefile))
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			tt.check(t, cfg)
		})
	}
}

func TestParseRejectsBadBlocks(t *testing.T) {
	kubeconfig := writeKubeconfig(t)
	tests := []struct {
		name     string
		corefile string
		want     string // in the error message
	}{
		{"unknown option", "headless {\n  nosuch 1\n}", `unknown option "nosuch"`},
		{"kubeconfig without a path", "headless {\n  kubeconfig\n}", "kubeconfig: want KUBECONFIG [CONTEXT]"},
		{"kubeconfig with extra arguments", "headless {\n  kubeconfig a b c\n}", "kubeconfig: want KUBECONFIG [CONTEXT], got 3"},
		{"unreadable kubeconfig", "headless {\n  kubeconfig /nonexistent/kubeconfig\n}", `kubeconfig: cannot use "/nonexistent/kubeconfig"`},
		{"kubeconfig context that does not exist", "headless {\n  kubeconfig " + kubeconfig + " nosuch\n}", `context "nosuch" does not exist`},
		{"endpoint that is not a URL", "headless {\n  endpoint 127.0.0.1:6443\n}", `endpoint: "127.0.0.1:6443" is not an http:// or https:// URL`},
		{"endpoint without an argument", "headless {\n  endpoint\n}", "endpoint: want one URL, got 0"},
		{"namespaces without a name", "headless {\n  namespaces\n}", "namespaces: want at least one namespace"},
		{"namespace that is not a DNS label", "headless {\n  namespaces Default\n}", `namespaces: "Default" is not a valid namespace name`},
		{"namespace listed twice", "headless {\n  namespaces a a\n}", `namespaces: "a" is listed twice`},
		{"labels without an expression", "headless {\n  labels\n}", "labels: want a label selector expression"},
		{"labels that do not parse", "headless {\n  labels app in (a\n}", `labels: "app in (a" is not a valid label selector`},
		{"endpoint_pod_names with an argument", "headless {\n  endpoint_pod_names yes\n}", "endpoint_pod_names: takes no arguments"},
		{"zonal with an argument", "headless {\n  zonal us-east-1a\n}", "zonal: takes no arguments"},
		{"ptr_hostname_only with an argument", "headless {\n  ptr_hostname_only yes\n}", "ptr_hostname_only: takes no arguments"},
		{"ttl that is not a number", "headless {\n  ttl five\n}", `ttl: "five" is not a whole number of seconds`},
		{"negative ttl", "headless {\n  ttl -1\n}", `ttl: "-1" is not a whole number of seconds`},
		{"ttl out of range", "headless {\n  ttl 3601\n}", "ttl: 3601 is out of range 0-3600"},
		{"ttl of an unknown kind", "headless {\n  ttl cname 5\n}", `ttl: unknown kind "cname"`},
		{"ttl without a value", "headless {\n  ttl\n}", "ttl: want [service|pod|srv|ptr|negative] SECONDS, got 0"},
		{"ttl with too many arguments", "headless {\n  ttl pod 5 6\n}", "ttl: want [service|pod|srv|ptr|negative] SECONDS, got 3"},
		{"startup_timeout that is not a duration", "headless {\n  startup_timeout 5\n}", `startup_timeout: "5" is not a duration`},
		{"negative startup_timeout", "headless {\n  startup_timeout -1s\n}", "startup_timeout: -1s is negative"},
		{"startup_timeout without a value", "headless {\n  startup_timeout\n}", "startup_timeout: want one DURATION, got 0"},
		{"option repeated", "headless {\n  endpoint_pod_names\n  endpoint_pod_names\n}", "endpoint_pod_names: option given more than once"},
		{"ttl kind repeated", "headless {\n  ttl pod 5\n  ttl pod 6\n}", "ttl pod: option given more than once"},
		{"fallthrough zone that is not a name", "headless {\n  fallthrough ..bad\n}", `fallthrough: zone "..bad" is not a valid domain name`},
		{"zone that is not a name", "headless ..bad", `zone "..bad" is not a valid domain name or CIDR`},
		{"only reverse zones", "headless in-addr.arpa", "at least one forward zone"},
		{"plugin used twice in a block", "headless\nheadless", "can only be used once per Server Block"},
	}
	if len(tests) < 15 {
		t.Fatalf("want at least 15 bad blocks, have %d", len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse(testController(tt.corefile))
			if err == nil {
				t.Fatalf("parse accepted %q", tt.corefile)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not say %q", err, tt.want)
			}
		})
	}
}

func TestSetupFailsWithThePluginsName(t *testing.T) {
	err := setup(testController("headless {\n  ttl 9999\n}"))
	if err == nil || !strings.HasPrefix(err.Error(), "plugin/headless: ") {
		t.Fatalf("setup error %v, want one prefixed plugin/headless", err)
	}
	// Outside a cluster, with neither kubeconfig nor endpoint, start-up says what is missing.
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBECONFIG", "")
	err = setup(testController("headless cluster.local"))
	if err == nil || !strings.Contains(err.Error(), "give kubeconfig or endpoint") {
		t.Fatalf("setup error %v", err)
	}
}

func TestOutsideAClusterKUBECONFIGIsUsed(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBECONFIG", writeKubeconfig(t))
	cfg, err := parse(testController("headless cluster.local"))
	if err != nil {
		t.Fatal(err)
	}
	rc, err := cfg.restConfig()
	if err != nil || rc.Host != "https://127.0.0.1:6443" {
		t.Fatalf("rest config %v, %v", rc, err)
	}
	t.Setenv("KUBECONFIG", "/nonexistent")
	if _, err := cfg.restConfig(); err == nil || !strings.Contains(err.Error(), `KUBECONFIG "/nonexistent"`) {
		t.Fatalf("error %v", err)
	}
}
