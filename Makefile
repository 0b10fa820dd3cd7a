# Two commands do all set-up on a fresh machine with Python 3.11:
#   make demo   - create .venv, install, run every pipeline on synthetic phantoms
#   make test   - install the dev extras and run the test suite
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# Nothing phones out: kedro-telemetry honours these, and .telemetry says consent: false.
export KEDRO_DISABLE_TELEMETRY := 1
export DO_NOT_TRACK := 1

.PHONY: demo test bench install lint clean-data

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found: set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# constraints.txt pins the numeric packages the published figures were measured with
$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c constraints.txt -e .
	touch $@

# the suite runs the benchmark at tiny sizes, whose peer model needs the bench extra, and
# tracks one run with MLflow (the tracking extra)
$(VENV)/.installed-dev: pyproject.toml constraints.txt $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,bench,tracking]'
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/kedro run
	@echo
	@cat data/08_reporting/comparison.md
	@echo
	@echo "Report (open in a browser, works offline): $(CURDIR)/data/08_reporting/report.html"
	@echo "Volumes, each on its scan's own grid: probabilities data/07_model_output/fused/<variant>/<method>/,"
	@echo "  fracture label maps data/07_model_output/label_maps/<method>/, scans data/01_raw/phantoms/."
	@echo "Over the scan in 3D Slicer: File > Add Data, pick <case>_ct.nii.gz and the case's label map"
	@echo "  (tick 'LabelMap' under Options) or fused volume (then set it as the foreground layer)."

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest

# Not part of `make test` or CI: 58 min on 2 CPU cores with native bfloat16, longer without;
# writes benchmarks/results.json and docs/benchmarks.md from the pipelines' outputs over three
# training seeds.
bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/run_benchmark.py

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests notebooks benchmarks

clean-data:
	find data -type f ! -name .gitkeep -delete
