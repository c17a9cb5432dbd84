package headless

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	core "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

const (
	// Labels and annotations of EndpointSlices that the index reads.
	headlessLabel     = "service.kubernetes.io/headless"
	managedByLabel    = "endpointslice.kubernetes.io/managed-by"
	controllerManager = "endpointslice-controller.k8s.io"
	triggerTimeKey    = "endpoints.kubernetes.io/last-change-trigger-time"

	byService = "service" // indexer of slices by "namespace/service"
)

// nsWatch is the informers of one namespace ("" for the whole cluster):
// headless Services, and the two sorts of EndpointSlices that can belong to
// one. Slices of ClusterIP Services, by far the most, are never listed.
type nsWatch struct {
	services cache.SharedIndexInformer
	slices   []cache.SharedIndexInformer
}

// watcher feeds the index from the API server.
type watcher struct {
	index      *index
	namespaces map[string]*nsWatch
	synced     []cache.InformerSynced
	slicesHeld atomic.Int64 // EndpointSlices in its informers' stores
}

func newWatcher(client kubernetes.Interface, ix *index, namespaces []string, labelSelector string) *watcher {
	routeKlog.Do(func() { klog.SetLoggerWithOptions(logr.New(klogSink{}), klog.ContextualLogger(true)) })
	w := &watcher{index: ix, namespaces: map[string]*nsWatch{}}
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	for _, ns := range namespaces {
		services := client.CoreV1().Services(ns)
		nw := &nsWatch{
			services: w.informer(client, &cache.ListWatch{
				ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
					return untilReachable(ctx, "services", func() (runtime.Object, error) {
						return services.List(ctx, headlessServices(o, labelSelector))
					})
				},
				WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
					return untilReachable(ctx, "services", func() (watch.Interface, error) {
						return services.Watch(ctx, headlessServices(o, labelSelector))
					})
				},
			}, &core.Service{}, slimService, nil, "services", cache.ResourceEventHandlerFuncs{
				AddFunc:    w.serviceChanged,
				UpdateFunc: func(_, obj any) { w.serviceChanged(obj) },
				DeleteFunc: w.serviceChanged,
			}),
		}
		sliceClient := client.DiscoveryV1().EndpointSlices(ns)
		for _, selector := range []string{
			headlessLabel, // the controller's slices of headless Services
			managedByLabel + "!=" + controllerManager + ",!" + headlessLabel, // hand-kept and mirrored
		} {
			nw.slices = append(nw.slices, w.informer(client, &cache.ListWatch{
				ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
					o.LabelSelector = selector
					return untilReachable(ctx, "endpointslices", func() (runtime.Object, error) { return sliceClient.List(ctx, o) })
				},
				WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
					o.LabelSelector = selector
					return untilReachable(ctx, "endpointslices", func() (watch.Interface, error) { return sliceClient.Watch(ctx, o) })
				},
			}, &discovery.EndpointSlice{}, slimSlice(ix.podNames), cache.Indexers{byService: sliceService}, "endpointslices",
				cache.ResourceEventHandlerFuncs{
					AddFunc: func(obj any) {
						w.slicesHeld.Add(1)
						w.sliceChanged(nil, obj)
					},
					UpdateFunc: w.sliceChanged,
					DeleteFunc: func(obj any) {
						w.slicesHeld.Add(-1)
						w.sliceChanged(obj, nil)
					},
				}))
		}
		w.namespaces[ns] = nw
	}
	return w
}

// headlessServices limits a Service list or watch to headless Services
// matching the labels option.
func headlessServices(o metav1.ListOptions, labelSelector string) metav1.ListOptions {
	o.FieldSelector = fields.OneTermEqualSelector("spec.clusterIP", core.ClusterIPNone).String()
	o.LabelSelector = labelSelector
	return o
}

func (w *watcher) informer(client kubernetes.Interface, lw *cache.ListWatch, example runtime.Object, transform cache.TransformFunc,
	indexers cache.Indexers, resource string, handler cache.ResourceEventHandler) cache.SharedIndexInformer {
	// The wrapper tells the reflector when the client (a fake one) cannot
	// stream its initial list.
	inf := cache.NewSharedIndexInformer(cache.ToListWatcherWithWatchListSemantics(lw, client), example, 0, indexers)
	// Both only fail once the informer runs, and it has not started yet.
	_ = inf.SetTransform(transform)
	_ = inf.SetWatchErrorHandler(func(_ *cache.Reflector, err error) { apiTrouble(resource, err) })
	reg, _ := inf.AddEventHandler(handler)
	w.synced = append(w.synced, reg.HasSynced)
	return inf
}

// run starts every informer; they stop with ctx.
func (w *watcher) run(ctx context.Context) {
	for _, nw := range w.namespaces {
		go nw.services.RunWithContext(ctx)
		for _, inf := range nw.slices {
			go inf.RunWithContext(ctx)
		}
	}
}

// hasSynced reports whether every informer has listed and every event of
// that list has reached the index.
func (w *watcher) hasSynced() bool {
	for _, s := range w.synced {
		if !s() {
			return false
		}
	}
	return true
}

// Retries of a list or watch that could not reach the API server start at
// retryMin and double up to retryMax. The informers' reflectors would
// otherwise back off on their own, each up to 30 s with jitter, and leave
// the index stale that long after the API server came back; retrying here,
// inside the list or watch call, keeps their backoff from ever growing.
const (
	retryMin = 50 * time.Millisecond
	retryMax = 400 * time.Millisecond
)

// untilReachable makes a list or watch call, and while it fails because the
// API server cannot be reached (refused, reset, overloaded, shutting down)
// makes it again, until it succeeds, fails for another reason (forbidden,
// expired resource version...), or ctx ends.
func untilReachable[T any](ctx context.Context, resource string, call func() (T, error)) (T, error) {
	delay := retryMin
	for {
		v, err := call()
		if err == nil || !unreachable(err) || ctx.Err() != nil {
			if err == nil || isAPIStatus(err) {
				apiReached()
			}
			return v, err
		}
		apiLost(resource, err)
		// Jitter between delay/2 and delay: several informers, and
		// several CoreDNS replicas, do not knock in step.
		t := time.NewTimer(delay/2 + rand.N(delay/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return v, ctx.Err()
		case <-t.C:
		}
		delay = min(2*delay, retryMax)
	}
}

// unreachable tells errors that say the API server is away or cannot serve
// now from those it answered with a decision.
func unreachable(err error) bool {
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		switch status.Status().Code {
		case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
		return false
	}
	var transport *url.Error // dial, TLS and connection errors of the HTTP client
	return errors.As(err, &transport) || utilnet.IsProbableEOF(err) || utilnet.IsConnectionRefused(err)
}

func isAPIStatus(err error) bool {
	var status apierrors.APIStatus
	return errors.As(err, &status)
}

// apiHealth is whether the API server is away, process-wide: an outage is
// logged when it starts and when it ends, however many informers retry how
// many times in between.
var apiHealth struct {
	down  atomic.Bool
	mu    sync.Mutex
	since time.Time
}

func apiLost(resource string, err any) {
	watchErrors.WithLabelValues(resource).Inc()
	if apiHealth.down.Load() {
		return
	}
	apiHealth.mu.Lock()
	first := !apiHealth.down.Swap(true)
	if first {
		apiHealth.since = time.Now()
	}
	apiHealth.mu.Unlock()
	if first {
		log.Warningf("API server unreachable (%v): answering from the last known state, retrying every %s", err, retryMax)
	}
}

func apiReached() {
	if !apiHealth.down.Load() {
		return
	}
	apiHealth.mu.Lock()
	was := apiHealth.down.Swap(false)
	away := time.Since(apiHealth.since)
	apiHealth.mu.Unlock()
	if was {
		log.Infof("API server reachable again after %s; catching up on what changed", away.Round(time.Millisecond))
	}
}

// apiTrouble counts a list or watch that the API server refused, or that
// failed in a way untilReachable does not retry, and logs it, at most once
// a minute per resource; the reflector retries with its own backoff.
func apiTrouble(resource string, err any) {
	if e, ok := err.(error); ok {
		switch {
		case unreachable(e) || strings.Contains(e.Error(), "very short watch"):
			// A watch stream that ends at once, with nothing in it, is
			// the first sign of a lost connection.
			apiLost(resource, e)
			return
		case apierrors.IsResourceExpired(e) || apierrors.IsGone(e):
			// The watch fell out of the server's history: the reflector
			// lists again, and the index follows the new list.
			log.Debugf("watching %s: %v; listing again", resource, e)
			return
		}
	}
	watchErrors.WithLabelValues(resource).Inc()
	troubleMu.Lock()
	quiet := time.Since(lastTrouble[resource]) < time.Minute
	if !quiet {
		lastTrouble[resource] = time.Now()
	}
	troubleMu.Unlock()
	if quiet {
		return
	}
	if e, ok := err.(error); ok && apierrors.IsForbidden(e) {
		log.Errorf("missing permission: %v (the plugin needs list and watch on services, and on endpointslices in API group discovery.k8s.io; see the README's Permissions)", e)
		return
	}
	log.Warningf("watching %s: %v (answering from the last known state while retrying)", resource, err)
}

var (
	troubleMu   sync.Mutex
	lastTrouble = map[string]time.Time{}
)

func (w *watcher) serviceChanged(obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		return
	}
	w.rebuild(key)
}

// sliceChanged rebuilds the service(s) a slice belongs (or belonged) to,
// and records how long the change took to reach DNS.
func (w *watcher) sliceChanged(oldObj, newObj any) {
	oldKey, newKey := serviceKeyOf(oldObj), serviceKeyOf(newObj)
	if oldKey != "" && oldKey != newKey {
		w.rebuild(oldKey)
	}
	if newKey == "" {
		return
	}
	svc := w.rebuild(newKey)
	trigger, ok := triggerTime(newObj)
	// The initial list carries old trigger times: those changes were
	// programmed long ago, by whoever served DNS then.
	if !ok || svc == nil || !w.hasSynced() {
		return
	}
	if before, ok := triggerTime(oldObj); ok && before.Equal(trigger) {
		return // not a new change of endpoints
	}
	kind := "headless_without_selector"
	if svc.hasSelector {
		kind = "headless_with_selector"
	}
	programmingDuration.WithLabelValues(kind).Observe(time.Since(trigger).Seconds())
}

// rebuild republishes one service from the informers' stores, and returns
// it (nil when it is not a published headless service).
func (w *watcher) rebuild(key string) *service {
	ns, name, _ := strings.Cut(key, "/")
	nw := w.namespaces[ns]
	if nw == nil {
		nw = w.namespaces[metav1.NamespaceAll]
	}
	if nw == nil {
		return nil // a namespace we do not watch
	}
	var svc *service
	w.index.rebuild(key, func() (*service, []*discovery.EndpointSlice) {
		svc = nil
		if obj, ok, _ := nw.services.GetIndexer().GetByKey(key); ok {
			if s, ok := obj.(*core.Service); ok && s.Spec.ClusterIP == core.ClusterIPNone {
				svc = &service{namespace: ns, name: name, hasSelector: len(s.Spec.Selector) > 0}
			}
		}
		var found []*discovery.EndpointSlice
		for _, inf := range nw.slices {
			objs, _ := inf.GetIndexer().ByIndex(byService, key)
			for _, obj := range objs {
				s, ok := obj.(*discovery.EndpointSlice)
				// A slice that moves between the two informers can briefly be in both.
				if ok && !slices.ContainsFunc(found, func(f *discovery.EndpointSlice) bool { return f.Name == s.Name }) {
					found = append(found, s)
				}
			}
		}
		slices.SortFunc(found, func(a, b *discovery.EndpointSlice) int { return strings.Compare(a.Name, b.Name) })
		return svc, found
	})
	lastChange.SetToCurrentTime()
	return svc
}

// sliceService indexes a slice under the service it belongs to.
func sliceService(obj any) ([]string, error) {
	if key := serviceKeyOf(obj); key != "" {
		return []string{key}, nil
	}
	return nil, nil
}

// serviceKeyOf returns "namespace/service" of a slice (possibly a deleted
// one's tombstone), or "" when it names no service.
func serviceKeyOf(obj any) string {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	s, ok := obj.(*discovery.EndpointSlice)
	if !ok || s == nil {
		return ""
	}
	name := s.Labels[discovery.LabelServiceName]
	if name == "" {
		return ""
	}
	return s.Namespace + "/" + name
}

func triggerTime(obj any) (time.Time, bool) {
	s, ok := obj.(*discovery.EndpointSlice)
	if !ok || s == nil {
		return time.Time{}, false
	}
	v, ok := s.Annotations[triggerTimeKey]
	if !ok {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	return t, err == nil
}

// slimService keeps of a Service only what the index reads. Of its
// selector that is only whether it has one, so every service with a
// selector shares hasSelector: its own map would cost more than the rest.
func slimService(obj any) (any, error) {
	s, ok := obj.(*core.Service)
	if !ok {
		return obj, nil
	}
	slim := &core.Service{
		ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: s.Namespace, ResourceVersion: s.ResourceVersion},
		Spec:       core.ServiceSpec{ClusterIP: s.Spec.ClusterIP},
	}
	if len(s.Spec.Selector) > 0 {
		slim.Spec.Selector = hasSelector
	}
	return slim, nil
}

var (
	// hasSelector stands for any selector; shared, so never written to.
	hasSelector = map[string]string{"": ""}
	// Every slim endpoint's readiness points at one of these; never
	// written to either.
	isReady, isNotReady = true, false
)

// slimSlice returns the transform that keeps of an EndpointSlice only what
// the index reads: no managedFields, topology, hints, owner references or
// other annotations, and the pod an endpoint names only with
// endpoint_pod_names.
func slimSlice(podNames bool) cache.TransformFunc {
	return func(obj any) (any, error) {
		s, ok := obj.(*discovery.EndpointSlice)
		if !ok {
			return obj, nil
		}
		out := &discovery.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{
				Name: s.Name, Namespace: s.Namespace, ResourceVersion: s.ResourceVersion,
			},
			AddressType: s.AddressType,
			Ports:       s.Ports,
			Endpoints:   make([]discovery.Endpoint, len(s.Endpoints)),
		}
		if name, ok := s.Labels[discovery.LabelServiceName]; ok {
			out.Labels = map[string]string{discovery.LabelServiceName: name}
		}
		if t, ok := s.Annotations[triggerTimeKey]; ok {
			out.Annotations = map[string]string{triggerTimeKey: t}
		}
		for i, ep := range s.Endpoints {
			slim := discovery.Endpoint{Addresses: ep.Addresses, Hostname: ep.Hostname}
			if r := ep.Conditions.Ready; r != nil {
				slim.Conditions.Ready = &isNotReady
				if *r {
					slim.Conditions.Ready = &isReady
				}
			}
			if podNames && ep.TargetRef != nil {
				slim.TargetRef = &core.ObjectReference{Kind: ep.TargetRef.Kind, Name: ep.TargetRef.Name}
			}
			out.Endpoints[i] = slim
		}
		return out, nil
	}
}

// klogSink routes client-go's klog output into CoreDNS's log for this
// plugin. A reflector retrying a failed watch says so only as information
// (it never reaches the watch error handler); those go to apiTrouble, so
// they are counted and logged once a minute. Other errors are warnings and
// the rest of the chatter shows only with the debug plugin.
type klogSink struct{}

var routeKlog sync.Once

func (klogSink) Init(logr.RuntimeInfo)  {}
func (klogSink) Enabled(level int) bool { return level <= 4 }
func (klogSink) Info(level int, msg string, kv ...any) {
	// "Watch closed" (level 4) is a watch that expired: the reflector
	// lists again, and apiTrouble notes it for the debug log.
	if msg == "watch-list failed - backing off" || msg == "Watch closed" || strings.HasPrefix(msg, "Warning: watch ended with error") {
		apiTrouble(resourceOf(kv), value(kv, "err"))
		return
	}
	if level == 0 {
		log.Debugf("client-go: %s%s", msg, keyValues(kv))
	}
}
func (klogSink) Error(err error, msg string, kv ...any) {
	log.Warningf("client-go: %s: %v%s", msg, err, keyValues(kv))
}
func (s klogSink) WithValues(...any) logr.LogSink { return s }
func (s klogSink) WithName(string) logr.LogSink   { return s }

// resourceOf names the resource of a reflector's message ("*v1.Service").
func resourceOf(kv []any) string {
	switch t := fmt.Sprint(value(kv, "type")); t {
	case "*v1.Service":
		return "services"
	case "*v1.EndpointSlice":
		return "endpointslices"
	default:
		return t
	}
}

func value(kv []any, key string) any {
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i] == key {
			return kv[i+1]
		}
	}
	return nil
}

func keyValues(kv []any) string {
	var sb strings.Builder
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(&sb, " %v=%v", kv[i], kv[i+1])
	}
	return sb.String()
}
