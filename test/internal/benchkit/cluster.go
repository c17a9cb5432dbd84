package benchkit

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	core "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// SetPodReady sets a pod's readiness as its kubelet would after a
// readiness probe failed or passed again: one patch of the status
// subresource with the Ready and ContainersReady conditions and every
// container's ready flag. kwok leaves such a status alone (its Stages only
// touch pods without an address, or being deleted), and the endpointslice
// controller then marks the pod's endpoint ready or not. It returns when
// the API server has accepted the patch.
func SetPodReady(ctx context.Context, client kubernetes.Interface, pod *core.Pod, ready bool) error {
	now := metav1.NewTime(time.Now())
	var reason, message any // nil: JSON null removes them
	var names []string
	containers := slices.Clone(pod.Status.ContainerStatuses)
	for i := range containers {
		containers[i].Ready = ready
		names = append(names, containers[i].Name)
	}
	status := core.ConditionTrue
	if !ready {
		status, reason = core.ConditionFalse, "ContainersNotReady"
		message = fmt.Sprintf("containers with unready status: [%s]", strings.Join(names, " "))
	}
	var conditions []map[string]any
	for _, typ := range []core.PodConditionType{core.ContainersReady, core.PodReady} {
		conditions = append(conditions, map[string]any{
			"type": typ, "status": status, "reason": reason, "message": message, "lastTransitionTime": now})
	}
	patch, err := json.Marshal(map[string]any{"status": map[string]any{
		"conditions":        conditions,
		"containerStatuses": containers,
	}})
	if err != nil {
		return err
	}
	_, err = client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
	if err != nil {
		return fmt.Errorf("setting pod %s/%s ready=%v: %w", pod.Namespace, pod.Name, ready, err)
	}
	return nil
}

// PodReady reports whether a pod's Ready condition is True.
func PodReady(p *core.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == core.PodReady {
			return c.Status == core.ConditionTrue
		}
	}
	return false
}

// WaitPodsReady waits until n pods of ns match selector, each Ready, with
// an address and not being deleted, and returns them sorted by name. It
// calls progress (when not nil) with the count of ready pods every few
// seconds.
func WaitPodsReady(ctx context.Context, client kubernetes.Interface, ns, selector string, n int, timeout time.Duration, progress func(ready int)) ([]core.Pod, error) {
	deadline := time.Now().Add(timeout)
	lastReport := time.Now()
	for {
		list, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		ready := 0
		if err == nil {
			for i := range list.Items {
				p := &list.Items[i]
				if PodReady(p) && p.Status.PodIP != "" && p.DeletionTimestamp == nil {
					ready++
				}
			}
			if ready == n && len(list.Items) == n {
				slices.SortFunc(list.Items, func(a, b core.Pod) int { return strings.Compare(a.Name, b.Name) })
				return list.Items, nil
			}
		}
		if progress != nil && time.Since(lastReport) > 5*time.Second {
			progress(ready)
			lastReport = time.Now()
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%d of %d pods %s in %s ready after %v (last error: %v)", ready, n, selector, ns, timeout, err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
