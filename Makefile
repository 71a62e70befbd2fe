# edgenet: `make up` brings up the appliance with the demo, `make test` runs every test.
# Both need root on a Debian-like Linux; the Debian packages and the pinned Kubernetes
# binaries are installed/built on first use.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X edgenet.io/edgenet/internal/version.Version=$(VERSION)
# Go test flags; the e2e suite brings up its own appliance (or reuses a running one).
TESTFLAGS ?=
UP_FLAGS ?=

.PHONY: all build deps kube up down status test unit e2e lint clean generate verify bench image
all: build

deps:
	@hack/install-deps.sh

kube:
	@hack/build-kube.sh >/dev/null

# Static binaries: they run from scratch images inside the appliance.
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/edgenet ./cmd/edgenet
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o bin/testapp ./test/images/testapp
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o bin/pause ./test/images/pause
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o bin/demo-web ./cmd/demo-web

# The edgenet image for a real cluster: an OCI image layout tarball (with a Docker
# manifest.json too) for any registry client; see docs/INSTALL.md.
IMAGE ?= docker.io/edgenet/edgenet:dev
image: build
	$(GO) run ./hack/image -edgenet bin/edgenet -ref $(IMAGE) -out bin/edgenet-image.oci.tar

up: deps kube build
	bin/edgenet up $(UP_FLAGS)

down: build
	bin/edgenet down

status: build
	bin/edgenet status

# CRDs and deepcopy functions from api/v1alpha1 (controller-gen from the Go module proxy).
generate:
	hack/generate.sh

verify:
	hack/generate.sh --verify

lint: verify
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }

# Unit and integration tests (integration tests start etcd + kube-apiserver from
# bin/kube), then the e2e suite against a real appliance.
unit: deps kube build
	EDGENET_KUBE_BIN=$(CURDIR)/bin/kube $(GO) test -count=1 -p 1 $(TESTFLAGS) $$($(GO) list ./... | grep -v /test/e2e)

e2e: deps kube build
	EDGENET_BIN=$(CURDIR)/bin $(GO) test -count=1 -timeout 30m -v $(TESTFLAGS) ./test/e2e

test: lint unit e2e

# Benchmarks: Go benchmarks of the hot paths, and side-by-side runs against the peers
# on this machine, into bench/results/RESULTS.md (one run; quote ratios from one file).
RESULTS := bench/results/RESULTS.md
bench: deps kube build
	@hack/install-deps.sh bench
	mkdir -p bench/results
	@printf '# edgenet benchmark results\n\nMachine: %s, %s cores. Made by `make bench` at %s.\n' \
		"$$(uname -r)" "$$(nproc)" "$$(date -u +%FT%TZ)" > $(RESULTS)
	$(GO) run ./bench/cnibench -edgenet bin/edgenet -n 200 -out $(RESULTS)
	$(GO) run ./bench/dnsbench -edgenet bin/edgenet -out $(RESULTS)
	bin/edgenet up
	$(GO) run ./bench/podsbench -n 100 -out $(RESULTS) || { bin/edgenet down; exit 1; }
	$(GO) run ./bench/svcbench -rounds 20 -out $(RESULTS) || { bin/edgenet down; exit 1; }
	bin/edgenet down
	$(GO) run ./bench/proxybench -kube-bin bin/kube -scales 1000,10000 -changes 50 -out $(RESULTS)
	@printf '\n### LoadBalancer: create to status.loadBalancer.ingress (real apiserver), failover gap (netns, node cut off)\n\n```\n' >> $(RESULTS)
	$(GO) test -count=1 -v -run 'TestAgainstAPIServer' ./internal/lb/controller/ | grep -E 'create -> status' | sed 's/^ *//' >> $(RESULTS)
	$(GO) test -count=1 -v -run 'TestFailover' ./internal/lb/l2/ | grep -E 'failover gap' | sed 's/^ *//' >> $(RESULTS)
	@printf '```\n' >> $(RESULTS)
	@printf '\n### Go benchmarks\n\n```\n' >> $(RESULTS)
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2x ./internal/proxy/ | grep -E '^(Benchmark|ok)' >> $(RESULTS)
	$(GO) test -run '^$$' -bench . -benchmem ./internal/dns/... ./internal/lb/... ./internal/routing/ ./internal/ipam/... | grep -E '^(Benchmark|ok)' >> $(RESULTS)
	@printf '```\n' >> $(RESULTS)
	@cat $(RESULTS)

clean:
	rm -rf bin
