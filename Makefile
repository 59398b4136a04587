# Two commands do all set-up on a fresh machine: `make run` and `make test`.
# Both create the virtual environment and install the project on first use.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
DATASET ?= retinamnist
SPEC ?= sweeps/specs/$(DATASET).yaml

.PHONY: run test bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

# The main job: one MedViT training run on RetinaMNIST with the paper's best Ordinal Loss weight.
run: $(BIN)/.installed
	$(BIN)/medsweep data download --dataset $(DATASET)
	$(BIN)/medsweep train --dataset $(DATASET) --model medvit_28_small --alpha 0.2 --margin 0.1 \
		--epochs 50 --out runs/$(DATASET)-alpha0.2

test: $(BIN)/.installed
	$(BIN)/pytest

bench: $(BIN)/.installed
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) runs
