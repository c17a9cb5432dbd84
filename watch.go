package headless

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	core "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	mcs "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"
)

// feed is one namespace's informers of one kind of service and the
// EndpointSlices that belong to it, and the index their answer sets go to:
// the cluster's headless Services (the slices the endpointslice controller
// labels headless, and the hand-kept and mirrored ones; the controller's
// slices of ClusterIP Services, by far the most, are never listed), or,
// with multicluster, the ServiceImports and the slices imported for them.
type feed struct {
	services cache.SharedIndexInformer
	slices   []cache.SharedIndexInformer
	index    *index
	opts     buildOptions
	// timed: changes are observed in the programming duration histogram.
	timed bool
	// members are the slices of each service as the slice handlers have
	// seen them, guarded by the watcher's rebuildMu. (An indexer of the
	// stores would keep a set, a map, per service: several times the bytes
	// of this one slot, for the one slice most services have.)
	members map[serviceRef][]member
}

// serviceRef names a service (or ServiceImport) of a feed.
type serviceRef struct{ namespace, name string }

func (r serviceRef) key() string { return r.namespace + "/" + r.name }

// member is a slice of a service, and which of the feed's slice informers
// holds it.
type member struct {
	informer int
	*sliceInfo
}

// watcher feeds the indexes from the API server: when a service or one of
// its slices changes, it reads that service's objects from its feed's
// stores, builds the service's answer set and publishes it.
type watcher struct {
	health     *apiServerHealth
	intake     *intake // what the transforms take in; collects during large lists
	feeds      []*feed
	synced     []cache.InformerSynced
	slicesHeld atomic.Int64 // EndpointSlices in its informers' stores

	// rebuildMu makes "read the stores, build, publish" one step per
	// service, so the last rebuild of a service publishes its latest state.
	rebuildMu sync.Mutex
}

// newWatcher makes the informers of cfg's namespaces: Services into ix,
// and with imports (the Multi-Cluster Services client) ServiceImports into
// clusterset.
func newWatcher(client kubernetes.Interface, imports mcsclient.Interface, ix, clusterset *index, cfg *config, health *apiServerHealth) *watcher {
	w := &watcher{health: health, intake: newIntake()}
	namespaces := cfg.namespaces
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	for _, ns := range namespaces {
		services := client.CoreV1().Services(ns)
		f := &feed{index: ix, opts: cfg.buildOptions(), timed: true, members: map[serviceRef][]member{}}
		f.services = w.serviceInformer(f, client, "services", &core.Service{}, slimService(w.intake), listWatch(health, "services",
			func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				return services.List(ctx, headlessServices(o, cfg.labels))
			},
			func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				return services.Watch(ctx, headlessServices(o, cfg.labels))
			}))
		for _, selector := range []string{
			headlessLabel, // the controller's slices of headless Services
			// Hand-kept and mirrored; not those imported for a ServiceImport.
			managedByLabel + "!=" + controllerManager + ",!" + headlessLabel + ",!" + importedServiceLabel,
		} {
			f.slices = append(f.slices, w.sliceInformer(f, len(f.slices), client, ns, selector))
		}
		w.feeds = append(w.feeds, f)

		if imports == nil {
			continue
		}
		serviceImports := imports.MulticlusterV1alpha1().ServiceImports(ns)
		f = &feed{index: clusterset, opts: cfg.importOptions(), members: map[serviceRef][]member{}}
		f.services = w.serviceInformer(f, imports, "serviceimports", &mcs.ServiceImport{}, slimServiceImport(w.intake), listWatch(health, "serviceimports",
			func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				o.LabelSelector = cfg.labels
				return serviceImports.List(ctx, o)
			},
			func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				o.LabelSelector = cfg.labels
				return serviceImports.Watch(ctx, o)
			}))
		f.slices = []cache.SharedIndexInformer{w.sliceInformer(f, 0, client, ns, importedServiceLabel)}
		w.feeds = append(w.feeds, f)
	}
	return w
}

// listWatch lists and watches through untilReachable.
func listWatch(health *apiServerHealth, resource string,
	list func(context.Context, metav1.ListOptions) (runtime.Object, error),
	watchFunc func(context.Context, metav1.ListOptions) (watch.Interface, error)) *cache.ListWatch {
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return untilReachable(ctx, health, resource, func() (runtime.Object, error) { return list(ctx, o) })
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return untilReachable(ctx, health, resource, func() (watch.Interface, error) { return watchFunc(ctx, o) })
		},
	}
}

// headlessServices limits a Service list or watch to headless Services
// matching the labels option.
func headlessServices(o metav1.ListOptions, labelSelector string) metav1.ListOptions {
	o.FieldSelector = fields.OneTermEqualSelector("spec.clusterIP", core.ClusterIPNone).String()
	o.LabelSelector = labelSelector
	return o
}

// serviceInformer watches f's services.
func (w *watcher) serviceInformer(f *feed, client any, resource string, example runtime.Object, transform cache.TransformFunc, lw *cache.ListWatch) cache.SharedIndexInformer {
	changed := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			ns, name, _ := strings.Cut(key, "/")
			w.rebuildMu.Lock()
			defer w.rebuildMu.Unlock()
			w.rebuild(f, serviceRef{ns, name})
		}
	}
	return w.informer(client, lw, example, transform, nil, resource, cache.ResourceEventHandlerFuncs{
		AddFunc: changed,
		UpdateFunc: func(old, obj any) {
			if !unchanged(old, obj) {
				changed(obj)
			}
		},
		DeleteFunc: changed,
	})
}

// sliceInformer watches f's EndpointSlices of namespace ns that match
// selector; it is f's n-th slice informer.
func (w *watcher) sliceInformer(f *feed, n int, client kubernetes.Interface, ns, selector string) cache.SharedIndexInformer {
	slices := client.DiscoveryV1().EndpointSlices(ns)
	lw := listWatch(w.health, "endpointslices",
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.LabelSelector = selector
			return slices.List(ctx, o)
		},
		func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = selector
			return slices.Watch(ctx, o)
		})
	return w.informer(client, lw, &discovery.EndpointSlice{}, slimSlice(f.opts, w.intake), nil, "endpointslices",
		cache.ResourceEventHandlerFuncs{
			AddFunc: func(obj any) {
				w.slicesHeld.Add(1)
				w.sliceChanged(f, n, nil, obj)
			},
			UpdateFunc: func(old, obj any) { w.sliceChanged(f, n, old, obj) },
			DeleteFunc: func(obj any) {
				w.slicesHeld.Add(-1)
				w.sliceChanged(f, n, obj, nil)
			},
		})
}

func (w *watcher) informer(client any, lw *cache.ListWatch, example runtime.Object, transform cache.TransformFunc,
	indexers cache.Indexers, resource string, handler cache.ResourceEventHandler) cache.SharedIndexInformer {
	// The wrapper tells the reflector when the client (a fake one) cannot
	// stream its initial list.
	inf := cache.NewSharedIndexInformer(cache.ToListWatcherWithWatchListSemantics(lw, client), example, 0, indexers)
	// Both only fail once the informer runs, and it has not started yet.
	_ = inf.SetTransform(transform)
	_ = inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) { w.health.trouble(resource, err) })
	reg, _ := inf.AddEventHandler(handler)
	w.synced = append(w.synced, reg.HasSynced)
	return inf
}

// run starts every informer; they stop with ctx, and log through the
// logger it carries.
func (w *watcher) run(ctx context.Context) {
	for _, f := range w.feeds {
		go f.services.RunWithContext(ctx)
		for _, inf := range f.slices {
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

// sliceChanged records a change of a slice held by f's informer-th slice
// informer, rebuilds the service(s) it belongs (or belonged) to, and
// records how long the change took to reach DNS.
func (w *watcher) sliceChanged(f *feed, informer int, oldObj, newObj any) {
	oldSlice, newSlice := asSlice(oldObj), asSlice(newObj)
	w.rebuildMu.Lock()
	if t, ok := oldObj.(cache.DeletedFinalStateUnknown); ok && oldSlice == nil {
		// A tombstone without its object: the slice is known by its key.
		ns, name, _ := strings.Cut(t.Key, "/")
		oldSlice = f.member(informer, ns, name)
	}
	// Even an unchanged slice replaces its old value: after a relist the
	// store holds the new one, and members must not keep the old alive.
	f.untrack(informer, oldSlice)
	f.track(informer, newSlice)
	if unchanged(oldObj, newObj) {
		w.rebuildMu.Unlock()
		return
	}
	oldRef, oldOK := oldSlice.serviceRef()
	newRef, newOK := newSlice.serviceRef()
	if oldOK && (!newOK || oldRef != newRef) {
		w.rebuild(f, oldRef)
	}
	var svc *service
	if newOK {
		svc = w.rebuild(f, newRef)
	}
	w.rebuildMu.Unlock()
	if svc == nil {
		return
	}
	trigger, ok := triggerTime(newObj)
	// The initial list carries old trigger times: those changes were
	// programmed long ago, by whoever served DNS then.
	if !f.timed || !ok || !w.hasSynced() {
		return
	}
	if before, ok := triggerTime(oldObj); ok && before.Equal(trigger) && !endpointsChanged(oldObj, newObj) {
		// Not a change of endpoints: a write of other fields keeps the
		// trigger time. Two changes within one second (pod conditions
		// keep whole seconds) do share it, and each counts.
		return
	}
	kind := "headless_without_selector"
	if svc.hasSelector {
		kind = "headless_with_selector"
	}
	programmingDuration.WithLabelValues(kind).Observe(time.Since(trigger).Seconds())
}

// rebuild reads one service of f and its slices, builds its answer set
// and publishes it, and returns the service (nil when it is not a headless
// service the plugin publishes). Callers hold rebuildMu, which makes "read,
// build, publish" one step per service, so that the last rebuild of a
// service publishes its latest state.
func (w *watcher) rebuild(f *feed, ref serviceRef) *service {
	key := ref.key()
	var svc *service
	if obj, ok, _ := f.services.GetIndexer().GetByKey(key); ok {
		if s, ok := obj.(*serviceInfo); ok && s.headless {
			svc = &service{namespace: ref.namespace, name: ref.name, hasSelector: s.hasSelector}
		}
	}
	var sd *serviceData
	if svc != nil {
		sd = build(svc, f.slicesOf(ref), f.opts)
	}
	f.index.publish(key, svc, sd)
	lastChange.SetToCurrentTime()
	return svc
}

// track adds (or replaces) a slice of the informer-th slice informer in
// its service's members. Callers hold rebuildMu.
func (f *feed) track(informer int, s *sliceInfo) {
	ref, ok := s.serviceRef()
	if !ok {
		return
	}
	list := f.members[ref]
	for i := range list {
		if list[i].informer == informer && list[i].name == s.name {
			list[i].sliceInfo = s
			return
		}
	}
	f.members[ref] = append(list, member{informer, s})
}

// untrack removes a slice of the informer-th slice informer from its
// service's members. Callers hold rebuildMu.
func (f *feed) untrack(informer int, s *sliceInfo) {
	ref, ok := s.serviceRef()
	if !ok {
		return
	}
	list := slices.DeleteFunc(f.members[ref], func(m member) bool { return m.informer == informer && m.name == s.name })
	if len(list) == 0 {
		delete(f.members, ref)
	} else {
		f.members[ref] = list
	}
}

// member finds the slice namespace/name of the informer-th slice informer
// among the members, or nil. Callers hold rebuildMu.
func (f *feed) member(informer int, namespace, name string) *sliceInfo {
	for ref, list := range f.members {
		if ref.namespace != namespace {
			continue
		}
		for _, m := range list {
			if m.informer == informer && m.name == name {
				return m.sliceInfo
			}
		}
	}
	return nil
}

// slicesOf returns the slices of a service, by name. A slice that moves
// between two informers can briefly be in both: it is counted once, as
// the first informer holds it. Callers hold rebuildMu.
func (f *feed) slicesOf(ref serviceRef) []*sliceInfo {
	list := slices.Clone(f.members[ref])
	slices.SortStableFunc(list, func(a, b member) int {
		return cmp.Or(strings.Compare(a.name, b.name), cmp.Compare(a.informer, b.informer))
	})
	list = slices.CompactFunc(list, func(a, b member) bool { return a.name == b.name })
	found := make([]*sliceInfo, len(list))
	for i, m := range list {
		found[i] = m.sliceInfo
	}
	return found
}

// endpointsChanged tells whether two versions of a slice differ in their
// endpoints (addresses, readiness, names).
func endpointsChanged(oldObj, newObj any) bool {
	o, ok1 := oldObj.(*sliceInfo)
	n, ok2 := newObj.(*sliceInfo)
	return !ok1 || !ok2 || !o.addresses.equal(&n.addresses)
}

// unchanged tells an update that changes nothing (the same resource
// version, as every object has when the informer lists again after a lost
// watch) from a real one: rebuilding the whole index on each relist would
// allocate it anew, and double the heap just when the API server returns.
func unchanged(oldObj, newObj any) bool {
	o, ok1 := oldObj.(interface{ version() string })
	n, ok2 := newObj.(interface{ version() string })
	return ok1 && ok2 && o.version() != "" && o.version() == n.version()
}
