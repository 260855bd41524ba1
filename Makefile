# The DVR's entry points. `make help` lists them.
#
# Builds go to a cache outside the clone so repeated runs (and CI on the same
# machine) reuse them.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/dvr/target
BIN := $(CARGO_TARGET_DIR)/release/dvr
CARGO ?= cargo
VALUES ?= charts/dvr/values.yaml

.DEFAULT_GOAL := help
.PHONY: help run build build-deps test test-deps unit lint fmt fuzz bench clips deploy image

help: ## List the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*## "} {printf "  make %-12s %s\n", $$1, $$2}'

build: build-deps ## Build the dvr binary and its JPEG previews' decoder (release)
	$(CARGO) build --release --locked -p dvr -p dvr-preview-decoder

build-deps: ## Install what the build needs beyond Rust (libav*-dev, libclang; idempotent)
	scripts/install-build-deps.sh

run: build ## Run the product on embedded defaults (a demo stream, archive in ./data)
	$(BIN) run --data-dir data

test-deps: ## Install what the tests need (idempotent; apt-get, pip)
	scripts/install-test-deps.sh

test: test-deps build-deps ## Install test dependencies if missing, then run every test
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	$(CARGO) build --release --locked -p dvr -p dvr-preview-decoder
	DVR_BIN=$(BIN) $(CARGO) test --locked --workspace --all-targets

unit: build-deps ## Only the fast in-process tests
	$(CARGO) test --workspace --lib

lint: build-deps ## Clippy with warnings as errors
	$(CARGO) clippy --all-targets -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

FUZZ_SECS ?= 60
FUZZ_TARGETS ?=
fuzz: ## Run each fuzz target FUZZ_SECS s (default 60; FUZZ_TARGETS=url to pick) on stable Rust (fuzz/README.md)
	FUZZ_SECS=$(FUZZ_SECS) CARGO=$(CARGO) fuzz/run.sh $(FUZZ_TARGETS)

deploy: ## Render k8s/ from charts/dvr/values.yaml (then: kubectl apply -k k8s/)
	$(CARGO) run --locked -q -p dvr -- deploy render --values $(VALUES) --out k8s

IMAGE ?= dvr:dev
image: ## Build the container image (needs a Docker engine; IMAGE=registry/dvr:tag)
	docker build -t $(IMAGE) .

clips: ## Regenerate the committed test clips with ffmpeg
	scripts/make-clips.sh testdata

bench: build ## Measure segmenter, fMP4 writer, live path, NATS path, archive uploads, segment TTFB, packager HTTP, auth overhead, MP4 export and restreaming against their peers (bench/README.md)
	bench/segmenter.sh
	$(CARGO) bench --locked -p dvr-media --bench fmp4
	bench/live.sh
	bench/inputs.sh
	bench/distributed.sh
	bench/storage.sh
	bench/segment_ttfb.sh
	bench/packager.sh
	bench/export.sh
	bench/auth.sh
	bench/cluster.sh
