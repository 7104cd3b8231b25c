# yedge — build, test and run targets. `make setup` then `make test` take a
# fresh Debian 12 machine to green tests.
GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION  ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -s -w -X main.version=$(VERSION) -X main.revision=$(REVISION)
PKGS      := ./...
SHARED    ?= ../shared

.PHONY: setup build test test-short vet fmt-check tidy-check lint demo eval clean race fuzz-ci k8s-test install-test fleet-test bench bench-pipeline bench-footprint accuracy-rawhead

setup:
	./scripts/setup.sh

# Where build and cross-arm64 write the binary (make dist stamps and places
# its own).
YEDGE_BIN       ?= bin/yedge
YEDGE_BIN_ARM64 ?= bin/yedge-linux-arm64

# Debian's hardening flags (dpkg-buildflags) for the cgo parts (gocv):
# fortified libc calls, stack protector, full RELRO; the binary is PIE.
# Exported, so that go test, vet and lint build gocv with the same flags
# as the binary and share its build cache.
HARDEN_CFLAGS  := -O2 -g -D_FORTIFY_SOURCE=2 -fstack-protector-strong
HARDEN_LDFLAGS := -Wl,-z,relro -Wl,-z,now
export CGO_CFLAGS   ?= $(HARDEN_CFLAGS)
export CGO_CXXFLAGS ?= $(HARDEN_CFLAGS)
export CGO_LDFLAGS  ?= $(HARDEN_LDFLAGS)

build:
	$(GO) build -trimpath -buildmode=pie -ldflags '$(LDFLAGS)' -o $(YEDGE_BIN) ./cmd/yedge

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

# go.mod and go.sum are what `go mod tidy` would write (direct requires are
# not marked // indirect, no stale sums); prints the diff and fails otherwise.
tidy-check:
	$(GO) mod tidy -diff

# golangci-lint v2, pinned and installed into bin/tools by scripts/setup.sh
# (kept out of go.mod); configuration in .golangci.yml.
GOLANGCI_LINT ?= bin/tools/golangci-lint

lint:
	@test -x $(GOLANGCI_LINT) || { echo "$(GOLANGCI_LINT) missing: run make setup"; exit 1; }
	$(GOLANGCI_LINT) run $(PKGS)

test: tidy-check fmt-check vet lint build
	$(GO) test -count=1 -timeout 30m $(PKGS)
	$(MAKE) k8s-test
	$(MAKE) install-test
	$(MAKE) race
	$(MAKE) fuzz-ci
	$(MAKE) soak

test-short:
	$(GO) test -short -count=1 $(PKGS)
	$(MAKE) k8s-test

# The Kubernetes manifests (deploy/kubernetes), rendered with kustomize and
# decoded strictly into the API types: a nested module, so k8s.io/api and
# kustomize stay out of yedge's module and binary (under 1 s once built).
k8s-test:
	cd deploy/kubernetes/manifesttest && $(GO) vet ./... && $(GO) test -count=1 ./...

# The release files installed and run (deploy/install_test.go,
# arm64_test.go, deploy/image): make dist from the working tree, then the
# .debs' contents and lintian's report, the amd64 .deb installed, upgraded
# and purged in a clean Debian 12 root with the daemon run from it, the
# arm64 build under QEMU against amd64, and the image's config, layers and
# roots (podman load, ctr images import). Needs root.
install-test:
	DIST_DIRTY=1 scripts/dist.sh
	YEDGE_DIST=$(CURDIR)/dist $(GO) test -count=1 -timeout 60m -v -run '^(TestDebPackages|TestLintian|TestInstallAmd64|TestImageRootServes|TestArm64)$$' ./deploy
	cd deploy/image && $(GO) vet ./... && YEDGE_DIST=$(CURDIR)/dist $(GO) test -count=1 -timeout 20m -v ./...

# The fleet on loopback alone (deploy/fleettest, about 1 minute; part of
# make test): 3 daemons, 3 Prometheus agents, 1 central Prometheus.
fleet-test:
	$(GO) test -count=1 -timeout 5m -v -run TestFleet ./deploy/fleettest

# The concurrent packages under the race detector. pipeline runs -short:
# that skips only TestEvalMatchesReference, sequential accuracy work that the
# plain test run covers (150s under -race). serve runs in full, as its
# in-process daemon tests (TestRace*, TestFault*) exist for -race (about
# 2 min), and on its own: its load tests have deadlines that a parallel
# quant run starves on 2 cores.
race:
	$(GO) test -race -short -count=1 ./pipeline
	$(GO) test -race -count=1 ./serve
	$(GO) test -race -count=1 ./sinks ./source ./quant ./onnxrt

# Every fuzz target, one after another (a fuzzer uses every core). Seeds:
# the f.Add calls and testdata/fuzz/<FuzzName>/ of each package; a crash is
# written there too. Each target runs for a number of executions, not a
# duration: with a duration, Go 1.26's fuzz coordinator can fail a clean run
# with "context deadline exceeded" at the deadline (golang/go#75804, fixed
# in Go 1.27; seen here on FuzzGraphEdit). The counts are about 20 s of each
# target on this machine type. Longer runs: make fuzz-ci FUZZTIME=10m (or
# FUZZTIME=5000000x) for every target. FUZZMINTIME bounds the minimization
# of each new input (go test's default, 60s, stalls a short run).
FUZZTIME    ?=
FUZZMINTIME ?= 5s
fuzz = $(GO) test -run '^$$' -fuzz '^$(1)$$' -fuzztime $(or $(FUZZTIME),$(3)) -fuzzminimizetime $(FUZZMINTIME) $(2)

fuzz-ci:
	$(call fuzz,FuzzParse,./onnx,300000x)
	$(call fuzz,FuzzParseLabels,./eval,500000x)
	$(call fuzz,FuzzParseCache,./quant,250000x)
	$(call fuzz,FuzzGraphEdit,./quant,300000x)
	$(call fuzz,FuzzDecode,./postprocess,800000x)
	$(call fuzz,FuzzParse,./config,80000x)

# The main job: detection on the shared video with the FP32 model.
demo: build
	bin/yedge detect --model $(SHARED)/models/yolov5n.onnx --source $(SHARED)/media/vtest.avi --max-frames 100 --out out/detections.jsonl --save out/frames

eval: build
	bin/yedge eval --model $(SHARED)/models/yolov5n.onnx --data $(SHARED)/datasets/coco-val128

bench:
	$(GO) test -run '^$$' -bench . -benchtime 50x ./preprocess ./postprocess ./pipeline

# The pipeline's figures side by side in one run (README "Performance").
bench-pipeline: build
	scripts/bench-pipeline.sh

# The daemon's resident memory with and without the FP32 shadow, and its
# time to the first frame (README "Footprint").
bench-footprint: build
	scripts/footprint.sh

# mAP of the raw-head decode vs the full graph and of the head placements.
accuracy-rawhead: build
	scripts/accuracy-rawhead.sh

clean:
	rm -rf bin out dist build/dist

# --- Cross-building for arm64 (Jetson); see deploy/JETSON.md ---------------
# cross-arm64-deps unpacks the arm64 closure of libopencv-dev into a sysroot
# folder (git-ignored build/) with apt-get download + dpkg -x, so the host's
# amd64 libopencv-dev stays installed (the arm64 -dev packages are not all
# Multi-Arch: same and would replace it). To link against a Jetson's own
# libraries instead, copy its root file system and pass
# ARM64_SYSROOT=/path/to/rootfs (and ARM64_PKG_CONFIG_PATH if its opencv4.pc
# lives elsewhere, e.g. usr/local/lib/pkgconfig for OpenCV built from source).
ARM64_SYSROOT_DEFAULT := $(CURDIR)/build/sysroot-arm64
ARM64_SYSROOT         ?= $(ARM64_SYSROOT_DEFAULT)
ARM64_PKG_CONFIG_PATH ?= $(ARM64_SYSROOT)/usr/local/lib/pkgconfig:$(ARM64_SYSROOT)/usr/lib/aarch64-linux-gnu/pkgconfig:$(ARM64_SYSROOT)/usr/share/pkgconfig
ARM64_CGO_FLAGS       := $(HARDEN_CFLAGS) --sysroot=$(ARM64_SYSROOT)

.PHONY: cross-arm64-deps cross-arm64 dist

# The release files of this commit (scripts/dist.sh): the .debs for amd64
# and arm64, the OCI image of both, lintian's report and SHA256SUMS, in dist/.
dist: $(ARM64_SYSROOT_DEFAULT)/.complete
	scripts/dist.sh

cross-arm64-deps:
	./deploy/sysroot-arm64.sh $(ARM64_SYSROOT_DEFAULT)

$(ARM64_SYSROOT_DEFAULT)/.complete:
	./deploy/sysroot-arm64.sh $(ARM64_SYSROOT_DEFAULT)

cross-arm64: $(if $(filter $(ARM64_SYSROOT_DEFAULT),$(ARM64_SYSROOT)),$(ARM64_SYSROOT_DEFAULT)/.complete)
	PKG_CONFIG_SYSROOT_DIR='$(ARM64_SYSROOT)' PKG_CONFIG_LIBDIR='$(ARM64_PKG_CONFIG_PATH)' \
	CGO_ENABLED=1 GOOS=linux GOARCH=arm64 CC=aarch64-linux-gnu-gcc CXX=aarch64-linux-gnu-g++ \
	CGO_CFLAGS='$(ARM64_CGO_FLAGS)' CGO_CXXFLAGS='$(ARM64_CGO_FLAGS)' \
	CGO_LDFLAGS='-g $(HARDEN_LDFLAGS) --sysroot=$(ARM64_SYSROOT) -Wl,-rpath-link,$(ARM64_SYSROOT)/usr/lib/aarch64-linux-gnu -Wl,-rpath-link,$(ARM64_SYSROOT)/lib/aarch64-linux-gnu' \
	$(GO) build -trimpath -buildmode=pie -ldflags '$(LDFLAGS)' -o $(YEDGE_BIN_ARM64) ./cmd/yedge

# Bounded soak of the daemon in-process (serve/soak_test.go): 2,000 int8
# frames, RSS growth from frame 500 to 2,000 under 64 MiB, and no gocv Mat,
# goroutine or file descriptor left once Run has returned. The matprofile tag
# turns on gocv's count of live Mats. Under 4 minutes on 2 busy cores.
# TestWebUIEndpoints runs there too: the web view's drawing and encoding
# (with viewers) leave no Mat either; so does the letterbox
# (preprocess.TestLetterboxerMats, every path and change of geometry).
.PHONY: soak
soak:
	$(GO) test -tags matprofile -run 'Soak|TestWebUIEndpoints' -count=1 -timeout 15m -v ./serve
	$(GO) test -tags matprofile -run TestLetterboxerMats -count=1 ./preprocess
