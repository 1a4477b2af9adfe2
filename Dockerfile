# syntax=docker/dockerfile:1
#
# Multi-stage image for aigc-queue.
#   api     the Flask API, the reconciler and migrations: the base dependencies only (small)
#   worker  Celery workers: adds the `worker` extra (TensorFlow, Keras, scikit-learn)
#   flower  Celery monitoring: the api stage plus the `monitor` extra
#
#   docker build --target api    -t aigc-queue/api .
#   docker build --target worker -t aigc-queue/worker .
#   docker build --target worker --build-arg WORKER_REQUIREMENTS=worker -t aigc-queue/worker:cpu .
#
# The source stays in /app and is installed in editable mode: shared/migrate.py finds the Alembic
# scripts at <repo root>/migrations, next to the `shared` package.

ARG PYTHON_IMAGE=python:3.11-slim

# -- base: interpreter, virtualenv, non-root user, requirement lists -------------------------------
FROM ${PYTHON_IMAGE} AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv /opt/venv \
 && groupadd --system --gid 10001 aigc \
 && useradd --system --uid 10001 --gid aigc --create-home --home-dir /home/aigc \
        --shell /usr/sbin/nologin aigc \
 && mkdir -p /app /data/artifacts \
 && chown aigc:aigc /data/artifacts

WORKDIR /app

# Requirement lists come from pyproject.toml alone, so the (large) dependency layers below are
# rebuilt only when pyproject.toml changes, not on every source edit.
COPY pyproject.toml ./
RUN python - <<'EOF'
import re
import tomllib
from pathlib import Path

project = tomllib.loads(Path("pyproject.toml").read_text())["project"]
out = Path("/tmp/requirements")
out.mkdir()
(out / "core.txt").write_text("\n".join(project["dependencies"]) + "\n")
for extra, reqs in project.get("optional-dependencies", {}).items():
    (out / f"{extra}.txt").write_text("\n".join(reqs) + "\n")
    # The same list with TensorFlow's CUDA/cuDNN wheels: a slim image has no CUDA toolkit and the
    # NVIDIA container runtime brings only the driver.
    cuda = [re.sub(r"^tensorflow(?=[<>=!~ ;]|$)", "tensorflow[and-cuda]", r) for r in reqs]
    if cuda != reqs:
        (out / f"{extra}-cuda.txt").write_text("\n".join(cuda) + "\n")
EOF

# -- api: gunicorn API, reconciler, `aigc db upgrade` ------------------------------------------------
FROM base AS api

RUN pip install -r /tmp/requirements/core.txt

COPY api/ api/
COPY shared/ shared/
COPY worker/ worker/
COPY ops/ ops/
COPY migrations/ migrations/
RUN pip install -e . && rm -rf build

USER aigc
EXPOSE 8000
CMD ["aigc", "api", "--workers", "2"]

# -- flower: Celery monitoring (api image + the monitor extra; no model code) ------------------------
FROM api AS flower

USER root
RUN pip install -r /tmp/requirements/monitor.txt && pip install -e ".[monitor]" && rm -rf build
USER aigc
EXPOSE 5555
CMD ["celery", "-A", "worker.app", "flower", "--port=5555"]

# -- worker: Celery workers with the model code's dependencies ---------------------------------------
FROM base AS worker

# worker-cuda: TensorFlow with its CUDA wheels (GPU hosts); `worker`: CPU-only TensorFlow.
ARG WORKER_REQUIREMENTS=worker-cuda
RUN pip install -r /tmp/requirements/core.txt -r /tmp/requirements/${WORKER_REQUIREMENTS}.txt

COPY api/ api/
COPY shared/ shared/
COPY worker/ worker/
COPY ops/ ops/
COPY migrations/ migrations/
RUN pip install -e ".[worker]" && rm -rf build

ENV KERAS_BACKEND=tensorflow \
    TF_FORCE_GPU_ALLOW_GROWTH=true \
    XLA_PYTHON_CLIENT_PREALLOCATE=false \
    TF_CPP_MIN_LOG_LEVEL=1

USER aigc
CMD ["aigc", "worker", "--concurrency", "1", "--pool", "prefork"]
