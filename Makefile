# The README's two commands: `make demo` (the main job on built-in data) and `make test`.
PYTHON ?= python3
PIP := $(PYTHON) -m pip

.PHONY: install test demo demo-quick lint

# torch first, from the CPU wheel, and only when missing: an installed torch is left alone.
install:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) install torch==2.13.0
	$(PIP) install --quiet --disable-pip-version-check -e ".[dev]"

test: install
	$(PYTHON) -m pytest

demo: install
	$(PYTHON) -m jnet demo --out runs/demo

demo-quick: install
	$(PYTHON) -m jnet demo --quick --out runs/demo-quick

lint:
	ruff check src tests
	ruff format --check src tests
