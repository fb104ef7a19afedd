# The two commands a newcomer types: `make run` (the main job on the embedded default) and
# `make test` (the whole suite). Both create .venv with pip on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
SPACE  ?= search_spaces/iou.yaml

.PHONY: setup run train test test-fast lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

run: setup            ## the main job: an Optuna + ASHA search on Ray Tune (embedded default)
	$(PY) search/run.py --space $(SPACE)

train: setup          ## one fine-tuning run of the embedded default, with test evaluation
	$(PY) -m detr_core.train --output-dir outputs/default

test: setup           ## the whole test suite (Ray is started for real by the slow tests)
	$(PY) -X faulthandler -m pytest -q --durations=15

test-fast: setup      ## unit tests only
	$(PY) -m pytest -q -m "not slow"

lint: setup
	$(VENV)/bin/ruff check .

bench: setup          ## the quick search benchmark (replay, minutes); full runs: see README
	$(PY) benchmarks/search_efficiency.py --quick --out outputs/bench

clean:
	rm -rf outputs .pytest_cache
	find results -mindepth 1 -maxdepth 1 -type d ! -name benchmarks -exec rm -rf {} +  # keeps the committed reports
