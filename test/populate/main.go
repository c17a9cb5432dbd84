// Command populate fills a (test) cluster with a realistic population for
// the DNS benchmark, the way the endpointslice controller would have left it:
//
//   - -services headless Services, each with one EndpointSlice of -pods
//     (default three) ready StatefulSet pods (hostnames NAME-0..2, a named TCP port "web",
//     pod target references, node names, zones), labelled as the controller
//     labels a headless Service's slice;
//   - -clusterip-services ClusterIP Services, each with one controller-
//     labelled slice of -pods Deployment-style pods and no hostnames. These
//     are what a cluster mostly holds, and what the headless plugin must
//     never list.
//
// Services are spread over -namespaces namespaces. Pod IPs are unique, from
// 10.128.0.0/9. With -names-dir it writes the query files the benchmark uses
// ("qname qtype" lines): svc-a.txt, pod-a.txt, srv.txt, ptr.txt, nx.txt and
// mix.txt (all of them interleaved).
//
//	populate -kubeconfig admin.kubeconfig -services 1000 -clusterip-services 2000 -names-dir /tmp/names
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	core "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

const (
	zone           = "cluster.local"
	controllerName = "endpointslice-controller.k8s.io"
)

func main() {
	var (
		kubeconfig = flag.String("kubeconfig", "", "admin kubeconfig of the cluster to fill (required)")
		headless   = flag.Int("services", 1000, "headless Services (StatefulSet-shaped, -pods pods each)")
		clusterIP  = flag.Int("clusterip-services", 2000, "ClusterIP Services (Deployment-shaped, -pods pods each)")
		pods       = flag.Int("pods", 3, "pods (endpoints) per Service, all in its one EndpointSlice (at most 1000)")
		namespaces = flag.Int("namespaces", 20, "namespaces to spread the Services over")
		workers    = flag.Int("workers", 16, "concurrent API requests")
		namesDir   = flag.String("names-dir", "", "write the benchmark's query files here")
		prefix     = flag.String("prefix", "bench", "namespace name prefix")
	)
	flag.Parse()
	if *kubeconfig == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: populate -kubeconfig FILE [-services N] [-clusterip-services M] [-namespaces K] [-names-dir DIR]")
		os.Exit(2)
	}
	if *headless < 0 || *clusterIP < 0 || *namespaces < 1 || *workers < 1 || *pods < 1 || *pods > 1000 {
		fatalf("counts must not be negative, -namespaces, -workers and -pods at least 1, -pods at most 1000")
	}
	// 10.128.0.0/9 holds about 8.3 million usable pod addresses.
	if (*headless+*clusterIP)*(*pods) > 8_000_000 {
		fatalf("too many pods for 10.128.0.0/9")
	}
	p := &population{prefix: *prefix, headless: *headless, clusterIP: *clusterIP, namespaces: *namespaces, pods: *pods}

	if *namesDir != "" {
		if err := p.writeNames(*namesDir); err != nil {
			fatalf("%v", err)
		}
	}

	rc, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		fatalf("%v", err)
	}
	rc.QPS, rc.Burst = 5000, 5000
	rc.ContentType = "application/vnd.kubernetes.protobuf"
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		fatalf("%v", err)
	}
	ctx := context.Background()
	start := time.Now()
	for n := range *namespaces {
		ns := &core.Namespace{ObjectMeta: metav1.ObjectMeta{Name: p.namespace(n)}}
		if _, err := client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			fatalf("creating namespace %s: %v", ns.Name, err)
		}
	}

	total := *headless + *clusterIP
	var nextJob, done atomic.Int64
	var firstErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	for range *workers {
		wg.Go(func() {
			for {
				i := int(nextJob.Add(1) - 1)
				if i >= total {
					return
				}
				if err := p.create(ctx, client, i); err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				if d := done.Add(1); d%1000 == 0 {
					fmt.Fprintf(os.Stderr, "populate: %d/%d services with their slices (%.0fs)\n", d, total, time.Since(start).Seconds())
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		fatalf("%v", firstErr)
	}
	fmt.Fprintf(os.Stderr, "populate: %d headless and %d ClusterIP services, %d EndpointSlices, %d endpoints in %d namespaces, in %.1fs\n",
		*headless, *clusterIP, total, total*(*pods), *namespaces, time.Since(start).Seconds())
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "populate: "+format+"\n", args...)
	os.Exit(1)
}

// population names everything from the service number alone, so that the
// query files and the objects agree without reading the cluster back.
// Services 0..headless-1 are headless; the rest are ClusterIP.
type population struct {
	prefix                                string
	headless, clusterIP, namespaces, pods int
}

func (p *population) namespace(n int) string { return fmt.Sprintf("%s-%02d", p.prefix, n) }

// service returns the namespace and name of service i.
func (p *population) service(i int) (ns, name string) {
	if i < p.headless {
		return p.namespace(i % p.namespaces), fmt.Sprintf("sts-%05d", i)
	}
	j := i - p.headless
	return p.namespace(j % p.namespaces), fmt.Sprintf("deploy-%05d", j)
}

// podIP is the address of pod k (0..pods-1) of service i: consecutive addresses
// from 10.128.0.0/9, skipping those ending in .0 and .255.
func (p *population) podIP(i, k int) netip.Addr {
	n := i*p.pods + k
	n = n/254*256 + n%254 + 1
	base := uint32(10)<<24 | 128<<16
	v := base + uint32(n)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// suffix mimics the five random characters of a generated name, derived
// from the service number so that reruns create the same objects.
func suffix(i int) string {
	const alphabet = "bcdfghjklmnpqrstvwxz2456789"
	var sb strings.Builder
	x := uint32(i)*2654435761 + 12345
	for range 5 {
		sb.WriteByte(alphabet[x%uint32(len(alphabet))])
		x /= uint32(len(alphabet))
		x = x*1103515245 + 12345
	}
	return sb.String()
}

func (p *population) create(ctx context.Context, client kubernetes.Interface, i int) error {
	ns, name := p.service(i)
	isHeadless := i < p.headless
	portName, targetPort := "web", int32(8080)
	if !isHeadless {
		portName = "http"
	}
	svc := &core.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": name}},
		Spec: core.ServiceSpec{
			Selector: map[string]string{"app": name},
			Ports: []core.ServicePort{{
				Name: portName, Protocol: core.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(targetPort),
			}},
		},
	}
	if isHeadless {
		svc.Spec.ClusterIP = core.ClusterIPNone
		svc.Spec.PublishNotReadyAddresses = false
	}
	created, err := client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{})
	switch {
	case apierrors.IsAlreadyExists(err):
		if created, err = client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
			return fmt.Errorf("getting service %s/%s: %w", ns, name, err)
		}
	case err != nil:
		return fmt.Errorf("creating service %s/%s: %w", ns, name, err)
	}

	tcp := core.ProtocolTCP
	appProtocol := "http"
	labels := map[string]string{
		discovery.LabelServiceName: name,
		discovery.LabelManagedBy:   controllerName,
		"app":                      name,
	}
	if isHeadless {
		labels[core.IsHeadlessService] = ""
	}
	slice := &discovery.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name + "-" + suffix(i),
			Namespace:   ns,
			Labels:      labels,
			Annotations: map[string]string{core.EndpointsLastChangeTriggerTime: time.Now().UTC().Format(time.RFC3339Nano)},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "Service", Name: name, UID: created.UID,
				Controller: ptr(true), BlockOwnerDeletion: ptr(true),
			}},
		},
		AddressType: discovery.AddressTypeIPv4,
		Ports:       []discovery.EndpointPort{{Name: ptr(portName), Protocol: &tcp, Port: ptr(targetPort), AppProtocol: &appProtocol}},
	}
	for k := range p.pods {
		pod := fmt.Sprintf("%s-%d", name, k)
		ep := discovery.Endpoint{
			Addresses: []string{p.podIP(i, k).String()},
			Conditions: discovery.EndpointConditions{
				Ready: ptr(true), Serving: ptr(true), Terminating: ptr(false),
			},
			TargetRef: &core.ObjectReference{Kind: "Pod", Namespace: ns, Name: pod},
			NodeName:  ptr(fmt.Sprintf("node-%02d", (i+k)%50)),
			Zone:      ptr(fmt.Sprintf("zone-%c", 'a'+(i+k)%3)),
		}
		if isHeadless {
			ep.Hostname = ptr(pod) // a StatefulSet pod's hostname is its name
		} else {
			ep.TargetRef.Name = fmt.Sprintf("%s-7d9f8c6b5-%s", name, suffix(i*p.pods+k))
		}
		slice.Endpoints = append(slice.Endpoints, ep)
	}
	_, err = client.DiscoveryV1().EndpointSlices(ns).Create(ctx, slice, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating slice %s/%s: %w", ns, slice.Name, err)
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

// writeNames writes the query files for the headless services.
func (p *population) writeNames(dir string) error {
	if p.headless == 0 {
		return errors.New("-names-dir needs at least one headless service")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	files := map[string]*strings.Builder{}
	kinds := []string{"svc-a", "pod-a", "srv", "ptr", "nx"}
	for _, k := range append(kinds, "mix") {
		files[k] = &strings.Builder{}
	}
	add := func(kind, name, qtype string) {
		line := name + " " + qtype + "\n"
		files[kind].WriteString(line)
		files["mix"].WriteString(line)
	}
	for i := range p.headless {
		ns, name := p.service(i)
		svc := name + "." + ns + ".svc." + zone + "."
		add("svc-a", svc, "A")
		add("srv", "_web._tcp."+svc, "SRV")
		add("nx", fmt.Sprintf("nosuch-%05d.%s.svc.%s.", i, ns, zone), "A")
		for k := range p.pods {
			add("pod-a", fmt.Sprintf("%s-%d.%s", name, k, svc), "A")
			add("ptr", reverseName(p.podIP(i, k)), "PTR")
		}
	}
	for kind, b := range files {
		if err := os.WriteFile(filepath.Join(dir, kind+".txt"), []byte(b.String()), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func reverseName(ip netip.Addr) string {
	b := ip.As4()
	return fmt.Sprintf("%d.%d.%d.%d.in-addr.arpa.", b[3], b[2], b[1], b[0])
}
