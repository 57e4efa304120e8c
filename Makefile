# Two commands: `make demo` (the main job on the embedded default) and `make test`.
# Both create .venv when it is missing and install torch==2.13.0 explicitly, then this package.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.modernpatent-installed
DEMO_DIR ?= outputs/demo
# No hub downloads anywhere in the demo or the tests: everything is generated or read locally.
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1

.PHONY: install demo test clean

$(STAMP): setup.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(OFFLINE) $(BIN)/modernpatent synth --n 20000 --seed 0 --out $(DEMO_DIR)/data
	$(OFFLINE) $(BIN)/modernpatent tokenizer --corpus $(DEMO_DIR)/data --vocab-size 8000 --out $(DEMO_DIR)/tokenizer
	$(OFFLINE) $(BIN)/modernpatent stats $(DEMO_DIR)/data

test: $(STAMP)
	$(OFFLINE) $(BIN)/python -m pytest -q tests

clean:
	rm -rf outputs build *.egg-info .pytest_cache
