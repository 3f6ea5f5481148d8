# A hermetic build from the context that `make image` stages in build/image/ (git-ignored):
# every wheel is there, pinned by its hash, so nothing is fetched.
# BASE: any Debian bookworm image with python3 and its venv module. The default is pulled
# from Docker Hub; `make image` builds a local one from Debian's packages (mmdebstrap).
ARG BASE=docker.io/library/python:3.11-slim-bookworm

FROM ${BASE} AS build
# The locked dependencies first: their layer stays cached while only the sources change.
# pip checks every wheel against the lock's hashes. Bytecode is hash-based (reproducible).
COPY requirements.lock /context/
COPY wheels /context/wheels
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --no-compile --no-index \
      --find-links /context/wheels --require-hashes --requirement /context/requirements.lock \
 && /opt/venv/bin/python -m compileall -q -f --invalidation-mode unchecked-hash /opt/venv/lib
# The project's wheel, by its hash; `pip check`: the lock holds every dependency it needs.
# pip and setuptools then leave the venv: the image runs Python, it installs nothing.
COPY requirements.txt /context/
COPY project /context/project
RUN /opt/venv/bin/pip install --no-cache-dir --no-compile --no-index \
      --find-links /context/project --require-hashes --requirement /context/requirements.txt \
 && /opt/venv/bin/pip check \
 && /opt/venv/bin/pip uninstall --yes --quiet pip setuptools \
 && /opt/venv/bin/python -m compileall -q -f --invalidation-mode unchecked-hash \
      /opt/venv/lib/python3*/site-packages/tenant_registry

FROM ${BASE}
COPY --from=build /opt/venv /opt/venv
# Two malloc arenas: with a thread pool, glibc's default (8 per core) inflates RSS.
# No bytecode writes: the root filesystem is read-only (the .pyc files are in the image).
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 MALLOC_ARENA_MAX=2
# A numeric non-root user, so runAsNonRoot can verify it. No passwd entry: the kubelet
# writes none, and the operator needs none.
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["tenant-registry", "run"]
