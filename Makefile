# The README's two commands: `make demo` (the main job on built-in data) and `make test`.
PYTHON ?= python3
PIP := $(PYTHON) -m pip

.PHONY: install test demo demo-quick lint study study-latency

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

# The LGG study (docs/results.md): training runs resume, finished ones are skipped.
STUDY := results/study_lgg
study: install
	$(PYTHON) -m jnet sweep --config configs/study_lgg.yaml --out $(STUDY)

# Latency of every study configuration as a device runs it (full-resolution image in, mask out),
# ONNX Runtime, batch 1, at 1 and 2 threads; then the plan at a few budgets. Run on an idle machine.
STUDY_HEADS := none interp jnet jnet-noskip jnet-single jnet-guided guided
STUDY_SIZES := 16 32
study-latency: install
	rm -f $(STUDY)/latency.json
	for size in $(STUDY_SIZES); do for head in $(STUDY_HEADS); do for threads in 1 2; do \
	  $(PYTHON) -m jnet benchmark --model elunet --head $$head --input-size $$size --full-resolution-input \
	    --runtime onnxruntime --threads $$threads --runs 200 --out $(STUDY)/latency.json || exit 1; \
	done; done; done
	for budget in 2 3 5; do \
	  $(PYTHON) -m jnet plan --results $(STUDY) --benchmark $(STUDY)/latency.json --threads 1 --budget-ms $$budget \
	    --plot $(STUDY)/quality_vs_latency.png || exit 1; \
	done
