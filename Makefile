# simpletuner (Go). The two commands a new user needs: `make run` and `make test`.
# Everything a target needs beyond Go itself is fetched by the target.

GO       ?= go
BIN      := bin
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse --short HEAD 2>/dev/null)
LDFLAGS  := -s -w -X simpletuner/internal/buildinfo.Version=$(VERSION) -X simpletuner/internal/buildinfo.Commit=$(COMMIT)
GOTEST_FLAGS ?= -count=1 -timeout 15m
ARGS     ?=
# The daemon reads GPUs through NVIDIA's go-nvml, which is cgo: the default daemon build,
# its tests and go vet need a C compiler (cgo-deps installs one). go-nvml's bundled nvml.h
# marks functions we never call as deprecated; without -Wno-deprecated-declarations every
# fresh build prints pages of warnings about them. Only the daemon's lines use these
# flags (the CUDA trainer's build keeps its own, from scripts/cuda-env.sh).
CGO_DAEMON := CGO_ENABLED=1 CGO_CFLAGS='$(or $(CGO_CFLAGS),-O2 -g) -Wno-deprecated-declarations'

.PHONY: all build build-static cgo-deps run test test-short lint openapi-lint fuzz generate bench clean help parity bench-train torch-deps \
	bench-conv bench-vae bench-t5 bench-pixart bench-dispatch kernels kernels-emu build-cuda vet-cuda gpu-check-bundle

all: build

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort

build: cgo-deps ## build bin/simpletuner (cgo: NVML through go-nvml) and bin/simpletuner-trainer
	$(CGO_DAEMON) $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/simpletuner ./cmd/simpletuner
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/simpletuner-trainer ./cmd/simpletuner-trainer

# The fully static daemon: no cgo, no NVML. It starts anywhere and always reports zero GPUs
# (it logs "built without NVML"), so every job runs on the CPU trainer.
build-static: ## build bin/simpletuner-static (CGO_ENABLED=0 -tags nonvml: fully static, no GPU support) and bin/simpletuner-trainer
	CGO_ENABLED=0 $(GO) build -trimpath -tags nonvml -ldflags '$(LDFLAGS)' -o $(BIN)/simpletuner-static ./cmd/simpletuner
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/simpletuner-trainer ./cmd/simpletuner-trainer

run: build ## run the daemon on embedded defaults (port 8001); pass flags with ARGS="..."
	$(BIN)/simpletuner server $(ARGS)

test: lint openapi-lint tutorial-deps metrics-deps ## vet (both daemon builds), format check, the OpenAPI lint and the whole test suite
	PATH="$(CURDIR)/$(PROMTOOL_DIR)/usr/bin:$$PATH" $(CGO_DAEMON) $(GO) test $(GOTEST_FLAGS) ./...

test-short: cgo-deps ## the test suite without the slow tests
	$(CGO_DAEMON) $(GO) test -short -count=1 ./...

# The packages whose goroutines share state (event hub, job manager, auth, store,
# webhook dispatcher), under the race detector. -race needs cgo, so a C compiler: see
# race-deps.
RACE_PKGS ?= ./supervisor/events/ ./supervisor/jobs/ ./supervisor/auth/ ./store/ ./supervisor/webhooks/
.PHONY: test-race race-deps
test-race: race-deps ## the concurrent packages (events, jobs, auth, store, webhooks) under go test -race
	$(CGO_DAEMON) $(GO) test -race $(GOTEST_FLAGS) $(RACE_PKGS)

# The tutorial tests run the tutorial's own shell commands (cmd/simpletuner's
# TestTutorialPixArtSigma), so they need curl and jq.
.PHONY: tutorial-deps
tutorial-deps: ## install curl and jq (Debian) unless both are there: the tutorial tests run the tutorial's commands
	@if ! command -v curl >/dev/null 2>&1 || ! command -v jq >/dev/null 2>&1; then \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y curl jq; \
	fi

# The metrics tests (cmd/simpletuner's scrape, packaging's Grafana dashboard) check with
# promtool from Debian's prometheus package. The package is unpacked into PROMTOOL_DIR
# rather than installed: installing it would also start a Prometheus server on the
# machine. `make test` puts PROMTOOL_DIR/usr/bin on the tests' PATH.
PROMTOOL_DIR := .cache/prometheus
.PHONY: metrics-deps
metrics-deps: ## fetch promtool (Debian's prometheus package, unpacked into .cache/prometheus) unless it is on PATH: the metrics tests check with it
	@if ! command -v promtool >/dev/null 2>&1 && [ ! -x $(PROMTOOL_DIR)/usr/bin/promtool ]; then \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update && \
	  rm -rf $(PROMTOOL_DIR) && mkdir -p $(PROMTOOL_DIR) && \
	  (cd $(PROMTOOL_DIR) && apt-get download prometheus && dpkg-deb -x prometheus_*.deb . && rm -f prometheus_*.deb) && \
	  $(PROMTOOL_DIR)/usr/bin/promtool --version; \
	fi

race-deps: cgo-deps ## the same as cgo-deps (kept for scripts that name it)

cgo-deps: ## install gcc and libc6-dev (Debian) unless a C compiler is there: the daemon (go-nvml) and -race need cgo
	@if ! command -v "$$($(GO) env CC)" >/dev/null 2>&1; then \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y gcc libc6-dev; \
	fi

FUZZTIME ?= 10s
fuzz: ## run every fuzz target for FUZZTIME each (CI runs this after make test)
	FUZZTIME=$(FUZZTIME) GO=$(GO) scripts/fuzz.sh

# Both daemon builds are vetted and compiled here so that neither rots: the default one
# (cgo, go-nvml) and the static one (-tags nonvml), which is what the nonvml files build.
lint: cgo-deps ## go vet (default and static daemon builds), the static daemon compiles, and a gofmt check
	$(CGO_DAEMON) $(GO) vet ./...
	CGO_ENABLED=0 $(GO) vet -tags nonvml ./supervisor/gpu/ ./supervisor/daemon/ ./cmd/simpletuner/
	CGO_ENABLED=0 $(GO) build -tags nonvml -o /dev/null ./cmd/simpletuner
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

# The daemon's /openapi.json must pass Redocly's recommended rules (redocly.yaml; the one
# exception, with its reason, in .redocly.lint-ignore.yaml). A Go test writes the document
# exactly as served; scripts/redocly.sh fetches the pinned @redocly/cli into .cache/redocly
# (and Node.js and npm where missing) the first time.
OPENAPI_DOC := .cache/openapi/openapi.json

openapi-lint: ## lint the daemon's OpenAPI document with Redocly's recommended rules (fetches @redocly/cli)
	@rm -f $(OPENAPI_DOC)
	SIMPLETUNER_OPENAPI_OUT=$(CURDIR)/$(OPENAPI_DOC) $(GO) test -count=1 -run '^TestWriteOpenAPIDocument$$' ./supervisor/api/
	scripts/redocly.sh lint $(OPENAPI_DOC)

generate: ## regenerate committed generated code (protobuf, vendored API doc assets)
	$(GO) generate ./...

bench: build ## run the benchmarks in bench/ (not part of make test)
	$(GO) run ./bench/apistatus -daemon $(BIN)/simpletuner
	$(GO) run ./bench/startlatency -daemon $(BIN)/simpletuner
	$(GO) run ./bench/eventfanout -daemon $(BIN)/simpletuner

bench-dispatch: build ## submit → first trainer event for target local and worker (ARGS="-slurm": and slurm, root), a worker's event throughput vs a local trainer's; ARGS="-runs 7 -burst 20000"
	$(GO) run ./bench/dispatch -daemon $(BIN)/simpletuner $(ARGS)

# The PyTorch reference (bench/torch_dit.py) runs on Debian's python3-torch, which installs
# for /usr/bin/python3 (not a pyenv shim); libopenblas0-pthread keeps torch off the slow
# reference BLAS.
TORCH_PYTHON ?= /usr/bin/python3
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

torch-deps: ## install python3-torch and OpenBLAS (Debian) unless torch already imports
	@if ! $(TORCH_PYTHON) -c 'import torch, numpy' >/dev/null 2>&1; then \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y python3-torch python3-numpy libopenblas0-pthread; \
	fi

parity: torch-deps ## dit loss, output and every gradient vs the PyTorch reference (tiny, small; rel err < 1e-4)
	@log=$$(mktemp); rc=0; \
	  SIMPLETUNER_PARITY=1 SIMPLETUNER_TORCH_PYTHON=$(TORCH_PYTHON) $(GO) test -count=1 -v -run '^TestTorchParity$$' ./trainerproc/model/ >$$log 2>&1 || rc=$$?; \
	  grep -E '^(PARITY|--- |ok|FAIL)|relative error|structurally|cannot' $$log; \
	  [ $$rc = 0 ] || tail -n 40 $$log; rm -f $$log; exit $$rc

bench-train: torch-deps ## dit training step time vs PyTorch (same machine, threads, batch); ARGS="-threads 2 -batch 4"
	$(GO) run ./bench/trainstep -python $(TORCH_PYTHON) $(ARGS)

bench-conv: torch-deps ## one 3x3 convolution, forward and backward, vs PyTorch; ARGS="-h 256 -w 256"
	$(GO) run ./bench/conv -python $(TORCH_PYTHON) $(ARGS)

# The VAE and T5 comparisons run the references' own model code (diffusers, transformers),
# which no package registry here carries: point DIFFUSERS_SRC / TRANSFORMERS_SRC at a source
# tree (bench/reference/torch_ref.py says which files it needs); without one only our side runs.
bench-vae: torch-deps ## SDXL VAE encode at 1024x1024 vs diffusers' AutoencoderKL; DIFFUSERS_SRC=DIR
	$(GO) run ./bench/vaeencode $(if $(DIFFUSERS_SRC),-python $(TORCH_PYTHON) -diffusers-src $(DIFFUSERS_SRC)) $(ARGS)

bench-pixart: torch-deps ## PixArt-Σ 900M training step at 512² (+ the tiny config) vs diffusers' PixArtTransformer2DModel; DIFFUSERS_SRC=DIR
	$(GO) run ./bench/pixartstep $(if $(DIFFUSERS_SRC),-python $(TORCH_PYTHON) -diffusers-src $(DIFFUSERS_SRC)) $(ARGS)

bench-t5: torch-deps ## T5-XXL encode (ARGS="-layers 2" of 24 blocks) vs transformers' T5EncoderModel; TRANSFORMERS_SRC=DIR
	$(GO) run ./bench/t5encode $(if $(TRANSFORMERS_SRC),-python $(TORCH_PYTHON) -transformers-src $(TRANSFORMERS_SRC)) $(ARGS)

# CUDA (trainerproc/engine/cuda, cmd/simpletuner-trainer-cuda). scripts/cuda-env.sh fetches
# the CUDA headers, the stub libcuda.so and (for kernels) nvcc from Debian non-free into
# .cache/cuda without touching the system; no GPU is needed to build.
CUDA_ENV := scripts/cuda-env.sh
GPU_BUNDLE ?= .cache/gpucheck

kernels: ## compile trainerproc/engine/cuda/kernels/*.cu to the committed PTX (nvcc into .cache/cuda)
	$(CUDA_ENV) kernels

K := trainerproc/engine/cuda/kernels
kernels-emu: ## run the conv/norm CUDA kernels on the host under an emulator against float64 (g++; minutes)
	@command -v g++ >/dev/null || { apt-get update -qq && apt-get install -y -qq g++; }
	mkdir -p $(BIN) && g++ -std=c++20 -O1 -pthread -I$(K)/emu/inc -I$(K) -x c++ $(K)/emu/check.cpp -o $(BIN)/kernels-emu && $(BIN)/kernels-emu

build-cuda: ## build bin/simpletuner-trainer-cuda (-tags cuda; headers + stub libcuda fetched, about 40 s the first time)
	$(CUDA_ENV) $(GO) build -trimpath -tags cuda -ldflags '$(LDFLAGS)' -o $(BIN)/simpletuner-trainer-cuda ./cmd/simpletuner-trainer-cuda

vet-cuda: ## go vet -tags cuda ./... (CUDA headers + stub libcuda fetched like build-cuda)
	CGO_CFLAGS='$(or $(CGO_CFLAGS),-O2 -g) -Wno-deprecated-declarations' $(CUDA_ENV) $(GO) vet -tags cuda ./...

gpu-check-bundle: build ## everything scripts/gpu-check.sh needs on the GPU machine, in $(GPU_BUNDLE)
	rm -rf $(GPU_BUNDLE) && mkdir -p $(GPU_BUNDLE)/bin
	$(CUDA_ENV) $(GO) build -trimpath -tags cuda -ldflags '$(LDFLAGS)' -o $(GPU_BUNDLE)/bin/simpletuner-trainer-cuda ./cmd/simpletuner-trainer-cuda
	$(CUDA_ENV) $(GO) build -trimpath -tags cuda -ldflags '-s -w' -o $(GPU_BUNDLE)/bin/gpucheck ./bench/gpucheck
	$(CUDA_ENV) $(GO) test -c -trimpath -tags cuda -ldflags '-s -w' -o $(GPU_BUNDLE)/bin/cuda.test ./trainerproc/engine/cuda
	cp $(BIN)/simpletuner $(BIN)/simpletuner-trainer $(GPU_BUNDLE)/bin/
	cp bench/torch_dit.py bench/gpucheck/torch_dit_gpu.py $(GPU_BUNDLE)/
	cd $(GPU_BUNDLE) && tar czf bundle.tgz bin *.py && rm -rf bin *.py
	@ls -la $(GPU_BUNDLE); echo "carry $(GPU_BUNDLE) and run: scripts/gpu-check.sh --bundle $(GPU_BUNDLE) --out \$$OUT"

clean: ## remove build outputs
	rm -rf $(BIN)
