// Command loadgen is a closed-loop DNS load generator for a server on a
// loopback address. Each of -concurrency workers owns one UDP socket and
// keeps exactly one query outstanding: it sends, waits for the reply (or
// -timeout), and sends the next. The run stops at -duration or after
// -max-queries queries, whichever comes first.
//
//	loadgen -server 127.0.0.1:1053 -names names.txt -duration 10s -concurrency 8
//	loadgen -server 127.0.0.1:1053 -name web.default.svc.cluster.local -type A
//
// A names file holds one "qname qtype" per line; blank lines and lines
// starting with # are skipped. Workers walk the list round-robin, each from
// its own offset.
//
// With -compare ADDR it sends no load: it asks every name (up to
// -compare-limit) once of -server and once of ADDR, over UDP with TCP retry
// on truncation, and prints every difference in rcode, answer, additional
// and authority (by type) sections.
//
// It only ever talks to literal loopback addresses (127.0.0.0/8, ::1), and
// refuses anything else.
package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Bounds on the flags, so that a typo cannot turn this into a flood.
const (
	maxDuration    = 10 * time.Minute
	maxConcurrency = 1024
	maxMaxQueries  = 100_000_000
)

func main() {
	var (
		server       = flag.String("server", "", "DNS server, a literal loopback IP:PORT such as 127.0.0.1:1053 (required)")
		namesFile    = flag.String("names", "", `file of "qname qtype" lines to query round-robin`)
		name         = flag.String("name", "", "the single name to query (instead of -names)")
		qtype        = flag.String("type", "A", "query type for -name")
		duration     = flag.Duration("duration", 10*time.Second, "how long to send load (at most "+maxDuration.String()+")")
		warmup       = flag.Duration("warmup", 0, "send load this long first without measuring it")
		concurrency  = flag.Int("concurrency", 8, "workers, each a UDP socket with one query outstanding")
		maxQueries   = flag.Int64("max-queries", 5_000_000, "hard bound on the queries sent in the measured run")
		timeout      = flag.Duration("timeout", 2*time.Second, "per-query timeout")
		udpSize      = flag.Int("edns", 0, "advertise this EDNS0 UDP buffer size (0: no EDNS0, 512-byte replies)")
		jsonOut      = flag.Bool("json", false, "print the result as one JSON object instead of text")
		compare      = flag.String("compare", "", "instead of load, compare the answers of -server with those of this loopback IP:PORT")
		compareLimit = flag.Int("compare-limit", 0, "with -compare, ask at most this many names (0: all)")
		freePorts    = flag.Int("free-ports", 0, "print this many ports free on 127.0.0.1 for both TCP and UDP, one a line, and exit")
		waitReady    = flag.Duration("wait", 0, "first wait up to this long for the server to answer the first name (any rcode)")
	)
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: loadgen -server 127.0.0.1:PORT (-names FILE | -name NAME [-type T]) [flags]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 0 {
		fatalf("unexpected arguments %q", flag.Args())
	}

	if *freePorts > 0 {
		ports, err := findFreePorts(*freePorts)
		if err != nil {
			fatalf("%v", err)
		}
		for _, p := range ports {
			fmt.Println(p)
		}
		return
	}

	addr, err := loopbackAddr(*server)
	if err != nil {
		fatalf("-server: %v", err)
	}
	queries, err := loadQueries(*namesFile, *name, *qtype)
	if err != nil {
		fatalf("%v", err)
	}
	for i := range queries {
		if err := queries[i].pack(*udpSize); err != nil {
			fatalf("%v", err)
		}
	}

	if *waitReady > 0 {
		if err := waitForAnswer(addr, queries[0], *waitReady); err != nil {
			fatalf("%v", err)
		}
	}

	if *compare != "" {
		other, err := loopbackAddr(*compare)
		if err != nil {
			fatalf("-compare: %v", err)
		}
		if *compareLimit > 0 && len(queries) > *compareLimit {
			queries = queries[:*compareLimit]
		}
		if err := compareServers(os.Stdout, addr, other, queries, *timeout); err != nil {
			fatalf("%v", err)
		}
		return
	}

	switch {
	case *duration <= 0 || *duration > maxDuration:
		fatalf("-duration %s: want more than 0 and at most %s", *duration, maxDuration)
	case *warmup < 0 || *warmup > maxDuration:
		fatalf("-warmup %s: want 0 to %s", *warmup, maxDuration)
	case *concurrency < 1 || *concurrency > maxConcurrency:
		fatalf("-concurrency %d: want 1 to %d", *concurrency, maxConcurrency)
	case *maxQueries < 1 || *maxQueries > maxMaxQueries:
		fatalf("-max-queries %d: want 1 to %d", *maxQueries, maxMaxQueries)
	case *timeout <= 0 || *timeout > time.Minute:
		fatalf("-timeout %s: want more than 0 and at most 1m", *timeout)
	}

	cfg := runConfig{
		addr: addr, queries: queries, concurrency: *concurrency, timeout: *timeout,
	}
	if *warmup > 0 {
		cfg.duration, cfg.maxQueries = *warmup, *maxQueries
		if _, err := run(cfg, false); err != nil {
			fatalf("warm-up: %v", err)
		}
	}
	cfg.duration, cfg.maxQueries = *duration, *maxQueries
	res, err := run(cfg, true)
	if err != nil {
		fatalf("%v", err)
	}
	res.Names = len(queries)
	if *namesFile != "" {
		res.NamesFile = *namesFile
	}
	if *jsonOut {
		enc := json.NewEncoder(os.Stdout)
		if err := enc.Encode(res); err != nil {
			fatalf("%v", err)
		}
		return
	}
	res.print(os.Stdout)
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "loadgen: "+format+"\n", args...)
	os.Exit(1)
}

// loopbackAddr accepts only a literal loopback IP and a port: this tool
// must never send traffic anywhere but this machine.
func loopbackAddr(s string) (*net.UDPAddr, error) {
	if s == "" {
		return nil, errors.New("missing; want a loopback IP:PORT such as 127.0.0.1:1053")
	}
	host, portText, err := net.SplitHostPort(s)
	if err != nil {
		return nil, fmt.Errorf("%q: %v", s, err)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return nil, fmt.Errorf("%q: the host must be a literal loopback IP address, not a name", s)
	}
	ip = ip.Unmap()
	if !ip.IsLoopback() || ip.Zone() != "" {
		return nil, fmt.Errorf("%q: refusing to send to %s, which is not a loopback address", s, ip)
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil || port == 0 {
		return nil, fmt.Errorf("%q: bad port %q", s, portText)
	}
	return net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port))), nil
}

// query is one question, packed once; workers copy it and set the ID.
type query struct {
	name  string
	qtype uint16
	wire  []byte
}

func (q *query) pack(udpSize int) error {
	m := new(dns.Msg)
	m.SetQuestion(q.name, q.qtype)
	if udpSize > 0 {
		m.SetEdns0(uint16(min(udpSize, 65535)), false)
	}
	wire, err := m.Pack()
	if err != nil {
		return fmt.Errorf("packing %s %s: %v", q.name, dns.TypeToString[q.qtype], err)
	}
	q.wire = wire
	return nil
}

func loadQueries(file, name, qtype string) ([]query, error) {
	switch {
	case file != "" && name != "":
		return nil, errors.New("give -names or -name, not both")
	case file == "" && name == "":
		return nil, errors.New("give -names FILE or -name NAME")
	case name != "":
		q, err := parseQuery(name, qtype)
		if err != nil {
			return nil, err
		}
		return []query{q}, nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var out []query
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 2 {
			return nil, fmt.Errorf("%s:%d: want \"qname qtype\", got %q", file, i+1, line)
		}
		q, err := parseQuery(fields[0], fields[1])
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %v", file, i+1, err)
		}
		out = append(out, q)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no names", file)
	}
	return out, nil
}

func parseQuery(name, qtype string) (query, error) {
	t, ok := dns.StringToType[strings.ToUpper(qtype)]
	if !ok {
		return query{}, fmt.Errorf("unknown query type %q", qtype)
	}
	fqdn := dns.Fqdn(name)
	if _, ok := dns.IsDomainName(fqdn); !ok {
		return query{}, fmt.Errorf("%q is not a domain name", name)
	}
	return query{name: fqdn, qtype: t}, nil
}

type runConfig struct {
	addr        *net.UDPAddr
	queries     []query
	concurrency int
	duration    time.Duration
	maxQueries  int64
	timeout     time.Duration
}

// Result is what one measured run found. Latencies are in microseconds.
type Result struct {
	Server      string            `json:"server"`
	NamesFile   string            `json:"names_file,omitempty"`
	Names       int               `json:"names"`
	Concurrency int               `json:"concurrency"`
	Seconds     float64           `json:"seconds"`
	Sent        int64             `json:"sent"`
	Answered    int64             `json:"answered"`
	QPS         float64           `json:"qps"`
	Timeouts    int64             `json:"timeouts"`
	Errors      int64             `json:"errors"`    // send or receive errors other than timeouts
	Malformed   int64             `json:"malformed"` // replies too short to hold a header
	Stale       int64             `json:"stale"`     // replies to earlier, timed-out queries
	Truncated   int64             `json:"truncated"` // answered with TC set
	NoData      int64             `json:"nodata"`    // NOERROR with an empty answer section
	Rcodes      map[string]int64  `json:"rcodes"`
	Latency     map[string]uint64 `json:"latency_us"` // p50, p90, p99, max, mean
	StopReason  string            `json:"stop_reason"`
	FirstErrors []string          `json:"first_errors,omitempty"`
}

// workerStats is one worker's tally; merged at the end, so no sharing.
type workerStats struct {
	sent, answered, timeouts, errors, malformed, stale, truncated, nodata int64
	rcodes                                                                [16]int64
	latencies                                                             []time.Duration
	firstErr                                                              error
}

// run sends load for cfg.duration or cfg.maxQueries queries. With record
// false it is a warm-up and returns nothing.
func run(cfg runConfig, record bool) (*Result, error) {
	conns := make([]*net.UDPConn, cfg.concurrency)
	for i := range conns {
		c, err := net.DialUDP("udp", nil, cfg.addr)
		if err != nil {
			for _, c := range conns[:i] {
				c.Close()
			}
			return nil, err
		}
		conns[i] = c
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()

	var budget atomic.Int64 // queries left to send
	budget.Store(cfg.maxQueries)
	stats := make([]*workerStats, cfg.concurrency) // apart, so workers share no cache line
	start := time.Now()
	deadline := start.Add(cfg.duration)
	var wg sync.WaitGroup
	for w := range cfg.concurrency {
		stats[w] = new(workerStats)
		wg.Go(func() {
			offset := w * len(cfg.queries) / cfg.concurrency
			work(conns[w], cfg, offset, deadline, &budget, stats[w], record)
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if !record {
		return nil, nil
	}

	res := &Result{
		Server:      cfg.addr.String(),
		Concurrency: cfg.concurrency,
		Seconds:     elapsed.Seconds(),
		Rcodes:      map[string]int64{},
		Latency:     map[string]uint64{},
		StopReason:  "duration",
	}
	if budget.Load() <= 0 {
		res.StopReason = "max-queries"
	}
	var all []time.Duration
	for _, s := range stats {
		res.Sent += s.sent
		res.Answered += s.answered
		res.Timeouts += s.timeouts
		res.Errors += s.errors
		res.Malformed += s.malformed
		res.Stale += s.stale
		res.Truncated += s.truncated
		res.NoData += s.nodata
		for rc, n := range s.rcodes {
			if n > 0 {
				res.Rcodes[rcodeName(rc)] += n
			}
		}
		if s.firstErr != nil && len(res.FirstErrors) < 5 {
			res.FirstErrors = append(res.FirstErrors, s.firstErr.Error())
		}
		all = append(all, s.latencies...)
	}
	res.QPS = float64(res.Answered) / elapsed.Seconds()
	if len(all) > 0 {
		slices.Sort(all)
		var sum time.Duration
		for _, d := range all {
			sum += d
		}
		us := func(d time.Duration) uint64 { return uint64(d.Microseconds()) }
		res.Latency["p50"] = us(percentile(all, 50))
		res.Latency["p90"] = us(percentile(all, 90))
		res.Latency["p99"] = us(percentile(all, 99))
		res.Latency["max"] = us(all[len(all)-1])
		res.Latency["mean"] = us(sum / time.Duration(len(all)))
	}
	return res, nil
}

// percentile is the nearest-rank percentile of sorted samples.
func percentile(sorted []time.Duration, p int) time.Duration {
	rank := (p*len(sorted) + 99) / 100 // ceil(p/100 * n)
	return sorted[max(rank, 1)-1]
}

func rcodeName(rc int) string {
	if s, ok := dns.RcodeToString[rc]; ok {
		return s
	}
	return "RCODE" + strconv.Itoa(rc)
}

// work is one worker: one query outstanding at a time on its own socket.
// Replies are checked by header only (ID, QR, rcode, TC, answer count), so
// that the generator spends as little CPU as possible.
func work(conn *net.UDPConn, cfg runConfig, next int, deadline time.Time, budget *atomic.Int64, st *workerStats, record bool) {
	out := make([]byte, 0, 512)
	in := make([]byte, 65535)
	rng := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	fail := func(err error) {
		st.errors++
		if st.firstErr == nil {
			st.firstErr = err
		}
	}
	for time.Now().Before(deadline) && budget.Add(-1) >= 0 {
		q := &cfg.queries[next]
		next = (next + 1) % len(cfg.queries)
		out = append(out[:0], q.wire...)
		id := uint16(rng.Uint32())
		binary.BigEndian.PutUint16(out, id)

		st.sent++
		sentAt := time.Now()
		if _, err := conn.Write(out); err != nil {
			fail(err)
			time.Sleep(time.Millisecond) // e.g. the server is gone: do not spin
			continue
		}
		if err := conn.SetReadDeadline(sentAt.Add(cfg.timeout)); err != nil {
			fail(err)
			continue
		}
		for {
			n, err := conn.Read(in)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					st.timeouts++
				} else {
					fail(err)
					time.Sleep(time.Millisecond)
				}
				break
			}
			if n < 12 {
				st.malformed++
				continue
			}
			if binary.BigEndian.Uint16(in) != id || in[2]&0x80 == 0 {
				st.stale++ // a late reply to an earlier query, or not a reply
				continue
			}
			rtt := time.Since(sentAt)
			st.answered++
			rcode := int(in[3] & 0x0f)
			st.rcodes[rcode]++
			if in[2]&0x02 != 0 {
				st.truncated++
			}
			if rcode == dns.RcodeSuccess && binary.BigEndian.Uint16(in[6:]) == 0 {
				st.nodata++
			}
			if record {
				st.latencies = append(st.latencies, rtt)
			}
			break
		}
	}
}

func (r *Result) print(w io.Writer) {
	names := strconv.Itoa(r.Names) + " names"
	if r.NamesFile != "" {
		names += " from " + r.NamesFile
	}
	fmt.Fprintf(w, "server %s, %s, concurrency %d, %.2fs (stopped by %s)\n", r.Server, names, r.Concurrency, r.Seconds, r.StopReason)
	fmt.Fprintf(w, "queries  sent %d, answered %d, %.0f QPS\n", r.Sent, r.Answered, r.QPS)
	fmt.Fprintf(w, "problems timeouts %d, errors %d, malformed %d, stale %d, truncated %d\n",
		r.Timeouts, r.Errors, r.Malformed, r.Stale, r.Truncated)
	var rcodes []string
	for name, n := range r.Rcodes {
		rcodes = append(rcodes, fmt.Sprintf("%s %d", name, n))
	}
	slices.Sort(rcodes)
	fmt.Fprintf(w, "rcodes   %s (NOERROR without answers: %d)\n", strings.Join(rcodes, ", "), r.NoData)
	if len(r.Latency) > 0 {
		fmt.Fprintf(w, "latency  p50 %dµs, p90 %dµs, p99 %dµs, max %dµs, mean %dµs\n",
			r.Latency["p50"], r.Latency["p90"], r.Latency["p99"], r.Latency["max"], r.Latency["mean"])
	}
	for _, e := range r.FirstErrors {
		fmt.Fprintf(w, "error    %s\n", e)
	}
}

// waitForAnswer asks q of addr until a reply comes, for up to limit.
func waitForAnswer(addr *net.UDPAddr, q query, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		_, err := exchange(addr, q, 200*time.Millisecond)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s does not answer after %s: %v", addr, limit, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// findFreePorts returns n distinct ports that are free on 127.0.0.1 for
// both TCP and UDP right now.
func findFreePorts(n int) ([]int, error) {
	if n > 100 {
		return nil, fmt.Errorf("-free-ports %d: at most 100", n)
	}
	var ports []int
	var held []io.Closer // keep them bound until all are found, so they differ
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for tries := 0; len(ports) < n; tries++ {
		if tries > 50*n {
			return nil, errors.New("cannot find free ports")
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			l.Close()
			continue
		}
		held = append(held, l, u)
		ports = append(ports, port)
	}
	return ports, nil
}

// compareServers asks each query of both servers and prints the differences.
func compareServers(w io.Writer, a, b *net.UDPAddr, queries []query, timeout time.Duration) error {
	same, differ := 0, 0
	for _, q := range queries {
		ra, err := exchange(a, q, timeout)
		if err != nil {
			return fmt.Errorf("%s %s at %s: %v", q.name, dns.TypeToString[q.qtype], a, err)
		}
		rb, err := exchange(b, q, timeout)
		if err != nil {
			return fmt.Errorf("%s %s at %s: %v", q.name, dns.TypeToString[q.qtype], b, err)
		}
		diffs := diffReplies(ra, rb)
		if len(diffs) == 0 {
			same++
			continue
		}
		differ++
		fmt.Fprintf(w, "DIFF %s %s\n", q.name, dns.TypeToString[q.qtype])
		for _, d := range diffs {
			fmt.Fprintf(w, "     %s\n", d)
		}
	}
	fmt.Fprintf(w, "compared %d names: %d identical, %d differ (first %s, second %s)\n", len(queries), same, differ, a, b)
	return nil
}

func exchange(addr *net.UDPAddr, q query, timeout time.Duration) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(q.name, q.qtype)
	c := &dns.Client{Net: "udp", Timeout: timeout}
	r, _, err := c.Exchange(m, addr.String())
	if err == nil && r.Truncated {
		c.Net = "tcp"
		r, _, err = c.Exchange(m, addr.String())
	}
	return r, err
}

// diffReplies compares rcode, the AA flag, the answer and additional
// sections as sets of records (TTLs included), and the authority section by
// record type only (SOA serials and names are each server's own).
func diffReplies(a, b *dns.Msg) []string {
	var out []string
	if a.Rcode != b.Rcode {
		out = append(out, fmt.Sprintf("rcode: %s vs %s", rcodeName(a.Rcode), rcodeName(b.Rcode)))
	}
	if a.Authoritative != b.Authoritative {
		out = append(out, fmt.Sprintf("authoritative: %v vs %v", a.Authoritative, b.Authoritative))
	}
	out = append(out, diffSets("answer", rrStrings(a.Answer), rrStrings(b.Answer))...)
	out = append(out, diffSets("additional", rrStrings(a.Extra), rrStrings(b.Extra))...)
	out = append(out, diffSets("authority types", rrTypes(a.Ns), rrTypes(b.Ns))...)
	return out
}

func rrStrings(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		if rr.Header().Rrtype == dns.TypeOPT {
			continue
		}
		rr = dns.Copy(rr)
		rr.Header().Name = strings.ToLower(rr.Header().Name)
		out = append(out, strings.ReplaceAll(rr.String(), "\t", " "))
	}
	slices.Sort(out)
	return out
}

func rrTypes(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		out = append(out, dns.TypeToString[rr.Header().Rrtype])
	}
	slices.Sort(out)
	return out
}

func diffSets(section string, a, b []string) []string {
	var out []string
	for _, s := range a {
		if !slices.Contains(b, s) {
			out = append(out, fmt.Sprintf("%s only from first:  %s", section, s))
		}
	}
	for _, s := range b {
		if !slices.Contains(a, s) {
			out = append(out, fmt.Sprintf("%s only from second: %s", section, s))
		}
	}
	if len(out) == 0 && len(a) != len(b) {
		out = append(out, fmt.Sprintf("%s: %d vs %d records (duplicates)", section, len(a), len(b)))
	}
	return out
}
