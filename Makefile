# Two commands do all set-up on a fresh machine: `make run` and `make test`.
# Both create the virtual environment and install the project on first use, with the newest
# supported Python found (3.14, then 3.13, 3.12, 3.11, 3.10: pyproject.toml's requires-python),
# or the one given: make test PYTHON=python3.12.
# A name that does not run (a pyenv shim of a version not selected) is passed over. An existing
# .venv is kept whatever its Python: `make clean` first to change it.
PYTHON ?= $(shell for v in 3.14 3.13 3.12 3.11 3.10; do p=$$(command -v python$$v) && $$p -c '' 2>/dev/null && { echo $$p; break; }; done)
# PYTHON picks the interpreter of the venv only: kept out of the recipes' environment, where the
# GPU scripts (benchmarks/gpu_env.sh) read PYTHON as the Python to run them with.
unexport PYTHON
VENV ?= .venv
BIN := $(VENV)/bin
SPEC ?= retinamnist-cpu
NAME ?= $(SPEC)
RESULTS ?= $(HOME)/medsweep-results

.PHONY: run test test-fast bench clean

$(BIN)/.installed: pyproject.toml
	@test -x $(BIN)/python || { \
	  $(PYTHON) -c 'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 14))' 2>/dev/null || { \
	    echo "make: no Python 3.10 to 3.14 to create $(VENV) with (PYTHON='$(PYTHON)' does not run one; 3.15 has no torch 2.14.1 or Ray 2.60 wheels); install one or give PYTHON=/path/to/python3.x" >&2; exit 2; }; \
	  echo "$(PYTHON) -m venv $(VENV)"; $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

# The main job: a RetinaMNIST sweep sized for a CPU (Optuna + ASHA over the Ordinal Loss,
# augmentation, depth, lr, weight decay), the test split of its best trial, and the report.
# Another spec or name: make run SPEC=retinamnist NAME=retina-2
run: $(BIN)/.installed
	$(BIN)/medsweep data download --dataset retinamnist
	$(BIN)/medsweep sweep $(SPEC) --storage $(RESULTS) --name $(NAME)
	$(BIN)/medsweep collect $(RESULTS)/$(NAME) --out runs/results.parquet --evaluate-test
	$(BIN)/medsweep report runs/results.parquet --out reports/$(NAME)

# Every test: the quick ones on both cores (pytest-xdist; about 2 min on two cores), then the slow
# ones (pyproject.toml says which), also two at a time: most of their time is Ray starting and
# waiting. --dist loadfile keeps each file on one worker, so a module's sweep fixture runs once;
# the one test that must see no other Ray runs with the quick ones, and every test's ray.init
# says address="local" (a bare one joins a cluster another test started). test-fast: first half.
test: $(BIN)/.installed
	$(BIN)/pytest -m "not slow" -n 2
	$(BIN)/pytest -m slow -n 2 --dist loadfile

test-fast: $(BIN)/.installed
	$(BIN)/pytest -m "not slow" -n 2

# The quick form of each benchmark (minutes); benchmarks/README.md has the full ones (hours).
bench: $(BIN)/.installed
	$(BIN)/python -m benchmarks.bench_epoch
	$(BIN)/python -m benchmarks.bench_augment
	$(BIN)/python -m benchmarks.bench_loss
	$(BIN)/python -m benchmarks.bench_bn_recompute
	$(BIN)/python -m benchmarks.bench_models
	$(BIN)/python -m benchmarks.bench_report
	$(BIN)/python -m benchmarks.bench_startup --rounds 3
	$(BIN)/python -m benchmarks.bench_ray_exit --rounds 1
	$(BIN)/python -m benchmarks.bench_ensemble_choice
	$(BIN)/python -m benchmarks.bench_checkpoint_cache
	$(BIN)/python -m benchmarks.bench_bucket_status
	$(BIN)/python -m benchmarks.bench_sweep_efficiency --quick
	$(BIN)/python -m benchmarks.bench_packing --parts packing

clean:
	rm -rf $(VENV) runs
