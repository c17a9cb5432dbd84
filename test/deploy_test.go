package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	apps "k8s.io/api/apps/v1"
	authn "k8s.io/api/authentication/v1"
	authz "k8s.io/api/authorization/v1"
	core "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// The manifests of deploy/ name these; the tests use the same names.
const (
	deployNamespace = "kube-system"
	deployAccount   = "headless-dns"
	exampleTeam     = "team-a" // the namespace of deploy/namespaced/'s examples
)

// deployPath is a file of deploy/.
func deployPath(name string) string { return filepath.Join(env.root, "deploy", name) }

// deployManifests is every manifest in deploy/ and deploy/namespaced/.
func deployManifests(t *testing.T) []string {
	t.Helper()
	var files []string
	for _, pattern := range []string{"*.yaml", "namespaced/*.yaml"} {
		m, err := filepath.Glob(deployPath(pattern))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) == 0 {
		t.Fatal("no manifests in deploy/")
	}
	return files
}

// ensureNamespace creates a fixed-name namespace unless it exists.
func ensureNamespace(t *testing.T, name string) {
	t.Helper()
	_, err := env.cluster.client.CoreV1().Namespaces().Create(context.Background(),
		&core.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
}

// decodeManifest decodes the documents of a YAML file into outs, in order.
func decodeManifest(t *testing.T, path string, outs ...any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	d := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for _, out := range outs {
		if err := d.Decode(out); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
}

// configMapCorefile is the Corefile a ConfigMap manifest holds.
func configMapCorefile(t *testing.T, path string) string {
	t.Helper()
	var cm core.ConfigMap
	decodeManifest(t, path, &cm)
	corefile, ok := cm.Data["Corefile"]
	if !ok {
		t.Fatalf("%s: no Corefile key", path)
	}
	return corefile
}

// rewritten copies a manifest of deploy/ into the test's directory with
// old/new pairs replaced (namespaces and names that must be the test's own),
// and returns the copy's path.
func rewritten(t *testing.T, name string, oldNew ...string) string {
	t.Helper()
	data, err := os.ReadFile(deployPath(name))
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for i := 0; i+1 < len(oldNew); i += 2 {
		if !strings.Contains(text, oldNew[i]) {
			t.Fatalf("deploy/%s no longer has %q", name, oldNew[i])
		}
		text = strings.ReplaceAll(text, oldNew[i], oldNew[i+1])
	}
	path := filepath.Join(t.TempDir(), filepath.Base(name))
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func apply(t *testing.T, paths ...string) {
	t.Helper()
	env.cluster.apply(t, paths...)
}

// accountKubeconfig mints a token for a ServiceAccount with the TokenRequest
// API, as the kubelet does for a pod's projected token, and writes a
// kubeconfig holding it and nothing else.
func accountKubeconfig(t *testing.T, namespace, account string) string {
	t.Helper()
	expiry := int64(3600)
	tr, err := env.cluster.client.CoreV1().ServiceAccounts(namespace).CreateToken(context.Background(), account,
		&authn.TokenRequest{Spec: authn.TokenRequestSpec{ExpirationSeconds: &expiry}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for %s/%s: %v", namespace, account, err)
	}
	ca := env.cluster.config.CAData
	if len(ca) == 0 {
		if ca, err = os.ReadFile(env.cluster.config.CAFile); err != nil {
			t.Fatal(err)
		}
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["test"] = &clientcmdapi.Cluster{Server: env.cluster.config.Host, CertificateAuthorityData: ca}
	cfg.AuthInfos[account] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	cfg.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: account}
	cfg.CurrentContext = "test"
	path := filepath.Join(t.TempDir(), account+".kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// localCorefile turns a deployed Corefile into one for this machine, as
// TestCorefileExample does: listeners on loopback ports, a kubeconfig for
// both plugins, and nothing that would leave the machine (forward, loop).
func localCorefile(t *testing.T, corefile, kubeconfig string) string {
	t.Helper()
	for _, r := range []struct{ old, new string }{
		{".:53 {", ".:{{.DNSPort}} {\n    bind 127.0.0.1"},
		{"    health {", "    health 127.0.0.1:{{.HealthPort}} {"},
		{"    ready\n", "    ready 127.0.0.1:{{.ReadyPort}}\n"},
		{"prometheus :9153", "prometheus 127.0.0.1:{{.MetricsPort}}"},
		{"headless cluster.local in-addr.arpa ip6.arpa {", "headless cluster.local in-addr.arpa ip6.arpa {\n        kubeconfig " + kubeconfig},
		{"kubernetes cluster.local in-addr.arpa ip6.arpa {", "kubernetes cluster.local in-addr.arpa ip6.arpa {\n        kubeconfig " + kubeconfig},
	} {
		if !strings.Contains(corefile, r.old) {
			t.Fatalf("the Corefile no longer has %q", r.old)
		}
		corefile = strings.Replace(corefile, r.old, r.new, 1)
	}
	corefile = regexp.MustCompile(`(?s)\n\s*forward [^{]*\{.*?\}`).ReplaceAllString(corefile, "")
	return regexp.MustCompile(`\n\s*loop\n`).ReplaceAllString(corefile, "\n")
}

// deployObjects creates, in a new namespace, a headless Service "db" with
// two named pods (10.8.subnet.1 and .2) and a SRV port, and a ClusterIP
// Service "api"; it returns the namespace and api's address.
func deployObjects(t *testing.T, prefix string, subnet int) (ns, apiIP string) {
	t.Helper()
	c := env.cluster.client
	ns = newNamespace(t, env.cluster, prefix)
	createService(t, c, ns, "db", true)
	createSlice(t, c, newSlice(ns, "db-1", "db", discovery.AddressTypeIPv4, []discovery.EndpointPort{port("pg", 5432, core.ProtocolTCP)},
		endpoint("db-0", fmt.Sprintf("10.8.%d.1", subnet)), endpoint("db-1", fmt.Sprintf("10.8.%d.2", subnet))))
	api, err := c.CoreV1().Services(ns).Create(context.Background(), &core.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: ns},
		Spec:       core.ServiceSpec{Ports: []core.ServicePort{{Name: "http", Port: 80}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return ns, api.Spec.ClusterIP
}

// expectHeadless checks the names headless serves for deployObjects' db.
func expectHeadless(t *testing.T, s *corednsServer, ns string, subnet int) {
	t.Helper()
	zone := ns + ".svc.cluster.local."
	ip := func(host int) string { return fmt.Sprintf("10.8.%d.%d", subnet, host) }
	for _, err := range []error{
		expectAnswer(s.addr, "udp", "db."+zone, dns.TypeA, dns.RcodeSuccess, ip(1), ip(2)),
		expectAnswer(s.addr, "udp", "db-0.db."+zone, dns.TypeA, dns.RcodeSuccess, ip(1)),
		expectAnswer(s.addr, "tcp", "_pg._tcp.db."+zone, dns.TypeSRV, dns.RcodeSuccess, "5432 db-0.db."+zone, "5432 db-1.db."+zone),
		expectAnswer(s.addr, "udp", fmt.Sprintf("2.%d.8.10.in-addr.arpa.", subnet), dns.TypePTR, dns.RcodeSuccess, "db-1.db."+zone),
	} {
		if err != nil {
			t.Error(err)
		}
	}
}

// TestDeployManifestsDryRun sends every manifest of deploy/ through the API
// server's validation, defaulting and admission with a server-side apply
// dry run (kubectl apply --server-side --dry-run=server), and checks the
// Deployment carries the settings it promises.
func TestDeployManifestsDryRun(t *testing.T) {
	ensureNamespace(t, deployNamespace)
	ensureNamespace(t, exampleTeam)
	args := []string{"apply", "--server-side", "--dry-run=server", "-o", "name"}
	for _, f := range deployManifests(t) {
		args = append(args, "-f", f)
	}
	// One kind/name a line: serviceaccount/headless-dns,
	// deployment.apps/headless-dns, ...
	done := strings.Fields(env.cluster.kubectl(t, args...))
	var kinds []string
	for _, d := range done {
		resource, _, _ := strings.Cut(d, "/")
		kind, _, _ := strings.Cut(resource, ".")
		kinds = append(kinds, kind)
	}
	for _, want := range []string{"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
		"ConfigMap", "Deployment", "PodDisruptionBudget", "Service"} {
		if !slices.Contains(kinds, strings.ToLower(want)) {
			t.Errorf("no %s among %v", want, done)
		}
	}
	// A dry run stores nothing (no test applies these for real).
	if _, err := env.cluster.client.AppsV1().Deployments(deployNamespace).Get(context.Background(), deployAccount, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the dry run created the Deployment (or getting it failed): %v", err)
	}

	var d apps.Deployment
	decodeManifest(t, deployPath("deployment.yaml"), &d)
	spec := d.Spec.Template.Spec
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 || len(spec.Containers) != 1 {
		t.Fatalf("want 2 replicas of one container: %+v", d.Spec)
	}
	c := spec.Containers[0]
	psc, sc := spec.SecurityContext, c.SecurityContext
	for _, check := range []struct {
		what string
		ok   bool
	}{
		{"liveness on health's /health :8080", c.LivenessProbe != nil && c.LivenessProbe.HTTPGet != nil &&
			c.LivenessProbe.HTTPGet.Path == "/health" && c.LivenessProbe.HTTPGet.Port.IntValue() == 8080},
		{"readiness on ready's /ready :8181", c.ReadinessProbe != nil && c.ReadinessProbe.HTTPGet != nil &&
			c.ReadinessProbe.HTTPGet.Path == "/ready" && c.ReadinessProbe.HTTPGet.Port.IntValue() == 8181},
		{"memory request and limit", !c.Resources.Requests.Memory().IsZero() && !c.Resources.Limits.Memory().IsZero()},
		{"non-root numeric user", psc != nil && psc.RunAsNonRoot != nil && *psc.RunAsNonRoot && psc.RunAsUser != nil && *psc.RunAsUser != 0},
		{"RuntimeDefault seccomp", psc != nil && psc.SeccompProfile != nil && psc.SeccompProfile.Type == core.SeccompProfileTypeRuntimeDefault},
		{"read-only root, no escalation", sc != nil && sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem &&
			sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation},
		{"all capabilities dropped but NET_BIND_SERVICE", sc != nil && sc.Capabilities != nil &&
			slices.Equal(sc.Capabilities.Drop, []core.Capability{"ALL"}) && slices.Equal(sc.Capabilities.Add, []core.Capability{"NET_BIND_SERVICE"})},
		{"system-cluster-critical", spec.PriorityClassName == "system-cluster-critical"},
		{"dnsPolicy Default", spec.DNSPolicy == core.DNSDefault},
		{"pod anti-affinity by hostname", spec.Affinity != nil && spec.Affinity.PodAntiAffinity != nil &&
			len(spec.Affinity.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) == 1 &&
			spec.Affinity.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm.TopologyKey == "kubernetes.io/hostname"},
		{"the kube-dns label", d.Spec.Template.Labels["k8s-app"] == "kube-dns"},
		{"its own service account", spec.ServiceAccountName == deployAccount},
	} {
		if !check.ok {
			t.Errorf("deployment.yaml: no %s", check.what)
		}
	}
}

// TestDeployCorefilesInSync keeps the ConfigMaps' Corefiles identical to
// Corefile.example, the namespaced one but for its namespaces line.
func TestDeployCorefilesInSync(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(env.root, "Corefile.example"))
	if err != nil {
		t.Fatal(err)
	}
	example := string(data)
	if got := configMapCorefile(t, deployPath("configmap.yaml")); got != example {
		t.Errorf("deploy/configmap.yaml's Corefile differs from Corefile.example:\n%s", got)
	}
	block := "    headless cluster.local in-addr.arpa ip6.arpa {\n"
	want := strings.Replace(example, block, block+"        namespaces "+exampleTeam+"\n", 1)
	if got := configMapCorefile(t, deployPath("namespaced/configmap.yaml")); got != want {
		t.Errorf("deploy/namespaced/configmap.yaml's Corefile is not Corefile.example with a namespaces line:\n%s", got)
	}
}

// TestDeployClusterRole runs the ConfigMap's Corefile (headless in front of
// kubernetes) as the deployed ServiceAccount, with a token bound to nothing
// but deploy/rbac.yaml's ClusterRole, after checking that the account may do
// exactly what that role says.
func TestDeployClusterRole(t *testing.T) {
	ensureNamespace(t, deployNamespace)
	apply(t, deployPath("serviceaccount.yaml"), deployPath("rbac.yaml"))
	kubeconfig := accountKubeconfig(t, deployNamespace, deployAccount)

	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{}
	for _, r := range []struct{ group, resource string }{
		{"", "services"}, {"", "namespaces"}, {"discovery.k8s.io", "endpointslices"},
		{"", "pods"}, {"", "endpoints"}, {"", "secrets"}, {"", "configmaps"}, {"", "nodes"},
	} {
		for _, verb := range []string{"get", "list", "watch", "create", "update", "patch", "delete"} {
			review, err := client.AuthorizationV1().SelfSubjectAccessReviews().Create(context.Background(), &authz.SelfSubjectAccessReview{
				Spec: authz.SelfSubjectAccessReviewSpec{ResourceAttributes: &authz.ResourceAttributes{Group: r.group, Resource: r.resource, Verb: verb}},
			}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if review.Status.Allowed {
				allowed[verb+" "+r.resource] = true
			}
		}
	}
	want := map[string]bool{"list services": true, "watch services": true, "list namespaces": true, "watch namespaces": true,
		"list endpointslices": true, "watch endpointslices": true}
	if fmt.Sprint(allowed) != fmt.Sprint(want) {
		t.Errorf("the account may %v, want exactly %v", allowed, want)
	}

	ns, apiIP := deployObjects(t, "deploy", 1)
	s := startCorefile(t, env.cluster, localCorefile(t, configMapCorefile(t, deployPath("configmap.yaml")), kubeconfig))
	expectHeadless(t, s, ns, 1)
	zone := ns + ".svc.cluster.local."
	if err := expectAnswer(s.addr, "udp", "api."+zone, dns.TypeA, dns.RcodeSuccess, apiIP); err != nil {
		t.Error(err) // from kubernetes
	}
	if err := expectAnswer(s.addr, "udp", "nosuch."+zone, dns.TypeA, dns.RcodeNameError); err != nil {
		t.Error(err)
	}
}

// TestDeployNamespaced runs the namespaced alternative: first headless alone
// on deploy/namespaced/role.yaml (no cluster-wide permission at all), then
// the namespaced ConfigMap's Corefile, whose kubernetes plugin adds
// deploy/namespaced/clusterrole.yaml (no endpointslices). The account is the
// test namespace's own, so no other test's binding can help it.
func TestDeployNamespaced(t *testing.T) {
	ns, apiIP := deployObjects(t, "team", 2)
	apply(t,
		rewritten(t, "serviceaccount.yaml", "namespace: "+deployNamespace, "namespace: "+ns),
		rewritten(t, "namespaced/role.yaml", "namespace: "+exampleTeam, "namespace: "+ns, "namespace: "+deployNamespace, "namespace: "+ns))
	kubeconfig := accountKubeconfig(t, ns, deployAccount)
	zone := ns + ".svc.cluster.local."

	t.Run("role only", func(t *testing.T) {
		s := startCoreDNS(t, env.cluster, `headless cluster.local in-addr.arpa ip6.arpa {
        kubeconfig `+kubeconfig+`
        namespaces `+ns+`
    }`)
		expectHeadless(t, s, ns, 2)
	})

	t.Run("with kubernetes", func(t *testing.T) {
		// A headless Service outside the listed namespaces: not published.
		other, _ := deployObjects(t, "other", 3)
		apply(t, rewritten(t, "namespaced/clusterrole.yaml",
			"name: headless-dns-kubernetes", "name: headless-dns-kubernetes-"+ns, "namespace: "+deployNamespace, "namespace: "+ns))
		corefile := configMapCorefile(t, deployPath("namespaced/configmap.yaml"))
		corefile = strings.Replace(corefile, "namespaces "+exampleTeam, "namespaces "+ns, 1)
		s := startCorefile(t, env.cluster, localCorefile(t, corefile, kubeconfig))
		expectHeadless(t, s, ns, 2)
		for _, err := range []error{
			expectAnswer(s.addr, "udp", "api."+zone, dns.TypeA, dns.RcodeSuccess, apiIP),
			expectAnswer(s.addr, "udp", "db."+other+".svc.cluster.local.", dns.TypeA, dns.RcodeNameError),
		} {
			if err != nil {
				t.Error(err)
			}
		}
	})
}

// TestDeployMissingPermission runs headless with less than it needs and
// expects the log to say which permission is missing: the resource, the
// verb, and that it was forbidden.
func TestDeployMissingPermission(t *testing.T) {
	for _, tc := range []struct {
		name, verb string
		role       string // a role.yaml rule replaced, "" to drop it
	}{
		{"no endpointslices", "list", ""},
		{"no watch on endpointslices", "watch", `- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["list"]
`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := newNamespace(t, env.cluster, "denied")
			apply(t,
				rewritten(t, "serviceaccount.yaml", "namespace: "+deployNamespace, "namespace: "+ns),
				rewritten(t, "namespaced/role.yaml", "namespace: "+exampleTeam, "namespace: "+ns, "namespace: "+deployNamespace, "namespace: "+ns,
					`- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["list", "watch"]
`, tc.role))
			kubeconfig := accountKubeconfig(t, ns, deployAccount)
			s := launchCorefile(t, env.cluster, `.:{{.DNSPort}} {
    bind 127.0.0.1
    ready 127.0.0.1:{{.ReadyPort}}
    headless cluster.local {
        kubeconfig `+kubeconfig+`
        namespaces `+ns+`
    }
}
`)
			var line string
			eventually(t, 30*time.Second, "a log line naming the missing permission", func() error {
				select {
				case <-s.exited:
					return errors.New("CoreDNS exited")
				default:
				}
				for l := range strings.Lines(s.log.String()) {
					if strings.Contains(l, `"endpointslices"`) && strings.Contains(l, " "+tc.verb+" ") &&
						(strings.Contains(l, "forbidden") || strings.Contains(l, "permission")) {
						line = l
						return nil
					}
				}
				return errors.New("not logged yet")
			})
			t.Logf("logged: %s", strings.TrimSpace(line))
			if s.isReady() && tc.verb == "list" {
				t.Error("ready without permission to list endpointslices")
			}
		})
	}
}
