# The README's two commands: `make demo` (the main job on built-in data) and `make test`.
# Targets that regenerate jnet's own outputs pass --overwrite: no jnet command replaces a file without it.
PYTHON ?= python3
PIP := $(PYTHON) -m pip

.PHONY: install test demo demo-quick lint study study-latency study-compare latency-heads cv cv-report

# torch first, from the CPU wheel, and only when missing: an installed torch is left alone.
install:
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) install torch==2.13.0
	$(PIP) install --quiet --disable-pip-version-check -e ".[dev]"

test: install
	$(PYTHON) -m pytest

demo: install
	$(PYTHON) -m jnet demo --out runs/demo --overwrite

demo-quick: install
	$(PYTHON) -m jnet demo --quick --out runs/demo-quick --overwrite

lint:
	ruff check src tests
	ruff format --check src tests

# The LGG study (docs/results.md): training runs resume, finished ones are skipped.
STUDY := results/study_lgg
study: install
	$(PYTHON) -m jnet sweep --config configs/study_lgg.yaml --out $(STUDY)

# Latency of every study configuration as a device runs it, then the plan at each budget; the grid,
# the budgets and the comparison pairs are in configs/study_lgg.yaml (latency: and compare:).
# Run study-latency on an idle machine. study-compare needs no checkpoint: every run keeps its
# per-slice scores in val_scores.csv (committed).
study-latency: install
	rm -f $(STUDY)/latency.json && $(PYTHON) -m jnet benchmark --config configs/study_lgg.yaml --out $(STUDY)/latency.json
	$(PYTHON) -m jnet plan --config configs/study_lgg.yaml --results $(STUDY) --benchmark $(STUDY)/latency.json --plot $(STUDY)/quality_vs_latency.png --overwrite

# Latency against input size of none, interp, jnet and jnet-guided, the J-Net heads compiled and
# as their cascade (configs/latency_heads.yaml; docs/performance.md). On an idle machine too.
latency-heads: install
	rm -f results/latency_heads/latency.json && mkdir -p results/latency_heads && $(PYTHON) -m jnet benchmark --config configs/latency_heads.yaml --out results/latency_heads/latency.json --plot results/latency_heads/latency_by_size.png --overwrite

study-compare: install
	$(PYTHON) -m jnet compare --config configs/study_lgg.yaml --results $(STUDY) --out $(STUDY)/comparisons.json --overwrite --markdown

# The headline configurations under 5-fold patient cross-validation (configs/cv_lgg.yaml; resumable),
# then their folds pooled: per-patient 3D Dice over all 81 patients, with intervals (jnet crossval;
# while folds are still to train, a configuration is pooled over those it has, marked INCOMPLETE).
CV := results/cv_lgg
cv: install
	$(PYTHON) -m jnet sweep --config configs/cv_lgg.yaml --out $(CV)

cv-report: install
	$(PYTHON) -m jnet crossval --config configs/cv_lgg.yaml --results $(CV) --incomplete --out $(CV)/crossval.json --overwrite --markdown
