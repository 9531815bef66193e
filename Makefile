# All set-up happens here: `make demo` and `make test` create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-all venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

# The `quick` study: 4 real trials on the built-in transcriptomics suite, then the trial table,
# a recommendation and the report (runs/quick/report/). Running it again resumes the same study.
demo: $(STAMP)
	$(BIN)/ptplan run quick
	$(BIN)/ptplan status quick
	$(BIN)/ptplan recommend quick
	$(BIN)/ptplan report quick

# One torch thread per process: tests start several training processes on 2 cores, and
# oversubscribed OpenMP threads slowed them 60x here. PYTHONSAFEPATH keeps the repository root off
# sys.path, so tests import the installed `ptplan` namespace, never the bare folders.
test: $(STAMP)
	OMP_NUM_THREADS=1 PYTHONSAFEPATH=1 $(BIN)/python -m pytest -q -m "not gpu" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache
