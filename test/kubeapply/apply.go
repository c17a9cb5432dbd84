// Package kubeapply applies Kubernetes YAML files with server-side apply,
// as `kubectl apply --server-side` would: any kind the server knows, created
// or updated in place.
package kubeapply

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// Files applies every object in the YAML files and returns what it applied,
// as "kind/namespace/name".
func Files(ctx context.Context, rc *rest.Config, paths ...string) ([]string, error) {
	return apply(ctx, rc, nil, paths)
}

// DryRun is Files with dryRun=All: the server validates, defaults and
// admits every object (as `kubectl apply --server-side --dry-run=server`)
// and stores nothing. Namespaces the objects name must exist.
func DryRun(ctx context.Context, rc *rest.Config, paths ...string) ([]string, error) {
	return apply(ctx, rc, []string{metav1.DryRunAll}, paths)
}

func apply(ctx context.Context, rc *rest.Config, dryRun []string, paths []string) ([]string, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(rc)
	if err != nil {
		return nil, err
	}
	client, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	var applied []string
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			return applied, err
		}
		decoder := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			obj := &unstructured.Unstructured{}
			if err := decoder.Decode(&obj.Object); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return applied, fmt.Errorf("%s: %w", path, err)
			}
			if len(obj.Object) == 0 {
				continue // an empty document
			}
			gvk := obj.GroupVersionKind()
			mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
			if err != nil {
				return applied, fmt.Errorf("%s: %s: %w", path, gvk, err)
			}
			var resource dynamic.ResourceInterface = client.Resource(mapping.Resource)
			if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
				if obj.GetNamespace() == "" {
					obj.SetNamespace(metav1.NamespaceDefault)
				}
				resource = client.Resource(mapping.Resource).Namespace(obj.GetNamespace())
			}
			if _, err := resource.Apply(ctx, obj.GetName(), obj, metav1.ApplyOptions{FieldManager: "headless-kubeapply", Force: true, DryRun: dryRun}); err != nil {
				return applied, fmt.Errorf("%s: %s %s: %w", path, gvk.Kind, obj.GetName(), err)
			}
			applied = append(applied, fmt.Sprintf("%s/%s/%s", gvk.Kind, obj.GetNamespace(), obj.GetName()))
		}
	}
	return applied, nil
}
