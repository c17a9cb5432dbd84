package benchkit

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Testenv is one running kube-testenv.
type Testenv struct {
	*Proc
	Binary     string
	Dir        string   // its state directory
	Args       []string // its flags besides -dir
	ErrLog     string   // where its own messages go
	Kubeconfig string   // admin
	Config     *rest.Config
	Client     kubernetes.Interface
}

// StartTestenv starts kube-testenv on dir with args and waits until it
// prints its kubeconfig (at most timeout). Its messages go to errLog.
func StartTestenv(ctx context.Context, binary, dir, errLog string, timeout time.Duration, args ...string) (*Testenv, error) {
	t := &Testenv{Binary: binary, Dir: dir, Args: args, ErrLog: errLog}
	return t, t.Start(ctx, timeout)
}

// Start starts (or starts again, on the same state directory) kube-testenv.
func (t *Testenv) Start(ctx context.Context, timeout time.Duration) error {
	cmd := exec.Command(t.Binary, append([]string{"-dir", t.Dir}, t.Args...)...)
	errLog, err := os.OpenFile(t.ErrLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer errLog.Close()
	cmd.Stderr = errLog
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	stdin, err := cmd.StdinPipe() // closing it stops kube-testenv
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	t.Proc = &Proc{Name: "kube-testenv", Cmd: cmd, Done: make(chan struct{}), Stdin: stdin}
	if err := t.Proc.Start(); err != nil {
		return err
	}
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- strings.TrimSpace(l)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	t.Kubeconfig = ""
	select {
	case t.Kubeconfig = <-line:
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(timeout):
	}
	if t.Kubeconfig == "" {
		return fmt.Errorf("kube-testenv did not become ready:\n%s\n%s", Tail(t.ErrLog, 20), Tail(filepath.Join(t.Dir, "kube-testenv.log"), 20))
	}
	if t.Config, err = clientcmd.BuildConfigFromFlags("", t.Kubeconfig); err != nil {
		return err
	}
	t.Config.QPS, t.Config.Burst = 1000, 1000
	t.Client, err = kubernetes.NewForConfig(t.Config)
	return err
}
