# yedge — build, test and run targets. `make setup` then `make test` take a
# fresh Debian 12 machine to green tests.
GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
PKGS      := ./...
SHARED    ?= ../shared

.PHONY: setup build test test-short vet fmt-check lint demo eval clean

setup:
	./scripts/setup.sh

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/yedge ./cmd/yedge

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

test: fmt-check vet build
	$(GO) test -count=1 -timeout 20m $(PKGS)

test-short:
	$(GO) test -short -count=1 $(PKGS)

# The main job: detection on the shared video with the FP32 model.
demo: build
	bin/yedge detect --model $(SHARED)/models/yolov5n.onnx --source $(SHARED)/media/vtest.avi --max-frames 100 --out out/detections.jsonl --save out/frames

eval: build
	bin/yedge eval --model $(SHARED)/models/yolov5n.onnx --data $(SHARED)/datasets/coco-val128

bench:
	$(GO) test -run '^$$' -bench . -benchtime 50x ./preprocess ./postprocess ./pipeline

clean:
	rm -rf bin out
