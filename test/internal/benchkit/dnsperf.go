package benchkit

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// DnsperfResult is what is read from dnsperf's statistics, and with
// per-query reporting (-v) the latency of every answered query.
type DnsperfResult struct {
	QPS        float64
	Sent, Lost int64
	Rcodes     map[string]int64
	// Latencies of the answered queries, in seconds (with Latencies set).
	Latencies []float32
}

// Dnsperf is one dnsperf run against 127.0.0.1:Port.
type Dnsperf struct {
	CPU      string // taskset CPU list ("" for none)
	Port     int
	DataFile string
	Duration time.Duration
	// Outstanding queries (-q); 100 when 0.
	Outstanding int
	// MaxQPS limits the rate (-Q) when not 0.
	MaxQPS int
	// Latencies asks dnsperf to report every query (-v) and keeps their
	// latencies, for percentiles.
	Latencies bool
	// Out, when set, receives dnsperf's output (without the per-query
	// lines).
	Out string
}

// Run runs dnsperf and reads its result.
func (d Dnsperf) Run(ctx context.Context) (DnsperfResult, error) {
	q := d.Outstanding
	if q == 0 {
		q = 100
	}
	args := []string{"dnsperf", "-s", "127.0.0.1", "-p", strconv.Itoa(d.Port), "-d", d.DataFile,
		"-l", strconv.Itoa(max(1, int(d.Duration/time.Second))), "-q", strconv.Itoa(q), "-t", "2", "-T", "1", "-c", "1"}
	if d.MaxQPS > 0 {
		args = append(args, "-Q", strconv.Itoa(d.MaxQPS))
	}
	if d.Latencies {
		args = append(args, "-v")
	}
	if d.CPU != "" {
		args = append([]string{"taskset", "-c", d.CPU}, args...)
	}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return DnsperfResult{}, err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return DnsperfResult{}, fmt.Errorf("dnsperf: %w", err)
	}
	var rest strings.Builder
	var lat []float32
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "> ") {
			// "> NOERROR name TYPE 0.000402", or "> T name TYPE" when lost.
			f := strings.Fields(line)
			if len(f) == 5 {
				if v, err := strconv.ParseFloat(f[4], 32); err == nil {
					lat = append(lat, float32(v))
				}
			}
			continue
		}
		rest.WriteString(line)
		rest.WriteByte('\n')
	}
	_, _ = io.Copy(io.Discard, stdout)
	err = cmd.Wait()
	if d.Out != "" {
		_ = os.WriteFile(d.Out, []byte(rest.String()), 0o644)
	}
	if err != nil {
		return DnsperfResult{}, fmt.Errorf("dnsperf: %v\n%s", err, LastLines(rest.String(), 10))
	}
	r, err := ParseDnsperf(rest.String())
	r.Latencies = lat
	return r, err
}

// ParseDnsperf reads the statistics block dnsperf prints at the end.
func ParseDnsperf(out string) (DnsperfResult, error) {
	d := DnsperfResult{Rcodes: map[string]int64{}}
	var haveQPS, haveSent bool
	for _, line := range strings.Split(out, "\n") {
		key, value, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(value)
		if len(fields) == 0 {
			continue
		}
		var err error
		switch key {
		case "Queries sent":
			d.Sent, err = strconv.ParseInt(fields[0], 10, 64)
			haveSent = true
		case "Queries lost":
			d.Lost, err = strconv.ParseInt(fields[0], 10, 64)
		case "Queries per second":
			d.QPS, err = strconv.ParseFloat(fields[0], 64)
			haveQPS = true
		case "Response codes":
			// "NOERROR 123 (99.9%), NXDOMAIN 1 (0.1%)"
			for _, part := range strings.Split(value, ",") {
				f := strings.Fields(part)
				if len(f) < 2 {
					continue
				}
				n, perr := strconv.ParseInt(f[1], 10, 64)
				if perr != nil {
					err = perr
					break
				}
				d.Rcodes[f[0]] += n
			}
		}
		if err != nil {
			return d, fmt.Errorf("dnsperf output, %q: %v", line, err)
		}
	}
	if !haveQPS || !haveSent {
		return d, fmt.Errorf("no statistics in dnsperf's output:\n%s", LastLines(out, 10))
	}
	return d, nil
}
