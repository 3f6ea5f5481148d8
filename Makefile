# The two set-up commands: `make run` (demo on a local control plane) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test test-long-faults lint unit controlplane bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

controlplane: $(STAMP)
	$(PY) -m tenant_registry.localcluster build

run: $(STAMP) controlplane
	$(PY) -m tenant_registry.demo

lint: $(STAMP)
	$(VENV)/bin/ruff check operator tests bench
	$(VENV)/bin/ruff format --check operator tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/hadolint Dockerfile

unit: $(STAMP)
	$(PY) -m pytest tests/unit -q

test: $(STAMP) lint controlplane
	$(PY) -m pytest -q

# The fault tests' long variants (about 18 minutes): 200 namespaces and 60 SIGKILLs, a 60 s
# outage, 1,000 concurrent edits, 150 fuzzed inputs. TRO_FAULT_SEED=N repeats a run's choices.
test-long-faults: $(STAMP) controlplane
	$(PY) -m pytest tests/faults tests/cluster/test_concurrent_writer.py --long-faults -q

bench: $(STAMP) controlplane
	$(PY) bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .run .pytest_cache .mypy_cache .ruff_cache
