# The two commands in the README: `make demo` and `make test`. Both create .venv when missing.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.georay-installed

.PHONY: install demo test lint format bench browser

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The torch/torchvision pair that imports together on our machines (DESIGN, toolchain facts).
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/georay demo

lint: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

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

test: lint browser
	$(VENV)/bin/python -m pytest -q -rs

bench: $(STAMP)
	for area in geo data evaluate curate train learning predict; do \
		$(VENV)/bin/python -m benchmarks.$$area || exit 1; done
