# Set-up and checks. `make demo` and `make test` are all a fresh machine needs.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
EXTRAS ?= dev,docs,bench,worker,inference

.PHONY: install demo test lint docs unit integration acceptance migration bench clean services browser

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# The CPU build of torch lies on local disk; any other request pulls a multi-GB CUDA build.
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[$(EXTRAS)]"
	touch $@

demo: install
	$(VENV)/bin/banditq demo

services:
	bash .ci/services.sh

# The dashboard's browser tests drive Debian's Chromium (never a downloaded browser).
browser:
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium chromium-driver; }

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy app tasks models workers benchmarks

unit: install
	$(VENV)/bin/pytest -q tests/unit

migration: install services
	$(VENV)/bin/pytest -q tests/migration

integration: install services
	$(VENV)/bin/pytest -q tests/integration

acceptance: install services browser
	$(VENV)/bin/pytest -q tests/acceptance

# The guide, the API reference and the benchmarks' pages (--strict: a broken link or a
# reference to code that moved fails the build).
docs: install
	$(VENV)/bin/mkdocs build --strict -q

test: install services browser lint docs
	$(VENV)/bin/pytest -q tests

bench: install services
	$(PY) benchmarks/relax.py

clean:
	rm -rf $(VENV) .banditq bench-out
