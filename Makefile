# align: `make demo` builds everything and runs the demo; `make test` runs
# every test. Both install missing system packages first (scripts/deps.sh).
SHELL := /bin/bash
GO ?= go
BUILD ?= build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=
MODELS := models

# The Go build cache does not see native library contents: key cgo builds on
# a hash of them so a rebuilt native library always relinks.
NATIVE_LIBS = $(BUILD)/native/libalign_native.a $(BUILD)/libllama.a $(BUILD)/ggml/libggml.a \
              $(BUILD)/ggml/libggml-cpu.a $(BUILD)/ggml/libggml-base.a
native_stamp = $(shell cat $(NATIVE_LIBS) 2>/dev/null | sha1sum | cut -c1-16)
GOENV = CGO_ENABLED=1 CGO_CPPFLAGS="-DALIGN_NATIVE_STAMP=$(native_stamp)"

# The CUDA variant (`make cuda`): its own build folder, so `make build` and
# `make test` never see it. CUDA_ARCH empty: native where this machine has a
# GPU, else sm_90 (CMakeLists.txt); e.g. `make cuda CUDA_ARCH=80`.
# CUDA_MMQ: the base types given ggml's MMQ kernels (trained, all, none or
# a list such as q4_k,q8_0); the rest dequantise and use cuBLAS. CUDA_MMF=OFF
# leaves out the small-batch float matmul kernels (inference on F16 bases).
# CI builds CUDA_MMQ=none CUDA_MMF=OFF: those template instances are most of
# the compile time (unfinished after 39 min on 2 cores with them) and none of our code.
CUDA_BUILD ?= build-cuda
CUDA_ARCH ?=
CUDA_MMQ ?= trained
CUDA_MMF ?= ON
CUDA_NICE ?= 0
CUDA_LIBS = $(CUDA_BUILD)/native/libalign_native.a $(CUDA_BUILD)/libllama.a $(CUDA_BUILD)/ggml/libggml.a \
            $(CUDA_BUILD)/ggml/libggml-cpu.a $(CUDA_BUILD)/ggml/libggml-base.a $(CUDA_BUILD)/ggml/ggml-cuda/libggml-cuda.a
cuda_stamp = $(shell cat $(CUDA_LIBS) 2>/dev/null | sha1sum | cut -c1-16)
CUDA_LDPATH = -L$(CURDIR)/$(CUDA_BUILD)/native -L$(CURDIR)/$(CUDA_BUILD) -L$(CURDIR)/$(CUDA_BUILD)/ggml \
              -L$(CURDIR)/$(CUDA_BUILD)/ggml/ggml-cuda $(if $(wildcard /usr/local/cuda/lib64),-L/usr/local/cuda/lib64)

.PHONY: all deps native build demo demo-stages demo-methods bench-methods test test-go test-native bench bench-realvocab goldens clean models cuda cuda-native gpu-sources

all: build

deps:
	@scripts/deps.sh

$(BUILD)/build.ninja: CMakeLists.txt native/CMakeLists.txt | deps
	@$(GO) mod download github.com/ollama/ollama
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >/dev/null

native: deps $(BUILD)/build.ninja
	@echo "align: building native libraries (ggml, llama.cpp, align) ..." >&2
	@ninja -C $(BUILD) -j $(JOBS) align_libs align_native_tests align_grad_ops | grep -v '^\[' || true
	@test -f $(BUILD)/native/libalign_native.a

build: native
	$(GOENV) $(GO) build -o bin/align ./cli/align

models: build
	@mkdir -p $(MODELS)
	@test -f $(MODELS)/tiny-q8_0.gguf || ./bin/align model init --out $(MODELS)/tiny-q8_0.gguf --type q8_0 --seed 1

demo: models
	@scripts/demo.sh

# SFT, then DPO with the SFT model as the reference, then align merge
demo-stages: models
	@scripts/demo-stages.sh

# KTO on unpaired thumbs feedback next to DPO on pairs (stories260K from ../shared/models)
demo-methods: build
	@scripts/demo-methods.sh

# method | data | held-out accuracy | cheerful share | fluency | step time and peak RSS ÷ DPO
bench-methods: build
	@scripts/bench-methods.sh

test: native
	@scripts/deps.sh --test
	$(BUILD)/native/align_native_tests
	$(BUILD)/native/align_grad_ops
	@# everything but the native-facing packages builds without cgo (DESIGN §2); the loss math is tested there
	CGO_ENABLED=0 $(GO) build ./align/jsonl ./align/pairs ./align/manga ./align/backend/... ./align/cost ./align/pipeline ./align/annotate ./align/objective ./align/encode ./align/prompt
	CGO_ENABLED=0 $(GO) test -count=1 ./align/objective ./align/encode ./align/prompt
	@# every Go test once: ALIGN_SLOW=1 runs the end-to-end checks a quick -short run skips (align/testgate)
	$(GOENV) ALIGN_SLOW=1 $(GO) test -count=1 -timeout 45m -short ./...
	@# the binding's pointer rules checked as it runs, and the harness under the race detector
	GOEXPERIMENT=cgocheck2 $(GOENV) $(GO) test -count=1 -short -run 'TestTrainerRefusesShortBuffers|TestTrainerRejectsBadInput|TestTrainerSets|TestSessionValidation' ./bindings/
	$(GOENV) $(GO) test -count=1 -race -short ./align/run ./align/objective

# bin/align with the CUDA backend (installs a CUDA toolkit when absent:
# scripts/deps.sh --cuda) and the native GPU test/benchmark driver
# $(CUDA_BUILD)/native/gpu/align_gpu. Training on the GPU: --device cuda.
cuda-native: deps
	@scripts/deps.sh --cuda
	@$(GO) mod download github.com/ollama/ollama
	@cmake -S . -B $(CUDA_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release -DALIGN_CUDA=ON -DALIGN_CUDA_MMQ=$(CUDA_MMQ) -DALIGN_CUDA_MMF=$(CUDA_MMF) \
	  $(if $(CUDA_ARCH),-DCMAKE_CUDA_ARCHITECTURES=$(CUDA_ARCH)) $(CMAKE_FLAGS) >/dev/null
	@echo "align: building the CUDA variant (ggml-cuda takes minutes) ..." >&2
	@nice -n $(CUDA_NICE) ninja -C $(CUDA_BUILD) -j $(JOBS) align_libs align_gpu | grep -v '^\[' || true
	@test -f $(CUDA_BUILD)/ggml/ggml-cuda/libggml-cuda.a && test -f $(CUDA_BUILD)/native/gpu/align_gpu

cuda: cuda-native
	CGO_ENABLED=1 CGO_CPPFLAGS="-DALIGN_NATIVE_STAMP=$(cuda_stamp)" CGO_LDFLAGS="$(CUDA_LDPATH)" \
	  $(GO) build -tags cuda -o bin/align ./cli/align
	@echo "align: bin/align (CUDA) and $(CUDA_BUILD)/native/gpu/align_gpu built" >&2

# The pinned ggml and llama.cpp sources for a GPU host without Go
# (scripts/gpu-check.sh): shared/ollama/{ml/backend/ggml/ggml,llama/llama.cpp}
gpu-sources:
	@$(GO) mod download github.com/ollama/ollama
	@src=$$($(GO) list -m -f '{{.Dir}}' github.com/ollama/ollama) && rm -rf shared/ollama && \
	  mkdir -p shared/ollama/ml/backend/ggml shared/ollama/llama && \
	  cp -r $$src/ml/backend/ggml/ggml shared/ollama/ml/backend/ggml/ && cp -r $$src/llama/llama.cpp shared/ollama/llama/ && \
	  chmod -R u+w shared/ollama && printf 'module align.invalid/ollama-sources\n\ngo 1.24\n' > shared/ollama/go.mod && \
	  du -sh shared/ollama

bench: build
	@scripts/bench-sample.sh

# the chat-template and tokenization goldens, from the npm reference
# implementations (@huggingface/jinja, @huggingface/tokenizers)
goldens:
	@scripts/fetch-tokenizers.sh --goldens

# the LM head at real vocabularies and training at a 1B model's widths
bench-realvocab: build
	@scripts/bench-realvocab.sh

clean:
	rm -rf $(BUILD) $(CUDA_BUILD) bin
