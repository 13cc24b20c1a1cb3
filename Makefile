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

.PHONY: all deps native build demo demo-stages test test-go test-native bench clean models

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

test: native
	@scripts/deps.sh --test
	$(BUILD)/native/align_native_tests
	$(BUILD)/native/align_grad_ops
	@# everything but the native-facing packages builds without cgo (DESIGN §2)
	CGO_ENABLED=0 $(GO) build ./align/jsonl ./align/pairs ./align/manga ./align/backend/... ./align/cost ./align/pipeline
	$(GOENV) $(GO) test -count=1 -timeout 30m -short ./...
	@# the slow end-to-end training checks (skipped by -short), once
	$(GOENV) $(GO) test -count=1 -timeout 30m -run '^(TestDPOLearnsPreferences|TestResumeIsBitIdentical|TestRewardModelLearns|TestStagesSFTThenDPO|TestStagesResume|TestStoriesDPO)$$' ./align/train
	$(GOENV) $(GO) test -count=1 -timeout 30m -run '^(TestPPOLearnsPhrase|TestGRPOLearnsPhrase|TestResumeSameAdapter)$$' ./align/rl

bench: build
	@scripts/bench-sample.sh

clean:
	rm -rf $(BUILD) bin
