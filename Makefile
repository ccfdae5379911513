# autopilot: run `make help` for the targets.
SHELL := /bin/bash
GO ?= go
BIN := bin/autopilot
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/autopilot/autopilot/internal/cli.Version=$(VERSION)
TEST_FLAGS ?= -race -count=1 -timeout 20m
PKGS ?= ./...

.PHONY: help build test bench lint fuzz consul demo demo-stop containers clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

# bin/autopilot is built as the container image ships it (examples/Dockerfile):
# static (no dynamic loader to run before main: about 2 ms of start-to-exec,
# issue 13) and without the symbol table and DWARF (stack traces and pprof
# keep working from the pclntab).
build: ## build bin/autopilot (static, as shipped)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w $(LDFLAGS)' -o $(BIN) ./cmd/autopilot

consul: ## build (once) and print the Consul test binary
	@scripts/consul-bin.sh

test: ## install what the tests need if missing, then run every test (race detector on) against real Consul, nginx and HAProxy
	scripts/test-deps.sh
	CONSUL_BIN=$$(scripts/consul-bin.sh) CONSUL_TEMPLATE_BIN=$$(scripts/consul-template-bin.sh) $(GO) test $(TEST_FLAGS) $(PKGS)

bench: build ## print benchmark tables (render engine, propagation, autopilot vs consul-template)
	CONSUL_BIN=$$(scripts/consul-bin.sh) $(GO) test -run '^$$' -bench . -benchmem ./render/ ./internal/consul/ ./supervisor/
	CONSUL_BIN=$$(scripts/consul-bin.sh) $(GO) test -run '^$$' -bench BenchmarkScaleEvents -benchtime 1x ./internal/haproxy/
	@rm -f bench/points.json
	@if [ -d bench ]; then CONSUL_BIN=$$(scripts/consul-bin.sh) $(GO) run ./bench -points bench/points.json $(BENCH_ARGS); fi
	@if [ -s bench/points.json ]; then cd bench/plot && $(GO) run . -in ../points.json -out ../../docs/scale.svg && echo "plot: docs/scale.svg"; fi

lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

fuzz: ## run each fuzz target for 20s
	$(GO) test -run '^$$' -fuzz FuzzParseService -fuzztime 20s ./internal/dep/
	$(GO) test -run '^$$' -fuzz FuzzDecoder -fuzztime 20s ./internal/dep/
	$(GO) test -run '^$$' -fuzz FuzzMemo -fuzztime 20s ./render/
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 20s ./internal/fixture/
	$(GO) test -run '^$$' -fuzz FuzzParseHCL -fuzztime 20s ./internal/ctconfig/
	$(GO) test -run '^$$' -fuzz FuzzParseFlags -fuzztime 20s ./internal/ctconfig/
	$(GO) test -run '^$$' -fuzz FuzzParseConfig -fuzztime 20s ./internal/haproxy/
	$(GO) test -run '^$$' -fuzz FuzzParseState -fuzztime 20s ./internal/haproxy/
	$(GO) test -run '^$$' -fuzz FuzzBodies -fuzztime 20s ./internal/control/
	$(GO) test -run '^$$' -fuzz FuzzJSON5 -fuzztime 20s ./internal/jsonpos/
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 20s ./supervisor/config/

demo: build ## run the demo stack (Consul, customers, sales, nginx) on loopback
	examples/demo.sh

demo-stop: ## stop everything the demo started
	examples/demo.sh stop

containers: ## build the example images, run examples/docker-compose.yml with podman, test it, remove it
	scripts/containers.sh

clean:
	rm -rf bin
