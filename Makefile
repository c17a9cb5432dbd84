# headless: the CoreDNS plugin, its custom CoreDNS build and its tests.
#   make demo   local cluster + the article's examples + CoreDNS on 127.0.0.1:1053
#   make test   everything CI runs: lint, unit tests with -race, short fuzzing, end-to-end
#   make fuzz   each fuzz target for FUZZTIME (default 60s)
GO          ?= go
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: all build demo test deps lint unit fuzz fuzz-ci e2e bench scale clean

all: build

build:
	$(GO) build -o bin/coredns ./cmd/coredns

demo:
	@bash test/demo.sh

test: deps lint unit fuzz-ci e2e

# The Debian packages the tests use (installed when missing, as root): dig,
# ip and netns, ISC BIND (the zone transfer test's secondary), busybox
# (its nslookup), python3 (glibc's getaddrinfo, as the article calls it).
deps:
	@bash -c '. test/lib.sh && ensure_tools dig:dnsutils ip:iproute2 named:bind9 busybox:busybox python3:python3'

lint:
	@echo "== gofmt, go vet, staticcheck"
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
		if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet ./...
	cd test && $(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	cd test && $(GO) run $(STATICCHECK) ./...

# The race detector runs on the plugin's package; cmd/coredns is CoreDNS's
# main with the plugin list, and building every stock plugin's dependencies
# (cloud SDKs among them) once more with -race would double a cold run.
unit:
	@echo "== unit tests (race detector on the plugin)"
	$(GO) test -race -count=1 .
	$(GO) test -count=1 ./cmd/...

# Each fuzz target in turn (go test fuzzes one at a time), from the seeds in
# testdata/fuzz plus what earlier runs found (kept in the Go build cache).
FUZZ_TARGETS := FuzzServeDNS FuzzParse FuzzMatchZone FuzzParseReverseName
FUZZTIME     ?= 60s

fuzz:
	@for t in $(FUZZ_TARGETS); do \
		echo "== $$t for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) . || exit 1; \
	done

# The short run CI does: 10s each.
fuzz-ci:
	@$(MAKE) --no-print-directory fuzz FUZZTIME=10s

# Starts a small real cluster (test/kube-testenv -cluster: etcd, apiserver,
# controller-manager, scheduler, kwok nodes; binaries built once by
# test/testenv.sh and cached in ~/.cache/headless), builds and runs
# cmd/coredns, and queries it with miekg/dns, dig, Go's resolver and grpc-go.
# The cluster's binaries are built first, so that a cold build shows its
# progress (go test holds a package's output until it ends).
e2e:
	@echo "== end-to-end tests"
	@bash test/testenv.sh all >/dev/null
	cd test && $(GO) test -count=1 -v -timeout 20m ./...

# One table: headless vs the kubernetes plugin vs whoami, same binary, same
# real API server (throughput with dnsperf, in-process benchmarks, memory,
# update cost, programming latency, start-up). About 10-15 minutes;
# BENCH_QUICK=1 for a short run; the other BENCH_* variables are described
# in test/benchsuite/main.go.
bench:
	cd test && $(GO) run ./benchsuite

# headless swapped in for kube-dns vs the stock kubernetes plugin on a local
# cluster shaped like Kubernetes' 5,000-node load test, scaled to this
# machine: memory and its marginal cost per endpoint at two sizes, the
# relist after an API server restart, QPS on a pod's query mix, programming
# latency through a rolling update, API server load. Not part of make test.
# About 20 minutes; SCALE_QUICK=1 for a few. See test/scale/README.md.
scale:
	cd test && $(GO) run ./scale

clean:
	rm -rf bin
