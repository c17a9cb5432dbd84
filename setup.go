package headless

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/pkg/fall"
	clog "github.com/coredns/coredns/plugin/pkg/log"
	"github.com/coredns/coredns/plugin/transfer"
	"github.com/miekg/dns"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"
)

const pluginName = "headless"

var log = clog.NewWithPlugin(pluginName)

func init() { plugin.Register(pluginName, setup) }

// The TTL bounds of the ttl option, in seconds.
const (
	defaultTTL = 5
	maxTTL     = 3600
)

const defaultStartupTimeout = 5 * time.Second

// ttls holds the TTL of each kind of record the plugin writes.
type ttls struct {
	service  uint32 // A/AAAA of the service name
	pod      uint32 // A/AAAA of per-pod names, and SRV glue
	srv      uint32 // SRV
	ptr      uint32 // PTR
	negative uint32 // SOA TTL and minimum of NXDOMAIN/NODATA answers
}

// config is everything a headless block says.
type config struct {
	forwardZones []string // normalized, in the order given
	reverseZones []string // under in-addr.arpa. or ip6.arpa.

	kubeconfig     string
	context        string
	kubeconfigRest *rest.Config // read from kubeconfig while parsing
	endpoint       string

	namespaces      []string // empty: every namespace
	labels          string   // a Service label selector, applied by the API server
	podNames        bool     // endpoint_pod_names
	ptrHostnameOnly bool     // ptr_hostname_only
	zonal           bool     // zonal
	clustersetZones []string // multicluster: forward zones that answer for ServiceImports
	ttl             ttls
	ttlKinds        map[string]bool // kinds given their own ttl line
	startupTimeout  time.Duration
	fall            fall.F
}

func setup(c *caddy.Controller) error {
	cfg, err := parse(c)
	if err != nil {
		return plugin.Error(pluginName, err)
	}
	restConfig, err := cfg.restConfig()
	if err != nil {
		return plugin.Error(pluginName, err)
	}
	client, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return plugin.Error(pluginName, fmt.Errorf("kubernetes client: %w", err))
	}
	var imports mcsclient.Interface
	if len(cfg.clustersetZones) > 0 {
		if imports, err = mcsclient.NewForConfig(restConfig); err != nil {
			return plugin.Error(pluginName, fmt.Errorf("multicluster client: %w", err))
		}
	}
	h := newHeadless(cfg, client, imports)
	c.OnStartup(func() error {
		// Every plugin of the server block is set up by now.
		server := dnsserver.GetConfig(c)
		h.serverAddrs = serverAddresses(server.ListenHosts)
		h.peers = transferPeers(server.Handlers(), h)
		h.xfr, _ = server.Handler("transfer").(*transfer.Transfer)
		return h.start()
	})
	c.OnShutdown(h.stop)

	dnsserver.GetConfig(c).AddPlugin(func(next plugin.Handler) plugin.Handler {
		h.Next = next
		return h
	})
	return nil
}

// parse reads one headless block. Every mistake names the option and the problem.
func parse(c *caddy.Controller) (*config, error) {
	cfg := &config{
		ttl:            ttls{defaultTTL, defaultTTL, defaultTTL, defaultTTL, defaultTTL},
		startupTimeout: defaultStartupTimeout,
	}
	blocks := 0
	for c.Next() {
		blocks++
		if blocks > 1 {
			return nil, plugin.ErrOnce
		}
		if err := cfg.parseZones(c); err != nil {
			return nil, err
		}
		seen := map[string]bool{}
		for c.NextBlock() {
			option := c.Val()
			args := c.RemainingArgs()
			key := option
			if option == "ttl" && len(args) == 2 {
				key = "ttl " + args[0]
			}
			if seen[key] {
				return nil, c.Errf("%s: option given more than once", key)
			}
			seen[key] = true
			if err := cfg.parseOption(c, option, args); err != nil {
				return nil, err
			}
		}
	}
	if len(cfg.clustersetZones) > 0 && len(cfg.clusterZones()) == 0 {
		return nil, c.Errf("multicluster: %v leaves no forward zone for the cluster's own services, which PTR records point to", cfg.clustersetZones)
	}
	return cfg, nil
}

func (cfg *config) parseZones(c *caddy.Controller) error {
	args := c.RemainingArgs()
	for _, a := range args {
		if !validZone(a) {
			return c.Errf("zone %q is not a valid domain name or CIDR", a)
		}
	}
	zones := plugin.OriginsFromArgsOrServerBlock(args, c.ServerBlockKeys)
	seen := map[string]bool{}
	for _, z := range zones {
		z = strings.ToLower(z)
		if seen[z] {
			continue
		}
		seen[z] = true
		if isReverseZone(z) {
			cfg.reverseZones = append(cfg.reverseZones, z)
		} else {
			cfg.forwardZones = append(cfg.forwardZones, z)
		}
	}
	if len(cfg.forwardZones) == 0 {
		return c.Errf("zones %v: at least one forward zone (such as cluster.local) is needed, to name the pods that PTR records point to", zones)
	}
	return nil
}

// validZone tells whether a zone argument names zones. CoreDNS normalizes
// some broken names into ones that are not fully qualified (a trailing
// backslash escapes the dot it appends: \0\ becomes \0\.), and those could
// never hold a question's name.
func validZone(arg string) bool {
	zones := plugin.Host(arg).NormalizeExact()
	return len(zones) > 0 && !slices.ContainsFunc(zones, func(z string) bool { return !dns.IsFqdn(z) })
}

func (cfg *config) parseOption(c *caddy.Controller, option string, args []string) error {
	switch option {
	case "kubeconfig":
		if len(args) < 1 || len(args) > 2 {
			return c.Errf("kubeconfig: want KUBECONFIG [CONTEXT], got %d arguments", len(args))
		}
		cfg.kubeconfig = args[0]
		if len(args) == 2 {
			cfg.context = args[1]
		}
		// Read it now, so a bad file fails start-up instead of every query.
		rc, err := cfg.kubeconfigClientConfig().ClientConfig()
		if err != nil {
			return c.Errf("kubeconfig: cannot use %q: %v", args[0], err)
		}
		cfg.kubeconfigRest = rc

	case "endpoint":
		if len(args) != 1 {
			return c.Errf("endpoint: want one URL, got %d arguments", len(args))
		}
		u, err := url.Parse(args[0])
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return c.Errf("endpoint: %q is not an http:// or https:// URL", args[0])
		}
		cfg.endpoint = args[0]

	case "namespaces":
		if len(args) == 0 {
			return c.Errf("namespaces: want at least one namespace")
		}
		listed := map[string]bool{}
		for _, ns := range args {
			if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
				return c.Errf("namespaces: %q is not a valid namespace name: %s", ns, strings.Join(errs, "; "))
			}
			if listed[ns] {
				return c.Errf("namespaces: %q is listed twice", ns)
			}
			listed[ns] = true
		}
		cfg.namespaces = args

	case "labels":
		if len(args) == 0 {
			return c.Errf("labels: want a label selector expression")
		}
		expr := strings.Join(args, " ")
		sel, err := labels.Parse(expr)
		if err != nil {
			return c.Errf("labels: %q is not a valid label selector: %v", expr, err)
		}
		cfg.labels = sel.String()

	case "endpoint_pod_names", "ptr_hostname_only", "zonal":
		if len(args) != 0 {
			return c.Errf("%s: takes no arguments, got %d", option, len(args))
		}
		switch option {
		case "endpoint_pod_names":
			cfg.podNames = true
		case "ptr_hostname_only":
			cfg.ptrHostnameOnly = true
		case "zonal":
			cfg.zonal = true
		}

	case "ttl":
		return cfg.parseTTL(c, args)

	case "startup_timeout":
		if len(args) != 1 {
			return c.Errf("startup_timeout: want one DURATION, got %d arguments", len(args))
		}
		d, err := time.ParseDuration(args[0])
		if err != nil {
			return c.Errf("startup_timeout: %q is not a duration such as 5s", args[0])
		}
		if d < 0 {
			return c.Errf("startup_timeout: %s is negative", args[0])
		}
		cfg.startupTimeout = d

	case "multicluster":
		if len(args) == 0 {
			return c.Errf("multicluster: want the clusterset zones, such as clusterset.local")
		}
		for _, arg := range args {
			if !validZone(arg) {
				return c.Errf("multicluster: zone %q is not a valid domain name", arg)
			}
			for _, z := range plugin.Host(arg).NormalizeExact() {
				z = strings.ToLower(z)
				if !slices.Contains(cfg.forwardZones, z) {
					return c.Errf("multicluster: zone %q is not one of the plugin's forward zones %v", z, cfg.forwardZones)
				}
				if !slices.Contains(cfg.clustersetZones, z) {
					cfg.clustersetZones = append(cfg.clustersetZones, z)
				}
			}
		}

	case "fallthrough":
		for _, z := range args {
			if !validZone(z) {
				return c.Errf("fallthrough: zone %q is not a valid domain name", z)
			}
		}
		cfg.fall.SetZonesFromArgs(args)

	default:
		return c.Errf("unknown option %q", option)
	}
	return nil
}

func (cfg *config) parseTTL(c *caddy.Controller, args []string) error {
	var kind, value string
	switch len(args) {
	case 1:
		value = args[0]
	case 2:
		kind, value = args[0], args[1]
	default:
		return c.Errf("ttl: want [service|pod|srv|ptr|negative] SECONDS, got %d arguments", len(args))
	}
	n, err := strconv.ParseUint(value, 10, 32)
	if err != nil {
		return c.Errf("ttl: %q is not a whole number of seconds", value)
	}
	if n > maxTTL {
		return c.Errf("ttl: %d is out of range 0-%d", n, maxTTL)
	}
	ttl := uint32(n)
	kinds := map[string]*uint32{
		"service": &cfg.ttl.service, "pod": &cfg.ttl.pod, "srv": &cfg.ttl.srv,
		"ptr": &cfg.ttl.ptr, "negative": &cfg.ttl.negative,
	}
	if kind == "" {
		// The default for every kind not given a TTL of its own, whichever
		// line comes first.
		for k, field := range kinds {
			if !cfg.ttlKinds[k] {
				*field = ttl
			}
		}
		return nil
	}
	field, ok := kinds[kind]
	if !ok {
		return c.Errf("ttl: unknown kind %q, want service, pod, srv, ptr or negative", kind)
	}
	*field = ttl
	if cfg.ttlKinds == nil {
		cfg.ttlKinds = map[string]bool{}
	}
	cfg.ttlKinds[kind] = true
	return nil
}

// clusterZones are the forward zones that answer for the cluster's own
// Services: all but the multicluster ones.
func (cfg *config) clusterZones() []string {
	return slices.DeleteFunc(slices.Clone(cfg.forwardZones), func(z string) bool { return slices.Contains(cfg.clustersetZones, z) })
}

// buildOptions are the options that shape each service's answer set.
func (cfg *config) buildOptions() buildOptions {
	return buildOptions{zones: cfg.clusterZones(), podNames: cfg.podNames, ptrHostnameOnly: cfg.ptrHostnameOnly, zonal: cfg.zonal}
}

// importOptions are the options that shape each ServiceImport's answer
// set. Zone-scoped names are not defined for them.
func (cfg *config) importOptions() buildOptions {
	return buildOptions{zones: cfg.clustersetZones, podNames: cfg.podNames, ptrHostnameOnly: cfg.ptrHostnameOnly, clusterset: true}
}

func (cfg *config) kubeconfigClientConfig() clientcmd.ClientConfig {
	rules := &clientcmd.ClientConfigLoadingRules{ExplicitPath: cfg.kubeconfig}
	overrides := &clientcmd.ConfigOverrides{CurrentContext: cfg.context}
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides)
}

// restConfig picks the API server connection: kubeconfig wins over endpoint,
// and with neither the pod's in-cluster service account is used (outside a
// cluster, the file KUBECONFIG names).
func (cfg *config) restConfig() (*rest.Config, error) {
	var rc *rest.Config
	var err error
	switch {
	case cfg.kubeconfigRest != nil:
		rc = rest.CopyConfig(cfg.kubeconfigRest)
	case cfg.endpoint != "":
		rc = &rest.Config{Host: cfg.endpoint}
	default:
		rc, err = rest.InClusterConfig()
		if errors.Is(err, rest.ErrNotInCluster) {
			// Outside a cluster, a KUBECONFIG in the environment is what
			// kubectl would use; without one there is nothing to guess.
			if path := os.Getenv("KUBECONFIG"); path != "" {
				rc, err = clientcmd.BuildConfigFromFlags("", path)
				if err != nil {
					err = fmt.Errorf("not running in a cluster, and KUBECONFIG %q: %w", path, err)
				}
			} else {
				err = fmt.Errorf("not running in a cluster: give kubeconfig or endpoint (%w)", err)
			}
		}
	}
	if err != nil {
		return nil, err
	}
	rc.UserAgent = "coredns-headless"
	rc.WarningHandlerWithContext = &apiWarnings{}
	rc.ContentType = "application/vnd.kubernetes.protobuf"
	return rc, nil
}
