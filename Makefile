# The two set-up commands: `make run` (demo on a local control plane) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test test-long-faults lint unit controlplane node host-packages image image-base-refresh image-context lock bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

controlplane: $(STAMP)
	$(PY) -m tenant_registry.localcluster build

# kubelet and kube-scheduler for the node tests and `make run NODE=1` (cached apart). Only as
# root: the node needs it, and its tests skip otherwise.
node: $(STAMP)
	@if [ "$$(id -u)" -eq 0 ]; then $(PY) -m tenant_registry.localcluster build --node; \
	else echo "node: not root, not building kubelet (the node tests skip)"; fi

# Debian packages the tests need (podman, runc, mmdebstrap, containerd, ...): installed when
# missing, as root.
host-packages:
	scripts/host-packages.sh

# The operator's image, hermetic (see README, "Image"): localhost/tenant-registry-operator:dev
image: $(STAMP) host-packages
	$(PY) -m tenant_registry.localcluster image $(IMAGE_ARGS)

# The local Debian base made again now, with the updates Debian published since (a build makes
# it again anyway once a calendar month), then the image on it.
image-base-refresh: $(STAMP) host-packages
	$(PY) -m tenant_registry.localcluster image --refresh-base $(IMAGE_ARGS)

# Only its build context, build/image/, for `docker build -f Dockerfile build/image`.
image-context: $(STAMP)
	$(PY) -m tenant_registry.localcluster image --context-only

# requirements.lock: the runtime dependencies pinned with hashes; build-requirements.lock: the
# build backend ([build-system] requires) the image's wheel of the project is built with.
# LOCK_ARGS=--upgrade (or --upgrade-package NAME) moves pins; without, only what
# pyproject.toml forces changes.
PIP_COMPILE := CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/bin/pip-compile --quiet \
  --generate-hashes --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links \
  --no-emit-trusted-host
lock: $(STAMP)
	$(PIP_COMPILE) --output-file requirements.lock $(LOCK_ARGS) pyproject.toml
	$(PIP_COMPILE) --build-deps-for=wheel --only-build-deps \
	  --output-file build-requirements.lock $(LOCK_ARGS) pyproject.toml

# make run NODE=1: also a real node and a private registry; a Pod pulls through the operator.
run: $(STAMP) controlplane $(if $(NODE),host-packages node)
	$(PY) -m tenant_registry.demo $(if $(NODE),--node)

lint: $(STAMP)
	$(VENV)/bin/ruff check operator tests bench
	$(VENV)/bin/ruff format --check operator tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/hadolint Dockerfile

unit: $(STAMP)
	$(PY) -m pytest tests/unit -q

test: $(STAMP) lint controlplane host-packages node
	$(PY) -m pytest -q

# The fault tests' long variants (about 18 minutes): 200 namespaces and 60 SIGKILLs, a 60 s
# outage, 1,000 concurrent edits, 150 fuzzed inputs. TRO_FAULT_SEED=N repeats a run's choices.
test-long-faults: $(STAMP) controlplane
	$(PY) -m pytest tests/faults tests/cluster/test_concurrent_writer.py --long-faults -q

bench: $(STAMP) controlplane
	$(PY) bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .run build .pytest_cache .mypy_cache .ruff_cache
