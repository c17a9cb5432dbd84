package headless

import (
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

const byService = "service" // indexer of slices by "namespace/service" (or ServiceImport)

// nsWatch is the informers of one namespace ("" for the whole cluster):
// headless Services, and the two sorts of EndpointSlices that can belong to
// one. Slices of ClusterIP Services, by far the most, are never listed.
// With multicluster, also ServiceImports and the slices imported for them.
type nsWatch struct {
	services cache.SharedIndexInformer
	slices   []cache.SharedIndexInformer
	imports  cache.SharedIndexInformer // nil without multicluster
	imported cache.SharedIndexInformer
}

// watcher feeds the index from the API server: when a Service or one of
// its slices changes, it reads that service's objects from its stores,
// builds the service's answer set and publishes it.
type watcher struct {
	index      *index
	opts       buildOptions
	clusterset *index // with multicluster: ServiceImports' answer sets
	importOpts buildOptions
	health     *apiServerHealth
	intake     *intake // what the transforms take in; collects during large lists
	namespaces map[string]*nsWatch
	synced     []cache.InformerSynced
	slicesHeld atomic.Int64 // EndpointSlices in its informers' stores

	// rebuildMu makes "read the stores, build, publish" one step per
	// service, so the last rebuild of a service publishes its latest state.
	rebuildMu sync.Mutex
}

func newWatcher(client kubernetes.Interface, imports mcsclient.Interface, ix, clusterset *index, cfg *config, health *apiServerHealth) *watcher {
	w := &watcher{
		index:      ix,
		opts:       cfg.buildOptions(),
		clusterset: clusterset,
		importOpts: cfg.importOptions(),
		health:     health,
		intake:     newIntake(),
		namespaces: map[string]*nsWatch{},
	}
	namespaces := cfg.namespaces
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	for _, ns := range namespaces {
		services := client.CoreV1().Services(ns)
		nw := &nsWatch{
			services: w.informer(client, &cache.ListWatch{
				ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
					return untilReachable(ctx, health, "services", func() (runtime.Object, error) {
						return services.List(ctx, headlessServices(o, cfg.labels))
					})
				},
				WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
					return untilReachable(ctx, health, "services", func() (watch.Interface, error) {
						return services.Watch(ctx, headlessServices(o, cfg.labels))
					})
				},
			}, &core.Service{}, slimService(w.intake), nil, "services", cache.ResourceEventHandlerFuncs{
				AddFunc: w.serviceChanged,
				UpdateFunc: func(old, obj any) {
					if !unchanged(old, obj) {
						w.serviceChanged(obj)
					}
				},
				DeleteFunc: w.serviceChanged,
			}),
		}
		sliceClient := client.DiscoveryV1().EndpointSlices(ns)
		for _, selector := range []string{
			headlessLabel, // the controller's slices of headless Services
			// Hand-kept and mirrored; not those imported for a ServiceImport.
			managedByLabel + "!=" + controllerManager + ",!" + headlessLabel + ",!" + importedServiceLabel,
		} {
			nw.slices = append(nw.slices, w.informer(client, &cache.ListWatch{
				ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
					o.LabelSelector = selector
					return untilReachable(ctx, health, "endpointslices", func() (runtime.Object, error) { return sliceClient.List(ctx, o) })
				},
				WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
					o.LabelSelector = selector
					return untilReachable(ctx, health, "endpointslices", func() (watch.Interface, error) { return sliceClient.Watch(ctx, o) })
				},
			}, &discovery.EndpointSlice{}, slimSlice(cfg.buildOptions(), w.intake), cache.Indexers{byService: sliceService}, "endpointslices",
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
		if imports != nil {
			w.watchImports(client, imports, ns, nw, cfg)
		}
		w.namespaces[ns] = nw
	}
	return w
}

// watchImports adds the informers of headless ServiceImports and their
// imported slices in namespace ns.
func (w *watcher) watchImports(client kubernetes.Interface, imports mcsclient.Interface, ns string, nw *nsWatch, cfg *config) {
	serviceImports := imports.MulticlusterV1alpha1().ServiceImports(ns)
	nw.imports = w.informer(imports, &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.LabelSelector = cfg.labels
			return untilReachable(ctx, w.health, "serviceimports", func() (runtime.Object, error) { return serviceImports.List(ctx, o) })
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = cfg.labels
			return untilReachable(ctx, w.health, "serviceimports", func() (watch.Interface, error) { return serviceImports.Watch(ctx, o) })
		},
	}, &mcs.ServiceImport{}, slimServiceImport, nil, "serviceimports", cache.ResourceEventHandlerFuncs{
		AddFunc: w.importChanged,
		UpdateFunc: func(old, obj any) {
			if !unchanged(old, obj) {
				w.importChanged(obj)
			}
		},
		DeleteFunc: w.importChanged,
	})
	sliceClient := client.DiscoveryV1().EndpointSlices(ns)
	nw.imported = w.informer(client, &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.LabelSelector = importedServiceLabel
			return untilReachable(ctx, w.health, "endpointslices", func() (runtime.Object, error) { return sliceClient.List(ctx, o) })
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = importedServiceLabel
			return untilReachable(ctx, w.health, "endpointslices", func() (watch.Interface, error) { return sliceClient.Watch(ctx, o) })
		},
	}, &discovery.EndpointSlice{}, slimSlice(w.importOpts, w.intake), cache.Indexers{byService: sliceService}, "endpointslices",
		cache.ResourceEventHandlerFuncs{
			AddFunc: func(obj any) {
				w.slicesHeld.Add(1)
				w.importedSliceChanged(nil, obj)
			},
			UpdateFunc: w.importedSliceChanged,
			DeleteFunc: func(obj any) {
				w.slicesHeld.Add(-1)
				w.importedSliceChanged(obj, nil)
			},
		})
}

// headlessServices limits a Service list or watch to headless Services
// matching the labels option.
func headlessServices(o metav1.ListOptions, labelSelector string) metav1.ListOptions {
	o.FieldSelector = fields.OneTermEqualSelector("spec.clusterIP", core.ClusterIPNone).String()
	o.LabelSelector = labelSelector
	return o
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
	for _, nw := range w.namespaces {
		go nw.services.RunWithContext(ctx)
		for _, inf := range nw.slices {
			go inf.RunWithContext(ctx)
		}
		if nw.imports != nil {
			go nw.imports.RunWithContext(ctx)
			go nw.imported.RunWithContext(ctx)
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
	if unchanged(oldObj, newObj) {
		return
	}
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

// rebuild reads one service and its slices from the stores, builds its
// answer set and publishes it, and returns the service (nil when it is not
// a headless service the plugin publishes).
func (w *watcher) rebuild(key string) *service {
	ns, name, _ := strings.Cut(key, "/")
	nw := w.namespaces[ns]
	if nw == nil {
		nw = w.namespaces[metav1.NamespaceAll]
	}
	if nw == nil {
		return nil // a namespace we do not watch
	}
	w.rebuildMu.Lock()
	defer w.rebuildMu.Unlock()
	var svc *service
	if obj, ok, _ := nw.services.GetIndexer().GetByKey(key); ok {
		if s, ok := obj.(*serviceInfo); ok && s.headless {
			svc = &service{namespace: ns, name: name, hasSelector: s.hasSelector}
		}
	}
	var sd *serviceData
	if svc != nil {
		sd = build(svc, nw.slicesOf(key), w.opts)
	}
	w.index.publish(key, svc, sd)
	lastChange.SetToCurrentTime()
	return svc
}

func (w *watcher) importChanged(obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		return
	}
	w.rebuildImport(key)
}

// importedSliceChanged rebuilds the ServiceImport(s) an imported slice
// belongs (or belonged) to.
func (w *watcher) importedSliceChanged(oldObj, newObj any) {
	if unchanged(oldObj, newObj) {
		return
	}
	oldKey, newKey := serviceKeyOf(oldObj), serviceKeyOf(newObj)
	if oldKey != "" && oldKey != newKey {
		w.rebuildImport(oldKey)
	}
	if newKey != "" {
		w.rebuildImport(newKey)
	}
}

// rebuildImport is rebuild for a ServiceImport: its answer set in the
// clusterset zones, from the slices imported for it.
func (w *watcher) rebuildImport(key string) {
	ns, name, _ := strings.Cut(key, "/")
	nw := w.namespaces[ns]
	if nw == nil {
		nw = w.namespaces[metav1.NamespaceAll]
	}
	if nw == nil || nw.imports == nil {
		return
	}
	w.rebuildMu.Lock()
	defer w.rebuildMu.Unlock()
	var svc *service
	if obj, ok, _ := nw.imports.GetIndexer().GetByKey(key); ok {
		if s, ok := obj.(*serviceInfo); ok && s.headless {
			svc = &service{namespace: ns, name: name}
		}
	}
	var sd *serviceData
	if svc != nil {
		sd = build(svc, slicesByName(nw.imported.GetIndexer(), key, nil), w.importOpts)
	}
	w.clusterset.publish(key, svc, sd)
	lastChange.SetToCurrentTime()
}

// slicesOf returns the slices of the service keyed "namespace/name", by name.
func (nw *nsWatch) slicesOf(key string) []*sliceInfo {
	var found []*sliceInfo
	for _, inf := range nw.slices {
		found = slicesByName(inf.GetIndexer(), key, found)
	}
	return found
}

// slicesByName adds the slices of the service keyed "namespace/name" in
// store to found, and returns them sorted by name. A slice that moves
// between the two informers can briefly be in both: it is counted once.
func slicesByName(store cache.Indexer, key string, found []*sliceInfo) []*sliceInfo {
	objs, _ := store.ByIndex(byService, key)
	for _, obj := range objs {
		s, ok := obj.(*sliceInfo)
		if ok && !slices.ContainsFunc(found, func(f *sliceInfo) bool { return f.name == s.name }) {
			found = append(found, s)
		}
	}
	slices.SortFunc(found, func(a, b *sliceInfo) int { return strings.Compare(a.name, b.name) })
	return found
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

// sliceService indexes a slice under the service it belongs to.
func sliceService(obj any) ([]string, error) {
	if key := serviceKeyOf(obj); key != "" {
		return []string{key}, nil
	}
	return nil, nil
}
