# The two commands a newcomer needs:  `make demo`  and  `make test`.
# Every target creates .venv when absent and installs the exact pins of constraints.txt.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PRESET ?= cpu-quick

# No data folder is needed: the cpu-quick and smoke data ship inside the package. A folder of
# real CIFAR-10/MNIST files is used when REPLEARN_DATA_DIR names one (data/README.md).

.PHONY: help demo book book-instructor book-check test test-fast lint format release starter bench lock clean

help:
	@echo "make demo     run every assignment notebook (preset $(PRESET)), grade, write build/demo/index.html and the book"
	@echo "make book     the course as a static HTML book (build/book/) from the notebooks make demo executed"
	@echo "make book-instructor  the instructors' copy (answers and reference solutions folded): build/book-instructor/"
	@echo "make book-check       load every page of build/book in headless Chromium (screenshots: build/book-screenshots/)"
	@echo "make test     the whole test suite (lint, library, grader, attacks, notebooks in smoke preset)"
	@echo "make release  regenerate-check starter code and build the student hand-out build/release/*.zip"
	@echo "make bench    speed and learning-quality benchmarks -> build/bench/"

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[dev,bench,book]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (replearn)" >/dev/null
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m instructor.demo --preset $(PRESET)
	$(PY) -m instructor.book

book: $(STAMP)
	$(PY) -m instructor.book

book-instructor: $(STAMP)
	$(PY) -m instructor.book --edition instructor

book-check: $(STAMP)
	$(PY) -m instructor.book.browser build/book

test: $(STAMP)
	$(PY) -m pytest -q --durations=30

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff format . && $(PY) -m ruff check --fix .

starter: $(STAMP)
	$(PY) -m instructor.release starter

release: $(STAMP)
	$(PY) -m instructor.release starter --check
	$(PY) -m instructor.release zip --out build/release/
	$(PY) -m instructor.handout_leaks "$$(ls -t build/release/*.zip | head -n 1)" --out build/release-leaks.json

bench: $(STAMP)
	$(PY) -m benchmarks.augment_throughput
	$(PY) -m benchmarks.backbone_speed
	$(PY) -m benchmarks.grading_speed
	$(PY) -m benchmarks.grader_seeds
	$(PY) -m benchmarks.method_speed
	$(PY) -m benchmarks.transfer_quality --preset $(PRESET)
	$(PY) -m benchmarks.quality --preset $(PRESET)

lock: $(STAMP)
	@echo "Edit constraints.txt from: $(PY) -m pip freeze --exclude-editable"

clean:
	rm -rf build .pytest_cache .ruff_cache
