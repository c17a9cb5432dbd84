package benchkit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Locate finds the repository root, and its test module, from the working
// directory.
func Locate() (root, test string, err error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "cmd", "coredns")); err == nil {
			if _, err := os.Stat(filepath.Join(d, "test", "testenv.sh")); err == nil {
				return d, filepath.Join(d, "test"), nil
			}
		}
		if filepath.Dir(d) == d {
			return "", "", fmt.Errorf("run from inside the headless repository (no cmd/coredns and test/testenv.sh above %s)", dir)
		}
	}
}

// Tools makes sure dnsperf and taskset exist (installing dnsperf with apt
// when running as root) and picks two CPUs: one for the DNS server under
// test, one for the load generator (the same one on a one-CPU machine).
func Tools() (cpuServer, cpuLoad string, err error) {
	if _, err := exec.LookPath("dnsperf"); err != nil {
		if os.Geteuid() != 0 {
			return "", "", errors.New("dnsperf is missing: install it (Debian/Ubuntu: apt-get install dnsperf) or run as root to have it installed")
		}
		if _, err := exec.LookPath("apt-get"); err != nil {
			return "", "", errors.New("dnsperf is missing and there is no apt-get to install it with")
		}
		Logf("installing dnsperf with apt-get")
		for _, args := range [][]string{{"update", "-qq"}, {"install", "-y", "-qq", "dnsperf"}} {
			cmd := exec.Command("apt-get", args...)
			cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
			if out, err := cmd.CombinedOutput(); err != nil {
				return "", "", fmt.Errorf("apt-get %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		}
		if _, err := exec.LookPath("dnsperf"); err != nil {
			return "", "", errors.New("dnsperf still missing after apt-get install dnsperf")
		}
	}
	if _, err := exec.LookPath("taskset"); err != nil {
		return "", "", errors.New("taskset is missing (Debian: util-linux)")
	}
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return "", "", err
	}
	var cpus []int
	for i := range 1024 {
		if set.IsSet(i) {
			cpus = append(cpus, i)
		}
	}
	switch {
	case len(cpus) == 0:
		return "", "", errors.New("no CPU in this process's affinity mask")
	case len(cpus) == 1:
		Logf("warning: one CPU only: the DNS server and dnsperf share CPU %d", cpus[0])
		return strconv.Itoa(cpus[0]), strconv.Itoa(cpus[0]), nil
	default:
		return strconv.Itoa(cpus[0]), strconv.Itoa(cpus[1]), nil
	}
}

// GoCmd runs the go command in dir, its output on stderr.
func GoCmd(ctx context.Context, dir string, args ...string) error {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd.Run()
}

// TestenvBinaries runs test/testenv.sh for the named binaries (kube-testenv,
// kwok, kubectl) and returns their paths in that order. Cold builds show
// their progress on stderr.
func TestenvBinaries(ctx context.Context, test string, names ...string) ([]string, error) {
	cmd := exec.CommandContext(ctx, "bash", append([]string{filepath.Join(test, "testenv.sh")}, names...)...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("testenv.sh %s: %w", strings.Join(names, " "), err)
	}
	paths := strings.Fields(string(out))
	if len(paths) != len(names) {
		return nil, fmt.Errorf("testenv.sh %s printed %q", strings.Join(names, " "), out)
	}
	return paths, nil
}
