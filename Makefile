# The two commands a user needs: `make demo` and `make test`. Both set the machine up first.
CARGO ?= cargo
WAX := target/debug/wax

.PHONY: bootstrap build coordinator-only demo test lint fmt

bootstrap:
	@scripts/bootstrap.sh

build: bootstrap
	$(CARGO) build --workspace --bins

# The main job, embedded, on CPU: the quickstart sweep (five trials of the paper's protocol on
# builtin:1m) through an embedded coordinator and local workers, ending with its table. State
# and artifacts go to .wax/ (running it again re-runs nothing).
demo: build
	@$(WAX) doctor
	@echo
	$(WAX) run examples/quickstart.toml

# The coordinator image builds without libtorch (`--no-default-features`); build that binary
# too, so that it cannot break unnoticed, and keep it as target/coordinator-only/wax. It shares
# the target folder (most dependencies are reused); `build` then puts the full binary back.
coordinator-only: bootstrap
	$(CARGO) build --no-default-features --bin wax
	mkdir -p target/coordinator-only && cp target/debug/wax target/coordinator-only/wax
	target/coordinator-only/wax version
	@if ldd target/coordinator-only/wax | grep -q libtorch; then \
	  echo "error: the coordinator-only binary links libtorch"; exit 1; fi

# WAX_TEST_POSTGRES=required, WAX_TEST_S3=required: the Postgres store tests and the S3 (moto)
# artifact tests must run, never skip.
# NVRTC from the torch venv's CUDA wheel on the loader path: the CUDA kernels' sources are
# compiled (not run) by the tests on machines without a GPU too.
NVRTC_DIR := $(CURDIR)/.wax/libtorch/../nvidia/cu13/lib
test: coordinator-only build
	LD_LIBRARY_PATH=$(NVRTC_DIR)$${LD_LIBRARY_PATH:+:$$LD_LIBRARY_PATH} \
	  WAX_TEST_POSTGRES=required WAX_TEST_S3=required $(CARGO) test --workspace --no-fail-fast

lint: bootstrap
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all
