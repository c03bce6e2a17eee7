# The two commands a user needs: `make demo` and `make test`. Both set the machine up first.
CARGO ?= cargo
WAX := target/debug/wax

.PHONY: bootstrap build demo test lint fmt

bootstrap:
	@scripts/bootstrap.sh

build: bootstrap
	$(CARGO) build --workspace --bins

# The main job, embedded, on CPU. For now: the maze environment exactly as the model sees it,
# and generation statistics.
demo: build
	@echo "== wax doctor"
	@$(WAX) doctor
	@echo; echo "== one episode of maze 12, played by the exact planner, as the model sees it (ChatML; turn 6 follows a gust of wind)"
	@$(WAX) maze sample --seed 12
	@echo; echo "== the same episode as a table (the paper's Table 25 layout)"
	@$(WAX) maze sample --seed 12 --format table
	@echo; echo "== generation statistics over 200 mazes"
	@$(WAX) maze stats --n 200

# WAX_TEST_POSTGRES=required, WAX_TEST_S3=required: the Postgres store tests and the S3 (moto)
# artifact tests must run, never skip.
# NVRTC from the torch venv's CUDA wheel on the loader path: the CUDA kernels' sources are
# compiled (not run) by the tests on machines without a GPU too.
NVRTC_DIR := $(CURDIR)/.wax/libtorch/../nvidia/cu13/lib
test: build
	LD_LIBRARY_PATH=$(NVRTC_DIR)$${LD_LIBRARY_PATH:+:$$LD_LIBRARY_PATH} \
	  WAX_TEST_POSTGRES=required WAX_TEST_S3=required $(CARGO) test --workspace --no-fail-fast

lint: bootstrap
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all
