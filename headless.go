// Package headless is a CoreDNS plugin that answers DNS for Kubernetes
// headless Services and the pods behind them.
//
// The flow, one file a step: API objects are slimmed as they arrive
// (object.go) and kept by informers (watch.go); a change to a Service or
// one of its EndpointSlices builds that service's answer set (build.go),
// which is published into the index (index.go); ServeDNS (handler.go)
// answers from the index, making the reply (reply.go) and fitting it to
// the client's buffer (truncate.go).
package headless

import (
	"context"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/transfer"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"
)

// Headless is the plugin: the published index, the informers that feed it,
// and the next plugin in the chain.
type Headless struct {
	Next plugin.Handler

	cfg         *config
	zones       []string // forward and reverse zones, for matchZone
	apexes      map[string]*apex
	serverAddrs addrSet               // this server's addresses, for ns.dns.<zone>; set before it serves
	peers       []transfer.Transferer // plugins behind this one whose transfers join this one's
	xfr         *transfer.Transfer    // the server block's transfer plugin, to send NOTIFY through
	index       *index                // the cluster's headless Services
	clusterset  *index                // with multicluster: headless ServiceImports
	watcher     *watcher
	health      *apiServerHealth
	synced      atomic.Bool
	cancel      context.CancelFunc
}

// newHeadless makes the plugin of a config; imports is the Multi-Cluster
// Services client, nil without the multicluster option.
func newHeadless(cfg *config, client kubernetes.Interface, imports mcsclient.Interface) *Headless {
	h := &Headless{
		cfg:    cfg,
		zones:  append(slices.Clone(cfg.forwardZones), cfg.reverseZones...),
		apexes: newApexes(cfg),
		index:  newIndex(),
		health: newAPIServerHealth(),
	}
	if len(cfg.clustersetZones) > 0 {
		h.clusterset = newIndex()
	}
	h.watcher = newWatcher(client, imports, h.index, h.clusterset, cfg, h.health)
	return h
}

// notifyInterval is how often changed zones are announced to secondaries
// (NOTIFY): a burst of changes in that time makes one.
const notifyInterval = 250 * time.Millisecond

// Name implements plugin.Handler.
func (h *Headless) Name() string { return pluginName }

// start runs the informers and waits up to startup_timeout for their first
// sync. Until that sync completes, names in the zones get SERVFAIL.
func (h *Headless) start() error {
	ctx, cancel := context.WithCancel(withKlogSink(context.Background(), h.health))
	h.cancel = cancel
	instances.add(h)
	h.watcher.run(ctx)
	if h.xfr != nil {
		go h.notifyChanges(ctx, h.xfr, notifyInterval)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if cache.WaitForCacheSync(ctx.Done(), h.watcher.hasSynced) {
			h.synced.Store(true)
			services, _ := h.index.counts()
			log.Infof("synced: %d headless services", services)
			// Decoding the initial lists needed several times the memory
			// the index keeps; give it back to the system now rather
			// than let the process carry it as resident memory.
			debug.FreeOSMemory()
		}
	}()
	select {
	case <-done:
	case <-time.After(h.cfg.startupTimeout):
		log.Warningf("not synced with the API server after %s; names in %v get SERVFAIL until it is", h.cfg.startupTimeout, h.zones)
	}
	return nil
}

func (h *Headless) stop() error {
	if h.cancel != nil {
		h.cancel()
	}
	instances.remove(h)
	return nil
}

// instances are the running plugins (one per server block that has a
// headless stanza, two for a moment during a reload): the gauges add them up.
var instances = &registry{set: map[*Headless]bool{}}

type registry struct {
	mu  sync.Mutex
	set map[*Headless]bool
}

func (r *registry) add(h *Headless)    { r.mu.Lock(); r.set[h] = true; r.mu.Unlock() }
func (r *registry) remove(h *Headless) { r.mu.Lock(); delete(r.set, h); r.mu.Unlock() }

func (r *registry) running() []*Headless {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Headless, 0, len(r.set))
	for h := range r.set {
		out = append(out, h)
	}
	return out
}

// sum adds up count over the running instances.
func (r *registry) sum(count func(*Headless) int) float64 {
	total := 0
	for _, h := range r.running() {
		total += count(h)
	}
	return float64(total)
}
