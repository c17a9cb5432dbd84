// Package benchkit is what make bench (test/benchsuite) and make scale
// (test/scale) share: child processes that are always stopped, memory
// readings, dnsperf runs, the headless query mix and its expected answers,
// kube-testenv start-up, statistics and table cells.
package benchkit

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is one child process the suite started. Every Proc is registered
// until it is stopped, so that StopAll can end whatever is left on any exit.
type Proc struct {
	Name string
	Cmd  *exec.Cmd
	Done chan struct{} // closed once the process has exited and been reaped
	Err  error         // its exit status, valid after Done
	// stdin, when set, is the write end of the child's stdin: closing it
	// asks kube-testenv to shut down.
	Stdin io.WriteCloser
}

var (
	procsMu sync.Mutex
	procs   []*Proc
)

// StartProc starts a command with its output appended to logPath. The child
// gets SIGTERM if the suite dies without cleaning up.
func StartProc(name, logPath string, env []string, args ...string) (*Proc, error) {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), env...)
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	p := &Proc{Name: name, Cmd: cmd, Done: make(chan struct{})}
	return p, p.Start()
}

func (p *Proc) Start() error {
	if err := p.Cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", p.Name, err)
	}
	procsMu.Lock()
	procs = append(procs, p)
	procsMu.Unlock()
	go func() {
		p.Err = p.Cmd.Wait()
		close(p.Done)
	}()
	return nil
}

func (p *Proc) PID() int { return p.Cmd.Process.Pid }

func (p *Proc) Exited() bool {
	select {
	case <-p.Done:
		return true
	default:
		return false
	}
}

// stop asks the process to exit (stdin closed, SIGTERM), gives it 10
// seconds, then kills it. The process is reaped, so its PID is never
// signalled again.
func (p *Proc) Stop() {
	procsMu.Lock()
	for i, q := range procs {
		if q == p {
			procs = append(procs[:i], procs[i+1:]...)
			break
		}
	}
	procsMu.Unlock()
	if p.Stdin != nil {
		_ = p.Stdin.Close()
	}
	if !p.Exited() {
		_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-p.Done:
	case <-time.After(10 * time.Second):
		_ = p.Cmd.Process.Kill()
		<-p.Done
	}
}

// StopAll stops every process still running, the last started first.
func StopAll() {
	for {
		procsMu.Lock()
		if len(procs) == 0 {
			procsMu.Unlock()
			return
		}
		p := procs[len(procs)-1]
		procsMu.Unlock()
		p.Stop()
	}
}

// RSSKiB is the resident set size of a process, from /proc/PID/status.
func RSSKiB(pid int) (int64, error) { return StatusKiB(pid, "VmRSS") }

// StatusKiB reads one "Vm...:   N kB" line of /proc/PID/status (VmRSS,
// VmHWM, ...).
func StatusKiB(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s line in /proc/%d/status", field, pid)
}

// ResetPeakRSS sets a process's VmHWM back to its current RSS (Linux 4.0
// and later: "5" written to /proc/PID/clear_refs), so that a later VmHWM
// is the peak since now.
func ResetPeakRSS(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// FreePort returns a port free for both UDP and TCP on 127.0.0.1.
func FreePort() (int, error) {
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err == nil {
			u.Close()
			return port, nil
		}
	}
	return 0, errors.New("no port free for both TCP and UDP on 127.0.0.1")
}

// tail returns the last n lines of a file, for error messages.
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
