# headless: the CoreDNS plugin, its custom CoreDNS build and its tests.
#   make demo   local control plane + examples + CoreDNS on 127.0.0.1:1053
#   make test   everything CI runs: lint, unit tests with -race, end-to-end
GO          ?= go
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: all build demo test lint unit e2e bench loadtest clean

all: build

build:
	$(GO) build -o bin/coredns ./cmd/coredns

demo:
	@bash test/demo.sh

test: lint unit e2e

lint:
	@echo "== gofmt, go vet, staticcheck"
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
		if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet ./...
	cd test && $(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	cd test && $(GO) run $(STATICCHECK) ./...

unit:
	@echo "== unit tests (race detector on)"
	$(GO) test -race -count=1 ./...

# Starts a real kube-apiserver and etcd (test/kube-testenv), builds and runs
# cmd/coredns, and queries it with miekg/dns, dig, Go's resolver and grpc-go.
e2e:
	@echo "== end-to-end tests"
	cd test && $(GO) test -count=1 -v -timeout 20m ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem .

# Load generator against the running binary: headless and kubernetes side by side.
loadtest:
	bash test/bench.sh

clean:
	rm -rf bin
