// Command kube-apply applies YAML files to the cluster of a kubeconfig with
// server-side apply (the demo has no kubectl): kube-apply KUBECONFIG FILE...
package main

import (
	"context"
	"fmt"
	"os"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/headlessdns/headless/test/kubeapply"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: kube-apply KUBECONFIG FILE...")
		os.Exit(2)
	}
	rc, err := clientcmd.BuildConfigFromFlags("", os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "kube-apply:", err)
		os.Exit(1)
	}
	applied, err := kubeapply.Files(context.Background(), rc, os.Args[2:]...)
	for _, a := range applied {
		fmt.Println("applied", a)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "kube-apply:", err)
		os.Exit(1)
	}
}
