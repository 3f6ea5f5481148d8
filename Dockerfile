# syntax=docker/dockerfile:1
# Build a wheel from the project's own metadata, install it into a slim runtime stage.
FROM python:3.11.14-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11.14-slim-bookworm
# Two malloc arenas: with a thread pool, glibc's default (8 per core) inflates RSS.
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 MALLOC_ARENA_MAX=2
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
# A numeric non-root user, so runAsNonRoot can verify it; nothing is written to the image.
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["tenant-registry", "run"]
