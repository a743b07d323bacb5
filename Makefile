# The README's two commands: `make demo` (the main job on built-in data) and `make test`.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
comma := ,

.PHONY: install test demo demo-quick lint study study-latency study-compare

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
# MODEL:HEAD:SIZE: every ELU-Net head at 16 and 32, the 64x64 rows, the U-Net rows.
STUDY_HEADS := none interp jnet jnet-noskip jnet-single jnet-guided guided
STUDY_CONFIGS := $(foreach size,16 32,$(foreach head,$(STUDY_HEADS),elunet:$(head):$(size))) \
	elunet:none:64 elunet:interp:64 elunet:jnet:64 unet:none:16 unet:jnet:16 unet:none:32 unet:jnet:32
study-latency: install
	rm -f $(STUDY)/latency.json
	for cfg in $(STUDY_CONFIGS); do model=$${cfg%%:*}; rest=$${cfg#*:}; head=$${rest%%:*}; size=$${rest#*:}; for threads in 1 2; do \
	  $(PYTHON) -m jnet benchmark --model $$model --head $$head --input-size $$size --full-resolution-input \
	    --runtime onnxruntime --threads $$threads --runs 200 --out $(STUDY)/latency.json || exit 1; \
	done; done
	for budget in 3 5 10 25; do \
	  $(PYTHON) -m jnet plan --results $(STUDY) --benchmark $(STUDY)/latency.json --threads 1 --budget-ms $$budget \
	    --plot $(STUDY)/quality_vs_latency.png || exit 1; \
	done

# Paired comparisons on the same validation slices, with 95% CIs over patients (jnet compare):
# the per-image scores are kept in each run's val_scores.csv (committed), so this runs on a clone
# without checkpoints. Only runs with a val_scores.csv can be compared: seed 0 of the 64x64
# `none` and `jnet`, U-Net 16x16 seed 0, 16x16 ablation (but `default-init`), 16x16
# guided-filter and seed-0 32x32 guided runs lost their checkpoints before it was made (retrain
# them to add their pairs).
# METHOD@SIZE/s1+s2 names the seeds that have scores: the ungated guided cascade has its seed 2,
# U-Net at 16x16 and the guided heads at 32x32 (and `none`/`jnet` at 64x64) their seeds 1 and 2.
# The ablations and U-Net at 32x32 have 3 like `jnet`.
STUDY_PAIRS := elunet+jnet@16,elunet+none@16 elunet+interp@16,elunet+none@16 elunet+jnet@16,elunet+interp@16 \
	elunet+jnet@32,elunet+none@32 elunet+interp@32,elunet+none@32 elunet+jnet@32,elunet+interp@32 \
	elunet+jnet@16,elunet+none@32 elunet+jnet-guided+guided-cascade@16,elunet+jnet@16 \
	elunet+jnet-guided+guided-cascade@16,elunet+none@32 \
	elunet+jnet+final-loss@32,elunet+jnet@32 elunet+jnet-noskip+no-skip@32,elunet+jnet@32 \
	elunet+jnet-single+single-step@32,elunet+jnet@32 elunet+jnet+area-target@32,elunet+jnet@32 \
	elunet+jnet+default-init@16,elunet+jnet@16 elunet+jnet+default-init@32,elunet+jnet@32 \
	elunet+jnet-guided+guided-ungated@16/s2,elunet+jnet-guided+guided-cascade@16/s2 \
	elunet+jnet-guided+guided-cascade@32/s1+s2,elunet+jnet@32 \
	elunet+guided+guided-filter@32/s1+s2,elunet+interp@32 \
	elunet+jnet@64/s1+s2,elunet+interp@64 elunet+jnet@64/s1+s2,elunet+none@64/s1+s2 \
	elunet+interp@64,elunet+none@64/s1+s2 elunet+jnet@32,elunet+none@64/s1+s2 \
	unet+jnet@32,unet+none@32 unet+jnet@16/s1+s2,unet+none@16/s1+s2 unet+jnet@16/s1+s2,unet+none@32 \
	unet+jnet@16/s1+s2,elunet+jnet@16 \
	unet+none@32,elunet+none@32 unet+jnet@32,elunet+jnet@32
study-compare: install
	$(PYTHON) -m jnet compare --results $(STUDY) --out $(STUDY)/comparisons.json --size-bins 1000,2500 --markdown \
	  $(foreach pair,$(STUDY_PAIRS),--pair $(subst $(comma), ,$(pair)))
